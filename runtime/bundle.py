"""A model bundle on disk: ``model.onnx``, ``tokenizer.json.gz`` (``tokenizer.json`` in bundles before
format 3), ``labels.json``, ``manifest.json``."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

# 2: the model also outputs title_probs (the non-title detector); 3: it also outputs the sentence embedding,
# may carry a title memory (export/title_memory.py), and the tokenizer is stored gzipped
BUNDLE_FORMAT_VERSION = 3
READABLE_FORMATS = (2, 3)
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_GZ_FILE = "tokenizer.json.gz"
LABELS_FILE = "labels.json"
MANIFEST_FILE = "manifest.json"
ENV_MODEL = "JOBTITLES_MODEL"


class BundleError(RuntimeError):
    """A bundle is missing or malformed; the message says what to do."""


@dataclass(frozen=True)
class Bundle:
    """Paths and metadata of one bundle folder."""

    path: Path
    manifest: dict
    levels: list[str]
    areas: list[str]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def tokenizer_path(self) -> Path:
        """``tokenizer.json.gz``, or ``tokenizer.json`` in a bundle of format 2."""
        gz = self.path / TOKENIZER_GZ_FILE
        return gz if gz.exists() else self.path / TOKENIZER_FILE

    @property
    def query_prefix(self) -> str:
        return self.manifest.get("encoder", {}).get("query_prefix", "")

    @property
    def max_tokens(self) -> int:
        return int(self.manifest.get("encoder", {}).get("max_tokens", 128))

    @property
    def title_threshold(self) -> float:
        """Inputs whose ``title_probs`` fall below this are reported as not a job title."""
        return float(self.manifest["title_detector"]["threshold"])

    @property
    def version(self) -> str:
        return str(self.manifest.get("bundle_version", "unknown"))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Bundle:
        """Open a bundle folder (default: ``$JOBTITLES_MODEL`` or the repository's ``models/default``)."""
        root = Path(path) if path is not None else default_bundle_path()
        missing = [f for f in (MODEL_FILE, LABELS_FILE, MANIFEST_FILE) if not (root / f).exists()]
        if not (root / TOKENIZER_GZ_FILE).exists() and not (root / TOKENIZER_FILE).exists():
            missing.append(TOKENIZER_GZ_FILE)
        if missing:
            raise BundleError(
                f"no usable model bundle at {root} (missing {', '.join(missing)}). Build the default bundle with "
                "`make demo` (or `jobtitles export`), or pass --model / set JOBTITLES_MODEL to a bundle folder."
            )
        manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
        fmt = manifest.get("format_version")
        if fmt not in READABLE_FORMATS:
            raise BundleError(f"{root}: bundle format {fmt!r}, this jobtitles reads "
                              f"{' and '.join(map(str, READABLE_FORMATS))}; re-export the bundle with this version")
        labels = json.loads((root / LABELS_FILE).read_text(encoding="utf-8"))
        return cls(root, manifest, list(labels["levels"]), list(labels["areas"]))


def default_bundle_path() -> Path:
    """``$JOBTITLES_MODEL``, else ``models/default`` next to the package (source checkout / editable install)."""
    env = os.environ.get(ENV_MODEL)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here / "models" / "default", here.parent / "models" / "default"):
        if (candidate / MANIFEST_FILE).exists():
            return candidate
    return here.parent / "models" / "default"


def load_tokenizer(path: str | Path):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file, gzipped or not (by its name)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if path.suffix == ".gz":
        return Tokenizer.from_str(gzip.decompress(path.read_bytes()).decode("utf-8"))
    return Tokenizer.from_file(str(path))
