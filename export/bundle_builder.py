"""Build a versioned model bundle from an encoder folder and a trained head, and check parity."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra("torch", "onnx", "sentence_transformers")

import torch  # noqa: E402

from jobtitles import __version__  # noqa: E402
from jobtitles.bundle import (  # noqa: E402
    BUNDLE_FORMAT_VERSION, LABELS_FILE, MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, Bundle,
)
from jobtitles.classifier import Classifier, encode_batch  # noqa: E402
import onnx  # noqa: E402

from jobtitles.export.onnx_export import export_fp32, load_module, quantize_encoder, set_metadata  # noqa: E402
from jobtitles.export.vocab_trim import VocabSubset, replace_embedding_rows, trimmed_tokenizer_json  # noqa: E402
from jobtitles.train.embed import encoder_fingerprint  # noqa: E402
from jobtitles.train.encoder_convert import sha256_file  # noqa: E402
from jobtitles.train.trainer import HEAD_CONFIG, HEAD_WEIGHTS, TRAINING_REPORT, load_head  # noqa: E402

RUNTIME_MAX_TOKENS = 128
PARITY_THRESHOLD = 0.99


@dataclass(frozen=True)
class ParityReport:
    """Agreement of the ONNX bundle with the PyTorch model on held-out titles."""

    n_titles: int
    level_top1_agreement: float
    area_top1_agreement: float
    max_abs_prob_diff: float
    passed: bool


def torch_probabilities(module, tokenizer_path: Path, prefix: str, texts: list[str], batch_size: int = 64
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Reference probabilities from the PyTorch module (fp32) with the encoder's own (full) tokenizer."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.enable_truncation(max_length=RUNTIME_MAX_TOKENS)
    lv, ar = [], []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            ids, mask = encode_batch(tok, texts[i : i + batch_size], prefix, pad_id=1)
            a, b = module(torch.from_numpy(ids), torch.from_numpy(mask))
            lv.append(a.numpy())
            ar.append(b.numpy())
    return np.concatenate(lv), np.concatenate(ar)


def check_parity(module, bundle_dir: Path, texts: list[str], reference_tokenizer: Path | None = None
                 ) -> ParityReport:
    """Top-1 agreement of the ONNX bundle, end to end through the runtime (its trimmed tokenizer,
    int8 encoder), with the fp32 torch module on the encoder's full tokenizer."""
    bundle = Bundle.load(bundle_dir)
    clf = Classifier(bundle)
    o_lv, o_ar = clf.probabilities(texts)
    t_lv, t_ar = torch_probabilities(module, reference_tokenizer or bundle.tokenizer_path, bundle.query_prefix, texts)
    lv_agree = float((o_lv.argmax(1) == t_lv.argmax(1)).mean())
    ar_agree = float((o_ar.argmax(1) == t_ar.argmax(1)).mean())
    diff = float(max(np.abs(o_lv - t_lv).max(), np.abs(o_ar - t_ar).max()))
    return ParityReport(len(texts), lv_agree, ar_agree, diff,
                        lv_agree >= PARITY_THRESHOLD and ar_agree >= PARITY_THRESHOLD)


def _model_card(manifest: dict) -> str:
    enc = manifest["encoder"]
    par = manifest["parity"]
    val = manifest.get("training", {}).get("validation", {})
    lines = [
        f"# jobtitles bundle {manifest['bundle_version']}",
        "",
        "Classifies a job title into a seniority level and a job area (labels in `labels.json`).",
        "",
        f"- Encoder: {enc['name']} (sha256 of source `{enc.get('source_sha256', '?')}`), weights in int8 "
        f"({enc['quantization']['embeddings']} embeddings; {enc['quantization']['matmul']}); head in fp32.",
        f"- Input: `{enc['query_prefix']}` + cleaned title, at most {enc['max_tokens']} tokens.",
        f"- Parity with the PyTorch model on {par['n_titles']} held-out titles: level top-1 "
        f"{par['level_top1_agreement']:.4f}, area top-1 {par['area_top1_agreement']:.4f}.",
    ]
    for head in ("level", "area"):
        if head in val:
            lines.append(f"- Validation ({head}, training-time split): accuracy {val[head]['accuracy']}, "
                         f"macro-F1 {val[head]['macro_f1']}.")
    lines += ["", "## Training data", "", "| source | examples |", "| --- | --- |"]
    for src, info in sorted(manifest.get("training", {}).get("data", {}).get("train", {}).items()):
        lines.append(f"| {src} | {info['n']} |")
    lines += ["", "Made by `jobtitles export`; see the project README for how to retrain and evaluate.", ""]
    return "\n".join(lines)


def build_bundle(encoder_dir: str | Path, head_dir: str | Path, out_dir: str | Path,
                 parity_titles: list[str] | None = None, bundle_version: str | None = None,
                 vocab: str | Path | None = None) -> dict:
    """Export, quantize, write tokenizer / labels / manifest / model card, check parity; returns the manifest."""
    encoder_dir, head_dir, out = Path(encoder_dir), Path(head_dir), Path(out_dir)
    head, labels = load_head(head_dir)
    module = load_module(encoder_dir, head)
    report = json.loads((head_dir / TRAINING_REPORT).read_text(encoding="utf-8"))
    enc_meta_path = encoder_dir / "jobtitles_encoder.json"
    enc_meta = json.loads(enc_meta_path.read_text(encoding="utf-8")) if enc_meta_path.exists() else {}
    prefix = enc_meta.get("query_prefix", "")
    tmp_out = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent if out.parent.exists() else None))
    try:
        subset = VocabSubset.load(vocab) if vocab else None
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_fp32(module, Path(tmp) / "fp32.onnx")
            if subset is not None:
                graph = onnx.load(str(fp32))
                replace_embedding_rows(graph, subset)
                onnx.save(graph, str(fp32))
            quant = quantize_encoder(fp32, tmp_out / MODEL_FILE)
        if subset is not None:
            spec = trimmed_tokenizer_json(encoder_dir / TOKENIZER_FILE, subset)
            (tmp_out / TOKENIZER_FILE).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        else:
            shutil.copy(encoder_dir / TOKENIZER_FILE, tmp_out / TOKENIZER_FILE)
        (tmp_out / LABELS_FILE).write_text(json.dumps({"levels": labels.levels, "areas": labels.areas}, indent=2,
                                                      ensure_ascii=False) + "\n", encoding="utf-8")
        version = bundle_version or time.strftime("%Y.%m.%d", time.gmtime())
        manifest = {
            "format_version": BUNDLE_FORMAT_VERSION,
            "bundle_version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "jobtitles_version": __version__,
            "encoder": {
                "name": enc_meta.get("name", encoder_dir.name),
                "source": enc_meta.get("source"),
                "source_sha256": enc_meta.get("source_sha256"),
                "fingerprint": encoder_fingerprint(encoder_dir),
                "query_prefix": prefix,
                "max_tokens": RUNTIME_MAX_TOKENS,
                "pad_id": 1,
                "quantization": asdict(quant),
                "vocabulary": ({"pieces": len(subset.keep_ids), "original_pieces": subset.n_original,
                                **subset.summary} if subset else {"pieces": "all"}),
            },
            "taxonomy": {"levels": labels.levels, "areas": labels.areas},
            "head": {"weights_sha256": sha256_file(head_dir / HEAD_WEIGHTS),
                     "config": json.loads((head_dir / HEAD_CONFIG).read_text(encoding="utf-8"))["head"]},
            "training": {k: report.get(k) for k in ("created", "train_config", "best_epoch", "validation", "data",
                                                     "encoder_fingerprint")},
            "parity": None,
        }
        (tmp_out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        titles = parity_titles if parity_titles is not None else report.get("heldout_titles", [])
        if not titles:
            raise ValueError("no held-out titles for the parity check: pass parity_titles")
        parity = check_parity(module, tmp_out, titles, encoder_dir / TOKENIZER_FILE)
        manifest["parity"] = asdict(parity)
        manifest["files"] = {f: sha256_file(tmp_out / f) for f in (MODEL_FILE, TOKENIZER_FILE, LABELS_FILE)}
        set_metadata(tmp_out / MODEL_FILE, {"jobtitles.levels": json.dumps(labels.levels, ensure_ascii=False),
                                            "jobtitles.areas": json.dumps(labels.areas, ensure_ascii=False),
                                            "jobtitles.bundle_version": version,
                                            "jobtitles.query_prefix": prefix})
        manifest["files"][MODEL_FILE] = sha256_file(tmp_out / MODEL_FILE)
        (tmp_out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        (tmp_out / "README.md").write_text(_model_card(manifest), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp_out.chmod(0o755)
        tmp_out.rename(out)
    finally:
        if tmp_out.exists():
            shutil.rmtree(tmp_out)
    return manifest
