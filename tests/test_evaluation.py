"""Paired comparison of two bundles' predictions (``jobtitles evaluate --compare``)."""

import numpy as np

from jobtitles.classifier import Prediction
from jobtitles.evaluation import GoldRecord, correctness, format_comparison, paired_comparison


def _gold(n_en: int, n_other: int) -> list[GoldRecord]:
    en = [GoldRecord(f"t{i}", "en", True, "Specialist", "IT", frozenset({"Engineering"})) for i in range(n_en)]
    other = [GoldRecord(f"u{i}", "de", True, "Manager", "Finance", frozenset()) for i in range(n_other)]
    return en + other + [GoldRecord("Apply now", "en", False, None, None, frozenset())]


def _pred(level: str | None, area: str | None, valid: bool = True) -> Prediction:
    return Prediction("x", valid, level, 0.9 if level else None, area, 0.9 if area else None)


def test_correctness_counts_as_evaluate_does():
    gold = _gold(3, 0)[:3]
    preds = [_pred("Specialist", "Engineering"), _pred("Manager", "IT"), _pred(None, None, valid=False)]
    level_ok, area_ok = correctness(gold, preds)
    assert level_ok.tolist() == [True, False, False]  # a rejected title is wrong
    assert area_ok.tolist() == [True, True, False]  # an acceptable alternative is right


def test_identical_predictions_differ_by_exactly_zero():
    gold = _gold(20, 10)
    preds = [_pred("Specialist", "IT")] * 10 + [_pred("Assistant", "Media")] * 10 + [_pred("Manager", "Finance")] * 10 \
        + [_pred(None, None, valid=False)]
    figs = paired_comparison(gold, preds, preds, resamples=200)
    assert [f.name for f in figs] == ["english level", "english area", "other languages level",
                                      "other languages area", "mean of the 4", "all titles level", "all titles area"]
    assert all(f.diff == 0 and f.low == 0 and f.high == 0 and f.gained == f.lost == 0 for f in figs)
    assert figs[0].a == 0.5 and figs[2].a == 1.0 and np.isclose(figs[4].a, (0.5 + 0.5 + 1 + 1) / 4)
    assert np.isclose(figs[5].a, (10 + 10) / 30)  # all titles weigh the same, whatever their group


def test_a_better_bundle_gets_a_positive_difference_and_its_counts():
    gold = _gold(40, 0)
    a = [_pred("Specialist", "IT")] * 20 + [_pred("Manager", "Media")] * 20 + [_pred(None, None, valid=False)]
    b = [_pred("Specialist", "IT")] * 38 + [_pred("Manager", "Media")] * 2 + [_pred(None, None, valid=False)]
    figs = {f.name: f for f in paired_comparison(gold, a, b, resamples=500, seed=1)}
    level = figs["english level"]
    assert (level.a, level.b, level.gained, level.lost) == (0.5, 0.95, 18, 0)
    assert 0 < level.low <= level.diff <= level.high  # B never loses a title, so no resample favours A
    assert "other languages level" not in figs and "mean of the 2" in figs
    pooled = figs["all titles level"]  # one language group: the same figure and the same draws
    assert (pooled.a, pooled.b, pooled.gained, pooled.lost) == (0.5, 0.95, 18, 0)
    assert np.isclose(pooled.low, level.low) and np.isclose(pooled.high, level.high)
    text = "\n".join(format_comparison(list(figs.values()), "A1", "B1", 500))
    assert "+45.00" in text and "B = B1 against A = A1" in text


def test_per_class_f1_intervals_bracket_the_f1_and_widen_with_fewer_titles():
    from jobtitles.metrics import classification_report, credited_cells, f1_intervals

    labels = ["A", "B", "C"]
    # 40 A titles (36 right, 4 read as B), 5 B titles (3 right, 2 read as A), C always right (4 titles)
    gold = ["A"] * 40 + ["B"] * 5 + ["C"] * 4
    pred = ["A"] * 36 + ["B"] * 4 + ["B"] * 3 + ["A"] * 2 + ["C"] * 4
    report = classification_report(gold, pred, labels)
    cells = credited_cells(gold, pred, labels)
    assert int((cells[0] == cells[1]).sum()) == 43  # the same credited answers as the report
    ci = f1_intervals(*cells, len(labels), resamples=500, seed=1)
    f1 = {c.label: c.f1 for c in report.classes}
    for i, label in enumerate(labels):
        assert ci[i, 0] <= f1[label] <= ci[i, 1]
    assert ci[1, 1] - ci[1, 0] > 2 * (ci[0, 1] - ci[0, 0])  # 5 titles: a far wider interval than 40
    assert ci[2].tolist() == [1.0, 1.0]  # never wrong, never wrongly predicted
    # an accepted alternative is credited to the gold class, as in the report
    rows, cols = credited_cells(["A"], ["B"], labels, [{"B"}])
    assert (rows.tolist(), cols.tolist()) == ([0], [0])
    assert np.isnan(f1_intervals(np.array([0]), np.array([0]), 2, resamples=10)[1]).all()  # class 1: never seen
