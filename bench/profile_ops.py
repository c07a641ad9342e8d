"""Time per operator type in the bundle's onnxruntime session (onnxruntime's own profiler).

    .venv/bin/python bench/profile_ops.py [--titles 1024] [--batch-size 64] [--bundle models/default]

Runs hand-labelled training titles (length-sorted, as the runtime batches them) through a session
like the runtime's (one thread per batch, the int8 coding the runtime picks for this CPU), with
profiling on, and prints each operator type's share of the node time.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    import onnxruntime as ort

    from jobtitles.bundle import Bundle, load_tokenizer
    from jobtitles.classifier import OnnxSession, encode_batch
    from jobtitles.int8_kernels import choose_kernel, recode_signed_weights

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--titles", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--bundle", default=None)
    args = ap.parse_args()
    bundle = Bundle.load(args.bundle)
    titles = [json.loads(line)["title"] for path in sorted((REPO / "train" / "data").glob("postings_en_*.jsonl"))
              for line in path.read_text(encoding="utf-8").splitlines()]
    random.Random(0).shuffle(titles)
    titles = sorted(titles[: args.titles], key=len)
    tok = load_tokenizer(bundle.tokenizer_path)
    tok.enable_truncation(max_length=bundle.max_tokens)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OnnxSession.OPTIMIZATION)
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # as the runtime runs each batch
    opts.enable_profiling = True
    opts.profile_file_prefix = "jobtitles-profile"
    model = bytearray(bundle.model_path.read_bytes())
    kernel = choose_kernel("auto")
    if kernel == "u8s8" and not recode_signed_weights(model):
        kernel = "u8u8"
    session = ort.InferenceSession(bytes(model), opts, providers=["CPUExecutionProvider"])
    batches = [encode_batch(tok, titles[i : i + args.batch_size], bundle.query_prefix, 1)
               for i in range(0, len(titles), args.batch_size)]
    warmup = 2  # the first runs allocate and pre-pack; they are left out below
    for ids, mask in batches[:warmup] + batches:
        session.run(None, {"input_ids": ids, "attention_mask": mask})
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    since = starts[warmup] if len(starts) > warmup else 0
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= since:
            per_op[event["args"].get("op_name", "?")] += event["dur"]
    trace.unlink()
    total = sum(per_op.values())
    print(f"{len(titles)} titles in batches of {args.batch_size}, one thread, int8 kernel {kernel}; "
          f"node time {total / 1000:.0f} ms")
    print("| operator | ms | share |\n| --- | --- | --- |")
    for op, micros in per_op.most_common(15):
        print(f"| {op} | {micros / 1000:.1f} | {micros / total:.1%} |")


if __name__ == "__main__":
    main()
