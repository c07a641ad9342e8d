"""``jobtitles evaluate``: score a bundle and the keyword-rule baseline on hand-labelled titles."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobtitles.classifier import Classifier, Prediction
from jobtitles.metrics import (
    Report, classification_report, credited_cells, expected_calibration_error, f1_intervals, format_report,
)


@dataclass(frozen=True)
class GoldRecord:
    """One hand-labelled title."""

    title: str
    language: str
    valid: bool
    level: str | None
    area: str | None
    alt_areas: frozenset[str]

    def accepts_area(self, area: str | None) -> bool:
        """Whether ``area`` is this title's area or one of its acceptable alternatives."""
        return area == self.area or area in self.alt_areas


def load_gold(paths: list[str | Path]) -> list[GoldRecord]:
    """Read hand-labelled JSONL files."""
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    out.append(GoldRecord(r["title"], r.get("language", "en"), bool(r.get("valid", True)),
                                          r.get("level"), r.get("area"), frozenset(r.get("alt_areas") or ())))
    return out


@dataclass(frozen=True)
class SystemScores:
    """Level / area reports on the valid gold titles of one language group, plus validity figures."""

    level: Report
    area: Report
    invalid_recall: float | None
    false_reject_rate: float
    n_invalid: int


def _score(gold: list[GoldRecord], level_pred: list[str | None], area_pred: list[str | None],
           valid_pred: list[bool], levels: list[str], areas: list[str]) -> SystemScores:
    idx = [i for i, g in enumerate(gold) if g.valid]
    level = classification_report([gold[i].level for i in idx], [level_pred[i] for i in idx], levels)
    area = classification_report([gold[i].area for i in idx], [area_pred[i] for i in idx], areas,
                                 [set(gold[i].alt_areas) for i in idx])
    invalid = [i for i, g in enumerate(gold) if not g.valid]
    inv_recall = (sum(not valid_pred[i] for i in invalid) / len(invalid)) if invalid else None
    false_reject = sum(not valid_pred[i] for i in idx) / len(idx) if idx else 0.0
    return SystemScores(level, area, inv_recall, false_reject, len(invalid))


@dataclass(frozen=True)
class PairedFigure:
    """One accuracy of bundle A and bundle B on the same titles, with a bootstrap interval of B − A."""

    name: str
    a: float
    b: float
    low: float  # 2.5th percentile of B − A over the resamples
    high: float  # 97.5th percentile
    gained: int  # titles B gets right and A wrong
    lost: int  # titles A gets right and B wrong

    @property
    def diff(self) -> float:
        return self.b - self.a


def correctness(gold: list[GoldRecord], preds: list[Prediction]) -> tuple[np.ndarray, np.ndarray]:
    """Per valid gold title: whether the level and the area are right (as ``evaluate`` counts them:
    a wrongly rejected title is wrong, an acceptable alternative area is right)."""
    pairs = [(p.valid and p.level == g.level, p.valid and g.accepts_area(p.area))
             for g, p in zip(gold, preds) if g.valid]
    arr = np.array(pairs, dtype=bool).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def by_language(gold: list[GoldRecord]) -> tuple[list[int], list[int]]:
    """Positions of the English gold records and of the rest (the two language groups of the dev set)."""
    english = [i for i, g in enumerate(gold) if g.language == "en"]
    return english, [i for i, g in enumerate(gold) if g.language != "en"]


PAIRED_RESAMPLES = 2000  # bootstrap draws behind ``evaluate --compare``'s intervals


def paired_comparison(gold: list[GoldRecord], preds_a: list[Prediction], preds_b: list[Prediction],
                      resamples: int = PAIRED_RESAMPLES, seed: int = 0) -> list[PairedFigure]:
    """Level and area accuracy of two bundles on the English and the other titles, the mean of those
    four, and level and area over all titles, with a paired bootstrap: titles are resampled with
    replacement within each language group, the same draw for both bundles, and the interval is the
    middle 95 % of B − A."""
    rng = np.random.default_rng(seed)
    english, other = by_language(gold)
    groups = {"english": english, "other languages": other}
    figures, diffs = [], []
    # per task, each group's figure, right answers of A and B, and bootstrap draws, pooled after the loop
    pooled: dict[str, list[tuple[PairedFigure, np.ndarray, np.ndarray, np.ndarray]]] = {"level": [], "area": []}
    for gname, idx in groups.items():
        sub = [gold[i] for i in idx]
        if not any(g.valid for g in sub):
            continue
        ok_a = correctness(sub, [preds_a[i] for i in idx])
        ok_b = correctness(sub, [preds_b[i] for i in idx])
        draw = rng.integers(0, len(ok_a[0]), size=(resamples, len(ok_a[0])))
        for task, ta, tb in (("level", ok_a[0], ok_b[0]), ("area", ok_a[1], ok_b[1])):
            boot = tb[draw].mean(axis=1) - ta[draw].mean(axis=1)
            figures.append(PairedFigure(f"{gname} {task}", float(ta.mean()), float(tb.mean()),
                                        float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)),
                                        int((tb & ~ta).sum()), int((ta & ~tb).sum())))
            diffs.append(boot)
            pooled[task].append((figures[-1], ta, tb, draw))
    if len(figures) > 1:
        boot = np.mean(diffs, axis=0)
        figures.append(PairedFigure(f"mean of the {len(figures)}", float(np.mean([f.a for f in figures])),
                                    float(np.mean([f.b for f in figures])), float(np.percentile(boot, 2.5)),
                                    float(np.percentile(boot, 97.5)), sum(f.gained for f in figures),
                                    sum(f.lost for f in figures)))
        for task, parts in pooled.items():  # every title weighs the same, whatever its group
            n = sum(len(ta) for _, ta, _, _ in parts)
            boot = sum(tb[draw].sum(axis=1) - ta[draw].sum(axis=1) for _, ta, tb, draw in parts) / n
            figures.append(PairedFigure(f"all titles {task}", sum(int(ta.sum()) for _, ta, _, _ in parts) / n,
                                        sum(int(tb.sum()) for _, _, tb, _ in parts) / n,
                                        float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)),
                                        sum(f.gained for f, *_ in parts), sum(f.lost for f, *_ in parts)))
    return figures


def format_comparison(figures: list[PairedFigure], version_a: str, version_b: str, resamples: int) -> list[str]:
    """The comparison as printable lines (differences in points)."""
    lines = ["", f"paired comparison, B = {version_b} against A = {version_a} (B − A in points; 95 % interval of "
                 f"{resamples} paired bootstrap resamples of the titles within each language group):",
             f"  {'figure':24} {'A':>6} {'B':>6} {'B − A':>7} {'95 % interval':>17} {'gained':>7} {'lost':>5}"]
    for f in figures:
        lines.append(f"  {f.name:24} {f.a:6.3f} {f.b:6.3f} {100 * f.diff:+7.2f} "
                     f"{f'[{100 * f.low:+.2f}, {100 * f.high:+.2f}]':>17} {f.gained:7d} {f.lost:5d}")
    return lines


def _rule_predictions(gold: list[GoldRecord]) -> tuple[list, list, list]:
    from jobtitles.cleaning import assess_title
    from jobtitles.train.rules import KeywordRules

    rules = KeywordRules.load()
    lv, ar, va = [], [], []
    for g in gold:
        a = assess_title(g.title)
        r = rules(a.text) if a.valid else None
        lv.append(r.level if r else None)
        ar.append(r.area if r else None)
        va.append(a.valid)
    return lv, ar, va


def _worst_confusions(gold: list[GoldRecord], preds: list[Prediction], head: str, k: int = 8) -> list[str]:
    pairs: Counter = Counter()
    examples: dict[tuple[str, str], list[str]] = {}
    for g, p in zip(gold, preds):
        if not g.valid or not p.valid:
            continue
        want, got = (g.level, p.level) if head == "level" else (g.area, p.area)
        if want != got and not (head == "area" and g.accepts_area(got)):
            pairs[(want, got)] += 1
            examples.setdefault((want, got), []).append(g.title)
    lines = []
    for (want, got), n in pairs.most_common(k):
        shown = "; ".join(t[:50] for t in examples[(want, got)][:3])
        lines.append(f"  {n:3d} × {want} → {got}: {shown}")
    return lines


def _confusion_text(rep: Report) -> str:
    labels = [lab for lab, row in zip(rep.labels, rep.confusion)
              if row.sum() or rep.confusion[:, rep.labels.index(lab)].sum()]
    idx = [rep.labels.index(lab) for lab in labels]
    short = [lab[:6] for lab in labels] + ["none"]
    lines = ["  gold \\ pred".ljust(22) + " ".join(s.rjust(6) for s in short)]
    for lab, i in zip(labels, idx):
        row = [rep.confusion[i, j] for j in idx] + [rep.confusion[i, -1]]
        lines.append(f"  {lab[:20].ljust(20)}" + " ".join(str(v).rjust(6) for v in row))
    return "\n".join(lines)


def plot_confusions(reports: dict[str, Report], path: str | Path) -> Path:
    """Confusion matrices (rows: gold, columns: predicted, row-normalised) side by side as a PNG.

    Needs matplotlib (``pip install 'jobtitles[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("--plot needs matplotlib: pip install 'jobtitles[plot]'") from exc
    fig, axes = plt.subplots(1, len(reports), figsize=(9 * len(reports), 8.5))
    axes = np.atleast_1d(axes)
    for ax, (name, rep) in zip(axes, reports.items()):
        keep = [i for i, row in enumerate(rep.confusion) if row.sum()]
        labels = [rep.labels[i] for i in keep]
        counts = rep.confusion[np.ix_(keep, keep)].astype(float)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        for r in range(len(labels)):
            for c in range(len(labels)):
                if counts[r, c]:
                    ax.text(c, r, int(counts[r, c]), ha="center", va="center", fontsize=6,
                            color="white" if share[r, c] > 0.5 else "black")
        ax.set_title(f"{name}: accuracy {rep.accuracy:.3f}, macro-F1 {rep.macro_f1:.3f} (n={rep.n})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def score_calibration(gold: list[GoldRecord], preds: list[Prediction]) -> dict[str, dict]:
    """How well the top-1 level and area scores match their accuracy, on the valid gold titles the
    model accepted (mean score, accuracy, expected calibration error over 10 bins)."""
    pairs = [(g, p) for g, p in zip(gold, preds) if g.valid and p.valid]
    out = {}
    for task, score, right in (
        ("level", lambda p: p.level_score, lambda g, p: p.level == g.level),
        ("area", lambda p: p.area_score, lambda g, p: g.accepts_area(p.area)),
    ):
        conf = np.array([score(p) for _, p in pairs], dtype=np.float64)
        ok = np.array([right(g, p) for g, p in pairs], dtype=np.float64)
        out[task] = {"n": len(pairs), "mean_score": float(conf.mean()) if len(conf) else 0.0,
                     "accuracy": float(ok.mean()) if len(ok) else 0.0,
                     "ece": expected_calibration_error(conf, ok)}
    return out


def _model_f1_intervals(gold: list[GoldRecord], preds: list[Prediction], levels: list[str], areas: list[str]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """95 % bootstrap intervals of the model's per-class level and area F1 over all valid titles (a class
    with a handful of dev titles has a wide one: one answer moves its F1 by about 0.1)."""
    idx = [i for i, g in enumerate(gold) if g.valid]
    level = credited_cells([gold[i].level for i in idx], [preds[i].level for i in idx], levels)
    area = credited_cells([gold[i].area for i in idx], [preds[i].area for i in idx], areas,
                          [set(gold[i].alt_areas) for i in idx])
    return (f1_intervals(*level, len(levels), PAIRED_RESAMPLES), f1_intervals(*area, len(areas), PAIRED_RESAMPLES))


def evaluate_files(gold_files: list[str], model: str | None, baseline: bool, json_out: str | None,
                   plot: str | None = None, compare: str | None = None) -> tuple[str, dict]:
    """Run the evaluation; returns the printable text and the figures as a dict. With ``compare`` (a second
    bundle), also a paired comparison of the two on the same titles (:func:`paired_comparison`)."""
    gold = load_gold(gold_files)
    clf = Classifier.load(model)
    preds = clf.predict([g.title for g in gold])
    english, other = by_language(gold)
    groups = {"all": list(range(len(gold))), "english": english, "non-english": other}
    systems = {"model": ([p.level for p in preds], [p.area for p in preds], [p.valid for p in preds])}
    if baseline:
        systems["rules"] = _rule_predictions(gold)
    figures: dict = {"bundle": str(clf.bundle.path), "bundle_version": clf.bundle.version, "n": len(gold),
                     "gold_files": [str(f) for f in gold_files], "groups": {}}
    lines = [f"evaluated {len(gold)} titles from {', '.join(gold_files)} with bundle {clf.bundle.version}"]
    table = ["", f"{'group':12} {'system':6} {'n':>5} {'level acc':>9} {'level F1':>8} {'area acc':>8} "
                 f"{'area F1':>7} {'invalid rec':>11} {'false rej':>9}"]
    scores: dict[tuple[str, str], SystemScores] = {}
    for gname, idx in groups.items():
        if not idx:
            continue
        sub = [gold[i] for i in idx]
        figures["groups"][gname] = {}
        for sname, (lv, ar, va) in systems.items():
            s = _score(sub, [lv[i] for i in idx], [ar[i] for i in idx], [va[i] for i in idx], clf.levels, clf.areas)
            scores[(gname, sname)] = s
            figures["groups"][gname][sname] = {
                "level": s.level.as_dict(), "area": s.area.as_dict(),
                "invalid_recall": s.invalid_recall, "false_reject_rate": s.false_reject_rate, "n_invalid": s.n_invalid,
            }
            inv = "-" if s.invalid_recall is None else f"{s.invalid_recall:.3f}"
            table.append(f"{gname:12} {sname:6} {s.level.n:5d} {s.level.accuracy:9.3f} {s.level.macro_f1:8.3f} "
                         f"{s.area.accuracy:8.3f} {s.area.macro_f1:7.3f} {inv:>11} {s.false_reject_rate:9.3f}")
    lines += table
    mlv, mar = scores[("all", "model")].level, scores[("all", "model")].area
    lvi, ari = _model_f1_intervals(gold, preds, clf.levels, clf.areas)
    for name, intervals, labels in (("level", lvi, clf.levels), ("area", ari, clf.areas)):
        per_class = figures["groups"]["all"]["model"][name]["per_class"]
        for label, (lo, hi) in zip(labels, intervals):
            per_class[label]["f1_interval"] = None if np.isnan(lo) else [round(float(lo), 4), round(float(hi), 4)]
    lines += ["", format_report(mlv, "model level (all valid titles)", lvi), "", _confusion_text(mlv), "",
              format_report(mar, "model area (all valid titles; alternatives accepted)", ari), ""]
    lines += ["worst level confusions (gold → predicted):"] + _worst_confusions(gold, preds, "level")
    lines += ["worst area confusions (gold → predicted):"] + _worst_confusions(gold, preds, "area")
    top3 = [g.area in {a for a, _ in p.areas} or bool(g.alt_areas & {a for a, _ in p.areas})
            for g, p in zip(gold, preds) if g.valid and p.valid]
    figures["area_top3_accuracy"] = float(np.mean(top3)) if top3 else None
    lines.append(f"area in top-3: {figures['area_top3_accuracy']:.3f}" if top3 else "")
    figures["calibration"] = score_calibration(gold, preds)
    lines += [f"{task} scores (accepted titles): mean {c['mean_score']:.3f} vs accuracy {c['accuracy']:.3f}, "
              f"expected calibration error {c['ece']:.3f} (n={c['n']})" for task, c in figures["calibration"].items()]
    if compare:
        other = Classifier.load(compare)
        paired = paired_comparison(gold, preds, other.predict([g.title for g in gold]), PAIRED_RESAMPLES)
        figures["comparison"] = {"bundle_b": str(other.bundle.path), "bundle_b_version": other.bundle.version,
                                 "resamples": PAIRED_RESAMPLES, "figures": [dict(vars(f), diff=f.diff) for f in paired]}
        lines += format_comparison(paired, clf.bundle.version, other.bundle.version, PAIRED_RESAMPLES)
    if plot:
        lines.append(f"confusion matrices written to {plot_confusions({'level': mlv, 'area': mar}, plot)}")
    if json_out:
        Path(json_out).write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return "\n".join(lines), figures
