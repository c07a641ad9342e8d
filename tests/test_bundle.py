"""The default bundle: files, manifest (with parity ≥ 99%), labels in the ONNX metadata; the committed
bundle matches the committed head and can be rebuilt from it."""

import hashlib
import json
import re
import subprocess
import sys

import onnxruntime as ort
import pytest

from conftest import DEV_FILES, REPO, needs_torch


FORMAT2_EMBEDDING = "/Div_1_output_0"  # the L2-normalised sentence embedding inside a format-2 graph


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_records_parity_and_provenance(bundle_dir):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["format_version"] in (2, 3)
    assert m["parity"]["passed"] is True
    assert m["parity"]["n_titles"] >= 100
    for key in ("level_top1_agreement_decided", "area_top1_agreement_decided", "title_decision_agreement"):
        assert m["parity"][key] >= 0.99
    assert m["encoder"]["source_sha256"] and m["encoder"]["query_prefix"] == "query: "
    assert m["encoder"]["quantization"]["matmul_bits"] == 8 and m["encoder"]["quantization"]["n_matmuls"] >= 72
    assert 0 < m["title_detector"]["threshold"] <= 0.5
    assert m["training"]["data"]["train"]
    for key in ("created", "bundle_version", "taxonomy", "files"):
        assert m[key]
    # the version names the training day, the head's weights (and its title memory, if any), so two
    # models never share one
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d{2}-[0-9a-f]{8}", m["bundle_version"])
    mem = m.get("title_memory")
    digest = (hashlib.sha256(f"{m['head']['weights_sha256']} {mem['sha256']}".encode()).hexdigest() if mem
              else m["head"]["weights_sha256"])
    assert m["bundle_version"].endswith("-" + digest[:8])
    if mem:
        assert mem["bits_per_title"] == 384 and mem["bytes"] == mem["titles"] * 48
        assert mem["sha256"] == _sha256(REPO / "models" / "heads" / "default" / "memory.json.gz")
    for task in ("level", "area"):
        cal = m["training"]["calibration"][task]
        assert 0.2 <= cal["temperature"] <= 5 and cal["n"] > 500 and cal["ece_after"] <= cal["ece_before"]


def test_onnx_graph_io_and_metadata(bundle_dir):
    sess = ort.InferenceSession(str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    outputs = [o.name for o in sess.get_outputs()]
    assert outputs[:3] == ["level_probs", "area_probs", "title_probs"] and outputs[3:] in ([], ["embedding"])
    meta = sess.get_modelmeta().custom_metadata_map
    labels = json.loads((bundle_dir / "labels.json").read_text())
    assert json.loads(meta["jobtitles.levels"]) == labels["levels"]
    assert json.loads(meta["jobtitles.areas"]) == labels["areas"]


def test_model_card_written_beside_the_bundle(bundle_dir):
    card = (bundle_dir / "README.md").read_text()
    assert "Parity" in card and "Training data" in card


@needs_torch
def test_the_model_card_says_how_the_encoder_was_fine_tuned():
    from jobtitles.export.bundle_builder import _finetune_line

    plain = _finetune_line({"rank": 8, "noise_prob": 0.3, "soup_seeds": [], "vocab": ""})
    assert "LoRA adapters of rank 8" in plain and "30% of the titles" in plain and "vocabulary" not in plain
    soup = _finetune_line({"rank": 16, "noise_prob": 0, "soup_seeds": [13, 14],
                           "vocab": "models/vocab/multilingual-e5-small.keep.json"})
    assert "2 fine-tunes" in soup and "rank 8" in soup and "noise" not in soup
    assert "trimmed vocabulary `multilingual-e5-small.keep.json`" in soup
    assert "vocabulary" not in _finetune_line({"rank": 8})  # adapters saved before the option existed


@needs_torch
def test_the_model_card_names_the_files_a_refreshed_head_learned_from():
    from jobtitles.export.bundle_builder import _refresh_line

    line = _refresh_line({"from": {"created": "2026-12-06T21:19:08Z"}, "n_train_new": 9, "n_heldout_new": 1,
                          "files": [{"file": "a.jsonl", "records": 6}, {"file": "b.jsonl", "records": 4}]})
    assert "2026-12-06T21:19:08Z" in line and "9 titles of 2 files" in line and "`a.jsonl`, `b.jsonl`" in line
    assert "1 more held out" in line


@needs_torch
def test_encoder_flops_follow_the_shape_the_manifest_records(bundle_dir, tmp_path):
    """bench/run_bench.py counts FLOPs from the bundle's encoder shape (a 6-layer encoder: half the MatMuls)."""
    from types import SimpleNamespace

    from jobtitles.export.bundle_builder import encoder_shape

    sys.path.insert(0, str(REPO / "bench"))
    from run_bench import encoder_flops_per_title

    six = encoder_shape(SimpleNamespace(num_hidden_layers=6, hidden_size=384, intermediate_size=1536))
    assert six == {"layers": 6, "hidden": 384, "intermediate": 1536}
    flops = {}
    for layers in (6, 12):
        folder = tmp_path / str(layers)
        folder.mkdir()
        for name in ("model.onnx", "tokenizer.json", "tokenizer.json.gz", "labels.json"):
            if (bundle_dir / name).exists():
                (folder / name).symlink_to(bundle_dir / name)
        manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
        manifest["encoder"]["shape"] = {**six, "layers": layers}
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        flops[layers] = encoder_flops_per_title(str(folder), ["Nurse", "Senior Data Engineer"])
    assert flops[6]["layers"] == 6 and flops[12]["layers"] == 12
    assert flops[6]["gflop_per_title"] == pytest.approx(flops[12]["gflop_per_title"] / 2, rel=1e-3)


@needs_torch
def test_quantization_calibration_reads_only_the_files_the_head_was_trained_on():
    """Training files added after a head was trained must not change that head's export."""
    from jobtitles.export.bundle_builder import calibration_titles

    every = calibration_titles(set(), n=10**6)
    one = calibration_titles(set(), n=10**6, sources={"postings_en_a"})
    assert one and set(one) < set(every)
    assert calibration_titles(set(one), n=10**6, sources={"postings_en_a"}) == []


def test_bundle_files_match_the_manifest_and_the_committed_head(bundle_dir):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    for name, digest in m["files"].items():
        assert _sha256(bundle_dir / name) == digest, f"{name} changed after the bundle was built"
    assert m["head"]["weights_sha256"] == _sha256(REPO / "models" / "heads" / "default" / "head.pt"), (
        "models/default was not built from models/heads/default: run `jobtitles export`")
    assert sum(f.stat().st_size for f in bundle_dir.iterdir()) <= 40_000_000  # the 40 MB budget (issue 4)


def _dev_run(model, names, texts, bundle):
    """``names`` of an ONNX ``model`` for ``texts``, tokenised as the runtime does."""
    from jobtitles.bundle import load_tokenizer
    from jobtitles.classifier import encode_batch

    tok = load_tokenizer(bundle.tokenizer_path)
    tok.enable_truncation(max_length=bundle.max_tokens)
    ids, mask = encode_batch(tok, texts, bundle.query_prefix, pad_id=1)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"input_ids": ids, "attention_mask": mask})


def test_the_title_memory_in_the_graph_votes_as_its_numpy_reference(bundle_dir):
    """The bundle's title memory pools the head's area scores with the vote exactly as
    :meth:`TitleMemory.blend` does, on real titles. A bundle without one gets a memory of 300 dev titles
    (their gold areas) attached here, so the graph surgery is checked on the real graph either way."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from jobtitles.bundle import Bundle
    from jobtitles.evaluation import load_gold
    from jobtitles.export.title_memory import MEMORY_AREA_INPUT, OUTPUT_TEMPERATURE, attach_memory
    from jobtitles.train.memory import MemorySettings, TitleMemory

    bundle = Bundle.load(bundle_dir)
    model = onnx.load(str(bundle.model_path))
    gold = [g for g in load_gold([str(f) for f in DEV_FILES]) if g.valid and g.area in bundle.areas][:500]
    mem = bundle.manifest.get("title_memory")
    if mem:
        init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.startswith("memory/")}
        settings = MemorySettings(**{k: mem[k] for k in ("k", "weight", "vote_floor", "temperature")})
        memory = TitleMemory(init["memory/codes"], init["memory/labels"].astype(np.int64), init["memory/centre"],
                             len(bundle.areas), settings, float(init[OUTPUT_TEMPERATURE]))
        assert abs(memory.output_temperature - mem["output_temperature"]) < 1e-6 and len(memory.codes) == mem["titles"]
        queries = gold
    else:
        if "embedding" not in [o.name for o in model.graph.output]:  # format 2 kept it internal
            model.graph.node.append(onnx.helper.make_node("Identity", [FORMAT2_EMBEDDING], ["embedding"]))
            model.graph.output.append(onnx.helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT,
                                                                         ["batch", None]))
        [emb] = _dev_run(model, ["embedding"], [g.title for g in gold[:300]], bundle)
        memory = TitleMemory.build(emb, np.array([bundle.areas.index(g.area) for g in gold[:300]]),
                                   len(bundle.areas))
        attach_memory(model, memory)
        queries = gold[300:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(MEMORY_AREA_INPUT, onnx.TensorProto.FLOAT, None))
    area, emb, head = _dev_run(model, ["area_probs", "embedding", MEMORY_AREA_INPUT], [g.title for g in queries],
                               bundle)
    np.testing.assert_allclose(area, memory.blend(head, emb), atol=1e-5)
    assert (area.argmax(1) != head.argmax(1)).any()  # the memory changes some answers


@pytest.mark.slow
@needs_torch
def test_the_bundle_rebuilds_from_the_committed_head(bundle_dir, tmp_path):
    """The export path end to end: a fresh bundle from the committed head answers like the shipped one:
    identically where this CPU exported the same model bytes, else within the agreement that int8
    rounding allows across CPUs (jobtitles.export.reproduce)."""
    from jobtitles.evaluation import load_gold
    from jobtitles.export.reproduce import MIN_TOP1_AGREEMENT, compare_bundles

    out = tmp_path / "bundle"
    res = subprocess.run([sys.executable, "-m", "jobtitles.cli", "export", "--out", str(out), "--compare-with",
                          str(bundle_dir)], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "against" in res.stdout and "(ok)" in res.stdout.splitlines()[-1]
    texts = [g.title for g in load_gold([str(f) for f in DEV_FILES])][:300]
    agreement = compare_bundles(out, bundle_dir, texts)
    assert agreement.passed, agreement.summary()
    if agreement.identical_model:
        assert agreement.max_abs_diff == 0.0
    else:
        assert min(agreement.level_top1, agreement.area_top1) >= MIN_TOP1_AGREEMENT
    assert json.loads((out / "manifest.json").read_text())["bundle_version"] == \
        json.loads((bundle_dir / "manifest.json").read_text())["bundle_version"]


@needs_torch
def test_the_manifest_is_json_with_one_top_level_key_per_line():
    from jobtitles.export.bundle_builder import manifest_json

    manifest = {"format_version": 2, "encoder": {"name": "e5 – ü", "shape": {"layers": 12}}, "parity": None,
                "training": {"data": {"train": {"hand": {"n": 3, "levels": {"Specialist": 3}}}}}}
    text = manifest_json(manifest)
    assert json.loads(text) == manifest
    assert text.splitlines()[1:-1] == [f'"{k}": {json.dumps(v, ensure_ascii=False, separators=(",", ":"))}'
                                       + ("," if k != "training" else "") for k, v in manifest.items()]


@needs_torch
def test_the_version_names_the_title_memory_only_when_the_bundle_carries_it(tmp_path):
    """Two bundles of one head, with and without its memory (`jobtitles export --no-title-memory`), never share
    a version; without a memory the version is the one the head alone always had."""
    from jobtitles.export.bundle_builder import default_version

    (tmp_path / "head.pt").write_bytes(b"weights")
    report = {"created": "2026-12-06T10:00:00"}
    alone = default_version(report, tmp_path)
    assert alone == "2026.12.06-" + hashlib.sha256(b"weights").hexdigest()[:8]
    (tmp_path / "memory.json.gz").write_bytes(b"titles")
    with_memory = default_version(report, tmp_path)
    assert with_memory != alone and re.fullmatch(r"2026\.12\.06-[0-9a-f]{8}", with_memory)
    assert default_version(report, tmp_path, title_memory=False) == alone
