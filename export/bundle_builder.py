"""Build a versioned model bundle from an encoder folder and a trained head, and check parity."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra("torch", "onnx", "sentence_transformers")

import torch  # noqa: E402

from jobtitles import __version__  # noqa: E402
from jobtitles.bundle import (  # noqa: E402
    BUNDLE_FORMAT_VERSION, LABELS_FILE, MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, TOKENIZER_GZ_FILE, Bundle,
    load_tokenizer,
)
from jobtitles.classifier import Classifier, encode_batch  # noqa: E402
import onnx  # noqa: E402

from jobtitles.export.onnx_export import export_fp32, limit_positions, load_module, set_metadata  # noqa: E402
from jobtitles.export.quantize import quantize_model  # noqa: E402
from jobtitles.export.title_memory import attach_memory, set_output_temperature  # noqa: E402
from jobtitles.export.vocab_trim import (  # noqa: E402
    VocabSubset, check_unchanged, replace_embedding_rows, trimmed_module, trimmed_tokenizer_json,
)
from jobtitles.train.embed import encoder_fingerprint  # noqa: E402
from jobtitles.train.finetune import ADAPTER_FILE  # noqa: E402
from jobtitles.train.calibration import fit_temperature  # noqa: E402
from jobtitles.train.memory import MEMORY_FILE, MIN_PROB, MemoryTitles, TitleMemory  # noqa: E402
from jobtitles.train.encoder_convert import sha256_file  # noqa: E402
from jobtitles.train.trainer import (  # noqa: E402
    HEAD_CONFIG, HEAD_WEIGHTS, TRAINING_REPORT, load_head, load_title_threshold,
)

RUNTIME_MAX_TOKENS = 128
PARITY_THRESHOLD = 0.99
# Top-1 parity is judged on titles the fp32 model decides with a margin (top-1 minus top-2
# probability) of at least this: quantization noise flips near-ties, which are coin flips for
# accuracy too (README, Quantization); raw agreement over all titles is recorded beside it.
DECIDED_MARGIN = 0.1
N_CALIBRATION = 512


@dataclass(frozen=True)
class ParityReport:
    """Agreement of the ONNX bundle with the PyTorch model on held-out titles."""

    n_titles: int
    n_non_titles: int
    level_top1_agreement: float  # over all titles
    area_top1_agreement: float
    level_top1_agreement_decided: float  # over titles with an fp32 top-1 margin >= DECIDED_MARGIN
    area_top1_agreement_decided: float
    title_decision_agreement: float  # same side of the title threshold (titles and non-titles)
    max_abs_prob_diff: float
    passed: bool


def _encoded_batches(tokenizer_path: Path, prefix: str, texts: list[str], batch_size: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(input_ids, attention_mask)`` for ``texts`` in batches, tokenized as the runtime does."""
    tok = load_tokenizer(tokenizer_path)
    tok.enable_truncation(max_length=RUNTIME_MAX_TOKENS)
    for i in range(0, len(texts), batch_size):
        yield encode_batch(tok, texts[i : i + batch_size], prefix, pad_id=1)


def torch_probabilities(module, tokenizer_path: Path, prefix: str, texts: list[str], batch_size: int = 64
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference level / area / title probabilities and sentence embeddings from the PyTorch module
    (fp32) read through the tokenizer at ``tokenizer_path``."""
    outs: list[list[np.ndarray]] = [[], [], [], []]
    with torch.no_grad():
        for ids, mask in _encoded_batches(tokenizer_path, prefix, texts, batch_size):
            for acc, t in zip(outs, module(torch.from_numpy(ids), torch.from_numpy(mask))):
                acc.append(t.numpy())
    return tuple(np.concatenate(o) for o in outs)


def check_parity(module, bundle_dir: Path, texts: list[str], reference_tokenizer: Path | None = None,
                 non_titles: list[str] | None = None, memory: TitleMemory | None = None) -> ParityReport:
    """Agreement of the ONNX bundle, end to end through the runtime (tokenizer, quantized encoder),
    with the fp32 torch ``module`` read through ``reference_tokenizer`` (default: the bundle's):
    level and area top-1 on the held-out titles ``texts``, the title decision on those and the
    held-out ``non_titles``. With the bundle's title ``memory``, the reference's area probabilities
    get the same vote (:meth:`TitleMemory.blend`, numpy) from the torch embeddings."""
    bundle = Bundle.load(bundle_dir)
    everything = list(texts) + list(non_titles or [])
    o_lv, o_ar, o_ti = Classifier(bundle).probabilities(everything)
    t_lv, t_ar, t_ti, t_emb = torch_probabilities(module, reference_tokenizer or bundle.tokenizer_path,
                                                  bundle.query_prefix, everything)
    if memory is not None:
        t_ar = memory.blend(t_ar, t_emb)
    n = len(texts)
    lv_agree, lv_decided = top1_agreement(o_lv[:n], t_lv[:n])
    ar_agree, ar_decided = top1_agreement(o_ar[:n], t_ar[:n])
    thr = bundle.title_threshold
    ti_agree = float(((o_ti >= thr) == (t_ti >= thr)).mean())
    diff = float(max(np.abs(o_lv[:n] - t_lv[:n]).max(), np.abs(o_ar[:n] - t_ar[:n]).max(),
                     np.abs(o_ti - t_ti).max()))
    return ParityReport(n, len(everything) - n, lv_agree, ar_agree, lv_decided, ar_decided, ti_agree, diff,
                        min(lv_decided, ar_decided, ti_agree) >= PARITY_THRESHOLD)


def top1_agreement(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement over all rows, and over rows where ``ref`` has a top-1 margin >= DECIDED_MARGIN."""
    agree = got.argmax(1) == ref.argmax(1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) >= DECIDED_MARGIN
    return float(agree.mean()), float(agree[decided].mean()) if decided.any() else 1.0


def bundle_outputs(model: Path | bytes, tokenizer_path: Path, prefix: str, texts: list[str], names: list[str],
                   batch_size: int = 64) -> list[np.ndarray]:
    """The outputs ``names`` of an exported graph (a file, or a serialised model) for ``texts``, tokenised as
    the runtime does and run in batches of similar length."""
    import onnxruntime as ort

    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                   providers=["CPUExecutionProvider"])
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [session.run(names, {"input_ids": ids, "attention_mask": mask})
             for ids, mask in _encoded_batches(tokenizer_path, prefix, [texts[i] for i in order], batch_size)]
    outs = []
    for j in range(len(names)):
        got = np.concatenate([p[j] for p in parts]) if parts else np.zeros((0,), dtype=np.float32)
        back = np.empty_like(got)
        back[order] = got
        outs.append(back)
    return outs


def add_title_memory(model_path: Path, tokenizer_path: Path, prefix: str, titles: MemoryTitles,
                     areas: list[str]) -> tuple[TitleMemory, dict | None]:
    """Embed the memory titles with the bundle's own graph (the embeddings the runtime compares against),
    write the memory into the graph at ``model_path``, then fit the pooled scores' temperature on the
    head's validation titles through that graph (minimum NLL of the accepted areas, as
    :mod:`jobtitles.train.calibration` does for the head). Returns the memory and the fit (None without
    validation titles)."""
    unknown = sorted(set(titles.areas) - set(areas))
    if unknown:
        raise ValueError(f"memory titles with areas the head does not know: {', '.join(unknown)}")
    index = {a: i for i, a in enumerate(areas)}
    [embeddings] = bundle_outputs(model_path, tokenizer_path, prefix, titles.texts, ["embedding"])
    memory = TitleMemory.build(embeddings, np.array([index[a] for a in titles.areas]), len(areas), titles.settings)
    graph = onnx.load(str(model_path))
    attach_memory(graph, memory)
    rows = [(t, [index[a] for a in accepted if a in index]) for t, accepted in titles.validation]
    rows = [(t, a) for t, a in rows if a]
    fit = None
    if rows:
        [probs] = bundle_outputs(graph.SerializeToString(), tokenizer_path, prefix, [t for t, _ in rows],
                                 ["area_probs"])
        accepted = np.zeros((len(rows), len(areas)), dtype=bool)
        for r, (_, a) in enumerate(rows):
            accepted[r, a] = True
        fit = fit_temperature(np.log(np.maximum(probs, MIN_PROB)), accepted)
        memory = replace(memory, output_temperature=fit.temperature)
        set_output_temperature(graph, fit.temperature)
        accuracy = float(accepted[np.arange(len(rows)), probs.argmax(axis=1)].mean())
    onnx.save(graph, str(model_path))
    return memory, {**asdict(fit), "area_accuracy": round(accuracy, 4)} if fit is not None else None


def write_tokenizer(spec_json: str, path: Path) -> None:
    """The tokenizer JSON, gzipped (a third of its size; the same bytes for the same tokenizer)."""
    import gzip

    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as fh:
        fh.write(spec_json.encode("utf-8"))


def calibration_batches(tokenizer_path: Path, prefix: str, texts: list[str], batch_size: int = 32
                        ) -> list[dict[str, np.ndarray]]:
    """Model inputs for the quantization calibration titles, batched as the runtime batches them."""
    return [{"input_ids": ids, "attention_mask": mask}
            for ids, mask in _encoded_batches(tokenizer_path, prefix, texts, batch_size)]


def calibration_titles(exclude: set[str], n: int = N_CALIBRATION, sources: set[str] | None = None) -> list[str]:
    """An even sample of the hand-labelled training titles (never the parity / dev titles). With
    ``sources`` (the head's training sources), only those files count, so that training files added
    after the head was trained do not change its export."""
    from jobtitles.train.data import hand_examples

    texts = [e.text for e in hand_examples() if e.text and e.text not in exclude
             and (sources is None or e.source in sources)]
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def default_version(report: dict, head_dir: Path, title_memory: bool = True) -> str:
    """``YYYY.MM.DD-<8 hex>``: the day the head was trained and the start of its weights' sha256 (with a
    title memory: of the weights' and the memory file's sha256 together), so two models trained on one
    day get different versions and re-exporting one head keeps its version."""
    day = (report.get("created") or time.strftime("%Y-%m-%d", time.gmtime()))[:10].replace("-", ".")
    digest = sha256_file(head_dir / HEAD_WEIGHTS)
    if title_memory and (head_dir / MEMORY_FILE).exists():
        import hashlib

        digest = hashlib.sha256(f"{digest} {sha256_file(head_dir / MEMORY_FILE)}".encode()).hexdigest()
    return f"{day}-{digest[:8]}"


def _rounded(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def _finetune_line(cfg: dict) -> str:
    noise = cfg.get("noise_prob") or 0
    seeds = cfg.get("soup_seeds") or []
    adapters = (f"the average (a model soup) of {len(seeds)} fine-tunes from the same trained head, seeds "
                f"{', '.join(map(str, seeds))}, each with LoRA adapters of rank {cfg['rank'] // len(seeds)}"
                if seeds else f"LoRA adapters of rank {cfg['rank']}")
    vocab = cfg.get("vocab") or ""
    return (f"fine-tuned for this task ({adapters}, merged"
            + (f"; {noise:.0%} of the titles per step written with posting noise: places, employers, shifts, perks"
               if noise else "")
            + (f"; trained on the token sequences of the trimmed vocabulary `{Path(vocab).name}`" if vocab else "")
            + ").")


def _refresh_line(refresh: dict) -> str:
    """The model card's line for a head refreshed with files labelled after it (``jobtitles refresh-head``)."""
    files = ", ".join(f"`{f['file']}`" for f in refresh["files"])
    return (f"- Head: the head trained {refresh['from'].get('created')}, trained further from its own weights "
            f"(`jobtitles refresh-head`, encoder unchanged) with {refresh['n_train_new']} titles of "
            f"{len(refresh['files'])} files labelled after it ({files}; {refresh['n_heldout_new']} more held out "
            "for validation).")


def _model_card(manifest: dict) -> str:
    enc = manifest["encoder"]
    par = manifest["parity"]
    val = manifest.get("training", {}).get("validation", {})
    lines = [
        f"# jobtitles bundle {manifest['bundle_version']}",
        "",
        "Classifies a job title into a seniority level and a job area (labels in `labels.json`).",
        "",
        f"- Encoder: {enc['name']} (sha256 of source `{enc.get('source_sha256', '?')}`), " + (
            f"quantized: embeddings {enc['quantization']['embeddings']}; MatMuls {enc['quantization']['matmul']}; "
            f"head: {enc['quantization']['head']}." if enc["quantization"] else "fp32 (not quantized)."),
        f"- Input: `{enc['query_prefix']}` + cleaned title, at most {enc['max_tokens']} tokens.",
        "- Encoder weights: " + (_finetune_line(enc["finetuned_adapters"]["config"])
                                 if enc.get("finetuned_adapters") else "as published (frozen)."),
        f"- Parity with the PyTorch model on {par['n_titles']} held-out titles: level top-1 "
        f"{par['level_top1_agreement']:.4f}, area top-1 {par['area_top1_agreement']:.4f} (on titles the fp32 "
        f"model decides by a margin of {DECIDED_MARGIN} or more: {par['level_top1_agreement_decided']:.4f} / "
        f"{par['area_top1_agreement_decided']:.4f}), title decision {par['title_decision_agreement']:.4f}.",
    ]
    mem = manifest.get("title_memory")
    if mem:
        lines.append(f"- Title memory: the {mem['k']} most similar of {mem['titles']} hand-labelled training titles "
                     f"({mem['bits_per_title']} sign bits each, {mem['bytes'] / 1e6:.2f} MB) vote for their area with "
                     f"weights softmax(similarity / {mem['temperature']}); the area scores are softmax(("
                     f"{1 - mem['weight']:g} × log(head) + {mem['weight']:g} × log(vote + {mem.get('vote_floor')})) / "
                     f"{mem.get('output_temperature', 1.0)}), the temperature fitted on the head's validation titles.")
        for added in mem.get("added", []):
            lines.append(f"  - {added['titles']} of the memory's titles were added after the head was trained, "
                         f"from `{added['file']}` (`jobtitles extend-memory`).")
    refresh = manifest.get("training", {}).get("refresh")
    if refresh:
        lines.append(_refresh_line(refresh))
    det = manifest.get("title_detector", {})
    if det:
        v = det.get("validation") or {}
        recall, false_rejects = _rounded(v.get("non_title_recall")), _rounded(v.get("false_reject_rate"))
        lines.append(f"- Non-title detector: an input whose title score is below {det['threshold']:.4f} is "
                     f"reported as not a job title (validation: non-title recall {recall}, "
                     f"false rejects {false_rejects}).")
    cal = manifest.get("training", {}).get("calibration") or {}
    if cal:
        lines.append("- Scores: temperature-scaled on " + " and ".join(
            f"{k} (T = {c['temperature']}, {c['n']} hand-labelled validation titles, expected calibration error "
            f"{c['ece_before']} → {c['ece_after']})" for k, c in cal.items()) + ".")
    for head in ("level", "area"):
        if head in val:
            lines.append(f"- Validation ({head}, training-time split): accuracy {val[head]['accuracy']}, "
                         f"macro-F1 {val[head]['macro_f1']}.")
    lines += ["", "## Training data", "", "| source | examples |", "| --- | --- |"]
    for src, info in sorted(manifest.get("training", {}).get("data", {}).get("train", {}).items()):
        lines.append(f"| {src} | {info['n']} |")
    lines += ["", "Made by `jobtitles export`; see the project README for how to retrain and evaluate.", ""]
    return "\n".join(lines)


def manifest_json(manifest: dict) -> str:
    """The manifest as JSON with one top-level key per line and compact values: half the size of an
    indented file (the training-data report alone is 54 kB indented), which the 40 MB bundle budget
    spends on vocabulary instead; ``python -m json.tool`` pretty-prints it."""
    body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}"
                      for k, v in manifest.items())
    return "{\n" + body + "\n}\n"


def encoder_shape(config) -> dict[str, int]:
    """The transformer's size (layers, widths), for FLOP counts of the bundle without its weights."""
    return {"layers": int(config.num_hidden_layers), "hidden": int(config.hidden_size),
            "intermediate": int(config.intermediate_size)}


def build_bundle(encoder_dir: str | Path, head_dir: str | Path, out_dir: str | Path,
                 parity_titles: list[str] | None = None, bundle_version: str | None = None,
                 vocab: str | Path | None = None, embedding_bits: int = 4, quantize: bool = True,
                 title_memory: bool = True) -> dict:
    """Export, quantize (unless ``quantize`` is False: the fp32 reference bundle), build in the head's
    title memory (where it has one, unless ``title_memory`` is False), write tokenizer / labels /
    manifest / model card, check parity; returns the manifest."""
    encoder_dir, head_dir, out = Path(encoder_dir), Path(head_dir), Path(out_dir)
    head, labels = load_head(head_dir)
    adapters = head_dir / ADAPTER_FILE if (head_dir / ADAPTER_FILE).exists() else None
    module = load_module(encoder_dir, head, adapters)
    position_rows = limit_positions(module, RUNTIME_MAX_TOKENS)
    report = json.loads((head_dir / TRAINING_REPORT).read_text(encoding="utf-8"))
    enc_meta_path = encoder_dir / "jobtitles_encoder.json"
    enc_meta = json.loads(enc_meta_path.read_text(encoding="utf-8")) if enc_meta_path.exists() else {}
    prefix = enc_meta.get("query_prefix", "")
    tmp_out = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent if out.parent.exists() else None))
    titles = parity_titles if parity_titles is not None else report.get("heldout_titles", [])
    if not titles:
        raise ValueError("no held-out titles for the parity check: pass parity_titles")
    try:
        subset = VocabSubset.load(vocab) if vocab else None
        tokenizer = tmp_out / TOKENIZER_GZ_FILE
        if subset is not None:
            spec = trimmed_tokenizer_json(encoder_dir / TOKENIZER_FILE, subset)
            write_tokenizer(json.dumps(spec, ensure_ascii=False, separators=(",", ":")), tokenizer)
        else:
            write_tokenizer((encoder_dir / TOKENIZER_FILE).read_text(encoding="utf-8"), tokenizer)
        held_out = set(titles) | set(report.get("heldout_non_titles", []))
        trained_on = set((report.get("data") or {}).get("train") or {}) or None
        calibration = calibration_batches(tokenizer, prefix, calibration_titles(held_out, sources=trained_on))
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_fp32(module, Path(tmp) / "fp32.onnx")
            if subset is not None:
                graph = onnx.load(str(fp32))
                replace_embedding_rows(graph, subset)
                onnx.save(graph, str(fp32))
            if quantize:
                quant = asdict(quantize_model(fp32, tmp_out / MODEL_FILE, calibration,
                                              embedding_bits=embedding_bits))
            else:
                shutil.copy(fp32, tmp_out / MODEL_FILE)
                quant = None
        memory_titles = MemoryTitles.load(head_dir) if title_memory else None
        memory, memory_fit = (add_title_memory(tmp_out / MODEL_FILE, tokenizer, prefix, memory_titles, labels.areas)
                              if memory_titles is not None else (None, None))
        (tmp_out / LABELS_FILE).write_text(json.dumps({"levels": labels.levels, "areas": labels.areas}, indent=2,
                                                      ensure_ascii=False) + "\n", encoding="utf-8")
        version = bundle_version or default_version(report, head_dir, memory_titles is not None)
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
                "shape": encoder_shape(module.encoder.config),
                "finetuned_adapters": ({"file": ADAPTER_FILE, "sha256": sha256_file(adapters),
                                        "config": (report.get("finetune") or {}).get("config")} if adapters else None),
                "query_prefix": prefix,
                "max_tokens": RUNTIME_MAX_TOKENS,
                "position_rows": position_rows,
                "pad_id": 1,
                "quantization": quant,
                "vocabulary": ({"pieces": len(subset.keep_ids), "original_pieces": subset.n_original,
                                **subset.summary} if subset else {"pieces": "all"}),
            },
            "taxonomy": {"levels": labels.levels, "areas": labels.areas},
            "title_memory": ({**memory.summary(), "file": MEMORY_FILE, "sha256": sha256_file(head_dir / MEMORY_FILE),
                              "output_calibration": memory_fit,
                              **({"added": memory_titles.added} if memory_titles.added else {})}
                             if memory is not None else None),
            "title_detector": {"threshold": load_title_threshold(head_dir),
                               "validation": report.get("validation", {}).get("title")},
            "head": {"weights_sha256": sha256_file(head_dir / HEAD_WEIGHTS),
                     "config": json.loads((head_dir / HEAD_CONFIG).read_text(encoding="utf-8"))["head"]},
            "training": {**{k: report.get(k) for k in ("created", "train_config", "best_epoch", "validation", "data",
                                                        "encoder_fingerprint", "frozen_encoder", "finetune",
                                                        "calibration")},
                         **({"refresh": report["refresh"]} if report.get("refresh") else {})},
            "parity": None,
        }
        (tmp_out / MANIFEST_FILE).write_text(manifest_json(manifest), encoding="utf-8")
        # the export's fidelity: against the fp32 model on the same (trimmed) vocabulary
        reference = module if subset is None else trimmed_module(module, subset)
        parity = check_parity(reference, tmp_out, titles, non_titles=report.get("heldout_non_titles", []),
                              memory=memory)
        if subset is not None:
            manifest["encoder"]["vocabulary"]["parity_texts_tokenised_unchanged"] = round(check_unchanged(
                encoder_dir / TOKENIZER_FILE, spec, titles + report.get("heldout_non_titles", []), prefix), 5)
        manifest["parity"] = asdict(parity)
        manifest["files"] = {f: sha256_file(tmp_out / f) for f in (MODEL_FILE, TOKENIZER_GZ_FILE, LABELS_FILE)}
        set_metadata(tmp_out / MODEL_FILE, {"jobtitles.levels": json.dumps(labels.levels, ensure_ascii=False),
                                            "jobtitles.areas": json.dumps(labels.areas, ensure_ascii=False),
                                            "jobtitles.bundle_version": version,
                                            "jobtitles.query_prefix": prefix})
        manifest["files"][MODEL_FILE] = sha256_file(tmp_out / MODEL_FILE)
        (tmp_out / MANIFEST_FILE).write_text(manifest_json(manifest), encoding="utf-8")
        (tmp_out / "README.md").write_text(_model_card(manifest), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp_out.chmod(0o755)
        tmp_out.rename(out)
    finally:
        if tmp_out.exists():
            shutil.rmtree(tmp_out)
    return manifest
