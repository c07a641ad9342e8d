"""Uncertainty sampling for hand labelling: least confident first, never a title already labelled."""

import json

import numpy as np

from jobtitles.train.active_learning import labelled_keys, select_uncertain


class _ConfidenceByLength:
    """A stand-in classifier: the longer the text, the surer it is."""

    def probabilities(self, texts):
        conf = np.array([min(0.99, len(t) / 40) for t in texts])
        level = np.stack([conf, 1 - conf], axis=1)
        return level, level.copy(), np.ones(len(texts))


def test_picks_the_least_confident_and_skips_labelled_and_invalid(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"title": "Forklift   DRIVER"}) + "\n", encoding="utf-8")
    titles = ["Cook", "Forklift driver", "Apply now", "Senior Software Engineer, Payments Platform",
              "Welder", "Registered Nurse - Intensive Care Unit", "cook"]
    picked = select_uncertain(titles, _ConfidenceByLength(), labelled_keys([gold]), n_uncertain=2, n_random=1)
    uncertain = sorted(c.title for c in picked if c.picked_as == "uncertain")
    assert uncertain == ["Cook", "Welder"]  # the two shortest; "cook" is a duplicate of "Cook"
    assert len(picked) == 3
    chosen = {c.title for c in picked}
    assert "Forklift driver" not in chosen and "Apply now" not in chosen
