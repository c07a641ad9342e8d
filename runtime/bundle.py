"""A model bundle on disk: ``model.onnx``, ``tokenizer.json``, ``labels.json``, ``manifest.json``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

BUNDLE_FORMAT_VERSION = 2  # 2: the model also outputs title_probs (the non-title detector)
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
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
        return self.path / TOKENIZER_FILE

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
        missing = [f for f in (MODEL_FILE, TOKENIZER_FILE, LABELS_FILE, MANIFEST_FILE) if not (root / f).exists()]
        if missing:
            raise BundleError(
                f"no usable model bundle at {root} (missing {', '.join(missing)}). Build the default bundle with "
                "`make demo` (or `jobtitles export`), or pass --model / set JOBTITLES_MODEL to a bundle folder."
            )
        manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
        fmt = manifest.get("format_version")
        if fmt != BUNDLE_FORMAT_VERSION:
            raise BundleError(f"{root}: bundle format {fmt!r}, this jobtitles reads {BUNDLE_FORMAT_VERSION}; "
                              "re-export the bundle with this version")
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
