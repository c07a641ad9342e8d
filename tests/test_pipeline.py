"""The training pipeline end to end on a tiny encoder: head, fine-tuning soup, members, saved folders
that load back (fast; the real run is `jobtitles train --shared ../shared/data`)."""

import json

from conftest import needs_torch

pytestmark = needs_torch

TITLES = [("Welder", "Specialist", "Manufacturing"), ("Nurse", "Specialist", "Healthcare"),
          ("Warehouse Picker", "Assistant", "Operations"), ("Head of Sales", "Director", "Marketing"),
          ("Marketing Intern", "Student", "Marketing"), ("Senior Accountant", "Sr Specialist", "Finance")]
NON_TITLES = ["Apply now", "Work in Leeds", "Ref 2231-77", "Full time"]


def _tiny_encoder(folder):
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w.lower() for t, *_ in TITLES for w in t.split()} | {w.lower() for t in NON_TITLES
                                                                          for w in t.split()} | {"query:"})
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=64))
    raw = folder / "raw"
    bert.save_pretrained(raw)
    tok.save_pretrained(raw)
    st = SentenceTransformer(modules=[Transformer(str(raw)), Pooling(16, "mean")],
                             prompts={"query": "query: "}, default_prompt_name=None)
    st.save(str(folder / "encoder"))
    return folder / "encoder"


def test_training_with_a_fine_tuning_soup_writes_the_soup_and_its_members(tmp_path):
    import torch

    from jobtitles.train.finetune import FinetuneConfig, load_adapters, load_encoder
    from jobtitles.train.pipeline import run_training
    from jobtitles.train.trainer import TrainConfig, load_head

    encoder = _tiny_encoder(tmp_path)
    hand = tmp_path / "hand"
    hand.mkdir()
    for part in ("a", "b"):
        rows = [{"title": f"{t}", "language": "en", "valid": True, "level": lv, "area": ar, "alt_areas": []}
                for t, lv, ar in TITLES] * 4
        rows += [{"title": t, "language": "en", "valid": False, "level": None, "area": None, "alt_areas": []}
                 for t in NON_TITLES] * 3
        (hand / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    fcfg = FinetuneConfig(rank=2, alpha=4, epochs=1, batch_size=8, n_taxonomy=0, max_tokens=16, soup_seeds=(1, 2))
    out, members = tmp_path / "head", tmp_path / "members"
    run_training(encoder, out, tmp_path / "cache", hand_dir=hand, cfg=TrainConfig(max_epochs=3, hidden_dim=16),
                 progress=False, finetune_cfg=fcfg, members_dir=members, title_memory=True)
    report = json.loads((out / "training_report.json").read_text())
    from jobtitles.train.memory import MemoryTitles

    memory = MemoryTitles.load(out)  # asked for: the distinct hand-labelled training titles with an area
    assert memory is not None and len(memory.texts) == len(set(memory.texts))
    assert dict(zip(memory.texts, memory.areas)) == {t: a for t, _, a in TITLES}  # non-titles never vote
    assert memory.validation and MemoryTitles.load(members / "seed-1") is not None
    assert report["finetune"]["config"]["soup_seeds"] == [1, 2] and len(report["finetune"]["members"]) == 2
    assert set(report["calibration"]) == {"level", "area"}
    assert sorted(p.name for p in members.iterdir()) == ["seed-1", "seed-2"]
    saved = []
    for folder in (out, members / "seed-1", members / "seed-2"):
        model, labels = load_head(folder)
        bert, _, _ = load_encoder(encoder)
        cfg = load_adapters(bert, folder / "adapters.pt")
        saved.append((cfg, model))
    assert (saved[0][0].rank, saved[0][0].member_rank) == (4, 2)
    assert [c.rank for c, _ in saved[1:]] == [2, 2] and [c.seed for c, _ in saved[1:]] == [1, 2]
    # the members differ (their seeds), and the soup's head is their mean (before calibration folds a
    # temperature into the last layers, so compare the first one)
    first = [next(iter(m.parameters())) for _, m in saved]
    assert not torch.equal(first[1], first[2])
    assert torch.allclose(first[0], (first[1] + first[2]) / 2, atol=1e-6)
