"""Load test of ``jobtitles serve`` on loopback: coalescing vs one request = one batch.

    .venv/bin/python bench/load_test.py [--requests 300] [--concurrency 1,8,32] [--out bench/load_results.json]

Starts the server twice on 127.0.0.1 with its title cache off (coalescing: batches of up
to 64 titles gathered for up to 5 ms; then ``--max-batch 1``: every request's title is its
own batch), sends
a fixed number of one-title requests from N client threads with keep-alive HTTP
connections, and reports requests/s, titles/s and p50 / p99 latency per concurrency
level. Every loop is bounded by count and by ``--max-seconds``; only loopback is used.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from run_bench import load_titles  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(extra: list[str], bundle: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jobtitles.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--model", bundle, *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start: " + proc.stderr.read().decode()[-2000:])


def run_level(port: int, titles: list[str], n_requests: int, concurrency: int, max_seconds: float,
              offset: int = 0) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    counter = {"next": 0, "errors": 0}
    stop_at = time.time() + max_seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.time() < stop_at:
            with lock:
                i = counter["next"]
                if i >= n_requests:
                    return
                counter["next"] += 1
            body = json.dumps([titles[i % len(titles)] + f" {offset + i}"])  # every text distinct
            t = time.perf_counter()
            conn.request("POST", "/v1/classify", body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            dt = time.perf_counter() - t
            with lock:
                if resp.status == 200:
                    latencies.append(dt)
                else:
                    counter["errors"] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "concurrency": concurrency, "requests": n, "errors": counter["errors"],
        "requests_per_s": round(n / elapsed, 1), "titles_per_s": round(n / elapsed, 1),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 1) if n else None,
        "latency_ms_p99": round(latencies[max(0, int(n * 0.99) - 1)] * 1000, 1) if n else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--max-seconds", type=float, default=120, help="time bound per level")
    ap.add_argument("--bundle", default=str(REPO / "models" / "default"))
    ap.add_argument("--out", default=str(REPO / "bench" / "load_results.json"))
    args = ap.parse_args()
    titles = load_titles(500)
    levels = [int(c) for c in args.concurrency.split(",")]
    report = {}
    for name, extra in (("coalescing", ["--max-batch", "64", "--max-wait-ms", "0"]),
                        ("coalescing_wait_5ms", ["--max-batch", "64", "--max-wait-ms", "5"]),
                        ("one_request_one_batch", ["--max-batch", "1", "--max-wait-ms", "0"])):
        proc, port = start_server(extra + ["--cache-size", "0"], args.bundle)
        try:
            run_level(port, titles, 20, 4, 30, offset=10**6)  # warm-up
            report[name] = [run_level(port, titles, args.requests, c, args.max_seconds, offset=k * args.requests)
                            for k, c in enumerate(levels)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("| mode | concurrency | requests/s | titles/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in report.items():
        for r in rows:
            print(f"| {name} | {r['concurrency']} | {r['requests_per_s']} | {r['titles_per_s']} | "
                  f"{r['latency_ms_p50']} | {r['latency_ms_p99']} |")


if __name__ == "__main__":
    main()
