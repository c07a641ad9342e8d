"""The title memory (train/memory.py, export/title_memory.py): how its settings were chosen, and its file
for an existing head.

Scores a bundle's hand-labelled *validation* titles (the run's held-out split, never the dev set) with
the area answer blended with a k-nearest-neighbour vote over the run's hand-labelled training titles,
for the grid registered before it was run (R11, README Accuracy step 8): the bundle's sentence
embedding or the head's last hidden layer as the space, k in {5, 10, 25}, vote weight in {0.1, 0.2,
..., 0.7}, softmax temperature 0.05 (full-precision vectors, the head and the vote averaged). Then, at
the chosen k and in the form the bundle carries (memory titles as sign bits, each query quantised to 8
bits), the grid registered for R12: log-linear pooling ``(1 - w) log(head) + w log(vote + floor)``, w in
{0.3, 0.5, 0.7}, floor in {0.1, 0.05, 0.01}, each with the temperature ``jobtitles export`` would fit;
the most accurate setting whose calibration error stays within 0.01 of the head's is chosen. With
``--write``, saves ``memory.json.gz`` into ``--head`` (the titles, the chosen settings and the
validation titles on which ``jobtitles export`` fits the pooled scores' temperature), so that
``jobtitles export --head`` builds a bundle with the memory. Heads trained by ``jobtitles train``
already have one (the default head's was written by this script, then extended with the files labelled
after its training by ``jobtitles extend-memory``: README, Accuracy, step 9; ``--write`` leaves those
out, so run ``extend-memory`` again with the files the manifest's ``title_memory.added`` names).

    git archive c6b598a train/data | tar -x -C /tmp/c6   # the data the default head was trained on
    .venv/bin/jobtitles export --no-title-memory --out /tmp/no-memory   # the head's answers alone
    cp -r models/heads/default /tmp/head-memory           # --write replaces the copy's memory file
    .venv/bin/python bench/title_memory.py --hand-dir /tmp/c6/train/data --shared ../shared/data \\
        --head /tmp/head-memory --model /tmp/no-memory [--write]
    .venv/bin/jobtitles extend-memory --head /tmp/head-memory train/data/postings_utilities_en.jsonl ...
    .venv/bin/jobtitles export --head /tmp/head-memory --out /tmp/bundle-memory

``--model`` is a bundle of that head without a memory (format 2, or an export with ``--no-title-memory``).
Needs the [train] extra. The split must be the head's own (same data, seed 13): checked against the
head's training report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HIDDEN = "/head/trunk/trunk.7/Mul_1_output_0"  # the head's last hidden layer in the exported graph
EMBEDDING = "/Div_1_output_0"  # the L2-normalised sentence embedding in a graph of format 2
KS = (5, 10, 25)
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
TEMPERATURE = 0.05
POOL_WEIGHTS = (0.3, 0.5, 0.7)  # R12: share of the vote in the log-linear pooling
VOTE_FLOORS = (0.1, 0.05, 0.01)  # R12: added to the vote before its log (ties go to the earlier entry)
ECE_MARGIN = 0.01  # R12: how much calibration error over the head's a chosen setting may add


def features(bundle_dir: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area probabilities, sentence embeddings and normalised head features of ``texts`` from a bundle
    without a title memory (its area probabilities are the head's own)."""
    import onnx

    from jobtitles.bundle import Bundle
    from jobtitles.export.bundle_builder import bundle_outputs

    bundle = Bundle.load(bundle_dir)
    if bundle.manifest.get("title_memory"):
        raise SystemExit(f"{bundle_dir} carries a title memory: pass an export with --no-title-memory")
    graph = onnx.load(str(bundle.model_path))
    names = [o.name for o in graph.graph.output]
    emb_name = "embedding" if "embedding" in names else EMBEDDING
    for name in {emb_name, HIDDEN} - set(names):
        graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    area, emb, hidden = bundle_outputs(graph.SerializeToString(), bundle.tokenizer_path, bundle.query_prefix, texts,
                                       ["area_probs", emb_name, HIDDEN])
    return area, emb, hidden / np.linalg.norm(hidden, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hand-dir", type=Path, required=True, help="train/data as the head was trained on")
    ap.add_argument("--shared", type=Path, required=True, help="reference data folder (../shared/data)")
    ap.add_argument("--head", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="a bundle of that head without a title memory")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--write", action="store_true", help="save the head's memory.json.gz with the chosen settings")
    args = ap.parse_args()

    from jobtitles.bundle import Bundle
    from jobtitles.train.calibration import accepted_masks, fit_temperature
    from jobtitles.train.memory import MIN_PROB, MemorySettings, MemoryTitles, TitleMemory, neighbour_vote
    from jobtitles.train.pipeline import head_split
    from jobtitles.train.trainer import LabelSet

    try:
        train, val, hand_sources = head_split(args.head, args.hand_dir, args.shared, args.seed)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    titles = MemoryTitles.from_examples(train, hand_sources, val)
    rows = [e for e in val if e.source in hand_sources and e.valid and e.area is not None]
    bundle = Bundle.load(args.model)
    areas = bundle.areas
    labels = np.array([areas.index(a) for a in titles.areas])
    _, _, area_rows, accepted_mask = accepted_masks(rows, LabelSet(bundle.levels, areas))
    if len(area_rows) != len(rows):
        raise SystemExit(f"{args.model} does not know every validation title's area: pass a bundle of this head")
    english = np.array([e.language == "en" for e in rows])
    print(f"memory: {len(titles.texts)} hand-labelled training titles; validation: {len(rows)} titles")
    _, mem_emb, mem_hidden = features(args.model, titles.texts)
    head_area, val_emb, val_hidden = features(args.model, [e.text for e in rows])

    def score(p: np.ndarray) -> tuple[float, float, float]:
        right = accepted_mask[np.arange(len(p)), p.argmax(1)]
        return float(right.mean()), float(right[english].mean()), float(right[~english].mean())

    base = score(head_area)
    print(f"head alone: validation area accuracy {base[0]:.4f} (English {base[1]:.4f}, other {base[2]:.4f})")
    best = (base[0], 0.0, KS[0], "embedding")
    for space, query, memory in (("embedding", val_emb, mem_emb), ("head features", val_hidden, mem_hidden)):
        for k in KS:
            votes = neighbour_vote(query @ memory.T, labels, k, TEMPERATURE, len(areas))
            for w in WEIGHTS:
                acc = score((1 - w) * head_area + w * votes)
                print(f"{space:13} k {k:2} weight {w}: {acc[0]:.4f} (English {acc[1]:.4f}, other {acc[2]:.4f})")
                if acc[0] > best[0] + 1e-12:
                    best = (acc[0], w, k, space)
    print(f"chosen: {best[3]}, k {best[2]}, weight {best[1]}: {best[0]:.4f} ({best[0] - base[0]:+.4f} over the head)")
    if best[3] != "embedding" or best[1] == 0:
        raise SystemExit("the chosen setting is not one the bundle's memory can carry (sentence embedding, weight > 0)")
    # R12: the memory as the bundle carries it (sign bits, 8-bit queries) at the chosen k, pooled with the head
    # log-linearly; each setting's scores get the temperature export would fit, and only settings whose area
    # scores stay calibrated (ECE <= the head's validation ECE + 0.01) may be chosen
    bits = TitleMemory.build(mem_emb, labels, len(areas), MemorySettings(k=best[2], temperature=TEMPERATURE))
    votes = bits.vote(val_emb)
    head_log = np.log(np.maximum(head_area, MIN_PROB))
    head_ece = fit_temperature(head_log, accepted_mask).ece_after
    print(f"log-linear pooling (sign-bit memory, 8-bit queries, k {best[2]}); head alone: calibration error "
          f"{head_ece:.4f} after its temperature")
    chosen = None
    for w in POOL_WEIGHTS:
        for floor in VOTE_FLOORS:
            logits = (1 - w) * head_log + w * np.log(votes + floor)
            acc, fit = score(logits), fit_temperature(logits, accepted_mask)
            print(f"  weight {w} vote floor {floor}: {acc[0]:.4f} (English {acc[1]:.4f}, other {acc[2]:.4f}), "
                  f"temperature {fit.temperature}, calibration error {fit.ece_after:.4f}")
            if fit.ece_after <= head_ece + ECE_MARGIN and (chosen is None or acc[0] > chosen[0] + 1e-12):
                chosen = (acc[0], w, floor)
    if chosen is None:
        raise SystemExit("no pooling setting keeps the area scores calibrated")
    print(f"chosen: weight {chosen[1]}, vote floor {chosen[2]}: {chosen[0]:.4f} "
          f"({chosen[0] - base[0]:+.4f} over the head)")
    settings = MemorySettings(k=best[2], weight=chosen[1], vote_floor=chosen[2], temperature=TEMPERATURE)
    if args.write:
        path = MemoryTitles(titles.texts, titles.areas, settings, titles.validation).save(args.head)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
