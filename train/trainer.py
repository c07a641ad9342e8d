"""Train the multi-task head on cached sentence embeddings and save it with its report."""

from __future__ import annotations

import copy
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
    # A cosine schedule over 40 epochs; the best epoch by validation loss is kept. (With 80 epochs
    # and patience 8, noisy validation loss stopped runs anywhere from epoch 7 to 33, while the
    # learning rate was still high, and dev accuracy swung by 5 points between seeds.)
    max_epochs: int = 40
    patience: int = 12
    label_smoothing: float = 0.05
    input_noise: float = 0.01  # std of Gaussian noise added to (unit-norm) embeddings while training
    title_loss_weight: float = 1.0  # weight of the is-a-title (non-title detector) loss
    max_false_reject: float = 0.005  # the title threshold rejects at most this share of valid validation titles
    # Share of the area loss given to the acceptable set (the area and its alt_areas, the set `evaluate`
    # counts as right): -log of the probability the set holds; the rest stays cross-entropy on the area.
    area_set_weight: float = 0.0
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
    title_threshold: float = 0.5
    title_validation: dict = field(default_factory=dict)


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


def area_sets(examples: list[Example], labels: LabelSet) -> np.ndarray:
    """Acceptable areas per example (the area and its alternatives that are label names), a boolean
    matrix of examples × areas; all False where the example has no area."""
    ai = {n: i for i, n in enumerate(labels.areas)}
    sets = np.zeros((len(examples), len(labels.areas)), dtype=bool)
    for row, ex in enumerate(examples):
        if ex.area is not None:
            sets[row, [ai[a] for a in (ex.area, *ex.alt_areas) if a in ai]] = True
    return sets


def validity_targets(examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
    """1.0 for job titles, 0.0 for non-titles, and per-example weights that give both classes the
    same total weight (non-titles are a small share of the data)."""
    y = np.array([1.0 if e.valid else 0.0 for e in examples], dtype=np.float32)
    w = np.array([e.weight for e in examples], dtype=np.float32)
    pos, neg = float(w[y == 1].sum()), float(w[y == 0].sum())
    if pos > 0 and neg > 0:
        w = np.where(y == 1, w * (pos + neg) / (2 * pos), w * (pos + neg) / (2 * neg)).astype(np.float32)
    return y, w / max(float(w.mean()), 1e-9)


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


def _masked_ce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor, cw: torch.Tensor,
               smoothing: float) -> torch.Tensor:
    mask = y >= 0
    if not mask.any():
        return logits.sum() * 0.0
    ce = nn.functional.cross_entropy(logits[mask], y[mask], weight=cw, reduction="none", label_smoothing=smoothing)
    return (ce * w[mask]).sum() / w[mask].sum()


def _masked_set_nll(logits: torch.Tensor, sets: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                    cw: torch.Tensor) -> torch.Tensor:
    """-log of the probability given to each example's acceptable set, weighted and normalised like
    :func:`_masked_ce` (class weight of the labelled area × sample weight, over the sample weights)."""
    mask = y >= 0
    if not mask.any():
        return logits.sum() * 0.0
    lg, st = logits[mask], sets[mask]
    nll = torch.logsumexp(lg, 1) - torch.logsumexp(lg.masked_fill(~st, float("-inf")), 1)
    return (nll * cw[y[mask]] * w[mask]).sum() / w[mask].sum()


def area_loss(logits: torch.Tensor, y: torch.Tensor, sets: torch.Tensor, w: torch.Tensor, cw: torch.Tensor,
              smoothing: float, set_weight: float) -> torch.Tensor:
    """Cross-entropy on the labelled area, mixed with the acceptable-set loss by ``set_weight``."""
    ce = _masked_ce(logits, y, w, cw, smoothing)
    if set_weight <= 0:
        return ce
    return (1.0 - set_weight) * ce + set_weight * _masked_set_nll(logits, sets, y, w, cw)


def _title_loss(logit: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none")
    return (bce * w).sum() / w.sum()


def predict_logits(model: MultiTaskHead, x: np.ndarray, batch_size: int = 2048
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level, area and is-a-title logits for embeddings ``x`` (eval mode)."""
    model.eval()
    lv, ar, ti = [], [], []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            a, b, c = model(torch.from_numpy(x[i : i + batch_size]))
            lv.append(a.numpy())
            ar.append(b.numpy())
            ti.append(c.numpy())
    if not lv:
        return (np.zeros((0, model.cfg.n_levels), np.float32), np.zeros((0, model.cfg.n_areas), np.float32),
                np.zeros(0, np.float32))
    return np.concatenate(lv), np.concatenate(ar), np.concatenate(ti)


def choose_title_threshold(title_prob: np.ndarray, valid: np.ndarray, max_false_reject: float,
                           target_recall: float = 0.95) -> float:
    """The title threshold: the highest (at most 0.5) that rejects no more than ``max_false_reject``
    of the valid titles, lowered to the least that already catches ``target_recall`` of the
    non-titles: a wrongly rejected real title costs more than a missed non-title, and titles
    unlike the validation set's sit closer to the threshold than the validation titles do."""
    pos = np.sort(title_prob[valid])
    if len(pos) == 0:
        return 0.5
    k = int(np.floor(max_false_reject * len(pos)))  # this many valid titles may fall below the threshold
    threshold = float(min(0.5, pos[k] if k < len(pos) else pos[-1]))
    neg = np.sort(title_prob[~valid])
    if len(neg):
        j = max(0, int(np.ceil(target_recall * len(neg))) - 1)
        threshold = min(threshold, float(np.nextafter(np.float32(neg[j]), np.float32(1))))
    return threshold


def title_report(title_prob: np.ndarray, valid: np.ndarray, threshold: float) -> dict:
    """Recall on non-titles and false-reject rate on titles at ``threshold``."""
    neg = ~valid
    return {"threshold": round(threshold, 6), "n_titles": int(valid.sum()), "n_non_titles": int(neg.sum()),
            "non_title_recall": float((title_prob[neg] < threshold).mean()) if neg.any() else None,
            "false_reject_rate": float((title_prob[valid] < threshold).mean()) if valid.any() else None}


def fit_title_threshold(model: MultiTaskHead, x_val: np.ndarray, valid: np.ndarray, rows: np.ndarray,
                        max_false_reject: float) -> tuple[float, dict]:
    """Choose the title threshold on the validation ``rows`` (boolean mask) and report its figures."""
    title_prob = 1.0 / (1.0 + np.exp(-predict_logits(model, x_val)[2]))
    threshold = choose_title_threshold(title_prob[rows], valid[rows], max_false_reject)
    return threshold, title_report(title_prob[rows], valid[rows], threshold)


def evaluate_head(model: MultiTaskHead, x: np.ndarray, examples: list[Example], labels: LabelSet) -> dict:
    """Per-head reports on examples that carry the label."""
    lv, ar, _ = predict_logits(model, x)
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
    cfg: TrainConfig = TrainConfig(), progress: bool = True, threshold_rows: np.ndarray | None = None,
    init: MultiTaskHead | None = None,
) -> TrainResult:
    """Class-weighted multi-task training with early stopping on validation loss.

    The title threshold is chosen on the validation rows in ``threshold_rows`` (a boolean mask;
    default: all): the pipeline passes the hand-labelled, posting-style titles, because clean
    taxonomy titles make a threshold look safer than it is on real feeds. With ``init`` (a trained
    head, left as it is), training continues from a copy of its weights, and the copy as it came is
    the candidate of epoch -1: when no epoch lowers its validation loss, it is returned unchanged."""
    set_seed(cfg.seed)
    yl, ya, w = encode_labels(train, labels)
    vyl, vya, vw = encode_labels(val, labels)
    cw_level = class_weights(yl, w, len(labels.levels))
    cw_area = class_weights(ya, w, len(labels.areas))
    yt, wt = validity_targets(train)
    vyt, vwt = validity_targets(val)
    sets, vsets = torch.from_numpy(area_sets(train, labels)), torch.from_numpy(area_sets(val, labels))
    if init is None:
        model = MultiTaskHead(HeadConfig(x_train.shape[1], cfg.hidden_dim, len(labels.levels), len(labels.areas),
                                         cfg.dropout))
    elif (init.cfg.input_dim, init.cfg.n_levels, init.cfg.n_areas) != (x_train.shape[1], len(labels.levels),
                                                                       len(labels.areas)):
        raise ValueError("the head to continue from does not fit these embeddings and labels")
    else:
        model = copy.deepcopy(init)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs)
    xt, tyl, tya, tw, tyt, twt = map(torch.from_numpy, (x_train, yl, ya, w, yt, wt))
    xv, tvyl, tvya, tvw, tvyt, tvwt = map(torch.from_numpy, (x_val, vyl, vya, vw, vyt, vwt))
    gen = torch.Generator().manual_seed(cfg.seed)
    def validation_loss() -> float:
        model.eval()
        with torch.no_grad():
            lv, ar, ti = model(xv)
            return float(_masked_ce(lv, tvyl, tvw, cw_level, 0.0)
                         + area_loss(ar, tvya, vsets, tvw, cw_area, 0.0, cfg.area_set_weight)
                         + cfg.title_loss_weight * _title_loss(ti, tvyt, tvwt))

    best = (float("inf"), -1, None)
    history = []
    if init is not None:
        best = (validation_loss(), -1, {k: v.clone() for k, v in model.state_dict().items()})
        history.append({"epoch": -1, "train_loss": None, "val_loss": best[0]})
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
            lv, ar, ti = model(xb)
            loss = (_masked_ce(lv, tyl[b], tw[b], cw_level, cfg.label_smoothing)
                    + area_loss(ar, tya[b], sets[b], tw[b], cw_area, cfg.label_smoothing, cfg.area_set_weight)
                    + cfg.title_loss_weight * _title_loss(ti, tyt[b], twt[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        val_loss = validation_loss()
        history.append({"epoch": epoch, "train_loss": total / len(xt), "val_loss": val_loss})
        bar.set_postfix(train=f"{total / len(xt):.3f}", val=f"{val_loss:.3f}")
        if val_loss < best[0] - 1e-4:
            best = (val_loss, epoch, {k: v.clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= cfg.patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    reports = evaluate_head(model, x_val, val, labels)
    valid = vyt.astype(bool)
    rows = np.ones(len(valid), bool) if threshold_rows is None else np.asarray(threshold_rows, bool)
    threshold, title_validation = fit_title_threshold(model, x_val, valid, rows, cfg.max_false_reject)
    return TrainResult(model, labels, cfg, best[1], history, reports, threshold, title_validation)


def save_head(result: TrainResult, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write weights, config (with labels) and the training report; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(result.model.state_dict(), out / HEAD_WEIGHTS)
    cfg = {"head": result.model.cfg.to_dict(), "labels": {"levels": result.labels.levels, "areas": result.labels.areas},
           "title_threshold": result.title_threshold}
    (out / HEAD_CONFIG).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_config": asdict(result.config),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "validation": {**{k: v.as_dict() for k, v in result.val_reports.items()}, "title": result.title_validation},
        **(extra or {}),
    }
    (out / TRAINING_REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def load_title_threshold(head_dir: str | Path) -> float:
    """The is-a-title threshold chosen at training time (below it an input is not a job title)."""
    cfg = json.loads((Path(head_dir) / HEAD_CONFIG).read_text(encoding="utf-8"))
    return float(cfg["title_threshold"])


def load_head(head_dir: str | Path) -> tuple[MultiTaskHead, LabelSet]:
    """Load a saved head (eval mode) and its labels."""
    root = Path(head_dir)
    cfg = json.loads((root / HEAD_CONFIG).read_text(encoding="utf-8"))
    model = MultiTaskHead(HeadConfig(**cfg["head"]))
    model.load_state_dict(torch.load(root / HEAD_WEIGHTS, map_location="cpu", weights_only=True))
    model.eval()
    return model, LabelSet(cfg["labels"]["levels"], cfg["labels"]["areas"])


def print_reports(reports: dict, title: dict | None = None) -> None:
    """Per-class precision / recall / F1 and macro-F1 for both heads, and the title detector's figures."""
    for name, rep in reports.items():
        print(format_report(rep, f"validation {name}"))
    if title:
        print(f"validation title detector: threshold {title['threshold']:.4f}, non-title recall "
              f"{title['non_title_recall']}, false rejects {title['false_reject_rate']} "
              f"({title['n_non_titles']} non-titles, {title['n_titles']} titles)")
