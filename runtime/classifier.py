"""The torch-free classifier: one ONNX Runtime session, one tokenizer, cleaned titles in, predictions out."""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jobtitles.bundle import Bundle, load_tokenizer
from jobtitles.cleaning import assess_title
from jobtitles.graph_cache import GraphCache, GraphKey, resolve_cache_dir, save_options

# Measured: bench/parallelism.py and bench/run_bench.py --sweep (README, "Speed and footprint").
DEFAULT_BATCH_SIZE = 32
# The smallest batch handed to a second core: an input smaller than threads × this runs on fewer cores.
# Measured (bench/small_inputs.py, 2 cores): calls of 6 / 10 titles took 12.5 / 19.5 ms with 4, 18.4 / 22.3 with 8.
MIN_PARALLEL_BATCH = 4
DEFAULT_TOP_K = 3
SCORE_OUTPUTS = ["level_probs", "area_probs", "title_probs"]  # the graph's outputs the classifier reads
DEFAULT_CACHE_SIZE = 50_000


@dataclass(frozen=True)
class Prediction:
    """The answer for one input record.

    ``valid`` is False when the input is not a classifiable title; then labels and
    scores are ``None`` and ``reason`` says why. ``reason`` may also be set on a
    valid prediction (e.g. a long input that was cut to its first words).
    ``title_score`` is the model's probability that the input is a job title at all
    (set whenever the model saw the input; below the bundle's threshold → not valid).
    """

    title: str | None
    valid: bool
    level: str | None = None
    level_score: float | None = None
    area: str | None = None
    area_score: float | None = None
    areas: list[tuple[str, float]] = field(default_factory=list)
    title_score: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["areas"] = [{"label": a, "score": s} for a, s in self.areas]
        return out


class Scores(NamedTuple):
    """Model outputs for a list of texts, row-aligned with the texts."""

    level: np.ndarray  # [n, n_levels] probabilities
    area: np.ndarray  # [n, n_areas] probabilities
    title: np.ndarray  # [n] probability that the text is a job title

    @classmethod
    def zeros(cls, n: int, n_levels: int, n_areas: int) -> Scores:
        return cls(np.zeros((n, n_levels), np.float32), np.zeros((n, n_areas), np.float32), np.zeros(n, np.float32))


def pad_encodings(encs: Sequence, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (right-padded with ``pad_id``) and attention mask for tokenizer encodings."""
    width = max(len(e.ids) for e in encs)
    ids = np.full((len(encs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encs), width), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    return ids, mask


def encode_batch(tokenizer, texts: Sequence[str], prefix: str, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (right-padded with ``pad_id``) and attention mask for ``prefix + text``."""
    return pad_encodings(tokenizer.encode_batch([prefix + t for t in texts]), pad_id)


CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 2.0 for a container started with
    ``--cpus 2``), from cgroup v2 ``cpu.max`` or v1 ``cpu/cpu.cfs_quota_us``; None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text(encoding="ascii"))
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs this process may use: its affinity mask where the OS has one, capped by a cgroup
    CPU quota rounded up (:func:`cgroup_cpu_quota`)."""
    try:
        n = len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup)
    return n if quota is None else max(1, min(n, math.ceil(quota)))


def batch_spans(order: np.ndarray, batch_size: int, threads: int) -> list[np.ndarray]:
    """``order`` (input positions sorted by token count) cut into batches of at most ``batch_size``;
    an input too small to fill ``threads`` batches is cut into ``threads`` smaller ones (none below
    :data:`MIN_PARALLEL_BATCH`), so that every core gets work."""
    n = len(order)
    size = min(batch_size, max(MIN_PARALLEL_BATCH, -(-n // max(1, threads))))
    return [order[start : start + size] for start in range(0, n, size)]


class OnnxSession:
    """One ONNX Runtime session over a bundle's ``model.onnx`` (reused for every batch).

    With a :class:`~jobtitles.graph_cache.GraphCache`, the optimised graph of the first session on
    this machine is saved there and later sessions open it instead of optimising again
    (``source`` says which: ``"model"``, ``"model, cached"`` or ``"cache"``).
    """

    # EXTENDED, not ALL: ALL only adds CPU layout passes (NCHWc) that find nothing to change in an
    # encoder, yet cost about 0.1 s of every cold start; the outputs are identical (tests/test_classifier.py).
    OPTIMIZATION = "ORT_ENABLE_EXTENDED"

    def __init__(self, model_path: Path, intra_op_threads: int = 1, optimization: str = OPTIMIZATION,
                 int8_kernel: str = "auto", graph_cache: GraphCache | None = None, model_sha256: str = "") -> None:
        """``intra_op_threads``: the threads one ``run`` may use (1: the caller's thread only, so that
        several runs can go at once on different cores, as :class:`Classifier` does; 0: onnxruntime's
        default, one per physical core). ``int8_kernel``: ``"auto"`` recodes the weights as int8 where
        that is exact and faster (x86 with VNNI, see :mod:`jobtitles.int8_kernels`); ``"u8u8"`` /
        ``"u8s8"`` force a coding.
        ``model_sha256`` (the manifest's) goes into the cache key beside the file's size and time."""
        import onnxruntime as ort

        from jobtitles.int8_kernels import choose_kernel

        model_path = Path(model_path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
        if intra_op_threads:
            opts.intra_op_num_threads = intra_op_threads
            opts.inter_op_num_threads = 1
        # Idle worker threads (intra_op_threads != 1) sleep instead of spinning: on a small machine
        # shared with the caller (an HTTP server, a reader thread, a client) spinning starves everyone else.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.int8_kernel = choose_kernel(int8_kernel)
        self.source = "model"
        key = (GraphKey.for_model(model_path, model_sha256, self.int8_kernel, optimization, ort.__version__)
               if graph_cache is not None else None)
        if key is not None and self._open_cached(ort, graph_cache, key, opts):
            return
        written = graph_cache.reserve() if key is not None else None
        if written is not None:
            save_options(opts, written)
        try:
            self._session = self._build(ort, model_path, opts)
        except BaseException:
            if written is not None:
                graph_cache.discard(written)
            raise
        if written is not None and graph_cache.commit(written, key, self.int8_kernel) is not None:
            self.source = "model, cached"

    def _open_cached(self, ort, cache: GraphCache, key: GraphKey, opts) -> bool:
        """Open the cached graph for ``key``; False when there is none or it cannot be opened (then
        it is removed and rebuilt)."""
        found = cache.lookup(key)
        if found is None:
            return False
        path, kernel = found
        try:
            self._session = self._open(ort, path, opts)
        except Exception:  # a damaged or half-pruned entry: rebuild it from the bundle
            cache.discard(path.parent)
            return False
        self.int8_kernel, self.source = kernel, "cache"
        return True

    def _build(self, ort, model_path: Path, opts):
        """A session on the bundle's graph, recoded to int8 weights when that kernel was chosen."""
        if self.int8_kernel == "u8s8":
            session = self._recoded_session(ort, model_path, opts)
            if session is not None:
                return session
            self.int8_kernel = "u8u8"  # nothing to recode (e.g. an fp32 bundle) or not safely recodable
        return self._open(ort, model_path, opts)

    def _open(self, ort, path: Path, opts):
        """onnxruntime's session on the graph file ``path``."""
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def _recoded_session(self, ort, model_path: Path, opts):
        """A session on the bundle's graph with int8 weights, or None. The recoded graph goes through a
        temporary file: onnxruntime takes a graph only as a path or as ``bytes``, and a ``bytes`` copy
        would hold a second copy of the model in memory while the session is built."""
        import tempfile

        from jobtitles.int8_kernels import recode_signed_weights

        model = bytearray(model_path.stat().st_size)
        with open(model_path, "rb") as fh:
            fh.readinto(model)
        if not recode_signed_weights(model):
            return None
        with tempfile.TemporaryDirectory(prefix="jobtitles-") as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(model)
            del model
            return self._open(ort, path, opts)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Scores:
        """Probabilities for one padded batch (safe to call from several threads at once)."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        level, area, title = self._session.run(SCORE_OUTPUTS, feeds)
        return Scores(level, area, title)


class Classifier:
    """Classify job titles with a model bundle.

    >>> clf = Classifier.load()              # the default bundle
    >>> clf.predict(["Senior Data Engineer"])[0].level
    'Sr Specialist'
    """

    def __init__(self, bundle: Bundle, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 top_k: int = DEFAULT_TOP_K, min_score: float = 0.0, cache_size: int = DEFAULT_CACHE_SIZE,
                 title_threshold: float | None = None, int8_kernel: str = "auto",
                 graph_cache: bool | str | Path = True) -> None:
        """``threads``: how many batches run at once, each on one core (``None``: every CPU this
        process may use, :func:`available_cpus`). One batch never spreads over several cores: at job
        titles' few tokens per batch, splitting each operator between threads cost more in hand-offs
        than it saved (``bench/parallelism.py``). ``graph_cache``: where to keep the optimised session
        graph between processes (``True``: the folder of :func:`jobtitles.graph_cache.default_cache_dir`,
        ``False``: nowhere, or a folder)."""
        self.bundle = bundle
        self.batch_size = max(1, batch_size)
        self.threads = max(1, threads or available_cpus())
        self._pool: ThreadPoolExecutor | None = None  # made on first use: see _workers
        self._pool_pid = 0
        self.top_k = max(1, top_k)
        self.min_score = min_score
        self.cache_size = max(0, cache_size)
        # Below this title score an input is "not a job title"; None: the bundle's own (0 turns it off).
        self.title_threshold = bundle.title_threshold if title_threshold is None else title_threshold
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray, float]] = OrderedDict()
        # The session is built in a worker thread while this thread parses the tokenizer (cold start,
        # bench/run_bench.py). Both hold the GIL for much of their work, so the overlap is small.
        cache_dir = resolve_cache_dir(graph_cache)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobtitles-load") as pool:
            session = pool.submit(OnnxSession, bundle.model_path, intra_op_threads=1, int8_kernel=int8_kernel,
                                  graph_cache=GraphCache(cache_dir) if cache_dir else None,
                                  model_sha256=str(bundle.manifest.get("files", {}).get("model.onnx", "")))
            self._tokenizer = load_tokenizer(bundle.tokenizer_path)
            self._session = session.result()
        self._tokenizer.enable_truncation(max_length=bundle.max_tokens)
        self._pad_id = int(bundle.manifest.get("encoder", {}).get("pad_id", 1))
        self._levels = np.array(bundle.levels, dtype=object)
        self._areas = np.array(bundle.areas, dtype=object)

    @property
    def session_source(self) -> str:
        """Where the session's graph came from: ``"model"`` (the bundle, optimised now), ``"model,
        cached"`` (the same, and saved to the graph cache) or ``"cache"`` (:mod:`jobtitles.graph_cache`)."""
        return self._session.source

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs) -> Classifier:
        """Load a bundle folder (``None``: the default bundle) and open its session."""
        return cls(Bundle.load(path), **kwargs)

    @property
    def levels(self) -> list[str]:
        return list(self.bundle.levels)

    @property
    def areas(self) -> list[str]:
        return list(self.bundle.areas)

    def probabilities(self, texts: Sequence[str]) -> Scores:
        """Level, area and title probabilities for already-cleaned texts.

        All texts are tokenized in one call, then run in batches of similar token count
        (sorted by length, results put back in input order), so little compute goes to padding;
        up to ``threads`` batches run at once (:func:`batch_spans`).
        """
        n = len(texts)
        out = Scores.zeros(n, len(self._levels), len(self._areas))
        if n == 0:
            return out
        prefix = self.bundle.query_prefix
        encs = self._tokenizer.encode_batch([prefix + t for t in texts])
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=n)
        spans = batch_spans(np.argsort(lengths, kind="stable"), self.batch_size, self.threads)

        def run(idx: np.ndarray) -> None:
            got = self._session.run(*pad_encodings([encs[i] for i in idx], self._pad_id))
            out.level[idx], out.area[idx], out.title[idx] = got.level, got.area, got.title

        if self.threads == 1 or len(spans) == 1:
            for idx in spans:
                run(idx)
        else:
            list(self._workers().map(run, spans))  # waits for every batch; re-raises a batch's error here
        return out

    def _workers(self) -> ThreadPoolExecutor:
        """The threads that run batches at once: made on first use, and made again in a child process
        after ``fork`` (threads do not survive it, and a pool whose threads are gone waits forever)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="jobtitles-run")
            self._pool_pid = os.getpid()
        return self._pool

    def clear_cache(self) -> None:
        """Forget cached results (benchmarks use this to measure cold work)."""
        self._cache.clear()

    def cached_probabilities(self, texts: Sequence[str]) -> Scores:
        """Like :meth:`probabilities`, but each distinct cleaned text is computed once and kept in a
        bounded LRU cache (real feeds repeat titles a lot)."""
        if not self.cache_size:
            return self.probabilities(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            got = self.probabilities(missing)
            for t, a, b, c in zip(missing, got.level, got.area, got.title):
                self._cache[t] = (a, b, float(c))
        out = Scores.zeros(len(texts), len(self._levels), len(self._areas))
        for i, t in enumerate(texts):
            a, b, c = self._cache[t]
            self._cache.move_to_end(t)
            out.level[i], out.area[i], out.title[i] = a, b, c
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def predict(self, titles: Iterable[object]) -> list[Prediction]:
        """One :class:`Prediction` per input, in order; bad inputs get ``valid=False`` and a reason."""
        items = list(titles)
        assessed = [assess_title(t) for t in items]
        valid_idx = [i for i, a in enumerate(assessed) if a.valid]
        scores = self.cached_probabilities([assessed[i].text for i in valid_idx])
        out: list[Prediction] = []
        row = {i: r for r, i in enumerate(valid_idx)}
        k = min(self.top_k, len(self._areas))
        for i, a in enumerate(assessed):
            title = None if items[i] is None else a.raw
            if not a.valid:
                out.append(Prediction(title=title, valid=False, reason=a.reason))
                continue
            r = row[i]
            lp, ap, raw = scores.level[r], scores.area[r], float(scores.title[r])
            tp = round(raw, 4)
            if raw < self.title_threshold:
                out.append(Prediction(title=title, valid=False, title_score=tp,
                                      reason=f"not a job title (title score {tp:.4f} is below the "
                                             f"threshold {self.title_threshold:.4f})"))
                continue
            li = int(lp.argmax())
            top = np.argsort(-ap)[:k]
            out.append(Prediction(
                title=title, valid=True,
                level=str(self._levels[li]), level_score=round(float(lp[li]), 4),
                area=str(self._areas[top[0]]), area_score=round(float(ap[top[0]]), 4),
                areas=[(str(self._areas[j]), round(float(ap[j]), 4)) for j in top if ap[j] >= self.min_score],
                title_score=tp, reason=a.reason,
            ))
        return out
