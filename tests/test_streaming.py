"""Streaming behaviour and hostile input: one record out per record in, in order, never a crash."""

import csv
import io
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobtitles.io import Writer, read_records
from jobtitles.run import classify_batches
from jobtitles.stream import MicroBatcher

CLI = [sys.executable, "-m", "jobtitles.cli", "classify"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run_stream(classifier, data: bytes, fmt: str, **kw) -> list[dict]:
    out = io.StringIO()
    writer = Writer(out, "jsonl")
    records = read_records(io.BufferedReader(io.BytesIO(data)), fmt, kw.get("field", "title"), kw.get("column"))
    list(classify_batches(classifier, MicroBatcher(records, 16, 0.001), writer))
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _n_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@SETTINGS
@given(st.binary(max_size=400))
def test_text_path_any_bytes(classifier, data):
    recs = _run_stream(classifier, data, "text")
    assert len(recs) == _n_lines(data)
    for rec in recs:
        assert rec["valid"] in (True, False)
        assert rec["valid"] or rec["reason"]


@SETTINGS
@given(st.lists(st.text(max_size=60), max_size=20))
def test_text_path_lines_in_order(classifier, lines):
    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    data = "".join(ln + "\n" for ln in lines).encode("utf-8", errors="surrogatepass")
    recs = _run_stream(classifier, data, "text")
    assert len(recs) == len(lines)
    for ln, rec in zip(lines, recs):
        assert rec["title"] == ln.replace("\x00", "").encode("utf-8", "replace").decode("utf-8", "replace")


@SETTINGS
@given(st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["id", "title", "x"]), st.one_of(st.none(), st.integers(), st.text(max_size=40)),
                    max_size=3).map(json.dumps),
    st.text(max_size=40).map(lambda s: s.replace("\n", " ")),
), max_size=15))
def test_jsonl_path_any_lines(classifier, lines):
    data = "".join(ln + "\n" for ln in lines).encode("utf-8", errors="replace")
    recs = _run_stream(classifier, data, "jsonl")
    assert len(recs) == len(lines)
    for ln, rec in zip(lines, recs):
        try:
            obj = json.loads(ln)
        except ValueError:
            assert not rec["valid"] and "invalid JSON" in rec["reason"]
            continue
        if isinstance(obj, dict) and isinstance(obj.get("title"), str):
            assert rec["title"] == obj["title"]
        else:
            assert not rec["valid"]


@SETTINGS
@given(st.lists(st.lists(st.text(max_size=30), min_size=0, max_size=4), max_size=15))
def test_csv_path_ragged_rows_and_quoted_newlines(classifier, rows):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["title", "other"])
    rows = [r for r in rows if r]  # csv.writer writes [] as an empty line, which csv.reader skips
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8", errors="replace")
    expected = list(csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline="")))[1:]
    recs = _run_stream(classifier, data, "csv")
    assert len(recs) == len(expected)
    for row, rec in zip(expected, recs):
        if row:
            assert rec["title"] == row[0]


def test_hostile_file_through_the_cli(bundle_dir, tmp_path):
    lines = [b"", b"   ", b"\x00\x00\x00", b"\xff\xfe\xfd", b"1234567890", b"!!!???", "👩‍💻🚀".encode(),
             "Ingénieur·e 店长 مهندس".encode(), b"A" * (2 << 20), b"Senior Engineer\r", b"<script>alert(1)</script>",
             b"\x1b[31mred\x1b[0m Nurse", "\u202eRTL override Engineer".encode(), b"\t\t\t", b"Nurse" * 10000]
    src = tmp_path / "hostile.txt"
    src.write_bytes(b"\n".join(lines))
    res = subprocess.run(CLI + [str(src), "--model", str(bundle_dir)], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = [json.loads(x) for x in res.stdout.decode().splitlines()]
    assert len(recs) == len(lines)
    assert all(r["valid"] or r["reason"] for r in recs)
    assert "longer than" in recs[8]["reason"]
    assert b"Traceback" not in res.stderr


def test_single_line_in_an_open_pipe_is_answered_at_once(bundle_dir):
    p = subprocess.Popen(CLI + ["--model", str(bundle_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"Registered Nurse\n")
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 60)  # includes model loading
        assert ready, "no answer while stdin stays open"
        assert json.loads(p.stdout.readline())["title"] == "Registered Nurse"
    finally:
        p.stdin.close()
        p.wait(timeout=60)
    assert p.returncode == 0


def test_closed_stdout_ends_quietly(bundle_dir):
    cmd = f"yes 'Software Engineer' | head -3000 | {' '.join(CLI)} --model {bundle_dir} | head -1"
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=300)
    assert res.stdout.count(b"\n") == 1
    assert b"Traceback" not in res.stderr and b"Error" not in res.stderr
    assert res.returncode == 141


def test_sigterm_stops_after_writing_finished_records(bundle_dir, tmp_path):
    p = subprocess.Popen(CLI + ["--model", str(bundle_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdin.write(b"Nurse\nWelder\n")
    p.stdin.flush()
    ready, _, _ = select.select([p.stdout], [], [], 60)
    assert ready
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 143
    assert b"Traceback" not in err
    assert [json.loads(x)["title"] for x in out.splitlines()] == ["Nurse", "Welder"]


def test_output_file_is_written_atomically(bundle_dir, tmp_path):
    target = tmp_path / "out.jsonl"
    src = tmp_path / "in.csv"
    src.write_text("name\nNurse\n")
    res = subprocess.run(CLI + [str(src), "--column", "nope", "-o", str(target), "--model", str(bundle_dir)],
                         capture_output=True, timeout=300)
    assert res.returncode == 2
    assert not target.exists() and not list(tmp_path.glob("*.partial"))


def test_keep_columns_and_min_score(bundle_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a1", "title": "Registered Nurse", "source": "feed-7"}) + "\n")
    res = subprocess.run(CLI + [str(src), "--keep-columns", "--top-k", "28", "--min-score", "0.05",
                                "--model", str(bundle_dir)], capture_output=True, timeout=300)
    rec = json.loads(res.stdout)
    assert rec["id"] == "a1" and rec["source"] == "feed-7"
    assert rec["areas"] and all(a["score"] >= 0.05 for a in rec["areas"])


@pytest.mark.slow
def test_memory_stays_flat_on_a_million_line_stream(bundle_dir, tmp_path):
    """Peak RSS of a 1,000,000-line stream is within 30 MB of a 100,000-line stream."""
    if not os.path.exists("/usr/bin/time"):
        pytest.skip("/usr/bin/time not available")

    def peak_kb(n: int) -> int:
        gen = (f"import sys\nw = sys.stdout.write\nfor i in range({n}):\n"
               "    w('Senior Nurse\\n' if i % 2000 == 0 else '12345\\n')\n")
        cmd = (f"{sys.executable} -c \"{gen}\" | /usr/bin/time -f 'PEAK %M' {' '.join(CLI)} --model {bundle_dir} "
               "--batch-size 256 > /dev/null")
        res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, res.stderr[-2000:]
        return int(res.stderr.strip().splitlines()[-1].split()[1])

    small, large = peak_kb(100_000), peak_kb(1_000_000)
    assert large - small < 30_000, (small, large)


def test_progress_on_a_terminal_stderr_only(bundle_dir, tmp_path):
    import pty

    src = tmp_path / "titles.txt"
    src.write_text("Nurse\nWelder\nCashier\n")
    master, slave = pty.openpty()
    try:
        res = subprocess.run(CLI + [str(src), "--model", str(bundle_dir)], stdout=subprocess.PIPE, stderr=slave,
                             timeout=300)
        os.close(slave)
        slave = None
        err = b""
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert res.returncode == 0
    assert b"3 titles in" in err and b"/s" in err
    assert len(res.stdout.splitlines()) == 3 and b"titles in" not in res.stdout
    quiet = subprocess.run(CLI + [str(src), "--model", str(bundle_dir), "--quiet"], capture_output=True, timeout=300)
    assert quiet.stderr == b""


def test_parquet_input(bundle_dir, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    src = tmp_path / "titles.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "job": ["Registered Nurse", None, "Apply now"]}), src)
    res = subprocess.run(CLI + [str(src), "--column", "job", "--model", str(bundle_dir)], capture_output=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["id"] for r in recs] == [1, 2, 3]
    assert [r["valid"] for r in recs] == [True, False, False]
    bad = subprocess.run(CLI + [str(src), "--column", "title", "--model", str(bundle_dir)], capture_output=True,
                         timeout=300)
    assert bad.returncode == 2 and bad.stdout == b""
