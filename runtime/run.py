"""The ``classify`` run: input → micro-batches → classifier → output, behaving like a Unix tool.

- one output record per input record, in order, flushed per batch;
- an unreadable input (bad column) stops before any output with status 2;
- a closed stdout (``| head``) ends quietly with the SIGPIPE status 141;
- Ctrl-C / SIGTERM stop after writing what is finished (status 130 / 143), no traceback;
- ``-o FILE`` is written to a temporary file and renamed only when complete (an
  interrupted run leaves ``FILE.partial``).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import IO

from jobtitles.bundle import BundleError
from jobtitles.classifier import Classifier, Prediction
from jobtitles.io import CountingRaw, InputError, InputRecord, Writer, detect_format, output_record, read_records
from jobtitles.stream import MicroBatcher, Progress

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_SIGPIPE, EXIT_SIGINT, EXIT_SIGTERM = 141, 130, 143


@dataclass(frozen=True)
class ClassifyOptions:
    """Everything ``jobtitles classify`` was asked to do."""

    source: str = "-"
    input_format: str | None = None
    field_name: str = "title"
    column: str | None = None
    output_format: str = "jsonl"
    output: str | None = None
    keep_columns: bool = False
    model: str | None = None
    batch_size: int = 64
    max_wait: float = 0.005
    top_k: int = 3
    min_score: float = 0.0
    title_threshold: float | None = None  # None: the bundle's
    threads: int | None = None
    strict: bool = False
    quiet: bool = False


class _Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler."""


def _on_sigterm(_signum, _frame) -> None:
    raise _Terminated()


def _open_output(path: str | None) -> tuple[IO[str], Path | None]:
    if path is None:
        return sys.stdout, None
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or Path("."))
    return os.fdopen(fd, "w", encoding="utf-8", newline=""), Path(tmp)


def _stderr(message: str) -> None:
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def classify_batches(clf: Classifier, batches: Iterable[list[InputRecord]], writer: Writer,
                     keep_columns: bool = False, counts: dict | None = None) -> Iterator[int]:
    """Classify each batch and write one output record per input record; yields batch sizes."""
    for chunk in batches:
        readable = [r for r in chunk if r.error is None]
        preds = iter(clf.predict([r.title for r in readable]))
        for rec in chunk:
            pred = next(preds) if rec.error is None else Prediction(title=None, valid=False, reason=rec.error)
            if counts is not None:
                counts["invalid"] = counts.get("invalid", 0) + (not pred.valid)
            writer.write(output_record(rec, pred, keep_columns))
        yield len(chunk)


def run_classify(opts: ClassifyOptions) -> int:
    """Run a classification and return the exit status (never raises for bad input)."""
    try:
        clf = Classifier.load(opts.model, threads=opts.threads, batch_size=opts.batch_size, top_k=opts.top_k,
                              min_score=opts.min_score, title_threshold=opts.title_threshold)
    except BundleError as exc:
        _stderr(f"error: {exc}")
        return EXIT_INVALID
    fmt = detect_format(None if opts.source == "-" else opts.source, opts.input_format)
    try:
        raw = sys.stdin.buffer if opts.source == "-" else open(opts.source, "rb")
    except OSError as exc:
        _stderr(f"error: cannot read {opts.source}: {exc.strerror}")
        return EXIT_USAGE
    counter = CountingRaw(raw)
    reader = io.BufferedReader(counter, buffer_size=1 << 16)
    total = os.fstat(raw.fileno()).st_size if opts.source != "-" and hasattr(raw, "fileno") else None
    show_progress = not opts.quiet and opts.source != "-" and sys.stderr.isatty()
    progress = Progress(total) if show_progress else None
    previous_term = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    out, tmp = _open_output(opts.output)
    writer = Writer(out, opts.output_format)
    records = read_records(raw if fmt == "parquet" else reader, fmt, opts.field_name, opts.column)
    batcher = MicroBatcher(records, opts.batch_size, opts.max_wait)
    counts = {"invalid": 0}
    status = EXIT_OK
    try:
        for n in classify_batches(clf, batcher, writer, opts.keep_columns, counts):
            out.flush()
            if progress:
                progress.update(n, counter.bytes_read)
    except InputError as exc:
        _stderr(f"error: {exc}")
        status = EXIT_USAGE
    except BrokenPipeError:
        _silence_stdout()
        status = EXIT_SIGPIPE
    except KeyboardInterrupt:
        _stderr("interrupted: results so far were written")
        status = EXIT_SIGINT
    except _Terminated:
        _stderr("terminated: results so far were written")
        status = EXIT_SIGTERM
    finally:
        batcher.close()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if opts.source != "-":
            raw.close()
        if progress and status == EXIT_OK:
            progress.finish()
        status = _close_output(out, tmp, opts.output, status)
    if status == EXIT_OK and opts.strict and counts["invalid"]:
        _stderr(f"{counts['invalid']} record(s) could not be classified (--strict)")
        return EXIT_INVALID
    return status


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _close_output(out: IO[str], tmp: Path | None, final: str | None, status: int) -> int:
    if tmp is None:
        try:
            out.flush()
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_SIGPIPE if status == EXIT_OK else status
        except (OSError, ValueError):
            pass
        return status
    out.close()
    if status == EXIT_OK:
        os.replace(tmp, final)
    elif status in (EXIT_SIGINT, EXIT_SIGTERM) and tmp.stat().st_size:
        os.replace(tmp, f"{final}.partial")  # keep finished results under a name that says so
        _stderr(f"partial results in {final}.partial")
    else:
        tmp.unlink(missing_ok=True)
    return status
