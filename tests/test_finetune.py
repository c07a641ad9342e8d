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
