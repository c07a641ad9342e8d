"""Sentence embeddings for training, computed once and cached on disk by encoder and text."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from jobtitles.train import require_train_extra

require_train_extra()


def encoder_fingerprint(encoder_dir: str | Path) -> str:
    """Identity of an encoder folder: sha256 over its config, tokenizer and weight file sizes/hashes."""
    root = Path(encoder_dir)
    meta = root / "jobtitles_encoder.json"
    digest = hashlib.sha256()
    if meta.exists():
        digest.update(meta.read_bytes())
    for name in ("config.json", "tokenizer.json", "config_sentence_transformers.json"):
        p = root / name
        if p.exists():
            digest.update(hashlib.sha256(p.read_bytes()).digest())
    weights = sorted(root.glob("*.safetensors"))
    for p in weights:
        digest.update(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns if not meta.exists() else 0}".encode())
    return digest.hexdigest()[:16]


class EmbeddingCache:
    """An append-only on-disk table of (text → embedding) for one encoder.

    Stored as ``<cache_dir>/<fingerprint>/vectors.npy`` + ``texts.jsonl``; a new
    text is embedded once, whichever dataset asks for it.
    """

    def __init__(self, cache_dir: str | Path, encoder_dir: str | Path, batch_size: int = 128) -> None:
        self.encoder_dir = Path(encoder_dir)
        self.dir = Path(cache_dir) / encoder_fingerprint(encoder_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        texts_path, vec_path = self.dir / "texts.jsonl", self.dir / "vectors.npy"
        if texts_path.exists() and vec_path.exists():
            texts = [json.loads(line) for line in texts_path.read_text(encoding="utf-8").splitlines()]
            vectors = np.load(vec_path)
            if len(texts) == len(vectors):
                self._index = {t: i for i, t in enumerate(texts)}
                self._vectors = vectors
        self._model = None

    def _encoder(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.encoder_dir), device="cpu")
        return self._model

    def get(self, texts: list[str], show_progress: bool = True) -> np.ndarray:
        """Embeddings for ``texts`` (L2-normalised, float32), computing only the missing ones."""
        missing = sorted({t for t in texts if t not in self._index}, key=len)
        if missing:
            new = self._encoder().encode(missing, prompt_name="query", batch_size=self.batch_size,
                                         convert_to_numpy=True, show_progress_bar=show_progress)
            start = len(self._index)
            self._vectors = new.astype(np.float32) if not len(self._index) else np.vstack([self._vectors, new])
            for i, t in enumerate(missing):
                self._index[t] = start + i
            ordered = sorted(self._index, key=self._index.__getitem__)
            np.save(self.dir / "vectors.npy", self._vectors)
            (self.dir / "texts.jsonl").write_text(
                "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in ordered), encoding="utf-8"
            )
        return self._vectors[[self._index[t] for t in texts]]
