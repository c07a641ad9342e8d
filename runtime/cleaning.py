"""Title cleaning and the "is this a job title at all?" check.

Shared by training and the runtime so that both see the same text. Cleaning
removes markup and posting noise (pay, reference codes, contract and
work-mode tags, gender markers); :func:`assess_title` then decides whether what
is left can be classified and, when not, says why. Nothing here knows the label
names of any taxonomy.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

MAX_TITLE_CHARS = 160
MAX_TITLE_WORDS = 16
_MAX_SCAN_CHARS = 2000

_TAG = re.compile(r"<[^<>]{0,200}>")
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")

_CURRENCY = r"(?:[£$€¥₹]|usd|eur|gbp|chf|pln|sek|dkk|nok|zł|руб|₽|元|円|rs\.?)"
_NUMBER = r"\d[\d.,' ]*\d|\d"
_PAY = re.compile(
    rf"""(?ix)
    (?:up\s+to\s+|from\s+|ab\s+|bis\s+(?:zu\s+)?|jusqu'?à\s+|hasta\s+)?
    (?:
        {_CURRENCY}\s?(?:{_NUMBER})\s?(?:k|m|k\+|\+)?     # £70k, $30, € 45.000
        (?:\s?(?:-|–|to|bis|à)\s?{_CURRENCY}?\s?(?:{_NUMBER})\s?k?)?
      | (?:{_NUMBER})\s?(?:k|m)?\s?{_CURRENCY}             # 45.000 €, 70k£
        (?:\s?(?:-|–|to|bis|à)\s?(?:{_NUMBER})\s?k?\s?{_CURRENCY}?)?
      | \d+(?:[.,]\d+)?\s?(?:an|per|/|a)\s?(?:hour|hr|h|year|yr|annum|day|week)\b  # 16.50 an hour
    )
    (?:\s?(?:/|per|an|a)\s?(?:hour|hr|h|year|yr|annum|day|week|month|mo|pa|p\.a\.)\b)?
    (?:\s?(?:\+\s?)?(?:benefits|bonus|ote|doe|pa|p\.a\.|brutto|gross)\b)?
    """
)
_REFCODE = re.compile(
    r"(?ix)(?:\#\s?[\w-]*\d[\w-]*|\b(?:ref|req|job|vacancy|id|requisition|reference)\.?\s?(?:no\.?|id|number|nr\.?|\#)?\s?[:\#]?\s?[\w-]*\d[\w-]*\b)"
)
_GENDER = re.compile(
    r"(?ix)[(\[]\s?(?:[mwfdhxkn*]\s?[/|,*]\s?){1,3}[mwfdhxkn*]\s?[)\]]"  # (m/w/d) (f/m/x) (H/F) (k/m)
    r"|(?<!\w)(?:h/f|f/h|m/f|f/m|m/w/d|w/m/d|m/f/d|f/m/d|m/w|k/m|m/k)(?!\w)"
)
_WORK_MODE = re.compile(
    r"""(?ix)^(?:
        remote|fully\s+remote|100%\s+remote|hybrid|on-?site|wfh|work\s+from\s+home|home\s?office|
        full[\s-]?time|part[\s-]?time|fulltime|parttime|permanent|temporary|temp|contract|fixed[\s-]term|
        freelance|flexible\s+hours|days|nights|weekends?|night\s+shift|day\s+shift|immediate\s+start|
        urgent(?:ly)?(?:\s+required|\s+hiring)?|new|hiring(?:\s+now)?|now\s+hiring|apply\s+now|
        vollzeit|teilzeit|befristet|unbefristet|cdi|cdd|temps\s+plein|temps\s+partiel|
        tiempo\s+completo|media\s+jornada|remoto|tempo\s+pieno|full\s+remote|zdalnie|pełny\s+etat|
        полный\s+день|удал[её]нно|正社員|契約社員|アルバイト|パート|全职|兼职
    )$"""
)
_DOUBLE_SEPARATOR = re.compile(r"(?:\s*[-–—|]\s+){2,}")
_HEADING = re.compile(r"(?i)^(?:job\s+)?(?:title|position|role|poste|stelle|puesto)\s*:\s*")
_SEPARATORS = re.compile(r"\s+[-–—|•·/]\s+|\s*[|•·]\s*|[()\[\]{}]|,\s+|\s+-\s*$|!+")


@dataclass(frozen=True)
class TitleAssessment:
    """The cleaned form of one raw input and whether it can be classified."""

    raw: str
    text: str
    valid: bool
    reason: str | None = None


def strip_markup(raw: str) -> str:
    """Unescape HTML entities (twice, for double-escaped feeds) and drop tags."""
    text = html.unescape(html.unescape(raw))
    return _TAG.sub(" ", text)


def normalise_whitespace(text: str) -> str:
    """Remove invisible characters, turn controls into spaces, collapse runs of space."""
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _is_noise_segment(segment: str) -> bool:
    seg = segment.strip(" .:;-–—*")
    if not seg:
        return True
    return bool(_WORK_MODE.match(seg)) or not any(ch.isalpha() for ch in seg)


def remove_noise(text: str) -> str:
    """Drop pay, reference codes, gender markers and work-mode tags; keep the role words."""
    text = _GENDER.sub(" ", text)
    text = _PAY.sub(" ", text)
    text = _REFCODE.sub(" ", text)
    parts = [p for p in _SEPARATORS.split(text) if p is not None]
    kept = [p.strip() for p in parts if not _is_noise_segment(p)]
    out = " - ".join(kept) if len(kept) > 1 else (kept[0] if kept else "")
    out = _DOUBLE_SEPARATOR.sub(" - ", out)
    return _SPACES.sub(" ", out).strip(" -–—,;:")


def clean_title(raw: str) -> str:
    """Cleaned title text (possibly empty); the same function feeds training and runtime."""
    text = normalise_whitespace(strip_markup(raw))
    cleaned = remove_noise(text)
    return cleaned


_CALL_TO_ACTION = re.compile(
    r"""(?ix)^(?:
        apply(?:\s+(?:now|here|today|online))?|click\s+here.*|see\s+(?:details|more).*|read\s+more|
        learn\s+more|more\s+info(?:rmation)?|view\s+(?:job|details).*|submit\s+(?:your\s+)?(?:cv|resume).*|
        (?:we\s*(?:'re|\s+are)\s+)?hiring!*|join\s+(?:us|our\s+team).*|careers?|jobs?|job\s+openings?|vacanc(?:y|ies)|
        (?:work|jobs?|careers?|vacancies)\s+in\s+[\w\s,.'-]+|
        jetzt\s+bewerben|bewerben|initiativbewerbung|stellenangebote?|
        postuler(?:\s+ici)?|candidature\s+spontan[ée]e|offres?\s+d'emploi|
        trabaja\s+con\s+nosotros|[úu]nete\s+a\s+nuestro\s+equipo|candidatura\s+espont[áa]nea|
        candidatura\s+spontanea|lavora\s+con\s+noi|candidate-se|trabalhe\s+conosco|
        solliciteer(?:\s+nu)?|open\s+sollicitatie|aplikuj(?:\s+teraz)?|praca\s+od\s+zaraz.*|
        вакансия|вакансии|откликнуться|立即申请|招聘|応募する|今すぐ応募|hemen\s+başvur|başvur
    )[.!…]*$"""
)


_DESCRIPTION_HEADING = re.compile(
    r"(?i)^(?:job\s+description|description|about\s+(?:us|the\s+(?:role|job|company))|overview|summary|"
    r"responsibilities|requirements|stellenbeschreibung|description\s+du\s+poste|descripci[óo]n)\s*:?$"
)


def assess_title(raw: object) -> TitleAssessment:
    """Clean ``raw`` and say whether it is a classifiable job title.

    Never raises: any input (``None``, numbers, huge strings) yields an assessment.
    Long inputs (a pasted description) are cut to their first title-like line or
    first words, and the reason says so while the record stays valid.
    """
    if raw is None:
        return TitleAssessment("", "", False, "empty input (null)")
    if not isinstance(raw, str):
        raw = str(raw)
    note = None
    lines = [normalise_whitespace(strip_markup(x)) for x in raw.splitlines()] if "\n" in raw.strip() else []
    joined = normalise_whitespace(strip_markup(raw))
    if lines and len(joined) <= MAX_TITLE_CHARS and not _DESCRIPTION_HEADING.match(lines[0] or ""):
        lines = []  # a short title broken over lines (e.g. a quoted CSV cell): read it as one line
    if lines:
        note = "multi-line input: classified from its first title-like line"
        candidates = [_HEADING.sub("", ln) for ln in lines if ln]
        candidates = [ln for ln in candidates
                      if ln and not _CALL_TO_ACTION.match(ln) and not _DESCRIPTION_HEADING.match(ln)]
        base = candidates[0] if candidates else ""
    else:
        base = _HEADING.sub("", normalise_whitespace(strip_markup(raw)))
    if base and _CALL_TO_ACTION.match(base.strip(" .!")):
        return TitleAssessment(raw, base, False, "not a job title: a call to action, heading or location")
    if len(base) > _MAX_SCAN_CHARS:  # bound the regex work on pasted documents
        base = base[:_MAX_SCAN_CHARS]
    text = remove_noise(base)
    words = text.split()
    if len(text) > MAX_TITLE_CHARS or len(words) > MAX_TITLE_WORDS:
        text = " ".join(words[:MAX_TITLE_WORDS])[:MAX_TITLE_CHARS].rstrip()
        note = f"long input ({len(raw)} chars): classified from its first {len(text)} characters"
    if not text:
        if not raw.strip():
            return TitleAssessment(raw, "", False, "empty input")
        if not any(ch.isalpha() for ch in base):
            return TitleAssessment(raw, "", False, "no letters: numbers, codes or punctuation only")
        return TitleAssessment(raw, "", False, "no title left after removing pay, codes and tags")
    letters = sum(1 for ch in text if ch.isalpha())
    if letters == 0:
        return TitleAssessment(raw, text, False, "no letters: numbers, codes or punctuation only")
    if letters < 2 and not any(unicodedata.category(ch) == "Lo" for ch in text):
        return TitleAssessment(raw, text, False, "too short to be a job title")
    if _CALL_TO_ACTION.match(text):
        return TitleAssessment(raw, text, False, "not a job title: a call to action, heading or location")
    return TitleAssessment(raw, text, True, note)
