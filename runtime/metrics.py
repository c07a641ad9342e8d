"""Classification metrics in plain numpy (shared by training logs and ``jobtitles evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassReport:
    """Precision, recall, F1 and support of one class."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Report:
    """Accuracy, macro-F1 (over classes with support), per-class figures and the confusion matrix."""

    accuracy: float
    macro_f1: float
    n: int
    classes: list[ClassReport]
    confusion: np.ndarray  # rows = gold, columns = predicted (last column: no prediction)
    labels: list[str]

    def as_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "n": self.n,
            "per_class": {
                c.label: {"precision": round(c.precision, 4), "recall": round(c.recall, 4), "f1": round(c.f1, 4),
                          "support": c.support}
                for c in self.classes
            },
        }


def classification_report(gold: list[str], pred: list[str | None], labels: list[str],
                          accepted: list[set[str]] | None = None) -> Report:
    """Score ``pred`` against ``gold``; a prediction in ``accepted[i]`` also counts as right.

    A prediction that is accepted as an alternative is credited to the gold class, so
    per-class figures and the confusion matrix agree with the accuracy.
    ``None`` (no prediction, e.g. a rule that abstains) is always wrong.
    """
    k = len(labels)
    rows, cols = credited_cells(gold, pred, labels, accepted)
    conf = np.zeros((k, k + 1), dtype=np.int64)
    np.add.at(conf, (rows, cols), 1)
    correct = int((rows == cols).sum())
    index = {lab: i for i, lab in enumerate(labels)}
    classes = []
    f1s = []
    for lab, i in index.items():
        tp = conf[i, i]
        support = int(conf[i].sum())
        predicted = int(conf[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        classes.append(ClassReport(lab, float(precision), float(recall), float(f1), support))
        if support:
            f1s.append(f1)
    n = len(gold)
    return Report(correct / n if n else 0.0, float(np.mean(f1s)) if f1s else 0.0, n, classes, conf, labels)


def credited_cells(gold: list[str], pred: list[str | None], labels: list[str],
                   accepted: list[set[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each title's cell of the confusion matrix: its gold class's row, and the column of its prediction
    (the gold class's own column where the prediction is right or accepted; ``len(labels)`` for none)."""
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    rows, cols = np.zeros(len(gold), dtype=np.int64), np.zeros(len(gold), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        ok = p == g or (accepted is not None and p is not None and p in accepted[i])
        rows[i] = index[g]
        cols[i] = index[g] if ok else (index.get(p, k) if p is not None else k)
    return rows, cols


def f1_intervals(rows: np.ndarray, cols: np.ndarray, n_classes: int, resamples: int = 2000,
                 seed: int = 0) -> np.ndarray:
    """A 95 % bootstrap interval ``[n_classes, 2]`` of each class's F1: titles (cells from
    :func:`credited_cells`) are resampled with replacement; a resample in which a class is neither
    present nor predicted does not count towards that class's interval (NaN where none does)."""
    rng = np.random.default_rng(seed)
    k = n_classes
    flat = rows * (k + 1) + cols
    f1 = np.full((resamples, k), np.nan)
    for r in range(resamples):
        conf = np.bincount(flat[rng.integers(0, len(flat), len(flat))], minlength=k * (k + 1)).reshape(k, k + 1)
        tp = np.diag(conf[:, :k]).astype(float)
        support, predicted = conf.sum(axis=1), conf[:, :k].sum(axis=0)
        seen = (support + predicted) > 0
        f1[r, seen] = 2 * tp[seen] / (support[seen] + predicted[seen])
    out = np.full((k, 2), np.nan)
    for c in range(k):
        col = f1[:, c][~np.isnan(f1[:, c])]
        if col.size:
            out[c] = np.percentile(col, [2.5, 97.5])
    return out


def format_report(report: Report, title: str, f1_interval: np.ndarray | None = None) -> str:
    """A plain-text table of per-class precision / recall / F1 (with ``f1_interval``, each class's 95 %
    interval of F1 from :func:`f1_intervals`)."""
    width = max([len(c.label) for c in report.classes] + [10])
    extra = "  F1 95 % interval" if f1_interval is not None else ""
    lines = [f"{title}: accuracy {report.accuracy:.3f}  macro-F1 {report.macro_f1:.3f}  (n={report.n})",
             f"  {'class'.ljust(width)}  prec   rec    f1     n{extra}"]
    for i, c in enumerate(report.classes):
        if c.support or c.precision:
            line = f"  {c.label.ljust(width)}  {c.precision:.3f}  {c.recall:.3f}  {c.f1:.3f}  {c.support:4d}"
            if f1_interval is not None:
                line += f"  [{f1_interval[i, 0]:.2f}, {f1_interval[i, 1]:.2f}]"
            lines.append(line)
    return "\n".join(lines)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of top-1 scores: the support-weighted mean gap between the mean score
    and the accuracy in ``bins`` equal-width score bins (0 = scores match the accuracy they promise)."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return 0.0
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(conf[m].mean() - ok[m].mean())
    return float(total)
