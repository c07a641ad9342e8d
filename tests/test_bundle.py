"""The default bundle: files, manifest (with parity ≥ 99%), labels in the ONNX metadata."""

import json

import onnxruntime as ort


def test_manifest_records_parity_and_provenance(bundle_dir):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["format_version"] == 1
    assert m["parity"]["passed"] is True
    assert m["parity"]["n_titles"] >= 100
    assert m["parity"]["level_top1_agreement"] >= 0.99 and m["parity"]["area_top1_agreement"] >= 0.99
    assert m["encoder"]["source_sha256"] and m["encoder"]["query_prefix"] == "query: "
    assert m["encoder"]["quantization"]["bits"] == 8
    assert m["training"]["data"]["train"]
    for key in ("created", "bundle_version", "taxonomy", "files"):
        assert m[key]


def test_onnx_graph_io_and_metadata(bundle_dir):
    sess = ort.InferenceSession(str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in sess.get_outputs()] == ["level_probs", "area_probs"]
    meta = sess.get_modelmeta().custom_metadata_map
    labels = json.loads((bundle_dir / "labels.json").read_text())
    assert json.loads(meta["jobtitles.levels"]) == labels["levels"]
    assert json.loads(meta["jobtitles.areas"]) == labels["areas"]


def test_model_card_written_beside_the_bundle(bundle_dir):
    card = (bundle_dir / "README.md").read_text()
    assert "Parity" in card and "Training data" in card
