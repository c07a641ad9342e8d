"""The title memory: a k-nearest-neighbour vote over a run's hand-labelled training titles, blended into
the area answer.

The head generalises from its training titles; the memory also recalls them. Each training title is
kept as the sign bits of its sentence embedding minus the memory's mean embedding (48 bytes for 384
dimensions). An input's embedding minus that mean is quantised on its own to integers in [-127, 127]
(``round(127 x / max |x|)``, not to its signs: a sign flipped by the int8 encoder's noise would change
the neighbours abruptly); its similarity to a memory title is the cosine between that vector and the
title's signs; the ``k`` most similar titles vote for their labelled area with weights ``softmax(sim / T)``;
the head's area probabilities and the vote are pooled log-linearly,
``(1 - weight) * log(head) + weight * log(vote + vote_floor)``, and turned back into probabilities
with a softmax at one temperature fitted by ``jobtitles export`` on the head's validation titles (a
plain average of the two was as accurate but under-confident where they disagree: README, Accuracy,
step 8). Level and title scores are untouched; every step works on one row at a
time, so an answer never depends on its batch.

:class:`MemoryTitles` is what a head folder keeps (``memory.json.gz``, written by ``jobtitles train``)
so that ``jobtitles export`` can build the bundle's memory from a fresh clone; :class:`TitleMemory` is
the vote in numpy, the reference that :mod:`jobtitles.export.title_memory` writes into the graph.
Why and how the settings were chosen: ``bench/title_memory.py`` and the README (Accuracy, step 8)."""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from jobtitles.train.data import Example

MEMORY_FILE = "memory.json.gz"
MIN_PROB = 1e-12  # floor under the head's probabilities before their log
QUERY_LEVELS = 127  # the input's centred embedding is quantised to integers in [-QUERY_LEVELS, QUERY_LEVELS]


@dataclass(frozen=True)
class MemorySettings:
    """How the memory's vote is taken and blended into the area answer. The defaults were chosen on the
    default head's hand-labelled validation titles (``bench/title_memory.py``), never on the dev set."""

    k: int = 5  # neighbours that vote
    weight: float = 0.5  # share of the vote in the pooled log-probabilities
    vote_floor: float = 0.1  # added to the vote before its log: an area no neighbour names is not ruled out
    temperature: float = 0.05  # softmax temperature over the neighbours' similarities


def _hand_area_examples(examples: list[Example], hand_sources: set[str]) -> list[Example]:
    """Hand-labelled valid titles with an area (taxonomy titles carry code-mapped areas, which postings
    often use differently, so they are left out)."""
    return [e for e in examples if e.source in hand_sources and e.valid and e.area is not None and e.text]


@dataclass(frozen=True)
class MemoryTitles:
    """The memory's titles (cleaned, as trained on) and their labelled areas, the vote's settings, and
    the run's hand-labelled validation titles with their accepted areas (the label and its
    alternatives), on which ``jobtitles export`` fits the pooled scores' temperature."""

    texts: list[str]
    areas: list[str]
    settings: MemorySettings = MemorySettings()
    validation: list[tuple[str, list[str]]] = field(default_factory=list)
    added: list[dict] = field(default_factory=list)  # files added after training: {"file", "titles", "sha256"}

    @classmethod
    def from_examples(cls, train: list[Example], hand_sources: set[str], validation: list[Example] = (),
                      settings: MemorySettings = MemorySettings()) -> MemoryTitles:
        """The run's hand-labelled training titles with an area, one entry per distinct text (its first
        label), and its hand-labelled ``validation`` titles with an area."""
        seen: dict[str, str] = {}
        for e in _hand_area_examples(train, hand_sources):
            seen.setdefault(e.text, e.area)
        held_out = [(e.text, [e.area, *e.alt_areas]) for e in _hand_area_examples(list(validation), hand_sources)]
        return cls(list(seen), list(seen.values()), settings, held_out)

    def extended(self, examples: list[Example], file: str, sha256: str) -> MemoryTitles:
        """These titles plus the hand-labelled valid titles with an area of ``examples`` (one file,
        labelled after the head was trained) that are not in the memory or in the validation titles
        already: the head stays as it is, and the vote also recalls the new titles. The file is
        recorded in :attr:`added` (for the manifest and the model card); adding a file twice raises
        ValueError."""
        if any(a["sha256"] == sha256 for a in self.added):
            raise ValueError(f"{file} is already in the memory")
        known = set(self.texts) | {t for t, _ in self.validation}
        fresh = MemoryTitles.from_examples([e for e in examples if e.text not in known], {e.source for e in examples})
        return replace(self, texts=self.texts + fresh.texts, areas=self.areas + fresh.areas,
                       added=[*self.added, {"file": file, "titles": len(fresh.texts), "sha256": sha256}])

    def save(self, head_dir: str | Path) -> Path:
        """Write ``memory.json.gz`` into ``head_dir`` (byte-identical for the same titles)."""
        path = Path(head_dir) / MEMORY_FILE
        content = {"settings": asdict(self.settings),
                   "titles": [[t, a] for t, a in zip(self.texts, self.areas)],
                   "validation": [[t, list(a)] for t, a in self.validation]}
        if self.added:
            content["added"] = self.added
        body = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as fh:
            fh.write(body.encode("utf-8"))
        return path

    @classmethod
    def load(cls, head_dir: str | Path) -> MemoryTitles | None:
        """The head's memory titles, or None when the head has none (trained before the memory existed)."""
        path = Path(head_dir) / MEMORY_FILE
        if not path.exists():
            return None
        data = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
        titles = data["titles"]
        return cls([t for t, _ in titles], [a for _, a in titles], MemorySettings(**data.get("settings", {})),
                   [(t, list(a)) for t, a in data.get("validation", [])], list(data.get("added", [])))


def neighbour_vote(sim: np.ndarray, labels: np.ndarray, k: int, temperature: float, n_areas: int) -> np.ndarray:
    """Area votes ``[b, n_areas]`` of the ``k`` most similar memory titles for each row of similarities
    ``sim [b, n]``, weighted by ``softmax(sim / temperature)`` (ties go to the earlier title, as ONNX
    ``TopK`` breaks them)."""
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    near = np.take_along_axis(sim, top, axis=1) / temperature
    w = np.exp(near - near.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    votes = np.zeros((len(sim), n_areas), dtype=np.float32)
    np.add.at(votes, (np.arange(len(sim))[:, None], labels[top]), w)
    return votes


@dataclass(frozen=True)
class TitleMemory:
    """Packed sign codes of the memory titles, their area indices and the centre the signs are taken
    around."""

    codes: np.ndarray  # uint8 [n, dim / 8]: np.packbits of (embedding - centre > 0), most significant bit first
    labels: np.ndarray  # int64 [n]: area index of each memory title
    centre: np.ndarray  # float32 [dim]
    n_areas: int
    settings: MemorySettings = MemorySettings()
    output_temperature: float = 1.0  # of the softmax over the pooled scores (fitted at export)

    @classmethod
    def build(cls, embeddings: np.ndarray, labels: np.ndarray, n_areas: int,
              settings: MemorySettings = MemorySettings()) -> TitleMemory:
        """A memory from the training titles' sentence embeddings ``[n, dim]`` (``dim`` a multiple of 8)
        and their area indices."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] % 8 or len(embeddings) != len(labels):
            raise ValueError("embeddings must be [n, dim] with dim a multiple of 8, one label per row")
        if len(embeddings) < settings.k:
            raise ValueError(f"a memory of {len(embeddings)} titles cannot give {settings.k} neighbours")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= n_areas:
            raise ValueError(f"area indices must lie in [0, {n_areas})")
        centre = embeddings.mean(axis=0)
        return cls(np.packbits(embeddings - centre > 0, axis=1), labels, centre, n_areas, settings)

    @property
    def dim(self) -> int:
        return self.codes.shape[1] * 8

    def signs(self) -> np.ndarray:
        """The memory as a ``[n, dim]`` matrix of -1 / +1."""
        return np.unpackbits(self.codes, axis=1).astype(np.float32) * 2 - 1

    def query(self, embeddings: np.ndarray) -> np.ndarray:
        """Each row's centred embedding quantised on its own: ``round(QUERY_LEVELS * x / max |x|)``
        (float32 holding integers; a row equal to the centre gives zeros)."""
        centred = np.asarray(embeddings, dtype=np.float32) - self.centre
        scale = np.maximum(np.abs(centred).max(axis=1, keepdims=True), np.float32(MIN_PROB))
        return np.round((centred / scale) * np.float32(QUERY_LEVELS)).astype(np.float32)

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine ``[b, n]`` between each quantised query and each memory title's signs."""
        q = self.query(embeddings)
        norm = np.maximum(np.sqrt((q * q).sum(axis=1, keepdims=True)), np.float32(1.0)) * np.float32(np.sqrt(self.dim))
        return (q @ self.signs().T) / norm

    def vote(self, embeddings: np.ndarray) -> np.ndarray:
        """Area votes ``[b, n_areas]`` of the ``k`` nearest memory titles (:func:`neighbour_vote`)."""
        return neighbour_vote(self.similarities(embeddings), self.labels, self.settings.k,
                              self.settings.temperature, self.n_areas)

    def blend(self, area_probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """The area probabilities pooled with the vote: ``softmax(((1 - w) log(head) + w log(vote + f)) / T)``
        with ``w = weight``, ``f = vote_floor`` and ``T = output_temperature`` (what the bundle outputs)."""
        lam = self.settings.weight
        pooled = ((1 - lam) * np.log(np.maximum(np.asarray(area_probs, dtype=np.float32), np.float32(MIN_PROB)))
                  + lam * np.log(self.vote(embeddings) + np.float32(self.settings.vote_floor)))
        logits = pooled / np.float32(self.output_temperature)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def summary(self) -> dict:
        """For the manifest and the model card."""
        return {"titles": int(len(self.codes)), "bits_per_title": self.dim, "bytes": int(self.codes.nbytes),
                "k": self.settings.k, "weight": self.settings.weight, "vote_floor": self.settings.vote_floor,
                "temperature": self.settings.temperature,
                "output_temperature": self.output_temperature}
