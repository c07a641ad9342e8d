"""Label audit: the model's contradictions are flagged, blind verdicts change labels only with the model."""

import json

import pytest

from jobtitles.train.label_audit import (
    AuditItem, LabelledRecord, SecondOpinion, apply_changes, judge, read_items, read_opinions, read_records,
    select_for_audit, write_audit,
)


def _write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def test_contradicted_labels_are_flagged_and_batches_hide_the_labels(tmp_path, classifier):
    _write(tmp_path / "a.jsonl", [
        {"title": "Senior Data Engineer", "valid": True, "level": "Student", "area": "Healthcare", "alt_areas": []},
        {"title": "Registered Nurse", "valid": True, "level": "Specialist", "area": "Healthcare", "alt_areas": []},
        {"title": "Chief Financial Officer", "valid": True, "level": "C-Level", "area": "Finance", "alt_areas": []},
    ])
    records = read_records([tmp_path / "a.jsonl"])
    items = select_for_audit(records, classifier, min_confidence=0.5, n_control=1, seed=1)
    kinds = {it.record.title: it.kind for it in items}
    assert kinds["Senior Data Engineer"] == "level+area"
    assert list(kinds.values()).count("control") == 1 and len(items) == 2
    assert sorted(it.id for it in items) == [0, 1]
    batches = write_audit(items, tmp_path / "audit", n_batches=2)
    blind = [json.loads(line) for b in batches for line in b.read_text(encoding="utf-8").splitlines()]
    assert all(set(r) == {"id", "title"} for r in blind) and len(blind) == 2
    assert read_items(tmp_path / "audit" / "items.jsonl") == items


def _item(i, kind, level="Specialist", area="IT", model_level="Assistant", model_area="Operations"):
    rec = LabelledRecord("a.jsonl", i, f"title {i}", True, level, area, ())
    return AuditItem(i, rec, kind, model_level, model_area, True, 0.8)


def test_labels_change_only_where_the_blind_opinion_sides_with_the_model():
    items = [_item(0, "level"), _item(1, "level"), _item(2, "area"), _item(3, "control"), _item(4, "level")]
    opinions = {
        0: SecondOpinion(0, True, "Assistant", "IT"),  # sides with the model on level
        1: SecondOpinion(1, True, "Specialist", "IT"),  # sides with the label
        2: SecondOpinion(2, True, "Specialist", "Construction", ("Operations",)),  # model's area accepted
        3: SecondOpinion(3, True, "Assistant", "Operations"),  # a control never changes
        4: SecondOpinion(4, True, "Manager", "IT"),  # with neither: the label stays
    }
    result = judge(items, opinions)
    assert [(c["line"], c["set"]) for c in result.changes] == [
        (0, {"level": "Assistant"}), (2, {"area": "Construction", "alt_areas": ["Operations"]})]
    assert result.agreement["flagged"] == {"n": 4, "validity": 1.0, "level": 0.5, "area": 0.75}
    assert result.agreement["control"]["level"] == 0.0


def test_apply_rewrites_the_record_and_refuses_a_moved_line(tmp_path):
    _write(tmp_path / "a.jsonl", [{"title": "Welder", "valid": True, "level": "Assistant", "area": "Manufacturing",
                                   "alt_areas": [], "note": ""}])
    change = {"file": "a.jsonl", "line": 0, "title": "Welder", "set": {"level": "Specialist"}, "note": "a trade"}
    assert apply_changes([change], tmp_path, "audit") == 1
    rec = json.loads((tmp_path / "a.jsonl").read_text(encoding="utf-8"))
    assert rec["level"] == "Specialist" and rec["note"] == "audit: a trade"
    with pytest.raises(ValueError, match="select the audit items again"):
        apply_changes([dict(change, title="Cook")], tmp_path)


def test_opinions_are_read_from_jsonl(tmp_path):
    _write(tmp_path / "o.jsonl", [{"id": 3, "valid": False, "level": None, "area": None, "alt_areas": []}])
    assert read_opinions([tmp_path / "o.jsonl"]) == {3: SecondOpinion(3, False)}


def test_apply_audit_cli_dry_run_reports_without_writing(tmp_path):
    import subprocess
    import sys

    items = [_item(0, "level")]
    write_audit(items, tmp_path / "audit", n_batches=1)
    _write(tmp_path / "o.jsonl", [{"id": 0, "valid": True, "level": "Assistant", "area": "IT", "alt_areas": []}])
    res = subprocess.run([sys.executable, "-m", "jobtitles.cli", "apply-audit", "--audit", str(tmp_path / "audit"),
                          "--opinions", str(tmp_path / "o.jsonl"), "--dry-run"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "flagged: 1 records" in res.stdout and "'title 0' -> {'level': 'Assistant'}" in res.stdout
    assert "labels changed" not in res.stdout


def test_annotator_agreement_counts_areas_as_evaluate_does():
    from jobtitles.train.label_audit import annotator_agreement

    first = [
        {"title": "A", "language": "en", "valid": True, "level": "Specialist", "area": "IT", "alt_areas": ["Finance"]},
        {"title": "B", "language": "de", "valid": True, "level": "Manager", "area": "Retail", "alt_areas": []},
        {"title": "C", "language": "en", "valid": False, "level": None, "area": None, "alt_areas": []},
        {"title": "D", "language": "en", "valid": True, "level": "Assistant", "area": "Retail", "alt_areas": []},
    ]
    second = [
        {"title": "A", "valid": True, "level": "Specialist", "area": "Finance", "alt_areas": []},  # alt accepted
        {"title": "B", "valid": True, "level": "Director", "area": "Marketing", "alt_areas": ["Retail"]},  # not
        {"title": "C", "valid": False},
    ]
    got = annotator_agreement(first, second)
    assert got["all"] == {"n": 3, "validity": 1.0, "n_both_valid": 2, "level": 0.5, "area": 0.5}
    assert got["english"]["n"] == 2 and got["non-english"]["level"] == 0.0
