"""Label audit: find training labels the model contradicts, have them relabelled blind, apply the verdicts.

A second annotator who sees only the title (never the current label nor the model's answer)
relabels every record the shipped model contradicts with confidence, plus a random control
sample of records it agrees with. A label changes only where the second annotator and the model
agree against it; where the second annotator agrees with the label, or with neither, it stays.
The control sample measures how often two annotators agree at all, so the flagged records'
agreement rate can be read against it (``jobtitles audit-labels``; README of train/data).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jobtitles.classifier import Classifier
from jobtitles.cleaning import assess_title


@dataclass(frozen=True)
class LabelledRecord:
    """One hand-labelled training record and where it lives."""

    file: str  # file name inside the hand-labelled folder
    line: int  # 0-based line number
    title: str
    valid: bool
    level: str | None
    area: str | None
    alt_areas: tuple[str, ...] = ()

    def areas(self) -> tuple[str, ...]:
        """The main area and the accepted alternatives."""
        return ((self.area,) if self.area else ()) + self.alt_areas


@dataclass(frozen=True)
class AuditItem:
    """A record sent to blind relabelling, with what the model said (kept from the annotator)."""

    id: int
    record: LabelledRecord
    kind: str  # "level", "area", "level+area", "title" (validity) or "control"
    model_level: str
    model_area: str
    model_valid: bool
    confidence: float  # the model's probability for its own answer on the contradicted field


@dataclass(frozen=True)
class SecondOpinion:
    """The blind annotator's labels for one audit item."""

    id: int
    valid: bool
    level: str | None = None
    area: str | None = None
    alt_areas: tuple[str, ...] = ()
    note: str = ""


@dataclass
class AuditResult:
    """The changes to make and how often the second annotator agreed with the existing labels."""

    changes: list[dict] = field(default_factory=list)  # {file, line, title, set: {...}, note}
    agreement: dict[str, dict[str, float | int]] = field(default_factory=dict)  # kind -> figures


def read_records(files: Iterable[str | Path]) -> list[LabelledRecord]:
    """Every record of the given hand-labelled JSONL files."""
    out: list[LabelledRecord] = []
    for path in files:
        path = Path(path)
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            r = json.loads(line)
            out.append(LabelledRecord(path.name, i, r["title"], bool(r.get("valid", True)), r.get("level"),
                                      r.get("area"), tuple(r.get("alt_areas") or ())))
    return out


def select_for_audit(records: Sequence[LabelledRecord], classifier: Classifier, min_confidence: float = 0.5,
                     n_control: int = 100, seed: int = 7) -> list[AuditItem]:
    """Records whose label the model contradicts with at least ``min_confidence`` (level, area outside
    the accepted set, or validity), plus ``n_control`` random records it agrees with; shuffled, numbered."""
    texts = [assess_title(r.title).text or "-" for r in records]
    scores = classifier.probabilities(texts)
    levels, areas = classifier.levels, classifier.areas
    threshold = classifier.title_threshold
    flagged: list[AuditItem] = []
    agreed: list[AuditItem] = []
    for r, lp, ap, tp in zip(records, scores.level, scores.area, scores.title):
        li, ai = int(lp.argmax()), int(ap.argmax())
        model_valid = bool(tp >= threshold)
        kinds, conf = [], 0.0
        if r.valid != model_valid:
            kinds, conf = ["title"], float(1 - tp if r.valid else tp)
        elif r.valid and r.level and r.area:
            if levels[li] != r.level and lp[li] >= min_confidence:
                kinds.append("level")
                conf = float(lp[li])
            if areas[ai] not in r.areas() and ap[ai] >= min_confidence:
                kinds.append("area")
                conf = max(conf, float(ap[ai]))
        item = AuditItem(-1, r, "+".join(kinds) or "control", levels[li], areas[ai], model_valid, round(conf, 4))
        (flagged if kinds else agreed).append(item)
    rng = random.Random(seed)
    items = flagged + rng.sample(agreed, min(n_control, len(agreed)))
    rng.shuffle(items)
    return [AuditItem(i, it.record, it.kind, it.model_level, it.model_area, it.model_valid, it.confidence)
            for i, it in enumerate(items)]


def write_audit(items: Sequence[AuditItem], out_dir: str | Path, n_batches: int = 4) -> list[Path]:
    """``items.jsonl`` (everything, for :func:`apply_second_opinions`) and ``batch_K.jsonl`` files that
    hold only ``id`` and ``title``, for blind annotators; returns the batch paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "items.jsonl", "w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")
    paths = []
    for b in range(max(1, n_batches)):
        path = out / f"batch_{b}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for it in items[b :: max(1, n_batches)]:
                fh.write(json.dumps({"id": it.id, "title": it.record.title}, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def read_items(path: str | Path) -> list[AuditItem]:
    """Audit items written by :func:`write_audit`."""
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        rec = d.pop("record")
        rec["alt_areas"] = tuple(rec["alt_areas"])
        items.append(AuditItem(record=LabelledRecord(**rec), **d))
    return items


def read_opinions(paths: Iterable[str | Path]) -> dict[int, SecondOpinion]:
    """Second opinions from JSONL files of ``{id, valid, level, area, alt_areas, note}``."""
    out: dict[int, SecondOpinion] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                out[int(d["id"])] = SecondOpinion(int(d["id"]), bool(d.get("valid", True)), d.get("level"),
                                                  d.get("area"), tuple(d.get("alt_areas") or ()), d.get("note", ""))
    return out


def judge(items: Sequence[AuditItem], opinions: dict[int, SecondOpinion]) -> AuditResult:
    """Changes where the blind second opinion sides with the model against the label, and agreement rates.

    For a flagged item (whichever field flagged it), the second opinion's level replaces the label's
    when it equals the model's, and the second opinion's area and alternatives replace the label's
    when they contain the model's area. Control items only measure agreement.
    Validity is never flipped here (both directions are rare and worth a human look); items without
    an opinion are skipped.
    """
    result = AuditResult()
    tally: dict[str, list[int]] = {}
    for it in items:
        op = opinions.get(it.id)
        if op is None:
            continue
        r = it.record
        group = "control" if it.kind == "control" else "flagged"
        t = tally.setdefault(group, [0, 0, 0, 0])  # n, same validity, same level, overlapping areas
        t[0] += 1
        if op.valid != r.valid:
            continue
        t[1] += 1
        if not r.valid:
            t[2] += 1
            t[3] += 1
            continue
        t[2] += op.level == r.level
        t[3] += bool(set(r.areas()) & ({op.area} | set(op.alt_areas)))
        new: dict = {}
        if group == "control":
            continue
        if op.level == it.model_level != r.level:
            new["level"] = op.level
        if it.model_area in {op.area, *op.alt_areas} and it.model_area not in r.areas():
            new["area"], new["alt_areas"] = op.area, list(op.alt_areas)
        if new:
            result.changes.append({"file": r.file, "line": r.line, "title": r.title, "set": new, "note": op.note})
    for group, (n, same_valid, same_level, same_area) in tally.items():
        result.agreement[group] = {"n": n, "validity": round(same_valid / n, 4), "level": round(same_level / n, 4),
                                   "area": round(same_area / n, 4)}
    return result


def apply_changes(changes: Sequence[dict], hand_dir: str | Path, note_prefix: str = "second-annotator audit") -> int:
    """Rewrite the hand-labelled files with ``changes`` (each record's note says why); returns the count.
    A change whose line no longer holds its title is refused (the files moved on since the audit)."""
    by_file: dict[str, dict[int, dict]] = {}
    for c in changes:
        by_file.setdefault(c["file"], {})[c["line"]] = c
    done = 0
    for name, edits in by_file.items():
        path = Path(hand_dir) / name
        lines = path.read_text(encoding="utf-8").splitlines()
        for ln, c in edits.items():
            rec = json.loads(lines[ln])
            if rec["title"] != c["title"]:
                raise ValueError(f"{name}:{ln + 1} now holds {rec['title']!r}, not {c['title']!r}: select the "
                                 "audit items again from the current files")
            rec.update(c["set"])
            rec["note"] = f"{note_prefix}: {c['note']}" if c.get("note") else note_prefix
            lines[ln] = json.dumps(rec, ensure_ascii=False)
            done += 1
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return done



def annotator_agreement(first: Sequence[dict], second: Sequence[dict]) -> dict[str, dict[str, float | int]]:
    """How often a second annotation agrees with the first (records matched by title), per group
    ("english" / "non-english" by the first's ``language``) and overall: validity, level, and area
    counted as in ``jobtitles evaluate`` (the second's main area is in the first's accepted set)."""
    by_title = {r["title"]: r for r in second}
    tally: dict[str, list[int]] = {}
    for r in first:
        o = by_title.get(r["title"])
        if o is None:
            continue
        valid, other = bool(r.get("valid", True)), bool(o.get("valid", True))
        for group in ("all", "english" if r.get("language") == "en" else "non-english"):
            t = tally.setdefault(group, [0, 0, 0, 0, 0])  # n, same validity, both valid, same level, area ok
            t[0] += 1
            t[1] += valid == other
            if valid and other:
                t[2] += 1
                t[3] += r.get("level") == o.get("level")
                t[4] += o.get("area") in {r.get("area"), *(r.get("alt_areas") or ())}
    return {g: {"n": n, "validity": round(v / n, 4), "n_both_valid": b,
                "level": round(lv / b, 4) if b else None, "area": round(ar / b, 4) if b else None}
            for g, (n, v, b, lv, ar) in tally.items()}
