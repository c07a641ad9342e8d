"""Encoder fine-tuning: LoRA adapters start as the identity, merge exactly, save and load."""

import pytest

from conftest import needs_torch

pytestmark = needs_torch


def _tiny_bert():
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)
    return BertModel(cfg).eval()


def _out(bert, ids):
    import torch

    with torch.no_grad():
        return bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def test_adapters_start_as_identity_and_merge_exactly(tmp_path):
    import torch

    from jobtitles.train.finetune import FinetuneConfig, add_adapters, load_adapters, merge_adapters, save_adapters

    bert = _tiny_bert()
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    before = _out(bert, ids)
    assert add_adapters(bert, rank=4, alpha=8) == 2 * 5
    assert torch.allclose(_out(bert, ids), before, atol=1e-6)  # B = 0: nothing changes yet
    trainable = [p for p in bert.parameters() if p.requires_grad]
    assert trainable and all(p.shape[0] == 4 or p.shape[1] == 4 for p in trainable)
    with torch.no_grad():
        for p in trainable:
            p.normal_(0, 0.2)
    adapted = _out(bert, ids)
    assert not torch.allclose(adapted, before, atol=1e-3)
    save_adapters(bert, FinetuneConfig(rank=4, alpha=8), tmp_path / "adapters.pt")
    assert merge_adapters(bert) == 10
    assert torch.allclose(_out(bert, ids), adapted, atol=1e-5)  # merged weights = base + update

    fresh = _tiny_bert()
    assert load_adapters(fresh, tmp_path / "adapters.pt").rank == 4
    assert torch.allclose(_out(fresh, ids), adapted, atol=1e-5)


def test_adapters_that_do_not_fit_are_refused(tmp_path):
    import torch

    from jobtitles.train.finetune import FinetuneConfig, load_adapters

    torch.save({"config": {"rank": 4, "alpha": 8.0}, "state": {"encoder.layer.9.x.A": torch.zeros(4, 4)}},
               tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_adapters(_tiny_bert(), tmp_path / "bad.pt")
    assert FinetuneConfig().rank == 8


def test_finetune_trains_adapters_and_head_and_feeds_noisy_titles():
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from jobtitles.train.data import Example
    from jobtitles.train.finetune import FinetuneConfig, finetune
    from jobtitles.train.model import HeadConfig, MultiTaskHead
    from jobtitles.train.trainer import LabelSet

    words = ["[PAD]", "[UNK]", "welder", "nurse", "apply", "now", "-", "london", "leeds", "2nd", "shift"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    seen: list[str] = []

    class Spy(PreTrainedTokenizerFast):
        def __call__(self, texts, **kw):
            seen.extend(texts)
            return super().__call__([t.lower() for t in texts], **kw)

    tokenizer = Spy(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    labels = LabelSet(["Assistant", "Specialist"], ["Healthcare", "Manufacturing"])
    head = MultiTaskHead(HeadConfig(input_dim=16, hidden_dim=8, n_levels=2, n_areas=2))
    train = [Example("Welder", "Specialist", "Manufacturing", "hand"), Example("Nurse", "Specialist", "Healthcare",
             "hand"), Example("Apply now", None, None, "hand", valid=False)] * 8
    bert = _tiny_bert()
    before = [p.detach().clone() for p in head.parameters()]
    cfg = FinetuneConfig(rank=2, alpha=4, epochs=2, batch_size=4, noise_prob=0.5, seed=1)
    history = finetune(bert, tokenizer, "", head, labels, train, cfg, progress=False)
    assert history and all(h["loss"] > 0 for h in history)
    assert any(not torch.equal(a, b) for a, b in zip(before, head.parameters()))
    assert any(p.requires_grad and p.abs().sum() > 0 for n, p in bert.named_parameters() if n.endswith(".B"))
    noisy = [t for t in seen if t not in ("Welder", "Nurse", "Apply now")]
    assert noisy and all("Welder" in t or "Nurse" in t for t in noisy)
    assert "Apply now" in seen and not any("Apply now" in t and t != "Apply now" for t in seen)  # non-titles stay


def test_a_soup_of_adapters_applies_the_mean_update_and_saves_like_any_adapter(tmp_path):
    import copy

    import torch

    from jobtitles.train.finetune import (FinetuneConfig, add_adapters, load_adapters, merge_adapters, save_adapters,
                                          soup_adapters)

    ids = torch.tensor([[1, 5, 7, 9, 2]])
    members = []
    for seed in (1, 2):
        bert = _tiny_bert()
        add_adapters(bert, rank=2, alpha=4)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in (p for p in bert.parameters() if p.requires_grad):
                p.normal_(0, 0.3)
        members.append(bert)
    merged = [copy.deepcopy(m) for m in members]
    for m in merged:
        merge_adapters(m)
    want = {k: (merged[0].state_dict()[k] + merged[1].state_dict()[k]) / 2 for k in merged[0].state_dict()}
    before = [copy.deepcopy(m.state_dict()) for m in members]
    soup = soup_adapters(members)
    for m, state in zip(members, before):  # the members stay as they were
        assert m.state_dict().keys() == state.keys()
        assert all(torch.equal(m.state_dict()[k], v) for k, v in state.items())
    cfg = FinetuneConfig(rank=4, alpha=8, seed=1, soup_seeds=(1, 2))
    save_adapters(soup, cfg, tmp_path / "soup.pt")
    merge_adapters(soup)
    got = soup.state_dict()
    assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)  # the mean of the members' weights
    fresh = _tiny_bert()
    loaded = load_adapters(fresh, tmp_path / "soup.pt")
    assert (loaded.rank, loaded.member_rank, loaded.soup_seeds) == (4, 2, (1, 2))
    merge_adapters(fresh)
    assert torch.allclose(_out(fresh, ids), _out(soup, ids), atol=1e-5)


def test_a_soup_of_heads_is_their_parameter_mean():
    import torch

    from jobtitles.train.finetune import soup_heads
    from jobtitles.train.model import HeadConfig, MultiTaskHead

    heads = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        heads.append(MultiTaskHead(HeadConfig(input_dim=16, hidden_dim=8, n_levels=2, n_areas=2)))
    want = {k: sum(h.state_dict()[k].float() for h in heads) / 3 for k in heads[0].state_dict()}
    got = soup_heads(heads).state_dict()
    for k, v in want.items():
        if got[k].is_floating_point():
            assert torch.allclose(got[k], v, atol=1e-6), k
