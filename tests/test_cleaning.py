import pytest

from jobtitles.cleaning import assess_title, clean_title


@pytest.mark.parametrize("raw, cleaned", [
    ("Sr. Data Engineer – Remote £70k", "Sr. Data Engineer"),
    ("Praktikant (m/w/d) Marketing", "Praktikant Marketing"),
    ("Accountant - Hospital, Nights, $30/hr", "Accountant - Hospital"),
    ("PIV operator- 16.50 an hour", "PIV operator"),
    ("Software Engineer #12345 (Ref: AB123)", "Software Engineer"),
    ("Sales Associate | Part Time | £9.50 per hour", "Sales Associate"),
    ("Chef de projet H/F - CDI", "Chef de projet"),
    ("ET-Cloud &amp; DevOps", "ET-Cloud & DevOps"),
    ("<b>Nurse</b>&nbsp;Practitioner", "Nurse Practitioner"),
    ("zero\u200bwidth\u200d Engineer", "zerowidth Engineer"),
    ("Contract Manager", "Contract Manager"),
    ("店长", "店长"),
])
def test_clean_title(raw, cleaned):
    assert clean_title(raw) == cleaned


@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "2021-30665", ".", "!!!", "€€€ 500", "Apply now",
                                 "Click here to see details", "Work in Sunderland", "Jetzt bewerben!", None, 42])
def test_non_titles_are_invalid_with_a_reason(raw):
    a = assess_title(raw)
    assert not a.valid
    assert a.reason


@pytest.mark.parametrize("raw", ["Registered Nurse", "CEO", "Praktikant Marketing", "店长", "Менеджер по продажам",
                                 "Senior Engineer\x00\x00", "Work Coach", "Apply Engineer"])
def test_real_titles_stay_valid(raw):
    assert assess_title(raw).valid


def test_pasted_description_uses_first_title_line():
    a = assess_title("Job Description\nJob Title: Data Analyst Team Lead\n\nDepartment: Consumer Health")
    assert a.valid and a.text == "Data Analyst Team Lead"
    assert "first title-like line" in a.reason


def test_huge_input_is_cut_not_crashed():
    a = assess_title("Senior Engineer " * 100_000)
    assert a.valid and len(a.text) <= 160 and "long input" in a.reason
