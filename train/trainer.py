"""Train the multi-task head on cached sentence embeddings and save it with its report."""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra()

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from jobtitles.metrics import classification_report, format_report  # noqa: E402
from jobtitles.train.data import Example  # noqa: E402
from jobtitles.train.model import HeadConfig, MultiTaskHead  # noqa: E402

HEAD_WEIGHTS = "head.pt"
HEAD_CONFIG = "head_config.json"
TRAINING_REPORT = "training_report.json"


@dataclass(frozen=True)
class LabelSet:
    """Ordered level and area names (from the label files; never hard-coded)."""

    levels: list[str]
    areas: list[str]

    @classmethod
    def from_files(cls, levels_path: str | Path, areas_path: str | Path) -> LabelSet:
        """Read label names from keyword files in the original ``{label: [...]}`` format (or v2)."""

        from jobtitles.train.rules import label_names

        def names(path: str | Path, key: str) -> list[str]:
            return label_names(json.loads(Path(path).read_text(encoding="utf-8")), key)

        return cls(names(levels_path, "levels"), names(areas_path, "areas"))


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run."""

    hidden_dim: int = 512
    dropout: float = 0.25
    lr: float = 2e-3
    weight_decay: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 80
    patience: int = 8
    label_smoothing: float = 0.05
    input_noise: float = 0.01  # std of Gaussian noise added to (unit-norm) embeddings while training
    seed: int = 13


@dataclass
class TrainResult:
    """The trained head with what it learned from and how it scored on validation."""

    model: MultiTaskHead
    labels: LabelSet
    config: TrainConfig
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    val_reports: dict = field(default_factory=dict)


def set_seed(seed: int) -> None:
    """Fix Python, numpy and torch seeds."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encode_labels(examples: list[Example], labels: LabelSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer targets (-1 = unknown) and sample weights."""
    li = {n: i for i, n in enumerate(labels.levels)}
    ai = {n: i for i, n in enumerate(labels.areas)}
    for ex in examples:
        if ex.level is not None and ex.level not in li:
            raise ValueError(f"level {ex.level!r} of {ex.text!r} ({ex.source}) is not in the label file")
        if ex.area is not None and ex.area not in ai:
            raise ValueError(f"area {ex.area!r} of {ex.text!r} ({ex.source}) is not in the label file")
    y_level = np.array([li[e.level] if e.level is not None else -1 for e in examples], dtype=np.int64)
    y_area = np.array([ai[e.area] if e.area is not None else -1 for e in examples], dtype=np.int64)
    w = np.array([e.weight for e in examples], dtype=np.float32)
    return y_level, y_area, w


def class_weights(y: np.ndarray, w: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse square-root frequency (sample-weighted), normalised to mean 1 over seen classes."""
    counts = np.zeros(n_classes, dtype=np.float64)
    for cls, weight in zip(y, w):
        if cls >= 0:
            counts[cls] += weight
    seen = counts > 0
    out = np.zeros(n_classes, dtype=np.float64)
    out[seen] = 1.0 / np.sqrt(counts[seen])
    out[seen] /= out[seen].mean()
    return torch.tensor(out, dtype=torch.float32)


def _masked_ce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor, cw: torch.Tensor, smoothing: float) -> torch.Tensor:
    mask = y >= 0
    if not mask.any():
        return logits.sum() * 0.0
    ce = nn.functional.cross_entropy(logits[mask], y[mask], weight=cw, reduction="none", label_smoothing=smoothing)
    return (ce * w[mask]).sum() / w[mask].sum()


def predict_logits(model: MultiTaskHead, x: np.ndarray, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Level and area logits for embeddings ``x`` (eval mode)."""
    model.eval()
    lv, ar = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            a, b = model(torch.from_numpy(x[i : i + batch_size]))
            lv.append(a.numpy())
            ar.append(b.numpy())
    if not lv:
        return np.zeros((0, model.cfg.n_levels), np.float32), np.zeros((0, model.cfg.n_areas), np.float32)
    return np.concatenate(lv), np.concatenate(ar)


def evaluate_head(model: MultiTaskHead, x: np.ndarray, examples: list[Example], labels: LabelSet) -> dict:
    """Per-head reports on examples that carry the label."""
    lv, ar = predict_logits(model, x)
    out = {}
    for name, logits, names, gold in (
        ("level", lv, labels.levels, [e.level for e in examples]),
        ("area", ar, labels.areas, [e.area for e in examples]),
    ):
        idx = [i for i, g in enumerate(gold) if g is not None]
        pred = [names[j] for j in logits[idx].argmax(1)] if idx else []
        accepted = [set(examples[i].alt_areas) if name == "area" else set() for i in idx]
        out[name] = classification_report([gold[i] for i in idx], pred, names, accepted)
    return out


def train_head(
    x_train: np.ndarray, train: list[Example], x_val: np.ndarray, val: list[Example], labels: LabelSet,
    cfg: TrainConfig = TrainConfig(), progress: bool = True,
) -> TrainResult:
    """Class-weighted multi-task training with early stopping on validation loss."""
    set_seed(cfg.seed)
    yl, ya, w = encode_labels(train, labels)
    vyl, vya, vw = encode_labels(val, labels)
    cw_level = class_weights(yl, w, len(labels.levels))
    cw_area = class_weights(ya, w, len(labels.areas))
    model = MultiTaskHead(HeadConfig(x_train.shape[1], cfg.hidden_dim, len(labels.levels), len(labels.areas),
                                     cfg.dropout))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs)
    xt, tyl, tya, tw = map(torch.from_numpy, (x_train, yl, ya, w))
    xv, tvyl, tvya, tvw = map(torch.from_numpy, (x_val, vyl, vya, vw))
    gen = torch.Generator().manual_seed(cfg.seed)
    best = (float("inf"), -1, None)
    history = []
    bar = tqdm(range(cfg.max_epochs), desc="training head", disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(perm), cfg.batch_size):
            b = perm[i : i + cfg.batch_size]
            if len(b) < 2:  # BatchNorm needs two samples in training mode
                continue
            xb = xt[b]
            if cfg.input_noise > 0:
                xb = nn.functional.normalize(xb + torch.randn(xb.shape, generator=gen) * cfg.input_noise, dim=1)
            lv, ar = model(xb)
            loss = _masked_ce(lv, tyl[b], tw[b], cw_level, cfg.label_smoothing) + _masked_ce(
                ar, tya[b], tw[b], cw_area, cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        model.eval()
        with torch.no_grad():
            lv, ar = model(xv)
            val_loss = float(_masked_ce(lv, tvyl, tvw, cw_level, 0.0) + _masked_ce(ar, tvya, tvw, cw_area, 0.0))
        history.append({"epoch": epoch, "train_loss": total / len(xt), "val_loss": val_loss})
        bar.set_postfix(train=f"{total / len(xt):.3f}", val=f"{val_loss:.3f}")
        if val_loss < best[0] - 1e-4:
            best = (val_loss, epoch, {k: v.clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= cfg.patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    reports = evaluate_head(model, x_val, val, labels)
    return TrainResult(model, labels, cfg, best[1], history, reports)


def save_head(result: TrainResult, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write weights, config (with labels) and the training report; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(result.model.state_dict(), out / HEAD_WEIGHTS)
    cfg = {"head": result.model.cfg.to_dict(), "labels": {"levels": result.labels.levels, "areas": result.labels.areas}}
    (out / HEAD_CONFIG).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_config": asdict(result.config),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "validation": {k: v.as_dict() for k, v in result.val_reports.items()},
        **(extra or {}),
    }
    (out / TRAINING_REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def load_head(head_dir: str | Path) -> tuple[MultiTaskHead, LabelSet]:
    """Load a saved head (eval mode) and its labels."""
    root = Path(head_dir)
    cfg = json.loads((root / HEAD_CONFIG).read_text(encoding="utf-8"))
    model = MultiTaskHead(HeadConfig(**cfg["head"]))
    model.load_state_dict(torch.load(root / HEAD_WEIGHTS, map_location="cpu", weights_only=True))
    model.eval()
    return model, LabelSet(cfg["labels"]["levels"], cfg["labels"]["areas"])


def print_reports(reports: dict) -> None:
    """Per-class precision / recall / F1 and macro-F1 for both heads."""
    for name, rep in reports.items():
        print(format_report(rep, f"validation {name}"))
