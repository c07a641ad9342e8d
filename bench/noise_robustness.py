"""How much posting noise moves the answers: the dev titles, each also written with a place, employer,
shift or perk attached, scored by one or more bundles.

The pieces here are deliberately *not* those of ``jobtitles.train.augment`` (other places, employers
and extras, other forms), so a bundle trained with noise augmentation is not tested on its own pieces.
For each bundle it prints, over the valid dev titles: level and area accuracy on the original and on
the noisy titles, the share of titles whose level or area answer changes, and the share of noisy
titles rejected as non-titles.

    .venv/bin/python bench/noise_robustness.py --model models/default [--model OTHER] [--draws 3]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from jobtitles import Classifier
from jobtitles.evaluation import load_gold

REPO = Path(__file__).resolve().parent.parent
DEV = [REPO / "tests" / "data" / "dev_postings_en.jsonl", REPO / "tests" / "data" / "dev_multilingual.jsonl"]

PLACES_EN = ("Sheffield", "Norwich", "Swansea", "Belfast", "Reno, NV", "Boise, ID", "Omaha, NE", "Raleigh, NC",
             "Halifax, NS", "Perth WA", "Brisbane", "Wellington", "Hyderabad", "Kuala Lumpur", "South East",
             "East Midlands", "Twin Cities", "Remote - US", "Several Locations", "Uptown")
EMPLOYERS = ("Fairview Health", "Granite Logistics", "Lumen & Co", "Redwood Partners", "Atlas Foods",
             "Kestrel Systems", "Silverline PLC", "Beacon Group")
EXTRAS_EN = ("Evening Shift", "Night Differential", "3x12s", "Mon - Thu", "Sat & Sun", "Holiday Pay", "Benefits Day 1",
             "401k Match", "Same Day Pay", "Bank Holidays Off", "Interviewing Now", "Local Candidates",
             "6 Month Contract", "Temp", "Fixed Term")
PLACES = {"de": ("Dresden", "Leipzig", "Bremen", "Graz"), "fr": ("Bordeaux", "Strasbourg", "Rennes", "Nice"),
          "es": ("Málaga", "Zaragoza", "Valladolid", "Lima"), "it": ("Genova", "Verona", "Padova", "Bari"),
          "pt": ("Braga", "Coimbra", "Recife", "Salvador"), "nl": ("Groningen", "Tilburg", "Breda", "Gent"),
          "pl": ("Lublin", "Katowice", "Szczecin"), "ru": ("Самара", "Омск", "Пермь"),
          "zh": ("南京", "武汉", "西安", "苏州"), "ja": ("京都市", "神戸市", "仙台市"),
          "ko": ("대구", "광주", "수원"), "tr": ("Konya", "Adana", "Kayseri"),
          "sv": ("Västerås", "Örebro", "Linköping"),
          "da": ("Aalborg", "Esbjerg"), "cs": ("Plzeň", "Olomouc"), "fi": ("Oulu", "Jyväskylä"), "no": ("Stavanger",)}
FORMS_EN = ("{t} - {c}", "{t} ({c})", "{t} in {c}", "{t} | {e}", "{t} at {e}", "{t} - {x}", "{t} ({x})",
            "{t} - {c} - {x}", "{e}: {t}")
FORMS = ("{t} - {c}", "{t} ({c})", "{t} | {e}", "{t}, {c}")
FORMS_CJK = ("{t}（{c}）", "【{c}】{t}", "{t} {c}")


def noisy(title: str, language: str, rng: random.Random) -> str:
    """``title`` with one posting-style piece attached (pieces disjoint from the training augmentation)."""
    if language == "en" or language not in PLACES:
        return rng.choice(FORMS_EN).format(t=title, c=rng.choice(PLACES_EN), e=rng.choice(EMPLOYERS),
                                           x=rng.choice(EXTRAS_EN))
    forms = FORMS_CJK if language in ("zh", "ja", "ko") else FORMS
    return rng.choice(forms).format(t=title, c=rng.choice(PLACES[language]), e=rng.choice(EMPLOYERS))


def score(clf: Classifier, records: list, variants: list[str]) -> dict:
    """Accuracy on originals and noisy variants, answer changes and rejections, for one bundle."""
    orig = clf.predict([r.title for r in records])
    noise = clf.predict(variants)

    def level_ok(p, r):
        return p.valid and p.level == r.level

    def area_ok(p, r):
        return p.valid and r.accepts_area(p.area)

    n = len(records)
    both = [(o, v) for o, v in zip(orig, noise) if o.valid and v.valid]
    return {
        "bundle": clf.bundle.version, "titles": n,
        "level_acc": round(sum(level_ok(p, r) for p, r in zip(orig, records)) / n, 4),
        "level_acc_noisy": round(sum(level_ok(p, r) for p, r in zip(noise, records)) / n, 4),
        "area_acc": round(sum(area_ok(p, r) for p, r in zip(orig, records)) / n, 4),
        "area_acc_noisy": round(sum(area_ok(p, r) for p, r in zip(noise, records)) / n, 4),
        "level_changed": round(sum(o.level != v.level for o, v in both) / max(1, len(both)), 4),
        "area_changed": round(sum(o.area != v.area for o, v in both) / max(1, len(both)), 4),
        "noisy_rejected": round(sum(not v.valid for v in noise) / n, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="bundle folder (repeatable; default: the default bundle)")
    ap.add_argument("--draws", type=int, default=3, help="noisy variants per title (seeds 0..N-1), averaged")
    args = ap.parse_args()
    records = [r for r in load_gold(DEV) if r.valid]
    draws = [[noisy(r.title, r.language, rng) for r in records] for rng in map(random.Random, range(args.draws))]
    for model in args.model or [None]:
        clf = Classifier.load(model)
        runs = [score(clf, records, variants) for variants in draws]
        mean = {k: (round(sum(r[k] for r in runs) / len(runs), 4) if isinstance(v, float) else v)
                for k, v in runs[0].items()}
        print(json.dumps({**mean, "draws": len(runs)}))


if __name__ == "__main__":
    main()
