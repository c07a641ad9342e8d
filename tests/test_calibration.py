"""Temperature scaling of the level and area scores, and the calibration error the evaluation reports."""

import numpy as np
import pytest

from conftest import needs_torch
from jobtitles.metrics import expected_calibration_error


def test_expected_calibration_error():
    conf = np.array([0.9] * 10 + [0.6] * 10)
    assert expected_calibration_error(conf, np.array([1] * 9 + [0] + [1] * 6 + [0] * 4)) == pytest.approx(0.0)
    # promises 0.9 but is right half the time: a gap of 0.4 on every row
    assert expected_calibration_error(np.full(10, 0.9), np.array([1, 0] * 5)) == pytest.approx(0.4)
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0
    assert expected_calibration_error(np.array([1.0]), np.array([1])) == 0.0  # a score of 1 falls in the top bin


@needs_torch
def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    from jobtitles.train.calibration import fit_temperature, softmax

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 6))
    p = softmax(logits / 2.0)  # the true probabilities: the logits are twice too confident
    y = np.array([rng.choice(6, p=row) for row in p])
    accepted = np.zeros_like(p, dtype=bool)
    accepted[np.arange(len(y)), y] = True
    fit = fit_temperature(logits, accepted)
    assert fit.temperature == pytest.approx(2.0, rel=0.05)
    assert fit.nll_after < fit.nll_before and fit.ece_after < fit.ece_before and fit.n == 20000


@needs_torch
def test_calibrate_head_folds_the_temperatures_into_the_head_and_keeps_every_answer():
    import torch

    from jobtitles.train.calibration import calibrate_head, softmax
    from jobtitles.train.data import Example
    from jobtitles.train.model import HeadConfig, MultiTaskHead
    from jobtitles.train.trainer import LabelSet, predict_logits

    torch.manual_seed(0)
    labels = LabelSet(["Assistant", "Specialist", "Manager"], ["IT", "Finance"])
    model = MultiTaskHead(HeadConfig(input_dim=8, hidden_dim=16, n_levels=3, n_areas=2)).eval()
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    lv0, ar0, ti0 = predict_logits(model, x)
    # labels that agree with the model's answers 95 % of the time: it should grow more confident
    rng = np.random.default_rng(2)
    lv_y = np.where(rng.random(300) < 0.95, lv0.argmax(1), rng.integers(0, 3, 300))
    examples = [Example("t", labels.levels[a], labels.areas[b], "hand", alt_areas=("Finance",) if i % 2 else ())
                for i, (a, b) in enumerate(zip(lv_y, ar0.argmax(1)))]
    examples.append(Example("Apply now", None, None, "hand", valid=False))
    x = np.vstack([x, np.zeros((1, 8), np.float32)])
    fits = calibrate_head(model, x, examples, labels)
    lv1, ar1, ti1 = predict_logits(model, x)
    assert fits["level"].temperature < 1.0 and fits["level"].n == 300 and fits["area"].n == 300
    np.testing.assert_allclose(softmax(lv1[:300]), softmax(lv0 / fits["level"].temperature), atol=1e-5)
    np.testing.assert_allclose(softmax(ar1[:300]), softmax(ar0 / fits["area"].temperature), atol=1e-5)
    assert (lv1[:300].argmax(1) == lv0.argmax(1)).all() and (ar1[:300].argmax(1) == ar0.argmax(1)).all()
    np.testing.assert_allclose(ti1[:300], ti0, atol=1e-6)  # the title logit is left alone
