"""Training data: the project's hand-labelled titles plus titles from official taxonomies.

Every source yields :class:`Example` records (cleaned text, level, area, source,
language, weight). Hand-labelled files ship in ``train/data``; taxonomy sources
are read from explicit paths (``../shared/data`` in this project) and their codes
are mapped to areas (and a fallback level) through the reviewed CSV files in
``train/mappings``. Levels for taxonomy titles come from the keyword rules when
they name one, else from the code's mapping; ``None`` means unknown and the level
loss ignores the example. torch-free.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jobtitles.cleaning import assess_title
from jobtitles.train.rules import KeywordRules, fold

HAND_DIR = Path(__file__).parent / "data"
MAPPING_DIR = Path(__file__).parent / "mappings"


@dataclass(frozen=True)
class Example:
    """One training title with its labels (``None`` = unknown) and provenance."""

    text: str
    level: str | None
    area: str | None
    source: str
    language: str = "en"
    weight: float = 1.0
    valid: bool = True
    alt_areas: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodeMapping:
    """Occupation code → (area, fallback level), looked up by the longest matching prefix."""

    entries: dict[str, tuple[str, str | None]]

    @classmethod
    def load(cls, path: str | Path, soc_style: bool = False) -> CodeMapping:
        out: dict[str, tuple[str, str | None]] = {}
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                key = cls.prefix(row["code"], soc_style)
                out[key] = (row["area"], row.get("level") or None)
        return cls(out)

    @staticmethod
    def prefix(code: str, soc_style: bool = False) -> str:
        """SOC "15-1200" → "1512" (group codes end in zeros); ISCO codes are prefixes already."""
        digits = "".join(ch for ch in code if ch.isdigit())
        return digits.rstrip("0") or digits[:2] if soc_style else digits

    def lookup(self, code: str) -> tuple[str, str | None] | None:
        digits = "".join(ch for ch in code if ch.isdigit())
        for n in range(len(digits), 0, -1):
            hit = self.entries.get(digits[:n])
            if hit:
                return hit
        return None


@dataclass
class SourceSummary:
    """Counts for the manifest / model card."""

    name: str
    n: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    areas: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)


HAND_WEIGHT = 10.0  # the training weight of a hand-labelled title (taxonomy titles: their SourceSpec's)


def load_hand_labelled(path: str | Path, source: str | None = None, weight: float = HAND_WEIGHT) -> list[Example]:
    """Read a hand-labelled JSONL file (title, language, valid, level, area, alt_areas); every title
    gets the training weight ``weight``."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            assessed = assess_title(rec["title"])
            valid = bool(rec.get("valid", True))
            out.append(
                Example(
                    text=assessed.text,
                    level=rec.get("level") if valid else None,
                    area=rec.get("area") if valid else None,
                    source=source or Path(path).stem,
                    language=rec.get("language", "en"),
                    weight=weight,
                    valid=valid,
                    alt_areas=tuple(rec.get("alt_areas") or ()),
                )
            )
    return out


def _labelled_from_code(
    titles: Iterable[tuple[str, str, str]], mapping: CodeMapping, rules: KeywordRules, source: str, weight: float
) -> Iterator[Example]:
    for title, code, lang in titles:
        hit = mapping.lookup(code)
        if hit is None:
            continue
        area, fallback_level = hit
        text = assess_title(title).text
        if not text:
            continue
        level, _ = rules.level(text)
        if level is None or (level == rules.default and fallback_level):
            level = fallback_level or level
        yield Example(text, level, area, source, lang, weight)


def read_titles(path: str | Path) -> list[str]:
    """Titles from a text file, one per line (``.gz`` read compressed), blank lines skipped."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def _read_tsv(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def onet_titles(shared: Path) -> list[tuple[str, str, str]]:
    """O*NET alternate and reported titles with their SOC codes."""
    rows = _read_tsv(shared / "onet" / "Alternate Titles.txt")
    out = [(r["Alternate Title"], r["O*NET-SOC Code"], "en") for r in rows]
    rows = _read_tsv(shared / "onet" / "Sample of Reported Titles.txt")
    out += [(r["Reported Job Title"], r["O*NET-SOC Code"], "en") for r in rows]
    return out


def census_titles(shared: Path) -> list[tuple[str, str, str]]:
    """US Census 2022 occupation index titles with their 2018 SOC codes."""
    rows = _read_tsv(shared / "census" / "census_2022_occupation_index.tsv")
    return [(r["2022 Occupation Title"], r["2018 SOC Code"], "en") for r in rows if r.get("2018 SOC Code")]


def esco_titles(shared: Path) -> list[tuple[str, str, str]]:
    """ESCO labels in 21 languages with their ISCO-08 unit group codes."""
    rows = _read_tsv(shared / "esco" / "esco_labels_21langs_from_melo.tsv.gz")
    return [(r["label"], r["isco_code"], r["lang"]) for r in rows if len(r.get("isco_code", "")) == 4]


def melo_titles(shared: Path) -> list[tuple[str, str, str]]:
    """National occupation titles (MELO) with the first of their ISCO-08 codes."""
    rows = _read_tsv(shared / "melo" / "national_titles_to_esco.tsv.gz")
    out = []
    for r in rows:
        codes = [c for c in (r.get("isco_codes") or "").split(";") if len(c) == 4]
        if codes:
            out.append((r["title"], codes[0], r["source"].split("_")[-1]))
    return out


@dataclass(frozen=True)
class SourceSpec:
    """How much of one taxonomy source goes into the mix, and with what weight."""

    name: str
    max_per_language: int
    weight: float


DEFAULT_MIX = (
    SourceSpec("onet", 16000, 0.5),
    SourceSpec("census", 8000, 0.5),
    SourceSpec("esco", 1500, 0.5),
    SourceSpec("melo", 800, 0.5),
)


def taxonomy_examples(shared: Path, mix: Iterable[SourceSpec], rules: KeywordRules, seed: int = 13) -> list[Example]:
    """Sample each taxonomy source (per language), map codes to labels, dedupe by folded text."""
    soc = CodeMapping.load(MAPPING_DIR / "soc2018_areas.csv", soc_style=True)
    isco = CodeMapping.load(MAPPING_DIR / "isco08_areas.csv")
    readers = {"onet": (onet_titles, soc), "census": (census_titles, soc), "esco": (esco_titles, isco),
               "melo": (melo_titles, isco)}
    rng = random.Random(seed)
    out: list[Example] = []
    seen: set[str] = set()
    for spec in mix:
        reader, mapping = readers[spec.name]
        by_lang: dict[str, list[tuple[str, str, str]]] = {}
        for item in reader(shared):
            by_lang.setdefault(item[2], []).append(item)
        for lang in sorted(by_lang):
            items = by_lang[lang]
            rng.shuffle(items)
            kept = 0
            for ex in _labelled_from_code(items, mapping, rules, spec.name, spec.weight):
                key = fold(ex.text)
                if key in seen:
                    continue
                seen.add(key)
                out.append(ex)
                kept += 1
                if kept >= spec.max_per_language:
                    break
    return out


def hand_examples(directory: Path = HAND_DIR, weight: float = HAND_WEIGHT) -> list[Example]:
    """All hand-labelled training files shipped in ``train/data`` (``*.jsonl``)."""
    out: list[Example] = []
    for path in sorted(directory.glob("*.jsonl")):
        out += load_hand_labelled(path, weight=weight)
    return out


def split_by_source(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out ``val_fraction`` of every source (deterministic by seed)."""
    rng = random.Random(seed)
    by_source: dict[str, list[Example]] = {}
    for ex in examples:
        by_source.setdefault(ex.source, []).append(ex)
    train, val = [], []
    for source in sorted(by_source):
        items = list(by_source[source])
        rng.shuffle(items)
        n_val = max(1, int(round(len(items) * val_fraction))) if len(items) > 1 else 0
        val += items[:n_val]
        train += items[n_val:]
    return train, val


def summarise(examples: Iterable[Example]) -> dict[str, dict]:
    """Counts per source, level, area and language (for the manifest and model card)."""
    out: dict[str, SourceSummary] = {}
    for ex in examples:
        s = out.setdefault(ex.source, SourceSummary(ex.source))
        s.n += 1
        for key, table in ((ex.level or "(unknown)", s.levels), (ex.area or "(unknown)", s.areas),
                           (ex.language, s.languages)):
            table[key] = table.get(key, 0) + 1
    return {k: {"n": v.n, "levels": v.levels, "areas": v.areas, "languages": v.languages} for k, v in out.items()}
