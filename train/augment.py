"""Posting-noise augmentation for fine-tuning: the same title, written as job boards write it.

Real posting titles carry places, shifts, perks, employers and contract words that
:func:`jobtitles.cleaning.clean_title` cannot all remove ("Welder - 3rd shift (Akron)",
"Registered Nurse - Leeds | Overtime Available"). None of them changes the job, so none may
change the level or the area; a model trained on clean titles alone lets them move its answer
(and can reject the title outright). During fine-tuning a share of the valid titles are written in
one posting form (a place, an employer or an extra attached, sometimes two of them), and the result
goes through the runtime's own cleaning, so the model learns on exactly the text it will see.
The pieces carry no seniority or field word.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from jobtitles.cleaning import assess_title

# Pieces that name no job, no seniority and no field. "{c}" is a place, "{e}" an employer.
_EN_PLACES = ("London", "Manchester", "Leeds", "Bristol", "Glasgow", "Cardiff", "Birmingham", "Dublin",
              "Austin, TX", "Columbus, OH", "Phoenix, AZ", "Tampa, FL", "Denver, CO", "Newark, NJ", "Toronto, ON",
              "Calgary", "Sydney", "Melbourne", "Auckland", "Bangalore", "Pune", "Singapore", "Dubai",
              "North West", "Midlands", "Greater Boston", "Bay Area", "Multiple Locations", "Various Sites",
              "Nationwide", "Downtown", "Main Campus", "Westside", "Tri-County Area")
_EN_EMPLOYERS = ("Acme Corp", "Northwind Ltd", "Brightway Group", "Harbor Holdings", "Summit Partners",
                 "Bluebird Inc.", "Oakridge LLC", "Riverside Trust", "Meridian Services", "Pioneer Co.")
_EN_EXTRAS = ("Swing Shift", "3rd shift", "1st Shift", "Graveyard Shift", "PT Evenings", "Weekend Nights",
              "Nights 7p-7a", "Mon-Fri", "4x10s", "Days - 8 Hour", "Rotating Shifts", "Overtime Available",
              "Sign-On Bonus", "Weekly Pay", "Daily Pay", "Competitive Pay", "Paid Time Off", "Relocation Assistance",
              "Visa Sponsorship", "No Weekends", "Temp to Perm", "12 Month FTC", "Contract to Hire", "Seasonal",
              "Per Diem", "Immediate Start", "Start ASAP", "Hiring Event", "Flexible Schedule", "Walk-in Interviews")
_EN_FORMS = ("{t} - {c}", "{t} ({c})", "{t}, {c}", "{t} in {c}", "{t} | {e}", "{t} at {e}", "{t} - {e}",
             "{t} - {x}", "{t} ({x})", "{t} | {x}", "{t} {x}", "{c}: {t}", "{t} - {c} - {x}", "{t} ({x}) - {c}",
             "{e} - {t}", "{t} | {c} | {x}")

_PLACES = {
    "de": ("Berlin", "München", "Hamburg", "Köln", "Stuttgart", "Raum Frankfurt", "Wien", "Zürich"),
    "fr": ("Paris", "Lyon", "Marseille", "Toulouse", "Lille", "Nantes", "Bruxelles", "Genève"),
    "es": ("Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao", "Ciudad de México", "Bogotá"),
    "it": ("Milano", "Roma", "Torino", "Bologna", "Napoli", "Firenze"),
    "pt": ("Lisboa", "Porto", "São Paulo", "Rio de Janeiro", "Belo Horizonte", "Curitiba"),
    "nl": ("Amsterdam", "Rotterdam", "Utrecht", "Eindhoven", "Den Haag", "Antwerpen"),
    "pl": ("Warszawa", "Kraków", "Wrocław", "Gdańsk", "Poznań", "Łódź"),
    "ru": ("Москва", "Санкт-Петербург", "Новосибирск", "Казань", "Екатеринбург"),
    "zh": ("北京", "上海", "深圳", "广州", "杭州", "成都"),
    "ja": ("東京都", "大阪市", "横浜市", "名古屋市", "福岡市", "札幌市"),
    "ko": ("서울", "부산", "인천", "판교", "대전"),
    "tr": ("İstanbul", "Ankara", "İzmir", "Bursa", "Antalya"),
    "sv": ("Stockholm", "Göteborg", "Malmö", "Uppsala"),
    "da": ("København", "Aarhus", "Odense"),
    "no": ("Oslo", "Bergen", "Trondheim"),
    "fi": ("Helsinki", "Tampere", "Espoo", "Turku"),
    "cs": ("Praha", "Brno", "Ostrava"),
}
_EXTRAS = {
    "de": ("zum nächstmöglichen Zeitpunkt", "in Vollzeit", "in Teilzeit", "unbefristet", "Schichtdienst",
           "mit Dienstwagen"),
    "fr": ("CDI", "temps plein", "H/F", "poste basé à {c}", "week-end"),
    "es": ("jornada completa", "incorporación inmediata", "turno de noche", "contrato indefinido"),
    "it": ("tempo pieno", "tempo determinato", "turni", "zona {c}"),
    "pt": ("período integral", "regime CLT", "turno noturno"),
    "nl": ("32-40 uur", "fulltime", "parttime", "regio {c}"),
    "pl": ("umowa o pracę", "pełny etat", "praca zmianowa"),
    "ru": ("вахта", "полный день", "сменный график"),
    "zh": ("五险一金", "双休", "包吃住", "急招"),
    "ja": ("週休2日", "賞与あり", "正社員", "残業少なめ"),
    "ko": ("정규직", "주5일", "경력무관"),
    "tr": ("tam zamanlı", "vardiyalı"),
    "sv": ("heltid", "deltid", "vikariat"),
}
_CJK_FORMS = ("{t}（{c}）", "【{c}】{t}", "{t} {x}", "{t}（{x}）", "{c}{t}")
_FORMS = ("{t} - {c}", "{t} ({c})", "{t}, {c}", "{t} - {x}", "{t} ({x})", "{t} | {c}", "{t} - {c} - {x}")


@dataclass(frozen=True)
class NoiseAugmenter:
    """Attach posting noise to a share ``prob`` of titles (deterministic for a given ``rng``)."""

    prob: float = 0.3

    def __call__(self, text: str, language: str, rng: random.Random) -> str:
        """``text`` with noise attached and cleaned as the runtime cleans it, or ``text`` unchanged
        (when not drawn, or when the cleaned result is not a valid title that still holds ``text``)."""
        if self.prob <= 0 or rng.random() >= self.prob:
            return text
        noisy = noisy_title(text, language, rng)
        assessed = assess_title(noisy)
        return assessed.text if assessed.valid and text in assessed.text else text


def noise_pieces() -> list[str]:
    """Every piece the augmenter can attach (places, employers, extras; "{c}" filled with a place)."""
    pieces = [*_EN_PLACES, *_EN_EMPLOYERS, *_EN_EXTRAS, *(p for v in _PLACES.values() for p in v)]
    return pieces + [x.format(c=v[0]) for lang, xs in _EXTRAS.items() for x in xs for v in [_PLACES[lang]]]


def noisy_title(text: str, language: str, rng: random.Random) -> str:
    """``text`` written with one posting-style form: a place, an employer, a shift, perk or contract word."""
    if language == "en" or language not in _PLACES:
        form = rng.choice(_EN_FORMS)
        return form.format(t=text, c=rng.choice(_EN_PLACES), e=rng.choice(_EN_EMPLOYERS), x=rng.choice(_EN_EXTRAS))
    place = rng.choice(_PLACES[language])
    extras = _EXTRAS.get(language) or (place,)
    form = rng.choice(_CJK_FORMS if language in ("zh", "ja", "ko") else _FORMS)
    extra = rng.choice(extras).format(c=place)
    return form.format(t=text, c=place, x=extra)
