"""Throughput and single-title latency of two or more bundles, measured interleaved in one process.

    .venv/bin/python bench/compare_bundles.py --model models/default --model OTHER [--titles 1000] [--rounds 5]

For comparing bundles with each other (a smaller encoder, another quantization) rather than
against PyTorch (that is ``bench/run_bench.py``). Each bundle gets its own ``Classifier``
(title cache off, default batch size and threads), a warm-up, then ``--rounds`` rounds; every
round times each bundle on the same unique titles, one after the other, so drifts in this shared
machine's speed hit all of them alike. Reports per bundle the median titles/s and the median of
the rounds' single-title p50 latency (``--latency-titles`` titles one at a time), and every
bundle's ratio to the first. ``--out FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import cpu_info, load_titles, single_title_latencies_ms, titles_per_second  # noqa: E402


def compare(models: list[str], titles: list[str], rounds: int, latency_titles: int) -> list[dict]:
    """Interleaved rounds over ``models``; one summary row per model, in the given order."""
    from jobtitles import Classifier

    clfs = [Classifier.load(m, cache_size=0) for m in models]
    for clf in clfs:
        clf.predict(titles[:128])
    rates: list[list[float]] = [[] for _ in models]
    p50s: list[list[float]] = [[] for _ in models]
    for r in range(rounds):
        for i, clf in enumerate(clfs):
            rates[i].append(titles_per_second(clf.predict, titles))
            p50s[i].append(statistics.median(single_title_latencies_ms(clf.predict, titles[:latency_titles])))
        print(f"round {r + 1}: " + ", ".join(f"{x[-1]:.0f}" for x in rates) + " titles/s", file=sys.stderr)
    rows = []
    for i, (model, clf) in enumerate(zip(models, clfs)):
        rows.append({"model": model, "bundle_version": clf.bundle.version,
                     "titles_per_s": round(statistics.median(rates[i]), 1),
                     "titles_per_s_runs": [round(x, 1) for x in rates[i]],
                     "p50_ms": round(statistics.median(p50s[i]), 2),
                     "ratio_to_first": round(statistics.median(rates[i]) / statistics.median(rates[0]), 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="bundle folder (repeat; the first is the base)")
    ap.add_argument("--titles", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency-titles", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    titles = load_titles(args.titles)
    rows = compare(args.model, titles, args.rounds, args.latency_titles)
    for row in rows:
        print(f"{row['bundle_version']:24} {row['titles_per_s']:8.1f} titles/s  p50 {row['p50_ms']:6.2f} ms  "
              f"×{row['ratio_to_first']:.2f}  [{row['model']}]")
    if args.out:
        Path(args.out).write_text(json.dumps({"cpu": cpu_info(), "titles": len(titles), "rounds": args.rounds,
                                              "bundles": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
