"""Shared fixtures: repository paths, the default bundle, the reference data folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("JOBTITLES_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_BUNDLE = REPO / "models" / "default"
DEV_FILES = [REPO / "tests" / "data" / "dev_postings_en.jsonl", REPO / "tests" / "data" / "dev_multilingual.jsonl"]
DEV_NONTITLES = REPO / "tests" / "data" / "dev_nontitles.jsonl"

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs the [train] extra (torch)")
needs_shared = pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"reference data not found at {SHARED_DATA}")


def write_identity_model(path: Path) -> Path:
    """A one-node fp32 graph (y = x) with no weights at all, written to ``path``."""
    import onnx

    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path.write_bytes(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
                     .SerializeToString())
    return path


@pytest.fixture(scope="session", autouse=True)
def graph_cache_dir(tmp_path_factory) -> Path:
    """The tests' own graph cache (jobtitles.graph_cache), so that they never write to ~/.cache; the
    CLI tests' subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("graph-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JOBTITLES_GRAPH_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    if not (DEFAULT_BUNDLE / "manifest.json").exists():
        pytest.skip("default bundle not built: run `make bundle` (make test does it)")
    return DEFAULT_BUNDLE


@pytest.fixture(scope="session")
def classifier(bundle_dir):
    from jobtitles.classifier import Classifier

    return Classifier.load(bundle_dir)
