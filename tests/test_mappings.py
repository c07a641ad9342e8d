"""Code → area mapping files: valid labels, and every code of the official structures is mapped."""

import csv
import json

import pytest

from conftest import SHARED_DATA, needs_shared
from jobtitles.train.data import MAPPING_DIR, CodeMapping
from jobtitles.train.rules import TAXONOMY_DIR

AREAS = set(json.loads((TAXONOMY_DIR / "areas.json").read_text())["areas"])
LEVELS = set(json.loads((TAXONOMY_DIR / "levels.json").read_text())["levels"])


@pytest.mark.parametrize("name", ["soc2018_areas.csv", "isco08_areas.csv"])
def test_mapping_rows_use_valid_labels(name):
    rows = list(csv.DictReader(open(MAPPING_DIR / name, encoding="utf-8")))
    assert rows
    for r in rows:
        assert r["area"] in AREAS, r
        assert not r["level"] or r["level"] in LEVELS, r
        assert None not in r, f"row has extra fields (unquoted comma?): {r}"


def test_prefix_lookup_prefers_the_most_specific_code():
    soc = CodeMapping.load(MAPPING_DIR / "soc2018_areas.csv", soc_style=True)
    assert soc.lookup("11-3021")[0] == "IT"          # broad group 11-3020 beats minor 11-3000
    assert soc.lookup("11-3071")[0] == "Operations"
    assert soc.lookup("15-1252.00")[0] == "IT"
    isco = CodeMapping.load(MAPPING_DIR / "isco08_areas.csv")
    assert isco.lookup("2512")[0] == "IT"
    assert isco.lookup("5223")[0] == "Retail"


@needs_shared
def test_every_soc_detailed_occupation_is_mapped():
    soc = CodeMapping.load(MAPPING_DIR / "soc2018_areas.csv", soc_style=True)
    rows = list(csv.DictReader(open(SHARED_DATA / "soc2018" / "soc_2018_structure.tsv", encoding="utf-8"),
                               delimiter="\t"))
    unmapped = [r["SOC Code"] for r in rows if r["SOC Group"] in ("Minor", "Broad", "Detailed")
                and soc.lookup(r["SOC Code"]) is None]
    assert not unmapped


@needs_shared
def test_every_isco_unit_group_is_mapped():
    isco = CodeMapping.load(MAPPING_DIR / "isco08_areas.csv")
    rows = list(csv.DictReader(open(SHARED_DATA / "esco" / "ISCOGroups_en.csv", encoding="utf-8")))
    unmapped = [r["code"] for r in rows if len(r["code"]) == 4 and isco.lookup(r["code"]) is None]
    assert not unmapped
