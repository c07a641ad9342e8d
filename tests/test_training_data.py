"""The hand-labelled training files: well-formed, labels from the taxonomy, disjoint from the dev set."""

import json
from pathlib import Path

import pytest

from jobtitles.train.active_learning import title_key
from jobtitles.train.trainer import LabelSet

REPO = Path(__file__).resolve().parents[1]
TRAIN_FILES = sorted((REPO / "train" / "data").glob("*.jsonl"))
DEV_FILES = sorted((REPO / "tests" / "data").glob("*.jsonl"))
LABELS = LabelSet.from_files(REPO / "train" / "taxonomy" / "levels.json", REPO / "train" / "taxonomy" / "areas.json")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("path", TRAIN_FILES, ids=lambda p: p.name)
def test_every_record_is_well_formed(path):
    for rec in _records(path):
        assert isinstance(rec["title"], str) and rec["title"].strip(), rec
        assert isinstance(rec["language"], str) and rec["language"], rec
        if rec["valid"]:
            assert rec["level"] in LABELS.levels, rec
            assert rec["area"] in LABELS.areas, rec
            assert all(a in LABELS.areas and a != rec["area"] for a in rec.get("alt_areas") or []), rec
        else:
            assert rec["level"] is None and rec["area"] is None, rec


def test_training_titles_are_not_dev_titles():
    dev = {title_key(r["title"]) for p in DEV_FILES for r in _records(p)}
    clash = [r["title"] for p in TRAIN_FILES for r in _records(p) if title_key(r["title"]) in dev]
    assert not clash, clash[:20]


def test_the_documentation_lists_every_training_file():
    readme = (REPO / "train" / "data" / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in TRAIN_FILES if p.name not in readme]
    assert not missing
