"""The int8 weight recoding for VNNI CPUs: when it is chosen, that it keeps every integer, when it refuses."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from jobtitles import Classifier
from jobtitles.bundle import Bundle
from jobtitles.classifier import OnnxSession, encode_batch
from jobtitles.int8_kernels import choose_kernel, cpu_flags, recode_signed_weights

from conftest import write_identity_model

REPO = Path(__file__).resolve().parents[1]


def recoded(model: bytes) -> bytes | None:
    """``model`` recoded, or None when recode_signed_weights refuses (then it must leave it untouched)."""
    buf = bytearray(model)
    if recode_signed_weights(buf):
        return bytes(buf)
    assert buf == model
    return None


def test_the_kernel_follows_the_cpu(tmp_path):
    assert choose_kernel("auto", frozenset({"avx2", "avx512_vnni"}), "x86_64") == "u8s8"
    assert choose_kernel("auto", frozenset({"avx2", "avx_vnni"}), "AMD64") == "u8s8"
    assert choose_kernel("auto", frozenset({"avx2", "avx512f"}), "x86_64") == "u8u8"  # saturates without VNNI
    assert choose_kernel("auto", frozenset({"avx512_vnni"}), "aarch64") == "u8u8"
    assert choose_kernel("u8s8", frozenset(), "x86_64") == "u8s8"
    with pytest.raises(ValueError, match="u8u8"):
        choose_kernel("fast")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_vnni\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_recoding_keeps_every_weight_integer():
    path = Bundle.load().model_path
    before = onnx.load(str(path))
    after = onnx.ModelProto.FromString(recoded(path.read_bytes()))
    onnx.checker.check_model(after)
    old = {i.name: numpy_helper.to_array(i) for i in before.graph.initializer}
    new = {i.name: numpy_helper.to_array(i) for i in after.graph.initializer}
    assert len(before.graph.node) == len(after.graph.node)
    pairs = [(a, b) for a, b in zip(before.graph.node, after.graph.node) if a.op_type == "MatMulIntegerToFloat"]
    assert len(pairs) >= 72  # every encoder MatMul
    for a, b in pairs:
        w_old, w_new = old[a.input[1]], new[b.input[1]]
        z_old, z_new = old[a.input[5]], new[b.input[5]]
        assert w_old.dtype == np.uint8 and w_new.dtype == np.int8 and z_new.dtype == np.int8
        np.testing.assert_array_equal(w_new.astype(np.int16), w_old.astype(np.int16) - 128)
        np.testing.assert_array_equal(w_new.astype(np.int16) - z_new, w_old.astype(np.int16) - z_old)
    recoded_names = {b.input[1] for _, b in pairs} | {b.input[5] for _, b in pairs}
    for name, value in old.items():  # nothing else changed
        if name not in recoded_names:
            assert new[name].dtype == value.dtype
            np.testing.assert_array_equal(new[name], value)


def test_shared_or_missing_tensors_are_not_recoded():
    w = onnx.numpy_helper.from_array(np.full((2, 2), 130, np.uint8), "w")
    zp = onnx.numpy_helper.from_array(np.array(128, np.uint8), "zp")
    sa = onnx.numpy_helper.from_array(np.array(1.0, np.float32), "sa")
    sb = onnx.numpy_helper.from_array(np.array(1.0, np.float32), "sb")
    za = onnx.numpy_helper.from_array(np.array(0, np.uint8), "za")

    def model(extra_nodes, zero_point="zp"):
        node = onnx.helper.make_node("MatMulIntegerToFloat", ["x", "w", "sa", "sb", "za", zero_point], ["y"],
                                     domain="com.microsoft")
        graph = onnx.helper.make_graph(
            [node, *extra_nodes], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 2])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])], [w, zp, sa, sb, za])
        return onnx.helper.make_model(graph).SerializeToString()
    assert recoded(model([])) is not None
    # the weight zero point is also used elsewhere (here as the activation zero point): leave the graph alone
    shared = onnx.helper.make_node("Identity", ["zp"], ["zp_copy"])
    assert recoded(model([shared])) is None
    assert recoded(model([], zero_point="")) is None


@pytest.mark.skipif(choose_kernel("auto") != "u8s8",
                    reason="this CPU has no VNNI: its uint8 x int8 kernel saturates, so the recoding is not used here")
def test_recoded_graph_gives_identical_outputs():
    bundle = Bundle.load()
    titles = [json.loads(line)["title"] for line in
              (REPO / "tests" / "data" / "dev_postings_en.jsonl").read_text(encoding="utf-8").splitlines()][:128]
    clf = Classifier(bundle, int8_kernel="u8u8")
    ids, mask = encode_batch(clf._tokenizer, titles, bundle.query_prefix, 1)
    stored = clf._session
    recoded_session = OnnxSession(bundle.model_path, int8_kernel="u8s8")
    assert (stored.int8_kernel, recoded_session.int8_kernel) == ("u8u8", "u8s8")
    for a, b in zip(stored.run(ids, mask), recoded_session.run(ids, mask)):
        np.testing.assert_array_equal(a, b)


def test_a_graph_without_int8_weights_keeps_its_coding(tmp_path):
    path = write_identity_model(tmp_path / "model.onnx")
    assert recoded(path.read_bytes()) is None
    assert OnnxSession(path, int8_kernel="u8s8").int8_kernel == "u8u8"
