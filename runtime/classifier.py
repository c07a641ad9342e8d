"""The torch-free classifier: one ONNX Runtime session, one tokenizer, cleaned titles in, predictions out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from jobtitles.bundle import Bundle
from jobtitles.cleaning import assess_title

DEFAULT_BATCH_SIZE = 32
DEFAULT_TOP_K = 3
DEFAULT_CACHE_SIZE = 50_000


@dataclass(frozen=True)
class Prediction:
    """The answer for one input record.

    ``valid`` is False when the input is not a classifiable title; then labels and
    scores are ``None`` and ``reason`` says why. ``reason`` may also be set on a
    valid prediction (e.g. a long input that was cut to its first words).
    """

    title: str | None
    valid: bool
    level: str | None = None
    level_score: float | None = None
    area: str | None = None
    area_score: float | None = None
    areas: list[tuple[str, float]] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["areas"] = [{"label": a, "score": s} for a, s in self.areas]
        return out


def encode_batch(tokenizer, texts: Sequence[str], prefix: str, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (right-padded with ``pad_id``) and attention mask for ``prefix + text``."""
    encs = tokenizer.encode_batch([prefix + t for t in texts])
    width = max(len(e.ids) for e in encs)
    ids = np.full((len(encs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encs), width), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    return ids, mask


class OnnxSession:
    """One ONNX Runtime session over a bundle's ``model.onnx`` (reused for every batch)."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: on a small machine shared with the
        # caller (an HTTP server, a reader thread, a client) spinning starves everyone else.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        level, area = self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return level, area


class Classifier:
    """Classify job titles with a model bundle.

    >>> clf = Classifier.load()              # the default bundle
    >>> clf.predict(["Senior Data Engineer"])[0].level
    'Sr Specialist'
    """

    def __init__(self, bundle: Bundle, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 top_k: int = DEFAULT_TOP_K, min_score: float = 0.0, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        from tokenizers import Tokenizer

        self.bundle = bundle
        self.batch_size = max(1, batch_size)
        self.top_k = max(1, top_k)
        self.min_score = min_score
        self.cache_size = max(0, cache_size)
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._session = OnnxSession(bundle.model_path, threads)
        self._tokenizer = Tokenizer.from_file(str(bundle.tokenizer_path))
        self._tokenizer.enable_truncation(max_length=bundle.max_tokens)
        self._pad_id = int(bundle.manifest.get("encoder", {}).get("pad_id", 1))
        self._levels = np.array(bundle.levels, dtype=object)
        self._areas = np.array(bundle.areas, dtype=object)

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

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return encode_batch(self._tokenizer, texts, self.bundle.query_prefix, self._pad_id)

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Level and area probabilities for already-cleaned texts, batched by similar length."""
        n = len(texts)
        level = np.zeros((n, len(self._levels)), dtype=np.float32)
        area = np.zeros((n, len(self._areas)), dtype=np.float32)
        order = sorted(range(n), key=lambda i: len(texts[i]))
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            ids, mask = self._encode([texts[i] for i in idx])
            lv, ar = self._session.run(ids, mask)
            level[idx] = lv
            area[idx] = ar
        return level, area

    def clear_cache(self) -> None:
        """Forget cached results (benchmarks use this to measure cold work)."""
        self._cache.clear()

    def cached_probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`probabilities`, but each distinct cleaned text is computed once and kept in a
        bounded LRU cache (real feeds repeat titles a lot)."""
        if not self.cache_size:
            return self.probabilities(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            lv, ar = self.probabilities(missing)
            for t, a, b in zip(missing, lv, ar):
                self._cache[t] = (a, b)
        level = np.zeros((len(texts), len(self._levels)), dtype=np.float32)
        area = np.zeros((len(texts), len(self._areas)), dtype=np.float32)
        for i, t in enumerate(texts):
            a, b = self._cache[t]
            self._cache.move_to_end(t)
            level[i], area[i] = a, b
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return level, area

    def predict(self, titles: Iterable[object]) -> list[Prediction]:
        """One :class:`Prediction` per input, in order; bad inputs get ``valid=False`` and a reason."""
        items = list(titles)
        assessed = [assess_title(t) for t in items]
        valid_idx = [i for i, a in enumerate(assessed) if a.valid]
        level_p, area_p = self.cached_probabilities([assessed[i].text for i in valid_idx])
        out: list[Prediction] = []
        row = {i: r for r, i in enumerate(valid_idx)}
        k = min(self.top_k, len(self._areas))
        for i, a in enumerate(assessed):
            title = None if items[i] is None else a.raw
            if not a.valid:
                out.append(Prediction(title=title, valid=False, reason=a.reason))
                continue
            lp, ap = level_p[row[i]], area_p[row[i]]
            li = int(lp.argmax())
            top = np.argsort(-ap)[:k]
            out.append(Prediction(
                title=title, valid=True,
                level=str(self._levels[li]), level_score=round(float(lp[li]), 4),
                area=str(self._areas[top[0]]), area_score=round(float(ap[top[0]]), 4),
                areas=[(str(self._areas[j]), round(float(ap[j]), 4)) for j in top if ap[j] >= self.min_score],
                reason=a.reason,
            ))
        return out
