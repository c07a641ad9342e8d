"""Rewrite a bundle's graph with onnxruntime's fused transformer operators (an experiment; not used).

    .venv/bin/python bench/contrib_fusions.py [--bundle models/default] --which mha,sln,bg --out DIR
    .venv/bin/python bench/compare_bundles.py --model models/default --model DIR --titles 1000 --rounds 5

Writes a copy of the bundle whose ``model.onnx`` uses, per ``--which``:

- ``mha``: ``com.microsoft.MultiHeadAttention`` for each attention core (the query / key / value
  bias additions, head reshapes and transposes, scaled scores, padding mask, softmax and the
  weighted sum), fed the padding mask as int32;
- ``sln``: ``com.microsoft.SkipLayerNormalization`` for bias + residual addition + LayerNorm;
- ``bg``: ``com.microsoft.BiasGelu`` for bias addition + exact (erf) GELU.

The patterns are found by structure, not by name. Then prints how often the rewritten bundle's
answers differ from the original's on the dev titles (``tests/data``; titles only). Measured on 7
December 2026 (README, "Fused operators"): each fusion was slower than the graph it replaced.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
FUSIONS = ("mha", "sln", "bg")


class Graph:
    """Lookups over an ONNX graph: producers, consumers and constant values."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model, self.g = model, model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        self.consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                            for n in self.g.node if n.op_type == "Constant" and n.attribute[0].name == "value"})
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def made_by(self, name: str, op: str):
        """The node of type ``op`` that produces ``name``, or None."""
        n = self.producer.get(name)
        return n if n is not None and n.op_type == op else None

    def only_consumer(self, name: str, op: str):
        """The single consumer of ``name`` if it is of type ``op``, else None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def bias_add(self, name: str) -> tuple[str, str] | None:
        """``name = Add(x, b)`` with ``b`` a constant vector: ``(x, b)``, else None."""
        n = self.made_by(name, "Add")
        if n is None:
            return None
        for a, b in ((0, 1), (1, 0)):
            v = self.consts.get(n.input[a])
            if v is not None and v.ndim == 1:
                return n.input[b], n.input[a]
        return None


def _attention(gr: Graph, softmax, new_nodes: list, mask: str) -> bool:
    """Replace the attention core around ``softmax`` by one MultiHeadAttention node."""
    add = gr.made_by(softmax.input[0], "Add")
    mul = add and gr.made_by(add.input[0], "Mul")
    qk = mul and gr.made_by(mul.input[0], "MatMul")
    av = gr.only_consumer(softmax.output[0], "MatMul")
    if qk is None or av is None or gr.consts.get(mul.input[1]) is None:
        return False
    tq, tk, tv = gr.made_by(qk.input[0], "Transpose"), gr.made_by(qk.input[1], "Transpose"), \
        gr.made_by(av.input[1], "Transpose")
    rq, rk, rv = (t and gr.made_by(t.input[0], "Reshape") for t in (tq, tk, tv))
    qkv = [r and gr.bias_add(r.input[0]) for r in (rq, rk, rv)]
    to = gr.only_consumer(av.output[0], "Transpose")
    ro = to and gr.only_consumer(to.output[0], "Reshape")
    shape = rq and gr.made_by(rq.input[1], "Concat")
    if None in qkv or ro is None or shape is None or gr.consts.get(shape.input[3]) is None:
        return False
    head_size = int(gr.consts[shape.input[3]].reshape(-1)[0])
    bias = np.concatenate([gr.consts[b] for _, b in qkv]).astype(np.float32)
    bias_name = softmax.output[0] + "/qkv_bias"
    gr.g.initializer.append(numpy_helper.from_array(bias, bias_name))
    new_nodes.append(helper.make_node(
        "MultiHeadAttention", [qkv[0][0], qkv[1][0], qkv[2][0], bias_name, mask], [ro.output[0]],
        domain="com.microsoft", num_heads=len(bias) // 3 // head_size,
        scale=float(gr.consts[mul.input[1]]), name=softmax.output[0] + "/mha"))
    return True


def _skip_layer_norm(gr: Graph, ln, new_nodes: list) -> bool:
    """Replace ``LayerNorm(Add(Add(y, bias), skip))`` by one SkipLayerNormalization node."""
    add = gr.made_by(ln.input[0], "Add")
    if add is None:
        return False
    for a, b in ((0, 1), (1, 0)):
        hit = gr.bias_add(add.input[a])
        if hit is not None:
            eps = next(x.f for x in ln.attribute if x.name == "epsilon")
            new_nodes.append(helper.make_node(
                "SkipLayerNormalization", [hit[0], add.input[b], ln.input[1], ln.input[2], hit[1]], [ln.output[0]],
                domain="com.microsoft", epsilon=eps, name=ln.output[0] + "/sln"))
            return True
    return False


def _bias_gelu(gr: Graph, erf, new_nodes: list) -> bool:
    """Replace ``0.5 · x · (1 + erf(x / √2))`` with ``x = y + bias`` by one BiasGelu node."""
    div = gr.made_by(erf.input[0], "Div")
    hit = div and gr.bias_add(div.input[0])
    one = gr.only_consumer(erf.output[0], "Add")
    times_x = one and gr.only_consumer(one.output[0], "Mul")
    half = times_x and gr.only_consumer(times_x.output[0], "Mul")
    if hit is None or half is None:
        return False
    new_nodes.append(helper.make_node("BiasGelu", [hit[0], hit[1]], [half.output[0]], domain="com.microsoft",
                                      name=half.output[0] + "/bias_gelu"))
    return True


def _rebuild(gr: Graph, new_nodes: list) -> None:
    """Keep the nodes the outputs need (new ones take over the old nodes' outputs), topologically sorted."""
    replaced = {o for n in new_nodes for o in n.output}
    nodes = [n for n in gr.g.node if not set(n.output) & replaced] + new_nodes
    by_output = {o: n for n in nodes for o in n.output}
    live, stack = set(), [o.name for o in gr.g.output]
    while stack:
        n = by_output.get(stack.pop())
        if n is not None and id(n) not in live:
            live.add(id(n))
            stack.extend(i for i in n.input if i)
    ready = {i.name for i in gr.g.input} | {t.name for t in gr.g.initializer} | {""}
    pending, order = [n for n in nodes if id(n) in live], []
    while pending:
        left = [n for n in pending if not all(i in ready for i in n.input)]
        for n in pending:
            if n not in left:
                order.append(n)
                ready.update(n.output)
        if len(left) == len(pending):
            raise RuntimeError("the rewritten graph has a cycle")
        pending = left
    del gr.g.node[:]
    gr.g.node.extend(order)
    used = {i for n in order for i in n.input}
    keep = [t for t in gr.g.initializer if t.name in used]
    del gr.g.initializer[:]
    gr.g.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in gr.model.opset_import):
        gr.model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def fuse(model: onnx.ModelProto, which: tuple[str, ...] = FUSIONS) -> dict[str, int]:
    """Rewrite ``model`` in place; how many of each fusion were made."""
    gr, new_nodes = Graph(model), []
    mask = "fused/attention_mask_int32"
    counts = {
        "mha": sum(_attention(gr, n, new_nodes, mask) for n in list(gr.g.node) if n.op_type == "Softmax")
        if "mha" in which else 0,
        "sln": sum(_skip_layer_norm(gr, n, new_nodes) for n in list(gr.g.node) if n.op_type == "LayerNormalization")
        if "sln" in which else 0,
        "bg": sum(_bias_gelu(gr, n, new_nodes) for n in list(gr.g.node) if n.op_type == "Erf") if "bg" in which else 0,
    }
    if counts["mha"]:
        new_nodes.append(helper.make_node("Cast", ["attention_mask"], [mask], to=TensorProto.INT32))
    _rebuild(gr, new_nodes)
    return counts


def changed_answers(a: str, b: str) -> dict[str, float]:
    """Share of dev inputs (titles only) whose level, area or validity differ between bundles a and b."""
    from jobtitles import Classifier

    titles = [json.loads(line)["title"] for f in sorted((REPO / "tests" / "data").glob("dev_*.jsonl"))
              for line in f.read_text(encoding="utf-8").splitlines()]
    pa, pb = (Classifier.load(m, cache_size=0, graph_cache=False).predict(titles) for m in (a, b))
    return {"inputs": len(titles),
            "level": float(np.mean([x.level != y.level for x, y in zip(pa, pb)])),
            "area": float(np.mean([x.area != y.area for x, y in zip(pa, pb)])),
            "valid": float(np.mean([x.valid != y.valid for x, y in zip(pa, pb)]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(REPO / "models" / "default"))
    ap.add_argument("--which", default=",".join(FUSIONS), help="comma-separated: mha, sln, bg")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    which = tuple(w for w in args.which.split(",") if w)
    if set(which) - set(FUSIONS):
        raise SystemExit(f"--which takes {', '.join(FUSIONS)}")
    out = Path(args.out)
    shutil.copytree(args.bundle, out, dirs_exist_ok=True)
    model = onnx.load(str(Path(args.bundle) / "model.onnx"))
    print("fused:", fuse(model, which))
    onnx.save(model, str(out / "model.onnx"))
    print("answers changed on the dev inputs:", changed_answers(args.bundle, str(out)))


if __name__ == "__main__":
    main()
