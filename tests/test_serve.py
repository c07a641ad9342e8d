"""The HTTP service against a real server on loopback: records, limits, probes, metrics, coalescing, shutdown."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body=None, raw: bytes | None = None, timeout: float = 60):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _start_server(bundle_dir, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start ``jobtitles serve`` on a free loopback port and wait until /readyz says ready."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jobtitles.cli", "serve", "--port", str(port), "--model",
                             str(bundle_dir), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if _call(base + "/readyz", timeout=2)[0] == 200:
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("server did not become ready: " + proc.stderr.read().decode()[-2000:])


@pytest.fixture(scope="module")
def server(bundle_dir):
    proc, base = _start_server(bundle_dir, "--max-titles", "50", "--max-body-bytes", "20000",
                               "--max-title-chars", "200", "--max-wait-ms", "20")
    yield base, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_classify_strings_and_objects(server):
    base, _ = server
    status, body = _call(base + "/v1/classify", ["Senior Data Engineer", {"id": "x1", "title": "Apply now"}, ""])
    assert status == 200
    recs = json.loads(body)
    assert len(recs) == 3
    assert recs[0]["level"] == "Sr Specialist" and recs[0]["area"] == "IT" and "id" not in recs[0]
    assert recs[1]["id"] == "x1" and recs[1]["valid"] is False and recs[1]["reason"]
    assert recs[2]["valid"] is False


@pytest.mark.parametrize("payload, status, words", [
    (None, 422, "not valid JSON"),
    ({"a": 1}, 422, "JSON list"),
    ([1], 422, "must be a string"),
    (["x" * 201], 422, "longer than 200"),
    (["Nurse"] * 51, 413, "limit is 50"),
])
def test_limits_and_bad_requests(server, payload, status, words):
    base, _ = server
    raw = b"{not json" if payload is None else None
    got, body = _call(base + "/v1/classify", payload, raw=raw)
    assert got == status
    assert words in json.loads(body)["detail"]


def test_body_size_limit(server):
    base, _ = server
    got, body = _call(base + "/v1/classify", raw=json.dumps(["Nurse " * 30] * 200).encode())
    assert got == 413 and "bytes" in json.loads(body)["detail"]


def test_probes_docs_and_metrics(server):
    base, _ = server
    assert _call(base + "/healthz")[0] == 200
    status, body = _call(base + "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"
    status, body = _call(base + "/openapi.json")
    assert status == 200 and "/v1/classify" in json.loads(body)["paths"]
    assert _call(base + "/docs")[0] == 200
    _call(base + "/v1/classify", ["Nurse"])
    text = _call(base + "/metrics")[1].decode()
    for name in ("jobtitles_requests_total", "jobtitles_titles_total", "jobtitles_request_seconds_bucket",
                 "jobtitles_batch_titles_bucket", "jobtitles_errors_total"):
        assert name in text


def test_concurrent_requests_are_coalesced_and_answered_in_order(server):
    base, _ = server
    before = _batch_stats(base)
    titles = [f"Registered Nurse {i}" if i % 2 else f"Welder {i}" for i in range(24)]
    results = {}

    def worker(i):
        results[i] = _call(base + "/v1/classify", [titles[i], {"id": i, "title": titles[i]}])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(titles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (status, body) in results.items():
        recs = json.loads(body)
        assert status == 200 and [r["title"] for r in recs] == [titles[i], titles[i]] and recs[1]["id"] == i
    after = _batch_stats(base)
    n_batches, n_titles = after[0] - before[0], after[1] - before[1]
    assert n_titles == 48
    assert n_batches < len(titles), f"{n_batches} model batches for {len(titles)} concurrent requests"


def _batch_stats(base: str) -> tuple[int, float]:
    text = _call(base + "/metrics")[1].decode()
    count = int(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("jobtitles_batch_titles_count")))
    total = float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("jobtitles_batch_titles_sum")))
    return count, total


def test_graceful_shutdown_finishes_in_flight_requests(bundle_dir):
    proc, base = _start_server(bundle_dir, "--max-wait-ms", "1000")
    try:
        result = {}
        t = threading.Thread(target=lambda: result.update(r=_call(base + "/v1/classify", ["Nurse"])))
        t.start()
        time.sleep(0.3)  # the request now waits in a 1 s coalescing window
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=60)
        assert result["r"][0] == 200 and json.loads(result["r"][1])[0]["title"] == "Nurse"
        # uvicorn finishes in-flight requests, then re-raises SIGTERM (the conventional status)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
