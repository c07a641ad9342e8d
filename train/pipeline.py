"""End-to-end training run: data → cached embeddings → head → saved head folder with its report."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra()

from jobtitles.train.data import (  # noqa: E402
    DEFAULT_MIX, HAND_DIR, Example, SourceSpec, hand_examples, split_by_source, summarise, taxonomy_examples,
)
from jobtitles.train.calibration import calibrate_head  # noqa: E402
from jobtitles.train.embed import EmbeddingCache, encoder_fingerprint  # noqa: E402
from jobtitles.train.finetune import (  # noqa: E402
    ADAPTER_FILE, Embedder, FinetuneConfig, finetune, finetune_examples, load_encoder, save_adapters, soup_adapters,
    soup_heads,
)
from jobtitles.train.memory import MEMORY_FILE, MemoryTitles  # noqa: E402
from jobtitles.train.rules import TAXONOMY_DIR, KeywordRules  # noqa: E402
from jobtitles.train.trainer import (  # noqa: E402
    TRAINING_REPORT, LabelSet, TrainConfig, TrainResult, evaluate_head, fit_title_threshold, print_reports,
    save_head, train_head,
)

VAL_FRACTION = 0.1


def training_split(hand_dir: str | Path, shared_dir: str | Path | None, mix: tuple[SourceSpec, ...],
                   rules: KeywordRules, seed: int) -> tuple[list[Example], list[Example], set[str]]:
    """A run's data: the hand-labelled files (non-titles too: they teach the title head) and, with
    ``shared_dir``, the taxonomy titles, split per source into training and validation; and the names
    of the hand-labelled sources."""
    examples = [e for e in hand_examples(Path(hand_dir)) if e.text]
    if shared_dir is not None:
        examples += taxonomy_examples(Path(shared_dir), mix, rules, seed=seed)
    train, val = split_by_source(examples, VAL_FRACTION, seed)
    return train, val, {p.stem for p in Path(hand_dir).glob("*.jsonl")}


def head_split(head_dir: str | Path, hand_dir: str | Path, shared_dir: str | Path | None, seed: int = 13,
               mix: tuple[SourceSpec, ...] = DEFAULT_MIX) -> tuple[list[Example], list[Example], set[str]]:
    """The :func:`training_split` a trained head was trained on, rebuilt for a study of that head; raises
    ValueError when its hand-labelled validation titles differ from the ones the head's training report
    held out (other data or another seed than the head's)."""
    rules = KeywordRules.load(TAXONOMY_DIR / "levels.json", TAXONOMY_DIR / "areas.json")
    train, val, hand_sources = training_split(hand_dir, shared_dir, mix, rules, seed)
    report = json.loads((Path(head_dir) / TRAINING_REPORT).read_text(encoding="utf-8"))
    if {e.text for e in val if e.source in hand_sources and e.valid} != set(report["heldout_titles"]):
        raise ValueError("the validation split differs from the head's: pass the train/data it was trained on "
                         "and its seed")
    return train, val, hand_sources


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
    members_dir: str | Path | None = None,
    title_memory: bool = True,
) -> TrainResult:
    """Train a head on frozen embeddings, then (with ``finetune_cfg``) fine-tune encoder adapters and
    head together; save them to ``out_dir``. Taxonomy sources are used when ``shared_dir`` is given.
    With several fine-tuning seeds (a soup), ``members_dir`` also gets each member's head folder
    (``seed-N``), so members and soup can be exported and compared. With ``title_memory``, the head
    folder also keeps the hand-labelled training titles for the bundle's title memory
    (:mod:`jobtitles.train.memory`)."""
    labels = LabelSet.from_files(levels_file, areas_file)
    rules = KeywordRules.load(levels_file, areas_file)
    train, val, hand_sources = training_split(hand_dir, shared_dir, mix, rules, cfg.seed)
    print(f"training examples: {len(train)}  validation: {len(val)}")
    cache = EmbeddingCache(cache_dir, encoder_dir)
    x_train = cache.get([e.text for e in train], show_progress=progress)
    x_val = cache.get([e.text for e in val], show_progress=progress)
    hand_rows = np.array([e.source in hand_sources for e in val], dtype=bool)
    result = train_head(x_train, train, x_val, val, labels, cfg, progress=progress, threshold_rows=hand_rows)
    print_reports(result.val_reports, result.title_validation)
    frozen = {"validation": {**{k: v.as_dict() for k, v in result.val_reports.items()},
                             "title": result.title_validation}, "best_epoch": result.best_epoch}
    extra = {
        "encoder_fingerprint": encoder_fingerprint(encoder_dir),
        "data": {"train": summarise(train), "validation": summarise(val),
                 "mix": [asdict(s) for s in mix] if shared_dir is not None else [],
                 "hand_weight": train[0].weight if train else None},
        "heldout_titles": [e.text for e in val if e.source in hand_sources and e.valid],
        "heldout_non_titles": [e.text for e in val if e.source in hand_sources and not e.valid],
        "frozen_encoder": frozen,
    }
    memory = MemoryTitles.from_examples(train, hand_sources, val) if title_memory else None
    if finetune_cfg is None:
        return _save(result, val, hand_rows, x_val, None, out_dir, {**extra, "finetune": None}, memory)
    tuned = _finetune_stage(encoder_dir, result, train, val, hand_sources, hand_rows, finetune_cfg, progress)
    final = tuned[-1]
    if members_dir is not None and len(tuned) > 1:
        for member in tuned[:-1]:
            _save(member.result, val, hand_rows, member.x_val, member, Path(members_dir) / f"seed-{member.cfg.seed}",
                  {**extra, "finetune": member.report}, memory)
    print("after fine-tuning the encoder:")
    print_reports(final.result.val_reports, final.result.title_validation)
    return _save(final.result, val, hand_rows, final.x_val, final, out_dir, {**extra, "finetune": final.report},
                 memory)


@dataclass
class Finetuned:
    """One fine-tuned encoder + head (a member, or the soup of the members), scored on validation."""

    cfg: FinetuneConfig
    bert: object
    result: TrainResult
    x_val: np.ndarray
    report: dict


def _save(result: TrainResult, val: list, hand_rows: np.ndarray, x_val: np.ndarray, tuned: Finetuned | None,
          out_dir: str | Path, extra: dict, memory: MemoryTitles | None) -> TrainResult:
    """Calibrate the scores on the hand-labelled validation titles, then write the head folder (the
    adapters of a fine-tuned encoder and the title memory's titles where given; stale ones removed, as
    ``jobtitles export`` would build them into the bundle)."""
    hand_val = np.flatnonzero(hand_rows)
    calibration = calibrate_head(result.model, x_val[hand_val], [val[i] for i in hand_val], result.labels)
    for task, fit in calibration.items():
        print(f"{task} scores: temperature {fit.temperature} on {fit.n} hand-labelled validation titles, "
              f"NLL {fit.nll_before} -> {fit.nll_after}, ECE {fit.ece_before} -> {fit.ece_after}")
    save_head(result, out_dir, extra={**extra, "calibration": {task: asdict(fit) for task, fit in calibration.items()}})
    if memory is not None:
        memory.save(out_dir)
    elif (Path(out_dir) / MEMORY_FILE).exists():
        (Path(out_dir) / MEMORY_FILE).unlink()
    adapters = Path(out_dir) / ADAPTER_FILE
    if tuned is not None:
        save_adapters(tuned.bert, tuned.cfg, adapters)
    elif adapters.exists():
        adapters.unlink()  # stale adapters would be merged into an encoder this head was not trained with
    return result


def _finetune_stage(encoder_dir: str | Path, result: TrainResult, train: list, val: list, hand_sources: set[str],
                    hand_rows: np.ndarray, fcfg: FinetuneConfig, progress: bool) -> list[Finetuned]:
    """Fine-tune adapters + a copy of the trained head once per seed (``fcfg.soup_seeds``, else
    ``fcfg.seed``), each scored on validation with its own title threshold. With several seeds the
    last entry is their soup (:func:`~jobtitles.train.finetune.soup_adapters`)."""
    seeds = fcfg.soup_seeds or (fcfg.seed,)
    members = []
    for seed in seeds:
        cfg = replace(fcfg, seed=seed, soup_seeds=())
        bert, tokenizer, prefix = load_encoder(encoder_dir, cfg.vocab)
        head = copy.deepcopy(result.model)
        examples = finetune_examples(train, hand_sources, cfg.n_taxonomy, cfg.seed)
        print(f"fine-tuning the encoder (LoRA rank {cfg.rank}, seed {seed}) with the head on {len(examples)} titles")
        history = finetune(bert, tokenizer, prefix, head, result.labels, examples, cfg, progress)
        report = {"config": asdict(cfg), "n_examples": len(examples), "history": history}
        members.append(_scored(cfg, bert, tokenizer, prefix, replace(result, model=head), val, hand_rows, report))
        if len(seeds) > 1:
            print(f"member seed {seed}:")
            print_reports(members[-1].result.val_reports, members[-1].result.title_validation)
    if len(members) == 1:
        return members
    k = len(members)
    cfg = replace(fcfg, rank=fcfg.rank * k, alpha=fcfg.alpha * k, soup_seeds=tuple(seeds))
    bert = soup_adapters([m.bert for m in members])  # new modules: the members stay as trained
    head = soup_heads([m.result.model for m in members])
    report = {"config": asdict(cfg), "members": [m.report for m in members],
              "n_examples": members[0].report["n_examples"]}
    return members + [_scored(cfg, bert, tokenizer, prefix, replace(result, model=head), val, hand_rows, report)]


def _scored(cfg: FinetuneConfig, bert, tokenizer, prefix: str, result: TrainResult, val: list,
            hand_rows: np.ndarray, report: dict) -> Finetuned:
    """Embed validation with ``bert``, re-choose the title threshold and score ``result``'s head."""
    x_val = Embedder(bert, tokenizer, prefix, cfg.max_tokens).numpy([e.text for e in val])
    valid = np.array([e.valid for e in val], dtype=bool)
    threshold, title_validation = fit_title_threshold(result.model, x_val, valid, hand_rows,
                                                      result.config.max_false_reject)
    scored = replace(result, val_reports=evaluate_head(result.model, x_val, val, result.labels),
                     title_threshold=threshold, title_validation=title_validation)
    return Finetuned(cfg, bert, scored, x_val, report)
