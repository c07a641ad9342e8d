"""A disk cache of optimised session graphs, so that a process start skips onnxruntime's graph rewrite.

Building a session on the bundle's ``model.onnx`` spends most of its time in onnxruntime's graph
optimisations (fusing the per-row quantisation, folding constants, ...), the same work at every
start. The first session on a machine saves the optimised graph (onnxruntime's
``optimized_model_filepath``); later starts open that file, which needs no rewriting
(``bench/run_bench.py`` reports cold start both ways).

An entry is keyed by everything that decides its contents: the model file (the manifest's
sha256, size and modification time), the int8 weight coding, the optimisation level, the
onnxruntime version and the CPU (architecture and feature flags), so a changed bundle, an
upgraded onnxruntime or another CPU never reads a stale graph. The folder is
``$JOBTITLES_GRAPH_CACHE`` when set (``0``, ``off``, ``false``, ``no`` or an empty value turn the
cache off), else ``$XDG_CACHE_HOME/jobtitles/graphs`` or ``~/.cache/jobtitles/graphs``. Entries are
written to a temporary name and renamed, so concurrent processes never read a partial file; the
newest :data:`MAX_ENTRIES` are kept. A folder that cannot be written only turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

ENV_GRAPH_CACHE = "JOBTITLES_GRAPH_CACHE"
OFF_VALUES = frozenset({"", "0", "off", "false", "no", "none"})
MAX_ENTRIES = 4  # about 42 MB each
GRAPH_FILE = "graph.onnx"
WEIGHTS_FILE = "graph.weights"
WRITING_PREFIX = ".writing-"


def default_cache_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The cache folder the environment asks for; None when it turns the cache off."""
    env = os.environ if environ is None else environ
    if ENV_GRAPH_CACHE in env:
        value = env[ENV_GRAPH_CACHE].strip()
        return None if value.lower() in OFF_VALUES else Path(value).expanduser()
    base = env.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path("~").expanduser() / ".cache")
        except RuntimeError:  # no home folder (e.g. a container user without one): no cache
            return None
    return Path(base) / "jobtitles" / "graphs"


def resolve_cache_dir(graph_cache: bool | str | Path) -> Path | None:
    """``True``: :func:`default_cache_dir`; ``False``: off; a path: that folder."""
    if graph_cache is True:
        return default_cache_dir()
    if graph_cache is False:
        return None
    return Path(graph_cache).expanduser()


def cpu_signature() -> str:
    """The CPU's architecture and a digest of its feature flags (what kernel choices may depend on)."""
    from jobtitles.int8_kernels import cpu_flags

    flags = " ".join(sorted(cpu_flags()))
    return f"{platform.machine().lower()}-{hashlib.sha256(flags.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class GraphKey:
    """What an optimised graph depends on; :attr:`digest` names its cache file."""

    model_sha256: str  # from the bundle manifest ("" when it records none)
    model_size: int
    model_mtime_ns: int
    int8_kernel: str
    optimization: str
    onnxruntime: str
    cpu: str

    @property
    def digest(self) -> str:
        text = "|".join(str(v) for v in (self.model_sha256, self.model_size, self.model_mtime_ns, self.int8_kernel,
                                         self.optimization, self.onnxruntime, self.cpu))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @classmethod
    def for_model(cls, model_path: Path, model_sha256: str, int8_kernel: str, optimization: str,
                  onnxruntime_version: str) -> GraphKey:
        stat = model_path.stat()
        return cls(model_sha256, stat.st_size, stat.st_mtime_ns, int8_kernel, optimization, onnxruntime_version,
                   cpu_signature())


@dataclass(frozen=True)
class GraphCache:
    """One cache folder of optimised graphs. An entry is a folder holding the graph (:data:`GRAPH_FILE`)
    and its weights (:data:`WEIGHTS_FILE`, onnxruntime's external data: the small graph file parses
    faster, measured 0.02 against 0.04 s)."""

    folder: Path

    def entry(self, key: GraphKey, kernel: str) -> Path:
        """The entry folder for ``key`` when built with the int8 coding ``kernel`` (the one asked for,
        or ``u8u8`` where the bundle had nothing to recode)."""
        return self.folder / f"{key.digest}-{kernel}"

    def lookup(self, key: GraphKey) -> tuple[Path, str] | None:
        """The cached graph file for ``key`` and the int8 coding it holds, or None."""
        for kernel in dict.fromkeys((key.int8_kernel, "u8u8")):
            graph = self.entry(key, kernel) / GRAPH_FILE
            if graph.is_file():
                return graph, kernel
        return None

    def reserve(self) -> Path | None:
        """A fresh folder inside the cache for onnxruntime to write a graph into (as :data:`GRAPH_FILE`
        and :data:`WEIGHTS_FILE`); None when the cache cannot be created or written (the caller then
        builds without caching)."""
        import tempfile  # only when writing: its import costs a cold start about 5 ms

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=WRITING_PREFIX, dir=self.folder))
        except OSError:
            return None

    def commit(self, written: Path, key: GraphKey, kernel: str) -> Path | None:
        """Move a folder filled by onnxruntime into place for ``key`` and the coding ``kernel`` it holds
        (one atomic rename), then keep only the newest :data:`MAX_ENTRIES`. Returns the entry, or None
        when the graph is missing or the rename failed (another process may have won the race)."""
        target = self.entry(key, kernel)
        try:
            if not (written / GRAPH_FILE).is_file():
                raise OSError("onnxruntime wrote no graph")
            os.chmod(written, 0o755)  # mkdtemp makes it private; other users may share the cache
            for path in written.iterdir():
                os.chmod(path, 0o644)
            os.rename(written, target)
        except OSError:
            self.discard(written)
            return None
        self.prune()
        return target

    def discard(self, path: Path) -> None:
        """Remove an entry or a half-written folder, ignoring what is already gone or cannot be removed."""
        import shutil

        shutil.rmtree(path, ignore_errors=True)

    def prune(self, keep: int = MAX_ENTRIES, stale_after_s: float = 3600.0) -> None:
        """Delete all but the ``keep`` most recently written entries, and folders that a process left
        half-written more than ``stale_after_s`` ago."""
        import time

        try:
            folders = [(p, p.stat().st_mtime_ns) for p in self.folder.iterdir() if p.is_dir()]
        except OSError:
            return
        entries = sorted(((p, t) for p, t in folders if not p.name.startswith(".")), key=lambda e: e[1], reverse=True)
        for old, _ in entries[keep:]:
            self.discard(old)
        cutoff = time.time_ns() - int(stale_after_s * 1e9)
        for half, written in folders:
            if half.name.startswith(WRITING_PREFIX) and written < cutoff:
                self.discard(half)


def save_options(opts, folder: Path) -> None:
    """Ask onnxruntime (``opts``: its ``SessionOptions``) to write the optimised graph into ``folder``,
    with the weights in a file of their own."""
    opts.optimized_model_filepath = str(folder / GRAPH_FILE)
    opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS_FILE)
    opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
