"""Pick the int8 weight coding that is both exact and fast on this CPU.

The bundle stores every encoder weight as uint8 around a zero point of 128 (uint8 × uint8
MatMuls): on x86 CPUs without VNNI onnxruntime computes uint8 × int8 with ``vpmaddubsw``, whose
16-bit pair sums saturate, while its uint8 × uint8 kernel is exact there. On CPUs with VNNI
(``vpdpbusd`` accumulates in 32 bits) uint8 × int8 is exact too, and onnxruntime's uint8 × int8
kernel is much faster than its uint8 × uint8 one (measured with ``bench/run_bench.py``: a 1024³
GEMM peak of 721 against 300 GOP/s on an AMD EPYC with AVX-512 VNNI). So on such a CPU the
session is built from a copy of the graph whose weights and weight zero points are recoded as
int8: ``w - 128`` has the bit pattern of ``w ^ 0x80``, so the copy is the same file with one type
byte changed and the top bit flipped in each of those tensors — the same integers, so the same
outputs (``tests/test_int8_kernels.py``). The file is patched in place through the protobuf wire
format (no ``onnx`` package at run time; a few milliseconds).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# CPU flags (Linux /proc/cpuinfo names) whose presence makes onnxruntime's uint8 × int8 kernel exact.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
KERNELS = ("auto", "u8u8", "u8s8")
_UINT8, _INT8 = 2, 3  # onnx TensorProto.DataType


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def choose_kernel(requested: str = "auto", flags: frozenset[str] | None = None,
                  machine: str | None = None) -> str:
    """``"u8s8"`` (int8 weights) where that is exact — an x86 CPU with VNNI — else ``"u8u8"``;
    an explicit ``"u8u8"`` / ``"u8s8"`` is returned as given."""
    if requested not in KERNELS:
        raise ValueError(f"int8 kernel must be one of {', '.join(KERNELS)}, not {requested!r}")
    if requested != "auto":
        return requested
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return "u8u8"
    flags = cpu_flags() if flags is None else flags
    return "u8s8" if flags & VNNI_FLAGS else "u8u8"


# --- the protobuf wire format, just enough to find tensors and nodes in an ONNX ModelProto ---

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in ``buf[start:end]``;
    for varints the span is the varint's bytes, for length-delimited fields their payload."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, j = _varint(buf, i)
            yield number, wire, i, j
        elif wire == 2:
            size, i = _varint(buf, i)
            j = i + size
            yield number, wire, i, j
        elif wire in (1, 5):
            j = i + (8 if wire == 1 else 4)
            yield number, wire, i, j
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        i = j


@dataclass
class _Tensor:
    data_type: int = 0
    data_type_at: int = -1  # offset of the data_type varint
    raw: tuple[int, int] | None = None  # span of raw_data


@dataclass
class _Graph:
    nodes: list[tuple[str, list[str]]] = field(default_factory=list)  # (op_type, inputs)
    tensors: dict[str, _Tensor] = field(default_factory=dict)
    graph_inputs: set[str] = field(default_factory=set)


def _read_graph(buf: bytes) -> _Graph:
    graph = _Graph()
    span = next(((s, e) for n, w, s, e in _fields(buf, 0, len(buf)) if n == 7 and w == 2), None)  # ModelProto.graph
    if span is None:
        raise ValueError("no graph in the model")
    for number, wire, s, e in _fields(buf, *span):
        if wire != 2:
            continue
        if number == 1:  # GraphProto.node
            op_type, inputs = "", []
            for n, w, a, b in _fields(buf, s, e):
                if n == 1 and w == 2:
                    inputs.append(bytes(buf[a:b]).decode("utf-8"))
                elif n == 4 and w == 2:
                    op_type = bytes(buf[a:b]).decode("utf-8")
            graph.nodes.append((op_type, inputs))
        elif number == 5:  # GraphProto.initializer
            tensor, name = _Tensor(), ""
            for n, w, a, b in _fields(buf, s, e):
                if n == 2 and w == 0:
                    tensor.data_type, tensor.data_type_at = _varint(buf, a)[0], a
                elif n == 8 and w == 2:
                    name = bytes(buf[a:b]).decode("utf-8")
                elif n == 9 and w == 2:
                    tensor.raw = (a, b)
            graph.tensors[name] = tensor
        elif number == 11:  # GraphProto.input
            for n, w, a, b in _fields(buf, s, e):
                if n == 1 and w == 2:
                    graph.graph_inputs.add(bytes(buf[a:b]).decode("utf-8"))
    return graph


def recode_signed_weights(model: bytearray) -> bool:
    """Recode, in place, every uint8 weight and weight zero point of the ``MatMulIntegerToFloat``
    nodes of ``model`` (ONNX bytes) as int8. False, with ``model`` untouched, when there is nothing
    to recode or a tensor cannot be recoded safely (shared with another use, not stored as raw
    data, a graph input)."""
    graph = _read_graph(model)
    targets: set[str] = set()
    allowed_uses: set[tuple[int, int]] = set()
    for k, (op_type, inputs) in enumerate(graph.nodes):
        if op_type != "MatMulIntegerToFloat" or len(inputs) < 2:
            continue
        weight = graph.tensors.get(inputs[1])
        if weight is None or weight.data_type != _UINT8:
            continue
        if len(inputs) < 6 or not inputs[5]:
            return False  # an implicit zero point of 0 has no int8 twin
        targets.update((inputs[1], inputs[5]))
        allowed_uses.update(((k, 1), (k, 5)))
    if not targets:
        return False
    for k, (_, inputs) in enumerate(graph.nodes):
        for position, name in enumerate(inputs):
            if name in targets and (k, position) not in allowed_uses:
                return False
    tensors = [graph.tensors.get(name) for name in targets]
    if any(t is None or t.data_type != _UINT8 or t.raw is None for t in tensors) or targets & graph.graph_inputs:
        return False
    codes = np.frombuffer(model, dtype=np.uint8)
    for tensor in tensors:
        model[tensor.data_type_at] = _INT8  # 2 -> 3: a one-byte varint either way
        codes[tensor.raw[0]:tensor.raw[1]] ^= 0x80  # uint8 w -> int8 w - 128
    return True
