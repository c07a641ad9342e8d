"""Logit adjustment of the area head: does undoing the class weights at decision time raise accuracy?

The area head is trained with class-weighted cross-entropy (inverse square root of frequency), which
helps rare classes; accuracy, the figure of the targets, prefers the unweighted decision. This script
recomputes the area class weights ``cw`` of a head's fine-tuning stage, scores the hand-labelled
*validation* titles of that run (never the dev set) with ``log p - tau * log cw`` for a few ``tau``,
and writes a copy of the head folder with the chosen ``tau`` folded into the area bias (the head's
logits already carry the calibration temperature), ready for ``jobtitles export --head OUT``.

    git archive c6b598a train/data | tar -x -C /tmp/c6   # the data the default head was trained on
    .venv/bin/python bench/logit_adjustment.py --hand-dir /tmp/c6/train/data --shared ../shared/data \\
        --head models/heads/default --out /tmp/adjusted
    .venv/bin/jobtitles export --head /tmp/adjusted --out /tmp/b-adjusted

Needs the [train] extra. The split must be the one the head was trained with (same data, seed 13):
the script checks the held-out titles against the head's training report.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hand-dir", type=Path, required=True, help="train/data as the head was trained on")
    ap.add_argument("--shared", type=Path, required=True, help="reference data folder (../shared/data)")
    ap.add_argument("--head", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None, help="bundle of that head (default: models/default)")
    ap.add_argument("--out", type=Path, required=True, help="where to write the adjusted head folder")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--n-taxonomy", type=int, default=8000, help="as FinetuneConfig.n_taxonomy of the run")
    args = ap.parse_args()

    import torch

    from jobtitles.classifier import Classifier
    from jobtitles.train.finetune import finetune_examples
    from jobtitles.train.pipeline import head_split
    from jobtitles.train.rules import TAXONOMY_DIR
    from jobtitles.train.trainer import HEAD_WEIGHTS, LabelSet, class_weights, encode_labels

    labels = LabelSet.from_files(TAXONOMY_DIR / "levels.json", TAXONOMY_DIR / "areas.json")
    try:
        train, val, hand_sources = head_split(args.head, args.hand_dir, args.shared, args.seed)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    _, ya, w = encode_labels(finetune_examples(train, hand_sources, args.n_taxonomy, args.seed), labels)
    log_cw = np.log(class_weights(ya, w, len(labels.areas)).numpy())

    rows = [e for e in val if e.source in hand_sources and e.valid and e.area is not None]
    index = {a: i for i, a in enumerate(labels.areas)}
    accepted = [{index[a] for a in (e.area, *e.alt_areas) if a in index} for e in rows]
    english = np.array([e.language == "en" for e in rows])
    log_p = np.log(np.maximum(Classifier.load(args.model).probabilities([e.text for e in rows]).area, 1e-12))
    best = (-1.0, 0.0)
    for tau in TAUS:
        right = np.array([p in s for p, s in zip((log_p - tau * log_cw).argmax(1), accepted)])
        print(f"tau {tau:4}: validation area accuracy {right.mean():.4f} (n={len(rows)}), English "
              f"{right[english].mean():.4f}, other languages {right[~english].mean():.4f}")
        if right.mean() > best[0] + 1e-12:
            best = (float(right.mean()), tau)
    tau = best[1]
    shutil.copytree(args.head, args.out, dirs_exist_ok=True)
    state = torch.load(args.out / HEAD_WEIGHTS, map_location="cpu", weights_only=True)
    state["area.bias"] = state["area.bias"] - tau * torch.from_numpy(log_cw).float()
    torch.save(state, args.out / HEAD_WEIGHTS)
    print(f"chosen tau {tau} (the highest validation accuracy, ties to the smaller): head written to {args.out}")


if __name__ == "__main__":
    main()
