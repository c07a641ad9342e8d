"""``jobtitles serve``: an HTTP service (FastAPI + uvicorn, the optional ``[serve]`` extra).

- ``POST /v1/classify``: a JSON list of titles, or of ``{"id": ..., "title": ...}`` objects →
  the same records as ``jobtitles classify`` writes, one per input, in order;
- ``GET /healthz`` (process up), ``GET /readyz`` (model loaded), ``GET /metrics``
  (Prometheus text), ``GET /docs`` and ``/openapi.json``.

Titles from concurrent requests are coalesced into shared micro-batches run one at
a time on a worker thread: each batch takes everything that queued up while the
previous one ran (up to ``max_batch`` titles), and waits up to ``max_wait`` more
seconds for company only if asked to. The model is loaded once; limits on
body size, titles per request and title length answer 413 / 422 with a message.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from jobtitles.classifier import Classifier, Prediction
from jobtitles.io import OUTPUT_FIELDS, InputRecord, output_record

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ServeConfig:
    """Service limits and batching."""

    model: str | None = None
    max_batch: int = 64
    max_wait: float = 0.0
    max_body_bytes: int = 1 << 20
    max_titles: int = 1000
    max_title_chars: int = 1000
    threads: int | None = None
    cache_size: int = 50_000


class Histogram:
    """A Prometheus histogram (cumulative buckets, sum, count)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = list(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        acc = 0
        for bound, n in zip(self.buckets, self.counts):
            acc += n
            lines.append(f'{name}_bucket{{le="{bound}"}} {acc}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines += [f"{name}_sum {self.sum:.6f}", f"{name}_count {self.count}"]
        return lines


@dataclass
class Metrics:
    """Counters and histograms exposed at ``/metrics``."""

    requests: dict[str, int] = field(default_factory=dict)
    titles: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_sizes: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))

    def count_request(self, status: int) -> None:
        key = str(status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if status >= 400:
            self.errors += 1

    def render(self) -> str:
        lines = ["# HELP jobtitles_requests_total Classification requests by HTTP status.",
                 "# TYPE jobtitles_requests_total counter"]
        lines += [f'jobtitles_requests_total{{status="{k}"}} {v}' for k, v in sorted(self.requests.items())]
        lines += ["# HELP jobtitles_titles_total Titles classified.", "# TYPE jobtitles_titles_total counter",
                  f"jobtitles_titles_total {self.titles}",
                  "# HELP jobtitles_errors_total Requests answered with an error status.",
                  "# TYPE jobtitles_errors_total counter", f"jobtitles_errors_total {self.errors}"]
        lines += self.latency.render("jobtitles_request_seconds", "Request latency of POST /v1/classify.")
        lines += self.batch_sizes.render("jobtitles_batch_titles", "Titles per model batch (after coalescing).")
        return "\n".join(lines) + "\n"


class Coalescer:
    """Collects titles from concurrent requests into shared batches run on one worker thread."""

    def __init__(self, clf: Classifier, max_batch: int, max_wait: float, metrics: Metrics) -> None:
        self.clf = clf
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.metrics = metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        await self.queue.join()
        if self._task:
            self._task.cancel()

    async def classify(self, titles: list[str]) -> list[Prediction]:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((titles, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0][0])
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                # take what queued up while the previous batch ran; wait only if max_wait allows
                if self.queue.empty():
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                else:
                    item = self.queue.get_nowait()
                items.append(item)
                n += len(item[0])
            flat = [t for titles, _ in items for t in titles]
            try:
                preds = await loop.run_in_executor(None, self.clf.predict, flat)
                self.metrics.batch_sizes.observe(len(flat))
                pos = 0
                for titles, fut in items:
                    if not fut.done():
                        fut.set_result(preds[pos : pos + len(titles)])
                    pos += len(titles)
            except Exception as exc:  # hand the failure to every waiting request
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
            finally:
                for _ in items:
                    self.queue.task_done()


def create_app(cfg: ServeConfig = ServeConfig()):
    """The FastAPI application (model loaded once, in the lifespan)."""
    state: dict = {"metrics": Metrics(), "coalescer": None}

    @asynccontextmanager
    async def lifespan(_app):
        clf = await asyncio.get_running_loop().run_in_executor(
            None, lambda: Classifier.load(cfg.model, threads=cfg.threads, batch_size=cfg.max_batch,
                                   cache_size=cfg.cache_size))
        state["bundle_version"] = clf.bundle.version
        state["coalescer"] = Coalescer(clf, cfg.max_batch, cfg.max_wait, state["metrics"])
        state["coalescer"].start()
        yield
        await state["coalescer"].stop()

    app = FastAPI(title="jobtitles", version=_version(), lifespan=lifespan,
                  description="Classify job titles into a seniority level and a job area.")

    def error(status: int, message: str) -> JSONResponse:
        state["metrics"].count_request(status)
        return JSONResponse({"detail": message}, status_code=status)

    @app.post("/v1/classify", summary="Classify titles",
              description="Body: a JSON list of titles, or of objects with `title` and an optional `id`. "
                          "Answer: one record per input, in order, with the keys "
                          + ", ".join(f"`{k}`" for k in OUTPUT_FIELDS) + " (and `id` when given).",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {
                      "id": {}, "title": {"type": "string"}}, "required": ["title"]}]}}}}}})
    async def classify(request: Request):
        start = time.perf_counter()
        if state["coalescer"] is None:
            return error(503, "model not loaded yet")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_body_bytes:
            return error(413, f"request body over {cfg.max_body_bytes} bytes; send fewer titles per request")
        body = await request.body()
        if len(body) > cfg.max_body_bytes:
            return error(413, f"request body over {cfg.max_body_bytes} bytes; send fewer titles per request")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return error(422, f"body is not valid JSON: {exc}")
        if isinstance(payload, dict) and "titles" in payload:
            payload = payload["titles"]
        if not isinstance(payload, list):
            return error(422, "body must be a JSON list of titles or of {\"id\", \"title\"} objects")
        if len(payload) > cfg.max_titles:
            return error(413, f"{len(payload)} titles in one request; the limit is {cfg.max_titles}")
        titles, ids = [], []
        for i, item in enumerate(payload):
            rid, title = (item.get("id"), item.get("title")) if isinstance(item, dict) else (None, item)
            if not isinstance(title, str):
                return error(422, f"item {i}: title must be a string")
            if len(title) > cfg.max_title_chars:
                return error(422, f"item {i}: title longer than {cfg.max_title_chars} characters")
            titles.append(title)
            ids.append(rid)
        preds = await state["coalescer"].classify(titles) if titles else []
        m = state["metrics"]
        m.titles += len(titles)
        m.count_request(200)
        m.latency.observe(time.perf_counter() - start)
        return JSONResponse([output_record(InputRecord(t, rid), p) for t, p, rid in zip(titles, preds, ids)])

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded")
    async def readyz():
        if state["coalescer"] is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "bundle_version": state.get("bundle_version")}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(state["metrics"].render(), media_type="text/plain; version=0.0.4")

    return app


def _version() -> str:
    from jobtitles import __version__

    return __version__


def serve(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the service with uvicorn (SIGTERM / Ctrl-C finish in-flight requests, then stop)."""
    import uvicorn

    uvicorn.run(create_app(cfg), host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)

