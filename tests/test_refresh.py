"""`jobtitles refresh-head` on a tiny encoder: the head goes on training with the files added since it
was trained, its own validation titles stay held out, and the encoder's adapters are kept as they are
(fast; the real run is in README, Accuracy, step 10)."""

import json
import shutil

import pytest
from conftest import needs_torch
from test_pipeline import NON_TITLES, TITLES, _tiny_encoder

pytestmark = needs_torch

NEW = [("Welder", "Specialist", "Manufacturing"), ("Nurse", "Specialist", "Healthcare"),
       ("Head of Sales", "Director", "Marketing"), ("Warehouse Picker", "Assistant", "Operations")]


def _write(path, titles, non_titles=(), copies=1):
    rows = [{"title": t, "language": "en", "valid": True, "level": lv, "area": ar, "alt_areas": []}
            for t, lv, ar in titles] * copies
    rows += [{"title": t, "language": "en", "valid": False, "level": None, "area": None, "alt_areas": []}
             for t in non_titles] * copies
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from jobtitles.train.finetune import FinetuneConfig
    from jobtitles.train.pipeline import run_training
    from jobtitles.train.trainer import TrainConfig

    root = tmp_path_factory.mktemp("refresh")
    encoder = _tiny_encoder(root)
    old = root / "old"
    old.mkdir()
    for part in ("a", "b"):
        _write(old / f"{part}.jsonl", [(f"{t} {part}", lv, ar) for t, lv, ar in TITLES], NON_TITLES, copies=3)
    fcfg = FinetuneConfig(rank=2, alpha=4, epochs=1, batch_size=8, n_taxonomy=0, max_tokens=16)
    run_training(encoder, root / "head", root / "cache", hand_dir=old, cfg=TrainConfig(max_epochs=3, hidden_dim=16),
                 progress=False, finetune_cfg=fcfg, title_memory=True)
    new = root / "new"
    shutil.copytree(old, new)
    # ten distinct new titles, so that the new file holds one out
    _write(new / "c.jsonl", [(f"{t} {n}", lv, ar) for n in ("c", "a c") for t, lv, ar in NEW[:3]]
           + [(f"{t} b c", lv, ar) for t, lv, ar in NEW])
    return root, encoder, old, new


def test_a_refreshed_head_keeps_its_adapters_and_held_out_titles_and_learns_the_new_file(trained):
    from jobtitles.train.memory import MemoryTitles
    from jobtitles.train.refresh import RefreshConfig, refresh_head
    from jobtitles.train.trainer import load_head

    root, encoder, old, new = trained
    out = root / "refreshed"
    refresh_head(root / "head", old, encoder, out, hand_dir=new, cfg=RefreshConfig(max_epochs=2), progress=False)
    before = json.loads((root / "head" / "training_report.json").read_text())
    after = json.loads((out / "training_report.json").read_text())
    assert (out / "adapters.pt").read_bytes() == (root / "head" / "adapters.pt").read_bytes()
    assert set(before["heldout_titles"]) < set(after["heldout_titles"])  # the head's own, plus the new file's share
    refresh = after["refresh"]
    assert [f["file"] for f in refresh["files"]] == ["c.jsonl"] and refresh["files"][0]["records"] == 10
    assert (refresh["n_train_new"], refresh["n_heldout_new"]) == (9, 1)
    assert after["data"]["train"]["c"]["n"] == 9
    memory = MemoryTitles.load(out)
    new_held = set(after["heldout_titles"]) - set(before["heldout_titles"])
    assert not new_held & set(memory.texts)  # the held-out new title never votes
    assert len(set(memory.texts) - set(MemoryTitles.load(root / "head").texts)) == 9
    model, labels = load_head(out)
    assert labels.areas and model.cfg.hidden_dim == 16


def test_new_titles_weigh_what_the_head_s_hand_labelled_titles_weigh(trained):
    from jobtitles.train.data import hand_examples
    from jobtitles.train.refresh import new_files

    _, _, old, new = trained
    (added,) = new_files(new, old)
    assert {e.weight for e in added.examples} == {e.weight for e in hand_examples(old)} != {1.0}


def test_a_refresh_refuses_changed_or_missing_new_files(trained, tmp_path):
    from jobtitles.train.refresh import new_files

    _, _, old, new = trained
    with pytest.raises(ValueError, match="nothing to refresh"):
        new_files(old, old)
    changed = tmp_path / "changed"
    shutil.copytree(old, changed)
    _write(changed / "a.jsonl", TITLES)
    with pytest.raises(ValueError, match="a.jsonl differs"):
        new_files(changed, old)


def test_continued_training_that_never_improves_returns_the_head_unchanged(trained):
    import torch

    from jobtitles.train.trainer import TrainConfig, load_head, train_head

    root, *_ = trained
    model, labels = load_head(root / "head")
    x = torch.nn.functional.normalize(torch.randn(6, 16), dim=1).numpy()
    from jobtitles.train.data import Example

    examples = [Example(text=t, valid=True, level=lv, area=ar, language="en", source="s")
                for t, lv, ar in TITLES]
    result = train_head(x, examples, x, examples, labels, TrainConfig(max_epochs=0, hidden_dim=16), progress=False,
                        init=model)
    assert result.best_epoch == -1 and result.model is not model
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), model.state_dict().values()))


def test_new_titles_can_be_repeated_and_their_held_out_share_weighted_like_the_rest():
    import numpy as np

    from jobtitles.train.data import Example
    from jobtitles.train.refresh import RefreshConfig, _weighted

    def ex(name, n):
        return [Example(text=f"{name} {i}", level="Specialist", area="IT", source=name) for i in range(n)]

    fit, val = ex("old", 6) + ex("new", 2), ex("old", 9) + ex("new", 3)
    x_fit, x_val = np.arange(8, dtype=np.float32)[:, None], np.arange(12, dtype=np.float32)[:, None]
    same = _weighted(x_fit, fit, 2, x_val, val, 3, RefreshConfig())
    assert same[1] == fit and same[3] == val and np.array_equal(same[0], x_fit)
    xf, f, xv, v = _weighted(x_fit, fit, 2, x_val, val, 3, RefreshConfig(new_repeat=3, balance_validation=True))
    assert [e.text for e in f] == [e.text for e in fit] + ["new 0", "new 1"] * 2
    assert xf[:, 0].tolist() == list(range(8)) + [6, 7, 6, 7] and np.array_equal(xv, x_val)
    assert sum(e.weight for e in v[:9]) == sum(e.weight for e in v[9:]) == 9  # each new title weighs 3
