"""Posting-noise augmentation: the noise names no job, the title survives, the draws are reproducible."""

import random

import pytest

from jobtitles.cleaning import assess_title
from jobtitles.train.augment import NoiseAugmenter, noise_pieces
from jobtitles.train.rules import KeywordRules


def test_no_noise_piece_names_a_level_or_an_area():
    rules = KeywordRules.load()
    hits = [(p, rules.level(p)[0], rules.area(p)[0]) for p in noise_pieces()]
    assert [h for h in hits if h[1] or h[2]] == []
    assert len(hits) > 150


@pytest.mark.parametrize("title, language", [
    ("Welder", "en"), ("Registered Nurse", "en"), ("Verkäufer", "de"), ("Comptable", "fr"), ("店长", "zh"),
    ("看護師", "ja"), ("Kierowca", "pl"), ("Sjuksköterska", "sv"), ("Účetní", "cs"), ("Mekaniker", "xx"),
])
def test_noisy_titles_keep_the_title_and_stay_valid(title, language):
    aug, rng = NoiseAugmenter(prob=1.0), random.Random(3)
    outs = [aug(title, language, rng) for _ in range(40)]
    assert all(title in out and assess_title(out).valid for out in outs)
    assert sum(out != title for out in outs) >= 20  # most draws add something the cleaning keeps
    assert all(assess_title(out).text == out for out in outs)  # already cleaned as the runtime cleans


def test_draws_are_reproducible_and_prob_zero_changes_nothing():
    titles = ["Welder", "Nurse", "Driver"] * 20
    a = [NoiseAugmenter(0.3)(t, "en", r) for r in [random.Random(5)] for t in titles]
    b = [NoiseAugmenter(0.3)(t, "en", r) for r in [random.Random(5)] for t in titles]
    assert a == b and a != titles
    assert 5 <= sum(x != t for x, t in zip(a, titles)) <= 30
    assert [NoiseAugmenter(0.0)(t, "en", random.Random(5)) for t in titles] == titles


def test_noise_that_swallows_the_title_is_not_used():
    class AlwaysDraw(random.Random):
        def random(self):
            return 0.0

    # "Apply now - London" cleans to "London" (the call to action is dropped): keep the input instead
    assert {NoiseAugmenter(1.0)("Apply now", "en", AlwaysDraw(s)) for s in range(30)} == {"Apply now"}
