"""Uncertainty sampling: pick the unlabelled titles the current model is least sure of, for hand labelling.

The hand-labelled training files ``train/data/find_job_titles_uncertain_*.jsonl`` were chosen
this way (``jobtitles select-uncertain``): from a seeded random sample of an unlabelled title
list, the titles with the lowest top-1 level or area probability under the shipped bundle, plus
a few random ones so that the labelled set stays representative. Titles already in the training
data or the dev set (compared with case and accents folded and whitespace collapsed) are never picked.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobtitles.classifier import Classifier
from jobtitles.cleaning import assess_title
from jobtitles.train.rules import fold


@dataclass(frozen=True)
class Candidate:
    """One title proposed for labelling, with the model's confidence (the lower, the more useful)."""

    title: str
    confidence: float
    picked_as: str  # "uncertain" or "random"


def title_key(title: str) -> str:
    """The form titles are compared in: case and accents folded (:func:`fold`), whitespace collapsed."""
    return " ".join(fold(title).split())


def labelled_keys(files: Iterable[str | Path]) -> set[str]:
    """Folded titles of every record in the given hand-labelled JSONL files."""
    keys: set[str] = set()
    for path in files:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                keys.add(title_key(json.loads(line)["title"]))
    return keys


def select_uncertain(titles: list[str], classifier: Classifier, exclude: set[str], n_uncertain: int,
                     n_random: int, pool: int = 20_000, seed: int = 7) -> list[Candidate]:
    """The ``n_uncertain`` titles of a seeded random ``pool`` with the lowest min(top-1 level, top-1 area)
    probability, then ``n_random`` random others; titles whose folded form is in ``exclude``, duplicates
    and inputs the cleaning rejects are skipped. Returned in a shuffled order (labellers should not
    see the ranking)."""
    seen: set[str] = set(exclude)
    fresh: list[tuple[str, str]] = []  # (title as given, cleaned text)
    for title in titles:
        key = title_key(title)
        if not key or key in seen:
            continue
        assessed = assess_title(title)
        if assessed.valid:
            seen.add(key)
            fresh.append((title, assessed.text))
    rng = random.Random(seed)
    chosen = rng.sample(fresh, min(pool, len(fresh)))
    if not chosen:
        return []
    sample = [title for title, _ in chosen]
    level, area, _ = classifier.probabilities([text for _, text in chosen])
    confidence = np.minimum(level.max(1), area.max(1))
    order = np.argsort(confidence, kind="stable")
    picked = [Candidate(sample[i], float(confidence[i]), "uncertain") for i in order[:n_uncertain]]
    rest = [int(i) for i in order[n_uncertain:]]
    picked += [Candidate(sample[i], float(confidence[i]), "random")
               for i in rng.sample(rest, min(n_random, len(rest)))]
    rng.shuffle(picked)
    return picked
