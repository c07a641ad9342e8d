"""Streaming: micro-batches that close when full or when the input goes quiet, and a progress line.

A reader thread pulls records from the input into a bounded queue (so memory stays
flat however long the stream). The consumer takes the first record as soon as it
arrives, then keeps adding records until the batch is full or no record came for
``max_wait`` seconds: a line typed into an interactive pipe is answered at once,
while a large file still runs at full batch size.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, Generic, TypeVar

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class MicroBatcher(Generic[T]):
    """Iterate over lists of items from ``source``, read on a background thread."""

    def __init__(self, source: Iterable[T], batch_size: int, max_wait: float, queue_batches: int = 4) -> None:
        self.batch_size = max(1, batch_size)
        self.max_wait = max(0.0, max_wait)
        self._queue: queue.Queue = queue.Queue(maxsize=self.batch_size * queue_batches)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(iter(source),), daemon=True, name="jobtitles-reader")
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self, it: Iterator[T]) -> None:
        try:
            for item in it:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
            return
        self._put(_END)

    def close(self) -> None:
        """Stop the reader thread (it may stay blocked on a read until its input closes)."""
        self._stop.set()

    def __iter__(self) -> Iterator[list[T]]:
        done = False
        while not done:
            item = self._queue.get()
            batch: list[T] = []
            deadline = None
            while True:
                if item is _END:
                    done = True
                    break
                if isinstance(item, _Failure):
                    if batch:
                        yield batch
                    raise item.exc
                batch.append(item)
                if len(batch) >= self.batch_size:
                    break
                if deadline is None:
                    deadline = time.monotonic() + self.max_wait
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
            if batch:
                yield batch


class Progress:
    """A one-line progress display on stderr: titles, titles/s and, for files, percent and ETA."""

    def __init__(self, total_bytes: int | None, stream: IO[str] | None = None, interval: float = 0.5) -> None:
        self.total = total_bytes
        self.stream = stream or sys.stderr
        self.interval = interval
        self.start = time.monotonic()
        self._last = 0.0
        self.count = 0

    def update(self, n_records: int, bytes_done: int | None) -> None:
        self.count += n_records
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        line = f"\r{self.count:,} titles  {rate:,.0f}/s"
        if self.total and bytes_done:
            frac = min(bytes_done / self.total, 1.0)
            eta = elapsed * (1 - frac) / frac if frac > 0 else 0
            line += f"  {frac:6.1%}  ETA {int(eta // 60):02d}:{int(eta % 60):02d}"
        self.stream.write(line)
        self.stream.flush()

    def finish(self) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        self.stream.write(f"\r{self.count:,} titles in {elapsed:.1f} s ({self.count / elapsed:,.0f}/s)\033[K\n")
        self.stream.flush()
