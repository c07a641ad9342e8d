"""Graph quantization: low-bit embedding rows and int8 MatMuls with per-row activation scales."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from jobtitles.export.quantize import quantize_embedding_rows, quantize_matmuls_per_row  # noqa: E402


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _embedding_model(table):
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["out"], name="emb", axis=0)], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "s", table.shape[1]])],
        [numpy_helper.from_array(table, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("bits", [8, 4])
def test_embedding_rows_round_trip_within_half_a_step(bits):
    rng = np.random.default_rng(0)
    table = (rng.normal(size=(1500, 128)) * rng.uniform(0.01, 2, size=(1500, 1))).astype(np.float32)
    model = _embedding_model(table)
    assert quantize_embedding_rows(model, bits=bits, group_size=64) == ["table"]
    ids = np.array([[0, 7, 1499], [3, 3, 42]], dtype=np.int64)
    got = _session(model).run(None, {"ids": ids})[0]
    want = table[ids]
    span = table.max(1) - table.min(1) if bits == 4 else 2 * np.abs(table).max(1)
    step = span / (15 if bits == 4 else 254)
    assert np.all(np.abs(got - want) <= step[ids][..., None] / 2 + 1e-6)
    # the packed 4-bit table takes half the bytes of int8
    stored = sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer if i.name.startswith("table_"))
    assert stored < table.size * (0.6 if bits == 4 else 1.1)


def _matmul_model(w):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/encoder/mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", w.shape[1]])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_matmul_is_close_and_each_row_is_independent_of_its_batch():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(96, 24)).astype(np.float32)
    model = _matmul_model(w)
    assert quantize_matmuls_per_row(model) == (1, 0)
    sess = _session(model)
    x = rng.normal(size=(2, 5, 96)).astype(np.float32)
    got = sess.run(None, {"x": x})[0]
    want = x @ w
    assert got.shape == want.shape
    assert np.abs(got - want).max() / np.abs(want).max() < 0.02
    # a huge neighbour (other title in the batch) must not change this title's numbers at all
    loud = x.copy()
    loud[1] *= 1000
    assert np.array_equal(sess.run(None, {"x": loud})[0][0], got[0])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_int8_matmul_is_exact_integer_arithmetic_on_this_cpu(sign):
    """The int8 graph computes exactly the integer dot products of its codes, also where uint8 × int8
    kernels saturate (CPUs without VNNI: same-sign activations and weights at full scale)."""
    rng = np.random.default_rng(2)
    w = (sign * rng.uniform(0.5, 1.0, size=(128, 16))).astype(np.float32)
    w[:, 0] = 1.0
    model = _matmul_model(w)
    quantize_matmuls_per_row(model)
    x = rng.uniform(0.5, 1.0, size=(1, 3, 128)).astype(np.float32)
    x[0, 0] = 1.0  # every activation code at the top of its range
    got = _session(model).run(None, {"x": x})[0]
    s_x = np.abs(x).max(-1, keepdims=True) / 127
    q_x = np.round(x / s_x)
    s_w = np.abs(w).max(0, keepdims=True) / 127
    q_w = np.round(w / s_w)
    want = (q_x @ q_w) * s_x * s_w
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_excluded_matmuls_stay_fp32():
    w = np.ones((96, 4), np.float32)
    model = _matmul_model(w)
    assert quantize_matmuls_per_row(model, exclude=r"^/encoder/") == (0, 1)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
