"""The trimmed vocabulary on a tiny Unigram tokenizer: the kept set, the trimmed tokenizer, and the
fine-tuning tokenizer that spells with the kept pieces but gives the full encoder's ids."""

import json

import pytest

from conftest import needs_torch
from jobtitles.export.vocab_trim import VocabSubset, build_subset, check_unchanged, trimmed_tokenizer_json

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


@pytest.fixture()
def tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = [(t, 0.0) for t in SPECIALS] + [("▁", -2.0)] + [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab += [("▁nurse", -3.0), ("▁nights", -3.2), ("▁night", -3.5), ("▁florida", -3.0), ("▁welder", -3.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(SPECIALS)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def _full(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def test_the_subset_keeps_specials_single_characters_and_the_pieces_titles_use(tokenizer_json):
    subset = build_subset(tokenizer_json, ["nurse", "welder nights"], prefix="")
    vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    kept = {vocab[i][0] for i in subset.keep_ids}
    assert {"▁nurse", "▁welder", "▁nights", *SPECIALS, "▁", "a", "z"} <= kept
    assert not {"▁florida", "▁night"} & kept
    assert subset.keep_ids == sorted(subset.keep_ids) and subset.n_original == len(vocab)


def test_the_trimmed_tokenizer_spells_removed_pieces_and_leaves_the_rest(tokenizer_json, tmp_path):
    from tokenizers import Tokenizer

    subset = build_subset(tokenizer_json, ["nurse nights"], prefix="")
    subset.save(tmp_path / "keep.json")
    assert VocabSubset.load(tmp_path / "keep.json") == subset
    spec = trimmed_tokenizer_json(tokenizer_json, subset)
    trimmed = Tokenizer.from_str(json.dumps(spec))
    assert trimmed.encode("nurse nights").tokens == _full(tokenizer_json).encode("nurse nights").tokens
    assert trimmed.encode("florida").tokens == ["<s>", "▁", "f", "l", "o", "r", "i", "d", "a", "</s>"]
    assert check_unchanged(tokenizer_json, spec, ["nurse", "nights", "florida", "welder"], prefix="") == 0.5


def test_a_keep_file_made_for_another_vocabulary_is_refused(tokenizer_json):
    """Another encoder's tokenizer (``--encoder`` with the default keep file) must not be trimmed by wrong ids."""
    subset = build_subset(tokenizer_json, ["nurse"], prefix="")
    other = VocabSubset(subset.keep_ids, subset.n_original + 1000, subset.summary)
    with pytest.raises(ValueError, match="--finetune-vocab ''"):
        trimmed_tokenizer_json(tokenizer_json, other)


@needs_torch
def test_the_fine_tuning_tokenizer_gives_the_full_encoders_ids_of_the_trimmed_pieces(tokenizer_json):
    from jobtitles.train.finetune import SubsetTokenizer

    subset = build_subset(tokenizer_json, ["nurse nights"], prefix="")
    tok = SubsetTokenizer(tokenizer_json, subset)
    batch = tok(["nurse nights", "florida welder"], padding=True, truncation=True, max_length=8)
    full = _full(tokenizer_json)
    ids, mask = batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    assert ids[0][: sum(mask[0])] == full.encode("nurse nights").ids  # nothing removed: the same ids
    assert sum(mask[1]) == 8 and set(ids[1]) <= set(subset.keep_ids)  # truncated to 8, only kept pieces
    # spelled with single characters, as the bundle's tokenizer spells it, cut to 8 with the end token kept
    assert [full.id_to_token(i) for i in ids[1]] == ["<s>", "▁", "f", "l", "o", "r", "i", "</s>"]
    assert ids[0][sum(mask[0]):] == [1] * (8 - sum(mask[0]))  # padded with the pad id


def test_extending_a_subset_keeps_every_base_piece_and_adds_the_most_used_first(tokenizer_json):
    from jobtitles.export.vocab_trim import extend_subset

    vocab = [p for p, _ in json.loads(tokenizer_json.read_text())["model"]["vocab"]]
    base = build_subset(tokenizer_json, ["nurse"], prefix="")
    titles = ["welder", "welder nights", "night welder", "florida nurse"]  # welder 3, florida 1, night(s) 1 each
    one = extend_subset(base, tokenizer_json, titles, prefix="", max_new=1)
    assert set(base.keep_ids) < set(one.keep_ids)
    assert {vocab[i] for i in set(one.keep_ids) - set(base.keep_ids)} == {"▁welder"}
    assert one.summary["candidates"] == 4 and one.summary["min_titles_per_added_piece"] == 3
    every = extend_subset(base, tokenizer_json, titles, prefix="", max_new=100)
    assert {vocab[i] for i in set(every.keep_ids) - set(base.keep_ids)} == {"▁welder", "▁florida", "▁night",
                                                                             "▁nights"}
    assert every.summary["n_kept"] == len(every.keep_ids) and every.keep_ids == sorted(every.keep_ids)
    assert extend_subset(base, tokenizer_json, titles, prefix="").keep_ids == every.keep_ids  # no limit: all


def test_title_files_are_read_plain_or_gzipped(tmp_path):
    import gzip

    from jobtitles.train.data import read_titles

    (tmp_path / "t.txt").write_text("Nurse\n\n  Welder \n", encoding="utf-8")
    with gzip.open(tmp_path / "t.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("Nurse\nWelder\n")
    assert read_titles(tmp_path / "t.txt") == read_titles(tmp_path / "t.txt.gz") == ["Nurse", "Welder"]
