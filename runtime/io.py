"""Reading input records (text, JSONL, CSV/TSV) and writing results (JSONL, CSV, TSV).

Readers never drop a record: a line that cannot be read yields an
:class:`InputRecord` with ``error`` set, so the output keeps one record per input.
Only a structural problem that makes the whole input unreadable (e.g. a CSV
column that does not exist) raises :class:`InputError`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from jobtitles.classifier import Prediction

INPUT_FORMATS = ("text", "jsonl", "csv", "tsv", "parquet")
MAX_LINE_BYTES = 1 << 20  # a longer line is cut here (and says so); the rest of it is skipped
OUTPUT_FORMATS = ("jsonl", "csv", "tsv")
OUTPUT_FIELDS = ["title", "valid", "level", "level_score", "area", "area_score", "areas", "title_score", "reason"]
csv.field_size_limit(sys.maxsize)
# Characters that JSON allows raw inside strings but many line readers treat as line ends.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


class InputError(ValueError):
    """The input as a whole cannot be read (bad column name, wrong format)."""


@dataclass(frozen=True)
class InputRecord:
    """One input record: the title (or ``None``), an optional id, and why it could not be read."""

    title: str | None
    id: object = None
    error: str | None = None
    fields: dict = field(default_factory=dict)


def detect_format(filename: str | None, explicit: str | None) -> str:
    """Input format from ``--input-format`` or the file extension (default: text)."""
    if explicit:
        return explicit
    name = (filename or "").lower()
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"), (".tsv", "tsv"), (".tab", "tsv"),
                     (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return fmt
    return "text"


class CountingRaw(io.RawIOBase):
    """A raw stream over another binary stream that counts the bytes read (for progress).

    Reads with ``read1`` so that a line typed into a pipe is available at once.
    Wrap it in :class:`io.BufferedReader` for ``readline``.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        read1 = getattr(self.stream, "read1", self.stream.read)
        data = read1(len(b))
        n = len(data)
        b[:n] = data
        self.bytes_read += n
        return n


def iter_lines(stream, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Lines without their end-of-line bytes, each cut at ``max_bytes`` (flag True when cut)."""
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        cut = False
        if len(line) > max_bytes and not line.endswith(b"\n"):
            cut = True
            line = line[:max_bytes]
            while True:  # skip the rest of the over-long line
                rest = stream.readline(1 << 16)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line.rstrip(b"\r\n"), cut


def _decode(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), "invalid UTF-8 bytes replaced with U+FFFD"


def read_text(stream: IO[bytes]) -> Iterator[InputRecord]:
    """One title per line; invalid UTF-8 is replaced and flagged, NUL bytes removed."""
    for raw, cut in iter_lines(stream):
        line, note = _decode(raw)
        if "\x00" in line:
            line = line.replace("\x00", "")
            note = _join(note, "NUL bytes removed")
        if cut:
            note = _join(note, f"line longer than {MAX_LINE_BYTES} bytes: the rest was skipped")
        yield InputRecord(line, None, None, {"_note": note} if note else {})


def _join(note: str | None, more: str) -> str:
    return more if note is None else f"{note}; {more}"


def read_jsonl(stream: IO[bytes], field_name: str = "title") -> Iterator[InputRecord]:
    """One JSON object per line; ``field_name`` holds the title and ``id`` is passed through."""
    for raw, cut in iter_lines(stream):
        line, note = _decode(raw)
        if cut:
            yield InputRecord(None, None, f"line longer than {MAX_LINE_BYTES} bytes: not read as JSON")
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield InputRecord(None, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(obj, dict):
            yield InputRecord(None, None, "JSON line is not an object")
            continue
        rid = obj.get("id")
        value = obj.get(field_name)
        if field_name not in obj:
            yield InputRecord(None, rid, f"missing field {field_name!r}", obj)
        elif value is None:
            yield InputRecord(None, rid, f"field {field_name!r} is null", obj)
        elif not isinstance(value, str):
            yield InputRecord(None, rid, f"field {field_name!r} is not a string ({type(value).__name__})", obj)
        else:
            yield InputRecord(value, rid, None, {**obj, **({"_note": note} if note else {})})


def read_csv(stream: IO[bytes], column: str | None = None, delimiter: str = ",") -> Iterator[InputRecord]:
    """CSV/TSV with a header; ``column`` (default: ``title``, else the first column) holds the title."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    if column is None:
        column = "title" if "title" in header else header[0] if header else None
    if column not in header:
        raise InputError(f"column {column!r} not found; the header has: {', '.join(header) or '(nothing)'}")
    pos = header.index(column)
    id_pos = header.index("id") if "id" in header else None
    for row in reader:
        fields = dict(zip(header, row))
        rid = row[id_pos] if id_pos is not None and id_pos < len(row) else None
        if pos >= len(row):
            yield InputRecord(None, rid, f"row has {len(row)} fields, no {column!r} column", fields)
        else:
            yield InputRecord(row[pos], rid, None, fields)


def read_parquet(stream: IO[bytes], column: str | None = None, batch_rows: int = 8192) -> Iterator[InputRecord]:
    """Parquet (needs pyarrow: ``pip install 'jobtitles[parquet]'``), read in row batches."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError("reading Parquet needs pyarrow: pip install 'jobtitles[parquet]'") from exc
    try:
        pf = pq.ParquetFile(stream)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"not a readable Parquet file: {exc}") from exc
    names = pf.schema_arrow.names
    column = column or ("title" if "title" in names else names[0] if names else None)
    if column not in names:
        raise InputError(f"column {column!r} not found; the file has: {', '.join(names) or '(nothing)'}")
    for batch in pf.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            value = row.get(column)
            rid = row.get("id")
            if value is None:
                yield InputRecord(None, rid, f"column {column!r} is null", row)
            elif not isinstance(value, str):
                yield InputRecord(None, rid, f"column {column!r} is not a string ({type(value).__name__})", row)
            else:
                yield InputRecord(value, rid, None, row)


def read_records(stream: IO[bytes], fmt: str, field_name: str = "title", column: str | None = None
                 ) -> Iterator[InputRecord]:
    """Dispatch to the reader for ``fmt``."""
    if fmt == "text":
        return read_text(stream)
    if fmt == "jsonl":
        return read_jsonl(stream, field_name)
    if fmt in ("csv", "tsv"):
        return read_csv(stream, column, "\t" if fmt == "tsv" else ",")
    if fmt == "parquet":
        return read_parquet(stream, column)
    raise InputError(f"unknown input format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")


def output_record(rec: InputRecord, pred: Prediction, keep_columns: bool = False) -> dict:
    """The output dict of one record (``id`` first when the input had one; input fields too if asked)."""
    out = pred.to_dict()
    note = rec.fields.get("_note")
    if note:
        out["reason"] = note if not out.get("reason") else f"{out['reason']}; {note}"
    head = {"id": rec.id} if rec.id is not None else {}
    if keep_columns:
        head.update({k: v for k, v in rec.fields.items() if not k.startswith("_") and k not in out and k != "id"})
    return {**head, **out}


class Writer:
    """Writes output dicts as JSONL or CSV/TSV to a text stream.

    CSV/TSV columns are fixed by the first record: ``id``, any passed-through input
    columns, then the result fields; ``areas`` is written as ``label:score;...``.
    """

    def __init__(self, stream: IO[str], fmt: str) -> None:
        self.stream = stream
        self.fmt = fmt
        self._csv = csv.writer(stream, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n") \
            if fmt in ("csv", "tsv") else None
        self._columns: list[str] | None = None

    def write(self, record: dict) -> None:
        if self._csv is None:
            line = json.dumps(record, ensure_ascii=False, default=str)
            self.stream.write(line.translate(_LINE_BREAKS) + "\n")
            return
        if self._columns is None:
            extra = [k for k in record if k not in OUTPUT_FIELDS and k != "id"]
            self._columns = ["id"] + extra + OUTPUT_FIELDS
            self._csv.writerow(self._columns)
        areas = ";".join(f"{a['label']}:{a['score']}" for a in record.get("areas") or [])
        row = [areas if k == "areas" else record.get(k) for k in self._columns]
        self._csv.writerow(["" if v is None else v for v in row])
