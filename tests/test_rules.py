import json

import pytest

from jobtitles.train.rules import TAXONOMY_DIR, KeywordRules


@pytest.fixture(scope="module")
def rules():
    return KeywordRules.load()


@pytest.mark.parametrize("title, level", [
    ("Operations Coordinator", "Assistant"),        # not C-Level: "coo" must not fire inside "coordinator"
    ("COO", "C-Level"),
    ("International Sales Executive", "Specialist"),  # "intern" must not fire inside "international"
    ("Marketing Intern", "Student"),
    ("Assistant Manager", "Manager"),               # the most senior role named wins
    ("Senior Manager, Finance", "Director"),
    ("Head Chef", "Manager"),                       # longest match: not "head" → Director
    ("Head of Marketing", "Director"),
    ("Junior Developer", "Junior Specialist"),
    ("Product Manager Intern", "Student"),          # override levels win
    ("Sr. Data Engineer", "Sr Specialist"),
    ("SVP Sales", "VP"),
    ("Co-Founder & CTO", "Founder/Owner"),
    ("Praktikant Marketing", "Student"),
    ("Abteilungsleiter Vertrieb", "Manager"),
    ("Geschäftsführer", "C-Level"),
    ("stagiaire développeur", "Student"),
    ("Kierownik sklepu", "Manager"),
    ("店长", "Manager"),
    ("HR Business Partner", None),                  # "partner" excluded here, nothing else fires
])
def test_level_rules(rules, title, level):
    assert rules.level(title)[0] == level


def test_senior_care_is_not_seniority(rules):
    assert rules.level("Senior Care Provider")[0] != "Sr Specialist"


@pytest.mark.parametrize("title, area", [
    ("IT Recruiter", "Human Resources"),            # the role noun decides over the modifier
    ("Accountant - Hospital", "Finance"),
    ("Registered Nurse", "Healthcare"),
    ("Software Engineer", "IT"),
    ("Nurse Manager", "Healthcare"),
    ("/hr", "Human Resources"),
    ("Chief of Staff", None),
])
def test_area_rules(rules, title, area):
    assert rules.area(title)[0] == area


def test_rules_abstain_rather_than_guess(rules):
    r = rules("Zzyzx Qwerty")
    assert r.level is None and r.area is None


def test_original_format_files_load(tmp_path):
    lv = tmp_path / "levels.json"
    ar = tmp_path / "areas.json"
    lv.write_text(json.dumps({"Low": ["helper"], "High": ["boss"]}))
    ar.write_text(json.dumps({"Kitchen": ["cook"], "Office": ["clerk"]}))
    r = KeywordRules.load(lv, ar)
    assert r("head cook helper boss").level == "High"
    assert r("cook").area == "Kitchen"
    assert r("cookie").area is None  # whole words only


def test_rule_files_use_only_label_names():
    levels = json.loads((TAXONOMY_DIR / "levels.json").read_text())
    assert set(levels["precedence"]["override"]) <= set(levels["levels"])
    assert levels["precedence"]["default"] in levels["levels"]
