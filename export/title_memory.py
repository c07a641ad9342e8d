"""Write a title memory (:class:`jobtitles.train.memory.TitleMemory`) into an exported graph.

The graph must output ``embedding`` and ``area_probs``; the head's area output is renamed and is
pooled with the memory's vote, whose result takes the name ``area_probs``, so the runtime reads the
same outputs. The packed sign bits are stored as they are (0.84 MB for 17,485 titles) and unpacked by a constant
``Gather`` that onnxruntime folds once when the session is built. The similarities are a
``MatMulInteger`` of the input's quantised centred embedding, shifted to uint8 [1, 255] (zero point
128), against the int8 memory: exact, since no pair sum (at most 2 x 255) can saturate the kernel's
16-bit accumulation, and onnxruntime's fast uint8 x int8 kernel (15 times faster than its int8 x int8
one for a single title, 0.2 ms against 3 ms for 17,530 titles here).
:meth:`TitleMemory.blend` is the same computation in numpy (``tests/test_title_memory.py``).
"""

from __future__ import annotations

import numpy as np

from jobtitles.train.memory import MIN_PROB, QUERY_LEVELS, TitleMemory

MEMORY_AREA_INPUT = "head_area_probs"  # the head's own area probabilities, once the memory is attached
OUTPUT_TEMPERATURE = "memory/output_temperature"


def set_output_temperature(model, temperature: float) -> None:
    """Change the temperature of a graph's attached memory, in place."""
    from onnx import numpy_helper

    for i, init in enumerate(model.graph.initializer):
        if init.name == OUTPUT_TEMPERATURE:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array(temperature, dtype=np.float32),
                                                                        OUTPUT_TEMPERATURE))
            return
    raise ValueError("the graph carries no title memory")


def attach_memory(model, memory: TitleMemory, embedding: str = "embedding", area: str = "area_probs") -> None:
    """Blend ``memory``'s vote into the graph's ``area`` output, in place (an ``onnx.ModelProto`` whose
    graph outputs ``embedding``, the L2-normalised sentence embedding, and ``area``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if {embedding, area} - {o.name for o in graph.output}:
        raise ValueError(f"the graph must output {embedding!r} and {area!r} to take a title memory")
    if MEMORY_AREA_INPUT in {init.name for init in graph.initializer} | {o for n in graph.node for o in n.output}:
        raise ValueError("this graph already carries a title memory")
    for node in graph.node:  # the head's area output becomes the pooling's input
        node.output[:] = [MEMORY_AREA_INPUT if o == area else o for o in node.output]
        node.input[:] = [MEMORY_AREA_INPUT if i == area else i for i in node.input]
    s = memory.settings
    lut = (np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.int8) * 2 - 1)
    consts = {
        "memory/codes": memory.codes, "memory/labels": memory.labels.astype(np.uint8 if memory.n_areas <= 256
                                                                            else np.int64),
        "memory/centre": memory.centre.astype(np.float32), "memory/bit_signs": lut,
        "memory/shape": np.array([len(memory.codes), memory.dim], dtype=np.int64),
        "memory/levels": np.array(QUERY_LEVELS, dtype=np.float32),
        "memory/sqrt_dim": np.array(np.sqrt(memory.dim), dtype=np.float32),
        "memory/k": np.array([s.k], dtype=np.int64),
        "memory/temperature": np.array(s.temperature, dtype=np.float32),
        "memory/depth": np.array([memory.n_areas], dtype=np.int64),
        "memory/onehot_values": np.array([0.0, 1.0], dtype=np.float32),
        "memory/axis1": np.array([1], dtype=np.int64), "memory/axis2": np.array([2], dtype=np.int64),
        "memory/one": np.array(1.0, dtype=np.float32), "memory/query_zero": np.array(128, dtype=np.uint8),
        "memory/zero_shift": np.array(128.0, dtype=np.float32),
        "memory/head_share": np.array(1.0 - s.weight, dtype=np.float32),
        "memory/min_prob": np.array(MIN_PROB, dtype=np.float32),
        OUTPUT_TEMPERATURE: np.array(memory.output_temperature, dtype=np.float32),
        "memory/vote_share": np.array(s.weight, dtype=np.float32),
        "memory/vote_floor": np.array(s.vote_floor, dtype=np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, name=k) for k, v in consts.items())
    n = helper.make_node
    graph.node.extend([
        # the memory's -1 / +1 matrix, [dim, n]: constant, folded when the session is built
        n("Cast", ["memory/codes"], ["memory/code_ids"], to=TensorProto.INT32),
        n("Gather", ["memory/bit_signs", "memory/code_ids"], ["memory/bits"]),
        n("Reshape", ["memory/bits", "memory/shape"], ["memory/signs"]),
        n("Transpose", ["memory/signs"], ["memory/signs_t"], perm=[1, 0]),
        # the input's embedding around the memory's centre, quantised on its own: round(127 x / max |x|)
        n("Sub", [embedding, "memory/centre"], ["memory/centred"]),
        n("Abs", ["memory/centred"], ["memory/centred_abs"]),
        n("ReduceMax", ["memory/centred_abs"], ["memory/row_max"], axes=[1], keepdims=1),
        n("Max", ["memory/row_max", "memory/min_prob"], ["memory/row_scale"]),
        n("Div", ["memory/centred", "memory/row_scale"], ["memory/unit"]),
        n("Mul", ["memory/unit", "memory/levels"], ["memory/scaled"]),
        n("Round", ["memory/scaled"], ["memory/query_f"]),
        n("Add", ["memory/query_f", "memory/zero_shift"], ["memory/query_shifted"]),
        n("Cast", ["memory/query_shifted"], ["memory/query"], to=TensorProto.UINT8),
        # cosine between that vector and each memory title's signs
        n("MatMulInteger", ["memory/query", "memory/signs_t", "memory/query_zero"], ["memory/dot"]),
        n("Cast", ["memory/dot"], ["memory/dot_f"], to=TensorProto.FLOAT),
        n("ReduceL2", ["memory/query_f"], ["memory/query_norm"], axes=[1], keepdims=1),
        n("Max", ["memory/query_norm", "memory/one"], ["memory/query_norm_floor"]),
        n("Mul", ["memory/query_norm_floor", "memory/sqrt_dim"], ["memory/sim_norm"]),
        n("Div", ["memory/dot_f", "memory/sim_norm"], ["memory/sim"]),
        # the k nearest titles vote with softmax(sim / T) for their areas
        n("TopK", ["memory/sim", "memory/k"], ["memory/near_sim", "memory/near"], axis=-1, largest=1, sorted=1),
        n("Div", ["memory/near_sim", "memory/temperature"], ["memory/near_logits"]),
        n("Softmax", ["memory/near_logits"], ["memory/near_w"], axis=-1),
        n("Gather", ["memory/labels", "memory/near"], ["memory/near_labels_raw"]),
        n("Cast", ["memory/near_labels_raw"], ["memory/near_labels"], to=TensorProto.INT64),
        n("OneHot", ["memory/near_labels", "memory/depth", "memory/onehot_values"], ["memory/near_onehot"], axis=-1),
        n("Unsqueeze", ["memory/near_w", "memory/axis2"], ["memory/near_w3"]),
        n("Mul", ["memory/near_onehot", "memory/near_w3"], ["memory/weighted"]),
        n("ReduceSum", ["memory/weighted", "memory/axis1"], ["memory/vote"], keepdims=0),
        # log-linear pooling with the head: (1 - w) log(max(head, min_prob)) + w log(vote + floor)
        n("Max", [MEMORY_AREA_INPUT, "memory/min_prob"], ["memory/head_floor"]),
        n("Log", ["memory/head_floor"], ["memory/head_log"]),
        n("Mul", ["memory/head_log", "memory/head_share"], ["memory/head_part"]),
        n("Add", ["memory/vote", "memory/vote_floor"], ["memory/vote_floored"]),
        n("Log", ["memory/vote_floored"], ["memory/vote_log"]),
        n("Mul", ["memory/vote_log", "memory/vote_share"], ["memory/vote_part"]),
        n("Add", ["memory/head_part", "memory/vote_part"], ["memory/pooled"]),
        # back to probabilities at the output temperature
        n("Div", ["memory/pooled", OUTPUT_TEMPERATURE], ["memory/pooled_logits"]),
        n("Softmax", ["memory/pooled_logits"], [area], axis=-1),
    ])
    onnx.checker.check_model(model)
