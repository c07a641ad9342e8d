"""Where a process's cold start goes: imports, session, tokenizer, first prediction.

    .venv/bin/python bench/cold_start.py [--runs 7] [--bundle models/default]

Each run is a fresh interpreter that times its own phases (numpy, onnxruntime and jobtitles
imports, ``Classifier.load``, the first prediction) and the wall time from the parent's launch to
the first prediction. Two modes, interleaved run by run: ``no cache`` (``JOBTITLES_GRAPH_CACHE=0``:
onnxruntime optimises the bundle's graph at every start) and ``graph cache`` (a folder filled by one
start beforehand). Prints the median of each phase per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
import onnxruntime
t2 = time.perf_counter()
from jobtitles import Classifier
t3 = time.perf_counter()
clf = Classifier.load(sys.argv[1] or None)
t4 = time.perf_counter()
clf.predict(["Registered Nurse"])
t5 = time.perf_counter()
print(json.dumps({"numpy": t1 - t0, "onnxruntime": t2 - t1, "jobtitles": t3 - t2, "load": t4 - t3,
                  "first prediction": t5 - t4, "in process": t5 - t0, "wall": time.time() - float(sys.argv[2]),
                  "source": clf.session_source}))
"""


def run_once(bundle: str, cache: str) -> dict:
    env = {**os.environ, "JOBTITLES_GRAPH_CACHE": cache}
    launched = time.time()
    res = subprocess.run([sys.executable, "-c", PROBE, bundle, repr(launched)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--bundle", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobtitles-graphs-") as folder:
        first = run_once(args.bundle, folder)
        runs: dict[str, list[dict]] = {"no cache": [], "graph cache": []}
        for _ in range(args.runs):
            runs["no cache"].append(run_once(args.bundle, "0"))
            runs["graph cache"].append(run_once(args.bundle, folder))
    phases = [k for k in first if k != "source"]
    print(f"medians of {args.runs} fresh processes per mode, seconds")
    print("| phase | " + " | ".join(runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    for phase in phases:
        print(f"| {phase} | " + " | ".join(f"{statistics.median(r[phase] for r in rs):.3f}" for rs in runs.values())
              + " |")
    print(f"first start with an empty graph cache: wall {first['wall']:.3f} s ({first['source']}); sources: "
          + ", ".join(f"{m}: {sorted({r['source'] for r in rs})}" for m, rs in runs.items()))


if __name__ == "__main__":
    main()
