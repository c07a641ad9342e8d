"""How the runtime uses the cores: one batch at a time spread over them, or one batch per core.

    .venv/bin/python bench/parallelism.py [--titles 1000] [--rounds 5] [--batch-sizes 16,32,64] [--out FILE]

Side by side in one process, on the same unique titles (title cache off), interleaved round by
round so that drifts in the machine's speed hit every setting alike:

- ``ops``: the runtime before 7 December 2026 — one batch of 64 at a time, each operator split
  over onnxruntime's intra-op threads (one per physical core);
- ``batches, N``: the runtime now — up to ``threads`` batches of N titles at once, each run on a
  single core (``Classifier(threads=..., batch_size=N)``).

Reports the median titles/s of the rounds, the median single-title p50 / p99 latency, and every
setting's ratio to ``ops``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import cpu_info, single_title_latencies_ms, titles_per_second, unique_clean_titles  # noqa: E402


def classifiers(bundle: str | None, batch_sizes: list[int]) -> dict:
    """The settings to compare, by name (``ops`` first)."""
    from jobtitles import Classifier
    from jobtitles.classifier import OnnxSession

    previous = Classifier.load(bundle, threads=1, batch_size=64, cache_size=0)
    # The previous runtime's session: onnxruntime's default intra-op threads (one per physical core).
    previous._session = OnnxSession(previous.bundle.model_path, intra_op_threads=0, graph_cache=None)
    settings = {"ops": previous}
    for size in batch_sizes:
        settings[f"batches, {size}"] = Classifier.load(bundle, batch_size=size, cache_size=0)
    return settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--titles", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency-titles", type=int, default=300)
    ap.add_argument("--batch-sizes", default="16,32,64")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--out", default=None, help="also write the figures here as JSON")
    args = ap.parse_args()
    titles = unique_clean_titles(args.titles)
    settings = classifiers(args.bundle, [int(b) for b in args.batch_sizes.split(",")])
    for clf in settings.values():
        clf.predict(titles[:128])
    rates: dict[str, list[float]] = {name: [] for name in settings}
    p50s: dict[str, list[float]] = {name: [] for name in settings}
    p99s: dict[str, list[float]] = {name: [] for name in settings}
    for r in range(args.rounds):
        for name, clf in settings.items():
            rates[name].append(titles_per_second(clf.predict, titles))
            lat = single_title_latencies_ms(clf.predict, titles[: args.latency_titles])
            p50s[name].append(statistics.median(lat))
            p99s[name].append(lat[int(len(lat) * 0.99) - 1])
        print(f"round {r + 1}: " + ", ".join(f"{name} {x[-1]:.0f}" for name, x in rates.items()) + " titles/s",
              file=sys.stderr)
    base = statistics.median(rates["ops"])
    rows = [{"setting": name, "titles_per_s": round(statistics.median(rates[name]), 1),
             "ratio_to_ops": round(statistics.median(rates[name]) / base, 3),
             "titles_per_s_rounds": [round(x, 1) for x in rates[name]],
             "latency_p50_ms": round(statistics.median(p50s[name]), 2),
             "latency_p99_ms": round(statistics.median(p99s[name]), 2)} for name in settings]
    threads = next(clf.threads for name, clf in settings.items() if name != "ops")
    print(f"{len(titles)} unique titles, {args.rounds} rounds, {threads} cores; {cpu_info().get('cpu_model', '')}")
    print("| setting | titles/s | × ops | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['setting']} | {row['titles_per_s']} | {row['ratio_to_ops']:.2f} | "
              f"{row['latency_p50_ms']} | {row['latency_p99_ms']} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"cpu": cpu_info(), "threads": threads, "titles": len(titles),
                                              "rounds": args.rounds, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
