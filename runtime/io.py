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

INPUT_FORMATS = ("text", "jsonl", "csv", "tsv")
OUTPUT_FORMATS = ("jsonl", "csv", "tsv")
OUTPUT_FIELDS = ["title", "valid", "level", "level_score", "area", "area_score", "areas", "reason"]
csv.field_size_limit(sys.maxsize)


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
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"), (".tsv", "tsv"), (".tab", "tsv")):
        if name.endswith(ext):
            return fmt
    return "text"


def _decode(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), "invalid UTF-8 bytes replaced with U+FFFD"


def read_text(stream: IO[bytes]) -> Iterator[InputRecord]:
    """One title per line; invalid UTF-8 is replaced and flagged, NUL bytes removed."""
    for raw in stream:
        line, note = _decode(raw.rstrip(b"\r\n"))
        if "\x00" in line:
            line = line.replace("\x00", "")
            note = "NUL bytes removed" if note is None else note + "; NUL bytes removed"
        yield InputRecord(line, None, None, {"_note": note} if note else {})


def read_jsonl(stream: IO[bytes], field_name: str = "title") -> Iterator[InputRecord]:
    """One JSON object per line; ``field_name`` holds the title and ``id`` is passed through."""
    for raw in stream:
        line, note = _decode(raw.rstrip(b"\r\n"))
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


def read_records(stream: IO[bytes], fmt: str, field_name: str = "title", column: str | None = None
                 ) -> Iterator[InputRecord]:
    """Dispatch to the reader for ``fmt``."""
    if fmt == "text":
        return read_text(stream)
    if fmt == "jsonl":
        return read_jsonl(stream, field_name)
    if fmt in ("csv", "tsv"):
        return read_csv(stream, column, "\t" if fmt == "tsv" else ",")
    raise InputError(f"unknown input format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")


def output_record(rec: InputRecord, pred: Prediction) -> dict:
    """The output dict of one record (``id`` first when the input had one)."""
    out = pred.to_dict()
    if rec.title is None and rec.error:
        out["title"] = None
    note = rec.fields.get("_note")
    if note:
        out["reason"] = note if not out.get("reason") else f"{out['reason']}; {note}"
    return {"id": rec.id, **out} if rec.id is not None else out


class Writer:
    """Writes output dicts as JSONL or CSV/TSV to a text stream."""

    def __init__(self, stream: IO[str], fmt: str, with_id: bool = True) -> None:
        self.stream = stream
        self.fmt = fmt
        self._csv = None
        if fmt in ("csv", "tsv"):
            self._csv = csv.writer(stream, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            self._csv.writerow((["id"] if with_id else []) + OUTPUT_FIELDS)
        self.with_id = with_id

    def write(self, record: dict) -> None:
        if self._csv is None:
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        areas = ";".join(f"{a['label']}:{a['score']}" for a in record.get("areas") or [])
        row = [record.get(k) if k != "areas" else areas for k in OUTPUT_FIELDS]
        row = ["" if v is None else v for v in row]
        self._csv.writerow(([record.get("id", "")] if self.with_id else []) + row)
