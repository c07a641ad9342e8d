"""Keyword rules v2: whole-word level and area rules that say "don't know" rather than guess.

The rules are data (``taxonomy/levels.json`` and ``taxonomy/areas.json``, or any
files in the original project's ``{label: [keywords]}`` format); this module only
matches them. Matching runs on normalised words, never on substrings, so "coo"
cannot fire inside "coordinator" nor "intern" inside "international".

Pattern syntax: ``word`` or ``two words`` match whole words; ``x*`` matches a word
starting with x, ``*x`` a word ending in x (German compound heads); a keyword
written in CJK or kana matches as a substring, since those scripts have no spaces.
At each position the longest keyword wins, so "head chef" is not also "head".

torch-free: the evaluation baseline uses it without the training extra.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

TAXONOMY_DIR = Path(__file__).parent / "taxonomy"
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*|[&+#]")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def fold(text: str) -> str:
    """Lower-case, NFKD, drop combining marks, map ß→ss and curly quotes to straight."""
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss").replace("’", "'"))
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def words(text: str) -> list[str]:
    """Whole words of the folded text (hyphenated words and apostrophes kept together)."""
    return _WORD.findall(fold(text))


@dataclass(frozen=True)
class _Pattern:
    label: str
    parts: tuple[str, ...]  # folded words; first/last may carry a '*' wildcard
    group: str = ""  # areas: "roles" or "fields"

    def match_at(self, toks: list[str], i: int) -> int:
        """Number of words matched starting at ``i`` (0 = no match)."""
        n = len(self.parts)
        if i + n > len(toks):
            return 0
        for j, part in enumerate(self.parts):
            tok = toks[i + j]
            if part.endswith("*") and len(part) > 1:
                if not tok.startswith(part[:-1]):
                    return 0
            elif part.startswith("*") and len(part) > 1:
                if not tok.endswith(part[1:]):
                    return 0
            elif tok != part:
                return 0
        return n


@dataclass(frozen=True)
class Match:
    """One keyword hit: its label, the words it covered and where."""

    label: str
    keyword: str
    start: int
    length: int
    group: str = ""


class _Matcher:
    """Longest-match keyword scanner over words (plus substring hits for CJK keywords)."""

    def __init__(self, patterns: list[_Pattern], cjk: list[tuple[str, str, str]], exclude: list[str]) -> None:
        self.by_first: dict[str, list[_Pattern]] = {}
        self.wild: list[_Pattern] = []
        for p in patterns:
            first = p.parts[0]
            if "*" in first:
                self.wild.append(p)
            else:
                self.by_first.setdefault(first, []).append(p)
        self.cjk = cjk
        self.exclude = [tuple(words(e)) for e in exclude if words(e)]

    def scan(self, text: str) -> list[Match]:
        toks = words(text)
        blocked = set()
        for ex in self.exclude:
            for i in range(len(toks) - len(ex) + 1):
                if tuple(toks[i : i + len(ex)]) == ex:
                    blocked.update(range(i, i + len(ex)))
        hits: list[Match] = []
        i = 0
        while i < len(toks):
            if i in blocked:
                i += 1
                continue
            best: list[tuple[int, _Pattern]] = []
            for p in self.by_first.get(toks[i], []) + self.wild:
                n = p.match_at(toks, i)
                if n and not blocked.intersection(range(i, i + n)):
                    best.append((n, p))
            if not best:
                i += 1
                continue
            longest = max(n for n, _ in best)
            for n, p in best:
                if n == longest:
                    hits.append(Match(p.label, " ".join(p.parts), i, n, p.group))
            i += longest
        folded = fold(text)
        for label, kw, group in self.cjk:
            pos = folded.find(kw)
            if pos >= 0:
                hits.append(Match(label, kw, len(toks) + pos, 1, group))
        return hits


def _compile(entries: list[tuple[str, str, str]], exclude: list[str]) -> _Matcher:
    patterns, cjk = [], []
    for label, kw, group in entries:
        if _CJK.search(kw):
            cjk.append((label, fold(kw), group))
            continue
        parts = tuple(_WORD.findall(fold(kw).replace("*", "STAR"))) if kw else ()
        parts = tuple(p.replace("STAR", "*") for p in parts)
        if kw.startswith("*") and parts:
            parts = ("*" + parts[0],) + parts[1:]
        if kw.endswith("*") and parts and not parts[-1].endswith("*"):
            parts = parts[:-1] + (parts[-1] + "*",)
        if parts:
            patterns.append(_Pattern(label, parts, group))
    return _Matcher(patterns, cjk, exclude)


def label_names(spec: dict, key: str) -> list[str]:
    """Label names, in file order, from a keyword file (v2: under ``key``; original: top level)."""
    table = spec.get(key, spec)
    return [k for k in table if not k.startswith("_") and k not in ("precedence", "exclude")]


@dataclass(frozen=True)
class RuleResult:
    """What the rules say about one title; ``None`` means don't know."""

    level: str | None
    area: str | None
    level_hits: tuple[Match, ...] = field(default_factory=tuple)
    area_hits: tuple[Match, ...] = field(default_factory=tuple)


class KeywordRules:
    """Level and area rules loaded from two keyword files."""

    def __init__(self, levels_spec: dict, areas_spec: dict) -> None:
        level_map = levels_spec.get("levels", levels_spec)
        self.levels = label_names(levels_spec, "levels")
        precedence = levels_spec.get("precedence", {}) if "levels" in levels_spec else {}
        self.override = [x for x in precedence.get("override", []) if x in self.levels]
        self.default = precedence.get("default")
        self._rank = {name: i for i, name in enumerate(self.levels)}
        entries = [(lv, kw, "") for lv in self.levels for kw in level_map[lv]]
        self._levels = _compile(entries, levels_spec.get("exclude", []) if "levels" in levels_spec else [])

        area_map = areas_spec.get("areas", areas_spec)
        self.areas = label_names(areas_spec, "areas")
        area_entries = []
        for area in self.areas:
            spec = area_map[area]
            groups = spec if isinstance(spec, dict) else {"fields": spec}
            for group in ("roles", "fields"):
                area_entries += [(area, kw, group) for kw in groups.get(group, [])]
        self._areas = _compile(area_entries, [])

    @classmethod
    def load(cls, levels_path: str | Path | None = None, areas_path: str | Path | None = None) -> KeywordRules:
        """Load rule files (default: the project's v2 files in ``train/taxonomy``)."""
        lp = Path(levels_path) if levels_path else TAXONOMY_DIR / "levels.json"
        ap = Path(areas_path) if areas_path else TAXONOMY_DIR / "areas.json"
        return cls(json.loads(lp.read_text(encoding="utf-8")), json.loads(ap.read_text(encoding="utf-8")))

    def level(self, title: str) -> tuple[str | None, tuple[Match, ...]]:
        """The level the title names, by precedence; ``None`` when no keyword fires."""
        hits = tuple(self._levels.scan(title))
        named = {h.label for h in hits}
        for lv in self.override:
            if lv in named:
                return lv, hits
        specific = [lv for lv in named if lv != self.default]
        if specific:
            return max(specific, key=self._rank.__getitem__), hits
        return (self.default if self.default in named else None), hits

    def area(self, title: str) -> tuple[str | None, tuple[Match, ...]]:
        """The first-named role's area, else the first-named field's; ``None`` when nothing fires."""
        hits = tuple(self._areas.scan(title))
        for group in ("roles", "fields"):
            group_hits = sorted((h for h in hits if h.group == group), key=lambda h: (h.start, -h.length))
            if group_hits:
                return group_hits[0].label, hits
        return None, hits

    def __call__(self, title: str) -> RuleResult:
        level, lh = self.level(title)
        area, ah = self.area(title)
        return RuleResult(level, area, lh, ah)
