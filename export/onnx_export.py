"""Wrap encoder + head in one torch module and export it to ONNX (fp32; :mod:`quantize` shrinks it).

The exported graph takes ``input_ids`` and ``attention_mask`` and returns level and
area probabilities, the probability that the input is a job title at all, and the sentence
embedding: transformer → mean pooling over the mask → L2 normalisation → head → softmax / sigmoid.
The embedding output feeds the title memory (:mod:`title_memory`) and is there for callers who want
to compare titles.
"""

from __future__ import annotations

from pathlib import Path

from jobtitles.train import require_train_extra

require_train_extra("torch", "onnx", "sentence_transformers")

import onnx  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from jobtitles.train.model import MultiTaskHead  # noqa: E402

OPSET = 17
INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAMES = ["level_probs", "area_probs", "title_probs", "embedding"]


class TitleClassifierModule(nn.Module):
    """Encoder + pooling + normalisation + head, as one module (export and parity reference)."""

    def __init__(self, transformer: nn.Module, head: MultiTaskHead) -> None:
        super().__init__()
        self.encoder = transformer
        self.head = head

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, L2-normalised sentence embeddings."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        embedding = self.embed(input_ids, attention_mask)
        level, area, title = self.head(embedding)
        return level.softmax(-1), area.softmax(-1), title.sigmoid(), embedding


def load_module(encoder_dir: str | Path, head: MultiTaskHead, adapters: str | Path | None = None
                ) -> TitleClassifierModule:
    """Build the combined module from a SentenceTransformers folder, fine-tuning adapters (merged into
    the encoder's weights) when given, and a trained head (eval mode)."""
    from sentence_transformers import SentenceTransformer

    from jobtitles.train.finetune import load_adapters, merge_adapters

    st = SentenceTransformer(str(encoder_dir), device="cpu")
    transformer = st[0].auto_model
    # Plain (eager) attention exports as MatMul/Softmax; the SDPA path adds IsNaN/Where guards
    # that took a quarter of the runtime's time (measured with onnxruntime's profiler).
    transformer.set_attn_implementation("eager")
    if adapters is not None:
        load_adapters(transformer, adapters)
        merge_adapters(transformer)
    module = TitleClassifierModule(transformer, head)
    module.eval()
    return module


def limit_positions(module: TitleClassifierModule, max_tokens: int) -> int:
    """Keep only the position-embedding rows that inputs of at most ``max_tokens`` tokens reach (in
    place; the runtime truncates to that length): ``max_tokens`` rows for BERT's positions 0, 1, …;
    ``padding_idx + 1 + max_tokens`` for RoBERTa / XLM-R, which number positions after the padding
    id. The outputs are the same; for 128 tokens the bundle keeps 128 of 512 rows (148 kB less).
    Returns the number of rows kept."""
    emb = module.encoder.embeddings
    offset = int(emb.padding_idx) + 1 if hasattr(emb, "create_position_ids_from_input_ids") else 0
    rows = offset + int(max_tokens)
    table = emb.position_embeddings.weight.detach()
    if rows < table.shape[0]:
        emb.position_embeddings = nn.Embedding.from_pretrained(table[:rows].clone(), freeze=True)
    return min(rows, table.shape[0])


def export_fp32(module: TitleClassifierModule, path: str | Path) -> Path:
    """Export with dynamic batch and sequence axes (TorchScript exporter, one file)."""
    path = Path(path)
    ids = torch.tensor([[0, 41, 42, 43, 2], [0, 41, 42, 2, 1]], dtype=torch.long)
    mask = (ids != 1).long()
    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
           "level_probs": {0: "batch"}, "area_probs": {0: "batch"}, "title_probs": {0: "batch"},
           "embedding": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(module, (ids, mask), str(path), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return path


def set_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Write key/value pairs into the ONNX ``metadata_props``."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
