"""Single-title latency by intra-op thread count (the setting `--threads` / `Classifier(threads=...)`).

    .venv/bin/python bench/latency.py [--threads 0,1,2] [--reps 3] [--titles 300]

For each thread count (0: onnxruntime's default, one per core), a classifier without the title
cache classifies hand-labelled training titles one at a time after a warm-up; repeated ``--reps``
times with the settings interleaved. Prints p50 / p99 in ms per repetition and their medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import single_title_latencies_ms  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def latencies(threads: int, titles: list[str]) -> tuple[float, float]:
    from jobtitles import Classifier

    clf = Classifier.load(threads=threads or None, cache_size=0)
    for title in titles[:20]:
        clf.predict([title])
    lat = single_title_latencies_ms(clf.predict, titles)
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="0,1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--titles", type=int, default=300)
    args = ap.parse_args()
    titles = [json.loads(line)["title"] for line in
              (REPO / "train" / "data" / "postings_en_a.jsonl").read_text(encoding="utf-8").splitlines()]
    titles = titles[: args.titles]
    settings = [int(t) for t in args.threads.split(",")]
    runs: dict[int, list[tuple[float, float]]] = {t: [] for t in settings}
    for _ in range(args.reps):
        for threads in settings:
            runs[threads].append(latencies(threads, titles))
    print("| threads | p50 ms per repetition | p99 ms per repetition | median p50 | median p99 |")
    print("| --- | --- | --- | --- | --- |")
    for threads, rs in runs.items():
        p50s, p99s = [r[0] for r in rs], [r[1] for r in rs]
        p50, p99 = statistics.median(p50s), statistics.median(p99s)
        print(f"| {threads or 'default'} | {', '.join(f'{x:.2f}' for x in p50s)} | "
              f"{', '.join(f'{x:.2f}' for x in p99s)} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
