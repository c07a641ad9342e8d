"""End-to-end training run: data → cached embeddings → head → saved head folder with its report."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra()

from jobtitles.train.data import (  # noqa: E402
    DEFAULT_MIX, HAND_DIR, SourceSpec, hand_examples, split_by_source, summarise, taxonomy_examples,
)
from jobtitles.train.calibration import calibrate_head  # noqa: E402
from jobtitles.train.embed import EmbeddingCache, encoder_fingerprint  # noqa: E402
from jobtitles.train.finetune import (  # noqa: E402
    ADAPTER_FILE, Embedder, FinetuneConfig, finetune, finetune_examples, load_encoder, save_adapters,
)
from jobtitles.train.rules import TAXONOMY_DIR, KeywordRules  # noqa: E402
from jobtitles.train.trainer import (  # noqa: E402
    LabelSet, TrainConfig, TrainResult, evaluate_head, fit_title_threshold, print_reports, save_head, train_head,
)

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
    finetune_cfg: FinetuneConfig | None = None,
) -> TrainResult:
    """Train a head on frozen embeddings, then (with ``finetune_cfg``) fine-tune encoder adapters and
    head together; save them to ``out_dir``. Taxonomy sources are used when ``shared_dir`` is given."""
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
    frozen = {"validation": {**{k: v.as_dict() for k, v in result.val_reports.items()},
                             "title": result.title_validation}, "best_epoch": result.best_epoch}
    adapters = Path(out_dir) / ADAPTER_FILE
    finetuned = None
    if finetune_cfg is not None:
        result, finetuned, x_val = _finetune_stage(encoder_dir, result, train, val, hand_sources, hand_rows,
                                                   finetune_cfg, progress)
        print("after fine-tuning the encoder:")
        print_reports(result.val_reports, result.title_validation)
    hand_val = np.flatnonzero(hand_rows)
    calibration = calibrate_head(result.model, x_val[hand_val], [val[i] for i in hand_val], labels)
    for task, fit in calibration.items():
        print(f"{task} scores: temperature {fit.temperature} on {fit.n} hand-labelled validation titles, "
              f"NLL {fit.nll_before} -> {fit.nll_after}, ECE {fit.ece_before} -> {fit.ece_after}")
    heldout = [e.text for e in val if e.source in hand_sources and e.valid]
    heldout_non_titles = [e.text for e in val if e.source in hand_sources and not e.valid]
    save_head(result, out_dir, extra={
        "encoder_fingerprint": encoder_fingerprint(encoder_dir),
        "data": {"train": summarise(train), "validation": summarise(val),
                 "mix": [asdict(s) for s in mix] if shared_dir is not None else [],
                 "hand_weight": train[0].weight if train else None},
        "heldout_titles": heldout,
        "heldout_non_titles": heldout_non_titles,
        "frozen_encoder": frozen,
        "finetune": finetuned["report"] if finetuned else None,
        "calibration": {task: asdict(fit) for task, fit in calibration.items()},
    })
    if finetuned:
        save_adapters(finetuned["bert"], finetune_cfg, adapters)
    elif adapters.exists():
        adapters.unlink()  # stale adapters would be merged into an encoder this head was not trained with
    return result


def _finetune_stage(encoder_dir: str | Path, result: TrainResult, train: list, val: list, hand_sources: set[str],
                    hand_rows: np.ndarray, fcfg: FinetuneConfig, progress: bool
                    ) -> tuple[TrainResult, dict, np.ndarray]:
    """Fine-tune adapters + the trained head; re-score validation and re-choose the title threshold.
    Also returns the validation embeddings under the fine-tuned encoder."""
    bert, tokenizer, prefix = load_encoder(encoder_dir)
    examples = finetune_examples(train, hand_sources, fcfg.n_taxonomy, fcfg.seed)
    print(f"fine-tuning the encoder (LoRA rank {fcfg.rank}) with the head on {len(examples)} titles")
    history = finetune(bert, tokenizer, prefix, result.model, result.labels, examples, fcfg, progress)
    x_val = Embedder(bert, tokenizer, prefix, fcfg.max_tokens).numpy([e.text for e in val])
    valid = np.array([e.valid for e in val], dtype=bool)
    threshold, title_validation = fit_title_threshold(result.model, x_val, valid, hand_rows,
                                                      result.config.max_false_reject)
    updated = replace(result, val_reports=evaluate_head(result.model, x_val, val, result.labels),
                      title_threshold=threshold, title_validation=title_validation)
    report = {"config": asdict(fcfg), "n_examples": len(examples), "history": history}
    return updated, {"bert": bert, "report": report}, x_val

