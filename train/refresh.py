"""Refresh a trained head with hand-labelled files written after it was trained (``jobtitles refresh-head``).

A retrain from scratch moves many answers by seed alone (README, Accuracy, steps 3 to 9c); a head
refresh keeps the head's encoder and fine-tuned adapters and continues training the head from its own
weights, on the titles its fine-tune saw plus most of the new files, and keeps the epoch with the
lowest loss on hand-labelled validation titles (the unchanged head included, so a refresh that does
not help returns the head as it was). The head's own split is rebuilt from the ``train/data`` it was
trained on (:func:`jobtitles.train.pipeline.head_split`), so its validation titles stay unseen; each
new file holds out its own share beside them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra()

import torch  # noqa: E402

from jobtitles.train.calibration import calibrate_head  # noqa: E402
from jobtitles.train.data import (  # noqa: E402
    DEFAULT_MIX, HAND_DIR, Example, load_hand_labelled, split_by_source, summarise,
)
from jobtitles.train.finetune import (  # noqa: E402
    ADAPTER_FILE, Embedder, FinetuneConfig, finetune_examples, load_adapters, load_encoder, merge_adapters,
)
from jobtitles.train.memory import MemoryTitles  # noqa: E402
from jobtitles.train.pipeline import head_split  # noqa: E402
from jobtitles.train.trainer import (  # noqa: E402
    TRAINING_REPORT, LabelSet, TrainConfig, TrainResult, evaluate_head, load_head, print_reports, save_head,
    train_head,
)


@dataclass(frozen=True)
class RefreshConfig:
    """How the head goes on training (fixed before the first refresh was run: README, Accuracy, step 10)."""

    lr: float = 2e-4  # the fine-tune's head learning rate (FinetuneConfig.lr_head)
    weight_decay: float = 0.01  # the fine-tune's
    batch_size: int = 256
    max_epochs: int = 10  # of a cosine schedule
    patience: int = 3
    val_fraction: float = 0.1  # of each new file, held out beside the head's own validation titles
    seed: int = 13
    new_repeat: int = 1  # times each new training title is seen per epoch
    # Early stopping weighs the new files' held-out titles as much as the head's own validation titles
    # (their weights scaled to the same total); otherwise every validation title weighs the same.
    balance_validation: bool = False


@dataclass(frozen=True)
class NewFile:
    """A hand-labelled file the head was not trained on: its name, records and sha256."""

    name: str
    examples: list[Example]
    sha256: str


def new_files(hand_dir: str | Path, trained_on: str | Path) -> list[NewFile]:
    """The ``*.jsonl`` files of ``hand_dir`` that are not in ``trained_on`` (the ``train/data`` the head
    was trained on); raises ValueError when a file in both differs, since the head's split could then
    not be rebuilt, or when there is no new file."""
    old = {p.name: p for p in Path(trained_on).glob("*.jsonl")}
    out = []
    for path in sorted(Path(hand_dir).glob("*.jsonl")):
        data = path.read_bytes()
        if path.name in old:
            if old[path.name].read_bytes() != data:
                raise ValueError(f"{path.name} differs from the copy the head was trained on: a refresh adds "
                                 "files, it cannot change them (retrain with jobtitles train instead)")
            continue
        out.append(NewFile(path.name, [e for e in load_hand_labelled(path) if e.text],
                           hashlib.sha256(data).hexdigest()))
    if not out:
        raise ValueError(f"{hand_dir} holds no file that {trained_on} lacks: nothing to refresh with")
    return out


def _uncalibrated(model: torch.nn.Module, report: dict) -> torch.nn.Module:
    """The head as its training ended: calibration folded a temperature into its level and area layers
    (:func:`jobtitles.train.calibration.calibrate_head`), which is undone here before training goes on."""
    with torch.no_grad():
        for layer, task in ((model.level, "level"), (model.area, "area")):
            t = float(((report.get("calibration") or {}).get(task) or {}).get("temperature", 1.0))
            layer.weight *= t
            layer.bias *= t
    return model


def _area_accuracy(model: torch.nn.Module, x: np.ndarray, examples: list[Example], labels: LabelSet) -> float:
    """The head's own area accuracy (alternatives accepted) on ``examples``."""
    return float(evaluate_head(model, x, examples, labels)["area"].accuracy)


def _weighted(x_fit: np.ndarray, fit_set: list[Example], n_new_fit: int, x_val: np.ndarray, val_set: list[Example],
              n_new_val: int, cfg: RefreshConfig) -> tuple[np.ndarray, list[Example], np.ndarray, list[Example]]:
    """The training and validation sets as :func:`train_head` sees them: the last ``n_new_fit`` training
    titles (the new files') repeated ``cfg.new_repeat`` times, and with ``cfg.balance_validation`` the last
    ``n_new_val`` validation titles weighted to the same total as the others."""
    extra = max(0, cfg.new_repeat - 1)
    if extra and n_new_fit:
        x_fit = np.concatenate([x_fit] + [x_fit[-n_new_fit:]] * extra)
        fit_set = fit_set + fit_set[-n_new_fit:] * extra
    if cfg.balance_validation and 0 < n_new_val < len(val_set):
        old_total = sum(e.weight for e in val_set[:-n_new_val])
        new_total = sum(e.weight for e in val_set[-n_new_val:])
        val_set = val_set[:-n_new_val] + [replace(e, weight=e.weight * old_total / new_total)
                                          for e in val_set[-n_new_val:]]
    return x_fit, fit_set, x_val, val_set


@dataclass(frozen=True)
class RefreshSets:
    """What a refresh trains and validates on: the head's own split (its training titles and the names
    of its hand-labelled sources), the new files, and the sets built from them."""

    train: list[Example]  # the head's training titles (the title memory's source)
    hand_sources: set[str]
    files: list[NewFile]
    new_train: list[Example]  # the new files' titles to train on
    new_val: list[Example]  # and their held-out share
    fit_set: list[Example]  # the titles the head's fine-tune saw, then new_train
    old_val: list[Example]  # the head's hand-labelled validation titles

    @property
    def val_set(self) -> list[Example]:
        return self.old_val + self.new_val


def _fine_tune_config(head_dir: Path, report: dict) -> FinetuneConfig:
    """The fine-tune a head came from (its adapters must be there)."""
    saved = dict((report.get("finetune") or {}).get("config") or {})
    if not (head_dir / ADAPTER_FILE).exists() or not saved:
        raise ValueError(f"{head_dir} has no fine-tuned adapters: refresh-head goes on from a fine-tuned head")
    return FinetuneConfig(**{**saved, "soup_seeds": tuple(saved.get("soup_seeds") or ())})


def _refresh_sets(head_dir: Path, report: dict, fcfg: FinetuneConfig, trained_on: str | Path,
                  hand_dir: str | Path, shared_dir: str | Path | None, cfg: RefreshConfig) -> RefreshSets:
    """The head's split rebuilt, the new files split per file, and the training and validation sets."""
    if (report.get("data") or {}).get("mix") and shared_dir is None:
        raise ValueError(f"{head_dir} was trained with taxonomy titles: pass the same reference folder "
                         "(--shared ../shared/data) so that its split and its fine-tune's titles can be rebuilt")
    train, val, hand_sources = head_split(head_dir, trained_on, shared_dir, int(report["train_config"]["seed"]),
                                          DEFAULT_MIX)
    files = new_files(hand_dir, trained_on)
    heldout = set(report.get("heldout_titles", [])) | set(report.get("heldout_non_titles", []))
    new_train, new_val = split_by_source([e for f in files for e in f.examples if e.text not in heldout],
                                         cfg.val_fraction, cfg.seed)
    fit_set = finetune_examples(train, hand_sources, fcfg.n_taxonomy, fcfg.seed) + new_train
    return RefreshSets(train, hand_sources, files, new_train, new_val, fit_set,
                       [e for e in val if e.source in hand_sources])


def _embed(encoder_dir: str | Path, head_dir: Path, fcfg: FinetuneConfig, *sets: list[Example]) -> list[np.ndarray]:
    """Each set's sentence embeddings from the head's fine-tuned encoder (adapters merged), on the token
    sequences it was fine-tuned on."""
    bert, tokenizer, prefix = load_encoder(encoder_dir, fcfg.vocab)
    load_adapters(bert, head_dir / ADAPTER_FILE)
    merge_adapters(bert)
    embed = Embedder(bert, tokenizer, prefix, fcfg.max_tokens)
    return [embed.numpy([e.text for e in examples]) for examples in sets]


def _area_before_after(base: torch.nn.Module, refreshed: torch.nn.Module, x_val: np.ndarray, sets: RefreshSets,
                       labels: LabelSet) -> dict[str, dict]:
    """The head's own area accuracy before and after, on its validation titles and on the new held-out ones."""
    n_old = len(sets.old_val)
    out = {}
    for when, model in (("area_accuracy_before", base), ("area_accuracy_after", refreshed)):
        out[when] = {"head_validation": _area_accuracy(model, x_val[:n_old], sets.old_val, labels),
                     "new_heldout": (_area_accuracy(model, x_val[n_old:], sets.new_val, labels)
                                     if sets.new_val else None)}
    before, after = out["area_accuracy_before"], out["area_accuracy_after"]
    n_area = (sum(e.area is not None for e in sets.old_val), sum(e.area is not None for e in sets.new_val))
    print(f"head area accuracy on the head's {n_area[0]} validation titles: {before['head_validation']:.4f} -> "
          f"{after['head_validation']:.4f}; on the {n_area[1]} new held-out titles: "
          f"{before['new_heldout'] or 0:.4f} -> {after['new_heldout'] or 0:.4f}")
    return out


def _refresh_report(report: dict, head_dir: Path, sets: RefreshSets, cfg: RefreshConfig, accuracy: dict,
                    calibration: dict) -> dict:
    """The refreshed head's training report, beside what :func:`save_head` writes: the base head's encoder
    and fine-tune, the data, the held-out titles, what the refresh did, and the fitted temperatures."""
    data = report.get("data") or {}
    return {
        **{k: report.get(k) for k in ("encoder_fingerprint", "frozen_encoder", "finetune")},
        "data": {"train": summarise(sets.fit_set), "validation": summarise(sets.val_set),
                 "mix": data.get("mix", []), "hand_weight": data.get("hand_weight")},
        "heldout_titles": [e.text for e in sets.val_set if e.valid],
        "heldout_non_titles": [e.text for e in sets.val_set if not e.valid],
        "refresh": {"from": {"head": str(head_dir), "created": report.get("created"),
                             "train_config": report.get("train_config")},
                    "config": asdict(cfg),
                    "files": [{"file": f.name, "records": len(f.examples), "sha256": f.sha256} for f in sets.files],
                    "n_train_new": len(sets.new_train), "n_heldout_new": len(sets.new_val), **accuracy},
        "calibration": {task: asdict(fit) for task, fit in calibration.items()},
    }


def refresh_head(head_dir: str | Path, trained_on: str | Path, encoder_dir: str | Path, out_dir: str | Path,
                 shared_dir: str | Path | None = None, hand_dir: str | Path = HAND_DIR,
                 cfg: RefreshConfig = RefreshConfig(), progress: bool = True) -> TrainResult:
    """Continue training the head of ``head_dir`` (trained on the files in ``trained_on``, with
    ``shared_dir``'s taxonomy titles if it used them) with the files of ``hand_dir`` it has not seen;
    write the refreshed head folder (head, the same adapters, title memory, report) to ``out_dir``."""
    head_dir, out_dir = Path(head_dir), Path(out_dir)
    report = json.loads((head_dir / TRAINING_REPORT).read_text(encoding="utf-8"))
    fcfg = _fine_tune_config(head_dir, report)
    sets = _refresh_sets(head_dir, report, fcfg, trained_on, hand_dir, shared_dir, cfg)
    val_set = sets.val_set
    print(f"refreshing with {len(sets.files)} new files: {len(sets.new_train)} titles to train on, "
          f"{len(sets.new_val)} held out; {len(sets.fit_set)} training and {len(val_set)} validation titles in all")
    x_fit, x_val = _embed(encoder_dir, head_dir, fcfg, sets.fit_set, val_set)
    base, labels = load_head(head_dir)
    base = _uncalibrated(base, report)
    tcfg = TrainConfig(**{**report["train_config"], "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                          "batch_size": cfg.batch_size, "max_epochs": cfg.max_epochs, "patience": cfg.patience,
                          "seed": cfg.seed})
    result = train_head(*_weighted(x_fit, sets.fit_set, len(sets.new_train), x_val, val_set, len(sets.new_val), cfg),
                        labels, tcfg, progress=progress, init=base)
    print_reports(result.val_reports, result.title_validation)
    print(f"best epoch {result.best_epoch} (-1: the head as it came)")
    accuracy = _area_before_after(base, result.model, x_val, sets, labels)
    calibration = calibrate_head(result.model, x_val, val_set, labels)
    save_head(result, out_dir, extra=_refresh_report(report, head_dir, sets, cfg, accuracy, calibration))
    shutil.copyfile(head_dir / ADAPTER_FILE, out_dir / ADAPTER_FILE)
    new_sources = {e.source for f in sets.files for e in f.examples}
    MemoryTitles.from_examples(sets.train + sets.new_train, sets.hand_sources | new_sources, val_set).save(out_dir)
    return result
