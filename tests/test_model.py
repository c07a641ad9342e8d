"""The head: per-sample squeeze-excitation (a title's output never depends on its batch), training, saving."""

import numpy as np

from conftest import needs_torch

pytestmark = needs_torch


def _head(seed=0):
    import torch

    from jobtitles.train.model import HeadConfig, MultiTaskHead

    torch.manual_seed(seed)
    model = MultiTaskHead(HeadConfig(input_dim=32, hidden_dim=64, n_levels=5, n_areas=7))
    # give BatchNorm non-trivial running statistics
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(16, 32) * 3 + 1)
    model.eval()
    return model


def test_prediction_alone_equals_prediction_in_any_batch():
    import torch

    model = _head()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 32, generator=gen)
    with torch.no_grad():
        alone = [tuple(t[0] for t in model(x[i : i + 1])) for i in range(len(x))]
        for batch in (x, x.flip(0), torch.cat([x[:7], torch.randn(9, 32) * 100])):
            lv, ar, ti = model(batch)
            for j in range(len(batch)):
                row = batch[j]
                matches = [i for i in range(len(x)) if torch.equal(x[i], row)]
                for i in matches:
                    assert torch.allclose(lv[j], alone[i][0], atol=1e-6)
                    assert torch.allclose(ar[j], alone[i][1], atol=1e-6)
                    assert torch.allclose(ti[j], alone[i][2], atol=1e-6)


def test_se_gate_uses_only_the_sample_itself():
    import torch

    from jobtitles.train.model import SqueezeExcitation

    se = SqueezeExcitation(16, 4).eval()
    a, b = torch.randn(1, 16), torch.randn(1, 16)
    with torch.no_grad():
        together = se(torch.cat([a, b * 1000]))
        assert torch.allclose(together[0], se(a)[0], atol=1e-6)


def test_training_learns_separable_labels_and_stops_early(tmp_path):
    from jobtitles.train.data import Example
    from jobtitles.train.trainer import (
        LabelSet, TrainConfig, load_head, load_title_threshold, predict_logits, save_head, train_head,
    )

    rng = np.random.default_rng(0)
    labels = LabelSet(["A", "B", "C"], ["X", "Y"])
    centers = rng.normal(size=(3, 16)).astype(np.float32) * 3
    ys = rng.integers(0, 3, size=600)
    x = (centers[ys] + rng.normal(size=(600, 16)).astype(np.float32) * 0.3).astype(np.float32)
    # a fourth cluster holds non-titles: the title head must learn to tell them apart
    invalid = rng.random(600) < 0.15
    x[invalid] = -centers[2] + rng.normal(size=(int(invalid.sum()), 16)).astype(np.float32) * 0.3
    ex = [Example(f"t{i}", None if invalid[i] else labels.levels[y],
                  None if invalid[i] or not i % 5 else labels.areas[y % 2], "s", valid=not invalid[i])
          for i, y in enumerate(ys)]
    cfg = TrainConfig(hidden_dim=32, max_epochs=60, patience=3, batch_size=64)
    res = train_head(x[:500], ex[:500], x[500:], ex[500:], labels, cfg, progress=False)
    assert res.val_reports["level"].accuracy > 0.95
    assert res.title_validation["non_title_recall"] > 0.9
    assert res.title_validation["false_reject_rate"] <= cfg.max_false_reject + 0.02
    assert res.best_epoch < cfg.max_epochs - 1 or len(res.history) <= cfg.max_epochs
    save_head(res, tmp_path)
    model, loaded = load_head(tmp_path)
    assert loaded == labels
    for a, b in zip(predict_logits(res.model, x[500:]), predict_logits(model, x[500:])):
        assert np.allclose(a, b, atol=1e-5)
    assert load_title_threshold(tmp_path) == res.title_threshold


def test_title_threshold_keeps_false_rejects_within_the_budget():
    from jobtitles.train.trainer import choose_title_threshold, title_report

    rng = np.random.default_rng(3)
    prob = np.concatenate([rng.beta(8, 1, 1000), rng.beta(1, 8, 200)])
    valid = np.arange(1200) < 1000
    thr = choose_title_threshold(prob, valid, 0.01)
    rep = title_report(prob, valid, thr)
    assert rep["false_reject_rate"] <= 0.01 and rep["non_title_recall"] > 0.9
    assert choose_title_threshold(np.ones(10), np.ones(10, bool), 0.01) == 0.5  # never above 0.5


def test_class_weights_favour_rare_classes_and_skip_unknown():
    from jobtitles.train.trainer import class_weights

    y = np.array([0, 0, 0, 0, 1, -1])
    w = class_weights(y, np.ones(6, np.float32), 3).numpy()
    assert w[1] > w[0] > 0 and w[2] == 0


def test_the_acceptable_set_loss_counts_any_acceptable_area_as_right():
    import torch

    from jobtitles.train.data import Example
    from jobtitles.train.trainer import LabelSet, _masked_ce, area_loss, area_sets

    labels = LabelSet(levels=["Specialist"], areas=["Finance", "IT", "Operations"])
    examples = [Example("Analyst", "Specialist", "Finance", "hand", alt_areas=("IT", "Not an area")),
                Example("Welder", "Specialist", "Operations", "hand"),
                Example("Apply now", None, None, "hand", valid=False)]
    sets = area_sets(examples, labels)
    assert sets.tolist() == [[True, True, False], [False, False, True], [False, False, False]]
    y, w, cw = torch.tensor([0, 2, -1]), torch.ones(3), torch.tensor([1.0, 2.0, 0.5])
    sets = torch.from_numpy(sets)
    # mass moved between the acceptable Finance and IT: cross-entropy on Finance rises, the set loss does not
    a = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    assert torch.isclose(area_loss(a, y, sets, w, cw, 0.0, 1.0), area_loss(b, y, sets, w, cw, 0.0, 1.0))
    assert area_loss(b, y, sets, w, cw, 0.0, 0.0) > area_loss(a, y, sets, w, cw, 0.0, 0.0)
    # weight 0 is the plain cross-entropy; a set of one area is its cross-entropy, weighted alike
    assert torch.equal(area_loss(b, y, sets, w, cw, 0.05, 0.0), _masked_ce(b, y, w, cw, 0.05))
    single = torch.zeros_like(sets)
    single[0, 0] = single[1, 2] = True
    assert torch.isclose(area_loss(b, y, single, w, cw, 0.0, 1.0), _masked_ce(b, y, w, cw, 0.0))
    mixed = area_loss(b, y, sets, w, cw, 0.0, 0.5)
    assert torch.isclose(mixed, 0.5 * area_loss(b, y, sets, w, cw, 0.0, 0.0) + 0.5 * area_loss(b, y, sets, w, cw,
                                                                                               0.0, 1.0))


def test_train_modules_name_the_extra_when_torch_is_missing():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n import jobtitles.train.model\nexcept ImportError as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "[train]" in out
