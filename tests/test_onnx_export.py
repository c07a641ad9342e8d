"""The exported module: cutting the position table to the runtime's length leaves outputs unchanged."""

import pytest

from conftest import needs_torch

pytestmark = needs_torch


def _module(kind):
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    from jobtitles.export.onnx_export import TitleClassifierModule
    from jobtitles.train.model import HeadConfig, MultiTaskHead

    torch.manual_seed(0)
    shape = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=66)
    enc = BertModel(BertConfig(**shape)) if kind == "bert" else XLMRobertaModel(XLMRobertaConfig(pad_token_id=1,
                                                                                               **shape))
    module = TitleClassifierModule(enc, MultiTaskHead(HeadConfig(input_dim=16, hidden_dim=8, n_levels=3, n_areas=4)))
    return module.eval()


@pytest.mark.parametrize(("kind", "rows"), [("bert", 20), ("xlmr", 22)])
def test_cutting_the_position_table_keeps_the_outputs_of_inputs_up_to_the_limit(kind, rows):
    import torch

    from jobtitles.export.onnx_export import limit_positions

    module = _module(kind)
    ids = torch.randint(4, 40, (3, 20))
    ids[0, :2] = 0
    ids[1, 12:] = 1  # padding
    mask = (ids != 1).long()
    with torch.no_grad():
        before = module(ids, mask)
        assert limit_positions(module, 20) == rows
        after = module(ids, mask)
    assert module.encoder.embeddings.position_embeddings.weight.shape[0] == rows
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    with pytest.raises(IndexError):  # longer inputs would need rows that are gone
        with torch.no_grad():
            module(torch.randint(4, 40, (1, rows + 1)), torch.ones(1, rows + 1, dtype=torch.long))
