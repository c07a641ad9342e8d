"""The cache of optimised session graphs: same outputs as a fresh session, a hit on the second load,
and every failure (damaged entry, unwritable folder, changed model) falls back to the bundle."""

import json
import os
import shutil

import numpy as np
import pytest

from jobtitles.bundle import Bundle
from jobtitles.classifier import Classifier, OnnxSession
from jobtitles.graph_cache import (GRAPH_FILE, MAX_ENTRIES, WEIGHTS_FILE, GraphCache, GraphKey, default_cache_dir,
                                   resolve_cache_dir)

from conftest import DEV_FILES, write_identity_model

TITLES = [json.loads(line)["title"] for line in DEV_FILES[0].read_text(encoding="utf-8").splitlines()[:48]]
TITLES += ["店长", "Praktikant (m/w/d) Marketing", "Apply now"]


def probabilities(clf: Classifier) -> list[np.ndarray]:
    return list(clf.probabilities(TITLES))


@pytest.fixture(scope="module")
def fresh(bundle_dir) -> list[np.ndarray]:
    """The outputs of a session optimised from the bundle, with no cache involved."""
    clf = Classifier.load(bundle_dir, graph_cache=False, cache_size=0)
    assert clf.session_source == "model"
    return probabilities(clf)


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_the_second_load_opens_the_cached_graph_and_gives_identical_outputs(bundle_dir, fresh, tmp_path):
    first = Classifier.load(bundle_dir, graph_cache=tmp_path, cache_size=0)
    assert first.session_source == "model, cached"
    entries = [p for p in tmp_path.iterdir()]
    assert len(entries) == 1 and (entries[0] / GRAPH_FILE).is_file() and (entries[0] / WEIGHTS_FILE).is_file()
    assert_same(probabilities(first), fresh)
    second = Classifier.load(bundle_dir, graph_cache=tmp_path, cache_size=0)
    assert second.session_source == "cache"
    assert_same(probabilities(second), fresh)


@pytest.mark.parametrize("damage", ["garbage", "empty weights", "no weights"])
def test_a_damaged_entry_is_rebuilt_from_the_bundle(bundle_dir, fresh, tmp_path, damage):
    Classifier.load(bundle_dir, graph_cache=tmp_path)
    (entry,) = tmp_path.iterdir()
    if damage == "garbage":
        (entry / GRAPH_FILE).write_bytes(b"not a graph")
    elif damage == "empty weights":
        (entry / WEIGHTS_FILE).write_bytes(b"")
    else:
        (entry / WEIGHTS_FILE).unlink()
    clf = Classifier.load(bundle_dir, graph_cache=tmp_path, cache_size=0)
    assert clf.session_source == "model, cached"
    assert_same(probabilities(clf), fresh)
    assert Classifier.load(bundle_dir, graph_cache=tmp_path).session_source == "cache"


def test_a_folder_that_cannot_be_written_only_turns_the_cache_off(bundle_dir, fresh, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    clf = Classifier.load(bundle_dir, graph_cache=blocker / "graphs", cache_size=0)
    assert clf.session_source == "model"
    assert_same(probabilities(clf), fresh)


def test_a_changed_model_file_misses_the_cache(bundle_dir, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    cache = tmp_path / "cache"
    assert Classifier.load(copy, graph_cache=cache).session_source == "model, cached"
    stat = (copy / "model.onnx").stat()
    os.utime(copy / "model.onnx", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert Classifier.load(copy, graph_cache=cache).session_source == "model, cached"
    assert len(list(cache.iterdir())) == 2


def test_an_entry_records_the_coding_it_holds(tmp_path):
    """A graph with nothing to recode falls back to uint8 x uint8; its entry says so, and a later load
    that asks for int8 weights finds it and reports the coding it really runs."""
    path = write_identity_model(tmp_path / "model.onnx")
    cache = GraphCache(tmp_path / "cache")
    first = OnnxSession(path, int8_kernel="u8s8", graph_cache=cache)
    assert (first.int8_kernel, first.source) == ("u8u8", "model, cached")
    second = OnnxSession(path, int8_kernel="u8s8", graph_cache=cache)
    assert (second.int8_kernel, second.source) == ("u8u8", "cache")


def test_only_the_newest_entries_are_kept_and_stale_half_written_folders_go(tmp_path):
    cache = GraphCache(tmp_path)
    for i in range(MAX_ENTRIES + 2):
        entry = tmp_path / f"entry{i}"
        entry.mkdir()
        os.utime(entry, ns=(i * 10**9, i * 10**9))
    stale = tmp_path / ".writing-old"
    stale.mkdir()
    os.utime(stale, ns=(0, 0))
    busy = cache.reserve()  # another process writing just now
    cache.prune()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([busy.name] + [f"entry{i}" for i in range(2, MAX_ENTRIES + 2)])


def test_the_key_changes_with_everything_the_graph_depends_on(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    base = GraphKey.for_model(bundle.model_path, "abc", "u8u8", "ORT_ENABLE_EXTENDED", "1.0")
    assert GraphKey.for_model(bundle.model_path, "abc", "u8u8", "ORT_ENABLE_EXTENDED", "1.0") == base
    fields = {"model_sha256": "abd", "model_size": base.model_size + 1, "model_mtime_ns": 1, "int8_kernel": "u8s8",
              "optimization": "ORT_ENABLE_ALL", "onnxruntime": "1.1", "cpu": "aarch64-0"}
    for name, value in fields.items():
        changed = GraphKey(**{**base.__dict__, name: value})
        assert changed.digest != base.digest, name


def test_the_cache_folder_follows_the_environment(tmp_path):
    assert default_cache_dir({"JOBTITLES_GRAPH_CACHE": str(tmp_path)}) == tmp_path
    for off in ("", "0", "off", "False", "none"):
        assert default_cache_dir({"JOBTITLES_GRAPH_CACHE": off}) is None
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "jobtitles" / "graphs"
    assert default_cache_dir({}).parts[-3:] == (".cache", "jobtitles", "graphs")
    assert resolve_cache_dir(False) is None
    assert resolve_cache_dir(tmp_path) == tmp_path
