"""Training stage (``jobtitles.train``): needs the ``[train]`` extra (torch and friends).

Modules that need torch call :func:`require_train_extra` first, so that importing
them without the extra fails with a message that says what to install.
"""

from __future__ import annotations

import importlib.util
import sys

TRAIN_EXTRA_HINT = (
    "this part of jobtitles needs the training extra (torch, sentence-transformers, onnx): "
    "pip install 'jobtitles[train]'  (from a clone: pip install -e '.[train]')"
)


def require_train_extra(*modules: str) -> None:
    """Raise ImportError naming the ``[train]`` extra when a training dependency is missing."""
    for name in modules or ("torch", "sentence_transformers", "onnx"):
        if name in sys.modules and sys.modules[name] is None or (
            name not in sys.modules and importlib.util.find_spec(name) is None
        ):
            raise ImportError(f"{name} is not installed: {TRAIN_EXTRA_HINT}")
