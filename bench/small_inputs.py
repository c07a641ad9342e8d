"""Latency of small calls (a few titles each) by the smallest batch handed to a second core.

    .venv/bin/python bench/small_inputs.py [--sizes 2,6,10,16] [--mins 8,4,1] [--reps 3]

``Classifier.predict`` cuts an input that cannot fill every core into one batch per core, but
never into batches smaller than ``jobtitles.classifier.MIN_PARALLEL_BATCH``. For each setting of
that constant (set here for the measurement only) and each call size, 1,200 unique real titles
are classified in calls of that size (title cache off); prints the median call time in ms, the
median over ``--reps`` repetitions with the settings interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import cpu_info, unique_clean_titles  # noqa: E402


def main() -> None:
    import jobtitles.classifier as classifier
    from jobtitles import Classifier

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2,6,10,16")
    ap.add_argument("--mins", default="8,4,1")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    sizes, mins = [int(x) for x in args.sizes.split(",")], [int(x) for x in args.mins.split(",")]
    titles = unique_clean_titles(1200)
    clf = Classifier.load(cache_size=0)
    clf.predict(titles[:128])
    calls: dict[tuple[int, int], list[float]] = {}
    for _ in range(args.reps):
        for smallest in mins:
            classifier.MIN_PARALLEL_BATCH = smallest
            for n in sizes:
                ms = []
                for start in range(0, len(titles), n):
                    began = time.perf_counter()
                    clf.predict(titles[start : start + n])
                    ms.append((time.perf_counter() - began) * 1000)
                calls.setdefault((smallest, n), []).append(statistics.median(ms))
    print(f"{clf.threads} cores; {cpu_info().get('cpu_model', '')}; median ms per call")
    print("| smallest batch | " + " | ".join(f"{n} titles" for n in sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    for smallest in mins:
        print(f"| {smallest} | " + " | ".join(f"{statistics.median(calls[(smallest, n)]):.2f}" for n in sizes) + " |")


if __name__ == "__main__":
    main()
