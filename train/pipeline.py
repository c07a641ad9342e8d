"""End-to-end training run: data → cached embeddings → head → saved head folder with its report."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra()

from jobtitles.train.data import (  # noqa: E402
    DEFAULT_MIX, HAND_DIR, SourceSpec, hand_examples, split_by_source, summarise, taxonomy_examples,
)
from jobtitles.train.embed import EmbeddingCache, encoder_fingerprint  # noqa: E402
from jobtitles.train.rules import TAXONOMY_DIR, KeywordRules  # noqa: E402
from jobtitles.train.trainer import LabelSet, TrainConfig, TrainResult, print_reports, save_head, train_head  # noqa: E402

VAL_FRACTION = 0.1


def run_training(
    encoder_dir: str | Path,
    out_dir: str | Path,
    cache_dir: str | Path,
    shared_dir: str | Path | None = None,
    hand_dir: str | Path = HAND_DIR,
    levels_file: str | Path = TAXONOMY_DIR / "levels.json",
    areas_file: str | Path = TAXONOMY_DIR / "areas.json",
    mix: tuple[SourceSpec, ...] = DEFAULT_MIX,
    cfg: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> TrainResult:
    """Train a head and save it to ``out_dir``; taxonomy sources are used when ``shared_dir`` is given."""
    labels = LabelSet.from_files(levels_file, areas_file)
    rules = KeywordRules.load(levels_file, areas_file)
    examples = [e for e in hand_examples(Path(hand_dir)) if e.text]  # non-titles teach the title head
    if shared_dir is not None:
        examples += taxonomy_examples(Path(shared_dir), mix, rules, seed=cfg.seed)
    train, val = split_by_source(examples, VAL_FRACTION, cfg.seed)
    print(f"training examples: {len(train)}  validation: {len(val)}")
    cache = EmbeddingCache(cache_dir, encoder_dir)
    x_train = cache.get([e.text for e in train], show_progress=progress)
    x_val = cache.get([e.text for e in val], show_progress=progress)
    hand_sources = {p.stem for p in Path(hand_dir).glob("*.jsonl")}
    hand_rows = np.array([e.source in hand_sources for e in val], dtype=bool)
    result = train_head(x_train, train, x_val, val, labels, cfg, progress=progress, threshold_rows=hand_rows)
    print_reports(result.val_reports, result.title_validation)
    heldout = [e.text for e in val if e.source in hand_sources and e.valid]
    heldout_non_titles = [e.text for e in val if e.source in hand_sources and not e.valid]
    save_head(result, out_dir, extra={
        "encoder_fingerprint": encoder_fingerprint(encoder_dir),
        "data": {"train": summarise(train), "validation": summarise(val),
                 "mix": [asdict(s) for s in mix] if shared_dir is not None else [],
                 "hand_weight": train[0].weight if train else None},
        "heldout_titles": heldout,
        "heldout_non_titles": heldout_non_titles,
    })
    return result

