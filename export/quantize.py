"""Quantize an exported fp32 graph: packed low-bit embedding rows and int8 MatMuls with per-row activations.

Two rewrites, both plain ONNX graph surgery on the exported model (no calibration data):

* :func:`quantize_embedding_rows` stores each large ``Gather`` table (the word
  embeddings) row by row, in 8 or 4 bits with a per-row scale (and, for 4 bits, a
  per-row offset), and dequantizes only the rows a batch looks up.
* :func:`quantize_matmuls_per_row` turns every ``MatMul`` with a constant weight into
  ``QuantizeLinear`` → ``MatMulIntegerToFloat`` → ``Mul``: weights in int8 with one
  scale per output column, activations quantized on the fly with **one scale per
  row** (one token of one title). A title's numbers therefore never depend on the
  other titles in its batch, unlike onnxruntime's dynamic quantization (one scale per
  tensor, i.e. per batch), and the MatMuls run on the CPU's int8 dot-product units.

Measured choices are in the README ("Quantization"); this module needs only ``onnx`` and
``numpy`` (no torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class QuantizationInfo:
    """What was quantized and how, for the manifest."""

    embeddings: str
    matmul: str
    embedding_bits: int
    matmul_bits: int
    n_matmuls: int
    n_fp32_matmuls: int
    head: str
    note: str


def _const(graph_inits: list, name: str, value: np.ndarray) -> str:
    graph_inits.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def quantize_embedding_rows(model: onnx.ModelProto, bits: int = 8, min_rows: int = 1000, group_size: int = 64
                            ) -> list[str]:
    """Store large Gather tables row-wise in ``bits`` (8: symmetric int8; 4: two codes per byte).

    8 bits: ``Cast(Gather(q)) * Gather(scale)``, relative error per row below 1/254.
    4 bits: asymmetric per group of ``group_size`` columns of a row (``min + code * step``,
    codes 0–15, fp16 min and step), two codes packed per byte and unpacked with
    ``BitShift`` after the lookup; only the rows a batch looks up are dequantized.
    Returns the names of the tables rewritten.
    """
    if bits not in (4, 8):
        raise ValueError(f"embedding bits must be 4 or 8, not {bits}")
    inits = {i.name: i for i in model.graph.initializer}
    added: list = []
    new_nodes = []
    done = []
    for node in model.graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if (table is None or table.data_type != TensorProto.FLOAT or len(table.dims) != 2
                or table.dims[0] < min_rows or (bits == 4 and (table.dims[1] % group_size or group_size % 2))):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(table).astype(np.float32)
        base, ids, out, name = table.name, node.input[1], node.output[0], node.name or node.output[0]
        model.graph.initializer.remove(table)
        if bits == 8:
            q, scale = _symmetric_int8(w, axis=1)
            _const(added, base + "_int8", q)
            _const(added, base + "_scale", scale)
            new_nodes += [
                helper.make_node("Gather", [base + "_int8", ids], [out + "_q"], name=name + "_q", axis=0),
                helper.make_node("Gather", [base + "_scale", ids], [out + "_s"], name=name + "_s", axis=0),
                helper.make_node("Cast", [out + "_q"], [out + "_f"], name=name + "_cast", to=TensorProto.FLOAT),
                helper.make_node("Mul", [out + "_f", out + "_s"], [out], name=name + "_dq"),
            ]
        else:
            rows, dim = w.shape
            groups = dim // group_size
            wg = w.reshape(rows, groups, group_size)
            lo = wg.min(axis=2).astype(np.float16)
            step = ((wg.max(axis=2) - lo.astype(np.float32)) / 15.0).astype(np.float16)
            step[step == 0] = 1.0
            lo32, step32 = lo.astype(np.float32)[..., None], step.astype(np.float32)[..., None]
            codes = np.clip(np.round((wg - lo32) / step32), 0, 15).astype(np.uint8).reshape(rows, dim)
            packed = (codes[:, 0::2] << 4) | codes[:, 1::2]  # high nibble = even column
            _const(added, base + "_u4", packed.astype(np.uint8))
            _const(added, base + "_step", step)
            _const(added, base + "_lo", lo)
            _const(added, base + "_four", np.array(4, np.uint8))
            _const(added, base + "_unsq", np.array([-1], np.int64))
            _const(added, base + "_gshape", np.array([0, 0, groups, group_size], np.int64))
            _const(added, base + "_shape", np.array([0, 0, dim], np.int64))
            new_nodes += [
                helper.make_node("Gather", [base + "_u4", ids], [out + "_p"], name=name + "_p", axis=0),
                helper.make_node("BitShift", [out + "_p", base + "_four"], [out + "_hi"], name=name + "_hi",
                                 direction="RIGHT"),
                # low nibble: shift left then right (BitwiseAnd needs opset 18; the export is opset 17)
                helper.make_node("BitShift", [out + "_p", base + "_four"], [out + "_sh"], name=name + "_sh",
                                 direction="LEFT"),
                helper.make_node("BitShift", [out + "_sh", base + "_four"], [out + "_lo4"], name=name + "_lo4",
                                 direction="RIGHT"),
                helper.make_node("Unsqueeze", [out + "_hi", base + "_unsq"], [out + "_hi1"], name=name + "_hi1"),
                helper.make_node("Unsqueeze", [out + "_lo4", base + "_unsq"], [out + "_lo1"], name=name + "_lo1"),
                helper.make_node("Concat", [out + "_hi1", out + "_lo1"], [out + "_pair"], name=name + "_pair", axis=-1),
                helper.make_node("Reshape", [out + "_pair", base + "_gshape"], [out + "_codes"], name=name + "_codes"),
                helper.make_node("Cast", [out + "_codes"], [out + "_f"], name=name + "_cast", to=TensorProto.FLOAT),
                helper.make_node("Gather", [base + "_step", ids], [out + "_s16"], name=name + "_s", axis=0),
                helper.make_node("Gather", [base + "_lo", ids], [out + "_m16"], name=name + "_m", axis=0),
                helper.make_node("Cast", [out + "_s16"], [out + "_s32"], name=name + "_s32", to=TensorProto.FLOAT),
                helper.make_node("Cast", [out + "_m16"], [out + "_m32"], name=name + "_m32", to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", [out + "_s32", base + "_unsq"], [out + "_s"], name=name + "_s1"),
                helper.make_node("Unsqueeze", [out + "_m32", base + "_unsq"], [out + "_m"], name=name + "_m1"),
                helper.make_node("Mul", [out + "_f", out + "_s"], [out + "_fs"], name=name + "_scale"),
                helper.make_node("Add", [out + "_fs", out + "_m"], [out + "_g"], name=name + "_dq"),
                helper.make_node("Reshape", [out + "_g", base + "_shape"], [out], name=name + "_flat"),
            ]
        done.append(base)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    model.graph.initializer.extend(added)
    return done


def _symmetric_int8(w: np.ndarray, axis: int, levels: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes in ``[-levels, levels]`` and fp32 scales (``max|w| / levels`` over
    ``axis``, kept as a size-1 axis)."""
    scale = (np.abs(w).max(axis=axis, keepdims=True) / levels).astype(np.float32)
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -levels, levels).astype(np.int8), scale


@dataclass(frozen=True)
class MatMulScheme:
    """How activations and weights of the int8 MatMuls are coded.

    Activations: symmetric per row in ``[-act_levels, act_levels]``, stored as uint8 shifted by
    ``act_zero_point`` (int8 when it is 0). Weights: symmetric per output column in
    ``[-weight_levels, weight_levels]``, stored as uint8 shifted by ``weight_zero_point`` (int8
    when it is 0).

    The default, uint8 × uint8 with both zero points at 128, is exact on every x86 CPU: on CPUs
    without VNNI (AVX2 or AVX-512 without VNNI, e.g. AMD Zen 3) onnxruntime computes uint8 × int8
    with ``vpmaddubsw``, which saturates pairs of products at 16 bits and corrupts the results,
    while uint8 × uint8 goes through an exact 16-bit kernel; with VNNI or AMX, onnxruntime runs
    uint8 × uint8 on its uint8 × int8 kernel, so the default costs nothing there. The stored bytes
    are the same size either way. Measured in the README ("Quantization").
    """

    act_levels: int = 127
    act_zero_point: int = 128
    weight_levels: int = 127
    weight_zero_point: int = 128

    @property
    def act_dtype(self) -> type:
        return np.uint8 if self.act_zero_point else np.int8

    @property
    def weight_dtype(self) -> type:
        return np.uint8 if self.weight_zero_point else np.int8


def quantize_matmuls_per_row(model: onnx.ModelProto, exclude: str | None = None, min_k: int = 64,
                             smooth: dict[str, np.ndarray] | None = None,
                             scheme: MatMulScheme | None = None) -> tuple[int, int]:
    """Rewrite constant-weight MatMuls to int8 with per-row dynamic activation scales.

    For an input ``x`` of shape ``[..., K]`` (shared by all MatMuls that read it, e.g. Q, K
    and V) the graph computes once: ``x2 = reshape(x, [-1, K])``, ``s = max|x2| / 127`` per
    row, ``q = QuantizeLinear(x2, s, 128)`` (uint8, zero point 128 = symmetric int8 shifted;
    coding per ``scheme``, see :class:`MatMulScheme`). Each MatMul then becomes
    ``reshape(MatMulIntegerToFloat(q, Wq, 1, w_scale, 128, 128) * s, [..., N])``.
    MatMuls whose node name matches the regular expression ``exclude`` stay fp32.
    ``smooth`` maps an input name to per-channel factors ``f`` (SmoothQuant): the graph
    quantizes ``x / f`` and the weights become ``f[:, None] * W`` — the same product, with
    the activations' outlier channels moved into the weights, which int8 handles better.
    Returns (MatMuls quantized, MatMuls left in fp32).
    """
    smooth = smooth or {}
    scheme = scheme or MatMulScheme()
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    added: list = []
    nodes = []
    per_input: dict[str, tuple[str, str, str]] = {}
    _const(added, "rowq/inv127", np.array(1 / scheme.act_levels, np.float32))
    _const(added, "rowq/eps", np.array(1e-12, np.float32))
    _const(added, "rowq/zp_a", np.array(scheme.act_zero_point, scheme.act_dtype))
    _const(added, "rowq/zp_b", np.array(scheme.weight_zero_point, scheme.weight_dtype))
    _const(added, "rowq/one", np.array(1.0, np.float32))
    _const(added, "rowq/start", np.array([0], np.int64))
    _const(added, "rowq/minus1", np.array([-1], np.int64))
    n_q = n_skip = 0
    for node in graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if w is None or len(w.dims) != 2 or w.dims[0] < min_k:
            nodes.append(node)
            continue
        if exclude and re.search(exclude, node.name):
            nodes.append(node)
            n_skip += 1
            continue
        k, n = w.dims
        x = node.input[0]
        wf = numpy_helper.to_array(w).astype(np.float32)
        if x in smooth:
            wf = wf * smooth[x][:, None].astype(np.float32)
        wq, ws = _symmetric_int8(wf, axis=0, levels=scheme.weight_levels)  # one scale per output column
        wq = (wq.astype(np.int16) + scheme.weight_zero_point).astype(scheme.weight_dtype)
        ws = ws.reshape(-1)
        graph.initializer.remove(w)
        inits.pop(w.name)
        _const(added, w.name + "/q8", wq)
        _const(added, w.name + "/scale", ws)
        if x not in per_input:
            p = f"rowq/{x}"
            _const(added, p + "/shape2d", np.array([-1, k], np.int64))
            nodes.append(helper.make_node("Reshape", [x, p + "/shape2d"], [p + "/x2"], name=p + "/flat"))
            x2 = p + "/x2"
            if x in smooth:
                _const(added, p + "/inv_f", (1.0 / smooth[x]).astype(np.float32))
                nodes.append(helper.make_node("Mul", [p + "/x2", p + "/inv_f"], [p + "/x2s"], name=p + "/smooth"))
                x2 = p + "/x2s"
            nodes += [
                helper.make_node("Abs", [x2], [p + "/abs"], name=p + "/abs"),
                helper.make_node("ReduceMax", [p + "/abs"], [p + "/max"], name=p + "/max", axes=[-1], keepdims=1),
                helper.make_node("Max", [p + "/max", "rowq/eps"], [p + "/maxc"], name=p + "/maxc"),
                helper.make_node("Mul", [p + "/maxc", "rowq/inv127"], [p + "/s"], name=p + "/s"),
                helper.make_node("Reshape", [p + "/s", "rowq/minus1"], [p + "/s1"], name=p + "/s1"),
                helper.make_node("Shape", [p + "/s1"], [p + "/rows"], name=p + "/rows"),
                helper.make_node("Expand", ["rowq/zp_a", p + "/rows"], [p + "/zp"], name=p + "/zp"),
                helper.make_node("QuantizeLinear", [x2, p + "/s1", p + "/zp"], [p + "/q"], name=p + "/q",
                                 axis=0),
                helper.make_node("Shape", [x], [p + "/shape"], name=p + "/shape"),
                helper.make_node("Slice", [p + "/shape", "rowq/start", "rowq/minus1"], [p + "/lead"],
                                 name=p + "/lead"),
            ]
            per_input[x] = (p + "/q", p + "/s", p + "/lead")
        q, s, lead = per_input[x]
        out, name = node.output[0], node.name or node.output[0]
        _const(added, out + "/n", np.array([n], np.int64))
        nodes += [
            helper.make_node("MatMulIntegerToFloat", [q, w.name + "/q8", "rowq/one", w.name + "/scale",
                                                      "rowq/zp_a", "rowq/zp_b"], [out + "/f"], name=name + "/int8",
                             domain=MS_DOMAIN),
            helper.make_node("Mul", [out + "/f", s], [out + "/fs"], name=name + "/rowscale"),
            helper.make_node("Concat", [lead, out + "/n"], [out + "/shape"], name=name + "/shape", axis=0),
            helper.make_node("Reshape", [out + "/fs", out + "/shape"], [out], name=name + "/unflat"),
        ]
        n_q += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return n_q, n_skip


def quantize_gemm_weights(model: onnx.ModelProto, pattern: str = r"^/head/", min_size: int = 4096) -> int:
    """Store the constant weights of ``Gemm`` nodes matching ``pattern`` as int8 with one scale per
    output row, dequantized by ``Cast`` and ``Mul`` on constants (onnxruntime folds them into fp32
    once, when the session is created: smaller file, same fp32 compute). Returns how many."""
    inits = {i.name: i for i in model.graph.initializer}
    added: list = []
    nodes = []
    n = 0
    for node in model.graph.node:
        w = inits.get(node.input[1]) if node.op_type == "Gemm" and re.search(pattern, node.name) else None
        if w is None or len(w.dims) != 2 or w.dims[0] * w.dims[1] < min_size:
            nodes.append(node)
            continue
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        wf = numpy_helper.to_array(w).astype(np.float32)
        axis = 1 if trans_b else 0  # reduce over the input dimension: one scale per output unit
        q, scale = _symmetric_int8(wf, axis)
        model.graph.initializer.remove(w)
        inits.pop(w.name)
        _const(added, w.name + "/int8", q)
        _const(added, w.name + "/scale", scale)
        nodes += [
            helper.make_node("Cast", [w.name + "/int8"], [w.name + "/f"], name=w.name + "/cast",
                             to=TensorProto.FLOAT),
            helper.make_node("Mul", [w.name + "/f", w.name + "/scale"], [w.name], name=w.name + "/dq"),
        ]
        nodes.append(node)
        n += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(added)
    return n


def matmul_inputs(model: onnx.ModelProto, exclude: str | None = None, min_k: int = 64) -> dict[str, list[str]]:
    """The activation inputs of the constant-weight MatMuls that :func:`quantize_matmuls_per_row`
    would rewrite, each with the names of the weights that read it."""
    inits = {i.name: i for i in model.graph.initializer}
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if w is None or len(w.dims) != 2 or w.dims[0] < min_k or (exclude and re.search(exclude, node.name)):
            continue
        out.setdefault(node.input[0], []).append(w.name)
    return out


def activation_max(model: onnx.ModelProto, names: list[str], feeds: list[dict[str, np.ndarray]]
                   ) -> dict[str, np.ndarray]:
    """Per-channel max |x| of the tensors ``names`` over calibration batches ``feeds`` (runs the
    fp32 model with those tensors exposed as extra outputs)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in known)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    acc: dict[str, np.ndarray] = {}
    for feed in feeds:
        mask = feed["attention_mask"].reshape(-1).astype(bool)
        for name, value in zip(names, sess.run(names, feed)):
            flat = np.abs(value.reshape(-1, value.shape[-1]))
            if flat.shape[0] == mask.shape[0]:
                flat = flat[mask]  # padding tokens do not count
            m = flat.max(axis=0)
            acc[name] = m if name not in acc else np.maximum(acc[name], m)
    return acc


def smoothing_factors(model: onnx.ModelProto, act_max: dict[str, np.ndarray], groups: dict[str, list[str]],
                      alpha: float = 0.5) -> dict[str, np.ndarray]:
    """SmoothQuant factors ``f_j = max|x_j|^alpha / max|W_j|^(1-alpha)`` per input channel
    (``W_j``: row j of every weight that reads the input)."""
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for x, weights in groups.items():
        if x not in act_max:
            continue
        w_max = np.max([np.abs(numpy_helper.to_array(inits[w])).max(axis=1) for w in weights], axis=0)
        f = np.power(np.maximum(act_max[x], 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1 - alpha)
        out[x] = np.clip(f, 1e-2, 1e2).astype(np.float32)
    return out


def quantize_model(fp32_path: str | Path, out_path: str | Path, calibration: list[dict[str, np.ndarray]],
                   embedding_bits: int = 4, group_size: int = 64, alpha: float = 0.7,
                   exclude: str = r"^/head/", scheme: MatMulScheme | None = None) -> QuantizationInfo:
    """Quantize an exported model file: word embeddings row-wise in ``embedding_bits`` (4: in groups
    of ``group_size``), every encoder MatMul with a constant weight in int8 with per-row activation
    scales after SmoothQuant factors (``alpha``) calibrated on the batches ``calibration``; nodes
    matching ``exclude`` (a regular expression; default: the small classification head) stay fp32."""
    model = onnx.load(str(fp32_path))
    groups = matmul_inputs(model, exclude)
    smooth = smoothing_factors(model, activation_max(model, list(groups), calibration), groups, alpha)
    quantize_embedding_rows(model, bits=embedding_bits, group_size=group_size)  # word embeddings
    quantize_embedding_rows(model, bits=8, min_rows=128)  # position embeddings (128 rows: limit_positions)
    n_q, _ = quantize_matmuls_per_row(model, exclude, smooth=smooth, scheme=scheme)
    n_head = quantize_gemm_weights(model, exclude)
    weights = {i.name for i in model.graph.initializer}
    n_fp32 = sum(1 for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights)
    onnx.save(model, str(out_path))
    emb = (f"int4 asymmetric per group of {group_size} (fp16 step and offset), two codes per byte"
           if embedding_bits == 4 else "int8 symmetric, one fp32 scale per row")
    return QuantizationInfo(
        embeddings=emb,
        matmul=f"int8 weights per output column × int8 activations per row (stored as uint8 × uint8, zero "
               f"points 128: exact on CPUs without VNNI), SmoothQuant alpha {alpha} "
               f"calibrated on {sum(len(f['input_ids']) for f in calibration)} training titles",
        embedding_bits=embedding_bits, matmul_bits=8, n_matmuls=n_q, n_fp32_matmuls=n_fp32,
        head=f"{n_head} weight matrices stored int8 per output unit, computed in fp32",
        note="per-row activation scales keep each title independent of its batch; static (calibrated) QDQ "
             "and per-tensor dynamic quantization lost accuracy on the dev set (README, Quantization)")
