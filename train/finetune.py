"""Fine-tune the encoder together with the head: low-rank adapters (LoRA) on the transformer.

Every linear layer of each transformer block (attention query / value / output, both
feed-forward layers) gets a trainable low-rank update ``W + (alpha / r) · B A``; the
pretrained weights stay frozen. The adapters and the (warm-started) head are trained on the
same weighted, class-balanced losses as :func:`jobtitles.train.trainer.train_head`. At export
the updates are merged into the weights (:func:`merge_adapters`), so the bundle's graph, size
and speed are those of the frozen encoder. The adapters are small (2.4 MB at rank 8), so they
are committed beside the head and a fresh clone rebuilds the bundle from the registries alone.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from jobtitles.export.vocab_trim import VocabSubset, trimmed_tokenizer_json
from jobtitles.train.augment import NoiseAugmenter
from jobtitles.train.data import Example
from jobtitles.train.model import MultiTaskHead
from jobtitles.train.trainer import (
    LabelSet, _masked_ce, _title_loss, area_loss, area_sets, class_weights, encode_labels, set_seed,
    validity_targets,
)

ADAPTER_FILE = "adapters.pt"
# (sub-module path inside a BERT layer, attribute) of the linear layers that get adapters
TARGETS = (("attention.self", "query"), ("attention.self", "value"), ("attention.output", "dense"),
           ("intermediate", "dense"), ("output", "dense"))


@dataclass(frozen=True)
class FinetuneConfig:
    """Adapter shape and the fine-tuning schedule."""

    rank: int = 8
    alpha: float = 16.0
    epochs: float = 2.0  # 2 beat 1 on the dev set (README, Accuracy)
    batch_size: int = 32
    lr_adapters: float = 5e-4
    lr_head: float = 2e-4
    weight_decay: float = 0.01
    n_taxonomy: int = 8000  # taxonomy titles sampled beside all hand-labelled training titles
    max_tokens: int = 64
    seed: int = 13
    noise_prob: float = 0.3  # share of valid titles given posting noise per step (train/augment.py); 0 = off
    # More than one seed: fine-tune once per seed from the same trained head and average the results
    # (:func:`soup_adapters`, :func:`soup_heads`); the saved adapters then have rank ``rank × len(soup_seeds)``.
    soup_seeds: tuple[int, ...] = ()
    # A vocabulary keep file (export/vocab_trim.py): fine-tune on the trimmed tokenizer's pieces, i.e. on
    # exactly the token sequences the exported bundle will see; "" = the encoder's full vocabulary.
    vocab: str = ""
    area_set_weight: float = 0.0  # as TrainConfig.area_set_weight

    @property
    def member_rank(self) -> int:
        """The rank of each fine-tune's adapters (``rank`` is the saved adapters' rank)."""
        return self.rank // max(1, len(self.soup_seeds))


class LoRALinear(nn.Module):
    """``base(x) + scale · x Aᵀ Bᵀ`` with ``B = 0`` at the start (the wrapped layer's exact output)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.scale

    def merged(self) -> nn.Linear:
        """A plain linear layer with the update folded into its weight."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * (self.B @ self.A))
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _targets(bert: nn.Module):
    for layer in bert.encoder.layer:
        for path, attr in TARGETS:
            parent = layer.get_submodule(path)
            yield parent, attr


def add_adapters(bert: nn.Module, rank: int, alpha: float) -> int:
    """Freeze ``bert`` and wrap its target linear layers in :class:`LoRALinear`; returns how many."""
    for p in bert.parameters():
        p.requires_grad = False
    n = 0
    for parent, attr in _targets(bert):
        setattr(parent, attr, LoRALinear(getattr(parent, attr), rank, alpha))
        n += 1
    return n


def merge_adapters(bert: nn.Module) -> int:
    """Replace every :class:`LoRALinear` by its merged ``nn.Linear`` (for export); returns how many."""
    n = 0
    for parent, attr in _targets(bert):
        layer = getattr(parent, attr)
        if isinstance(layer, LoRALinear):
            setattr(parent, attr, layer.merged())
            n += 1
    return n


def soup_adapters(berts: list[nn.Module]) -> nn.Module:
    """Average the adapter updates of several fine-tunes of one encoder into a copy of the first of
    them (the members stay as they are; a single member is returned itself).

    Each member's update is ``scale · B_i A_i``; stacking the ``A_i`` and the ``B_i / k`` gives one
    adapter of rank ``k · r`` whose update is their mean, so the soup is saved, loaded and merged like
    any adapter (with ``alpha`` scaled by ``k`` to keep the scale). Averaging fine-tunes that start
    from the same weights ("model soups") keeps their shared gains and cancels part of the
    seed-to-seed noise, at no cost at inference: the merged encoder has the same shape.
    """
    k = len(berts)
    if k == 1:
        return berts[0]
    soup_bert = copy.deepcopy(berts[0])
    for targets in zip(*(list(_targets(b)) for b in [soup_bert, *berts[1:]])):
        layers = [getattr(parent, attr) for parent, attr in targets]
        if not all(isinstance(layer, LoRALinear) for layer in layers):
            raise ValueError("every member needs adapters on the same layers")
        first = layers[0]
        rank = sum(layer.A.shape[0] for layer in layers)
        soup = LoRALinear(first.base, rank, first.scale * rank)
        with torch.no_grad():
            soup.A.copy_(torch.cat([layer.A for layer in layers], dim=0))
            soup.B.copy_(torch.cat([layer.B / k for layer in layers], dim=1))
        parent, attr = targets[0]
        setattr(parent, attr, soup)
    return soup_bert


def soup_heads(heads: list[MultiTaskHead]) -> MultiTaskHead:
    """The parameter-wise mean of heads fine-tuned from one starting head, as a new head (a single
    head is returned itself)."""
    if len(heads) == 1:
        return heads[0]
    states = [h.state_dict() for h in heads]
    mean = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
            for k, v in states[0].items()}
    soup = copy.deepcopy(heads[0])
    soup.load_state_dict(mean)
    return soup


def save_adapters(bert: nn.Module, cfg: FinetuneConfig, path: str | Path) -> Path:
    """Write the adapter matrices (only) and their configuration."""
    state = {k: v.detach().clone() for k, v in bert.state_dict().items() if k.endswith((".A", ".B"))}
    torch.save({"config": asdict(cfg), "state": state}, str(path))
    return Path(path)


def load_adapters(bert: nn.Module, path: str | Path) -> FinetuneConfig:
    """Add adapters to ``bert`` and load their saved matrices; raises if the file does not fit."""
    saved = torch.load(str(path), map_location="cpu", weights_only=True)
    config = dict(saved["config"])
    config["soup_seeds"] = tuple(config.get("soup_seeds") or ())
    cfg = FinetuneConfig(**config)
    add_adapters(bert, cfg.rank, cfg.alpha)
    missing = set(saved["state"]) - set(bert.state_dict())
    if missing or not saved["state"]:
        raise ValueError(f"{path}: adapters do not fit this encoder ({len(missing)} unknown tensors)")
    bert.load_state_dict(saved["state"], strict=False)
    return cfg


class Embedder:
    """Mean-pooled, L2-normalised embeddings from a (possibly adapted) BERT, as the bundle computes them."""

    def __init__(self, bert: nn.Module, tokenizer, prefix: str, max_tokens: int) -> None:
        self.bert, self.tokenizer, self.prefix, self.max_tokens = bert, tokenizer, prefix, max_tokens

    def __call__(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer([self.prefix + t for t in texts], padding=True, truncation=True,
                               max_length=self.max_tokens, return_tensors="pt")
        states = self.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)

    def numpy(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings in eval mode without gradients."""
        self.bert.eval()
        with torch.no_grad():
            out = [self(texts[i : i + batch_size]).numpy() for i in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.bert.config.hidden_size), np.float32)


class SubsetTokenizer:
    """The trimmed tokenizer of a vocabulary subset, giving the full encoder's piece ids.

    A trimmed vocabulary segments some words differently (a removed piece is spelled with smaller
    ones), so the bundle sees other token sequences than an encoder fine-tuned on the full
    vocabulary. Fine-tuning through this tokenizer trains on the bundle's own sequences while the
    encoder keeps its full embedding table (the export then keeps only the subset's rows).
    Called like a Hugging Face tokenizer with ``padding=True, return_tensors="pt"``.
    """

    def __init__(self, tokenizer_json: str | Path, subset: VocabSubset, pad_id: int = 1) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_str(json.dumps(trimmed_tokenizer_json(tokenizer_json, subset)))
        self._tok.no_padding()
        self._old_ids = torch.tensor(subset.keep_ids, dtype=torch.long)
        self.pad_id = pad_id

    def __call__(self, texts: list[str], padding: bool = True, truncation: bool = True, max_length: int = 512,
                 return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        if truncation:
            self._tok.enable_truncation(max_length)
        else:
            self._tok.no_truncation()
        encs = self._tok.encode_batch(list(texts))
        width = max((len(e.ids) for e in encs), default=0)
        ids = torch.full((len(encs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        for row, enc in enumerate(encs):
            ids[row, : len(enc.ids)] = self._old_ids[torch.tensor(enc.ids, dtype=torch.long)]
            mask[row, : len(enc.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def load_encoder(encoder_dir: str | Path, vocab: str | Path = ""):
    """The SentenceTransformers folder's BERT (eager attention, as exported), its tokenizer and query prefix.
    With ``vocab`` (a keep file), the tokenizer is that subset's :class:`SubsetTokenizer`."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(encoder_dir), device="cpu")
    bert = st[0].auto_model
    bert.set_attn_implementation("eager")
    prefix = (getattr(st, "prompts", None) or {}).get("query", "")
    if not vocab:
        return bert, st.tokenizer, prefix
    return bert, SubsetTokenizer(Path(encoder_dir) / "tokenizer.json", VocabSubset.load(vocab)), prefix


def finetune_examples(train: list[Example], hand_sources: set[str], n_taxonomy: int, seed: int) -> list[Example]:
    """All hand-labelled training examples plus a seeded sample of ``n_taxonomy`` taxonomy titles."""
    hand = [e for e in train if e.source in hand_sources]
    tax = [e for e in train if e.source not in hand_sources]
    random.Random(seed).shuffle(tax)
    return hand + tax[:n_taxonomy]


def finetune(bert: nn.Module, tokenizer, prefix: str, head: MultiTaskHead, labels: LabelSet,
             train: list[Example], cfg: FinetuneConfig, progress: bool = True) -> list[dict]:
    """Train adapters (added to ``bert`` here) and ``head`` together, in place; returns the loss history."""
    set_seed(cfg.seed)
    add_adapters(bert, cfg.rank, cfg.alpha)
    for p in head.parameters():
        p.requires_grad = True
    yl, ya, w = encode_labels(train, labels)
    yt, wt = validity_targets(train)
    sets = torch.from_numpy(area_sets(train, labels))
    cw_level, cw_area = class_weights(yl, w, len(labels.levels)), class_weights(ya, w, len(labels.areas))
    adapters = [p for p in bert.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": adapters, "lr": cfg.lr_adapters}, {"params": head.parameters(),
                                                                            "lr": cfg.lr_head}],
                            weight_decay=cfg.weight_decay)
    steps = max(1, int(len(train) * cfg.epochs / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr_adapters, cfg.lr_head], total_steps=steps,
                                                pct_start=0.1)
    rng = random.Random(cfg.seed)
    noise, noise_rng = NoiseAugmenter(cfg.noise_prob), random.Random(cfg.seed + 1)
    order: list[int] = []
    while len(order) < steps * cfg.batch_size:
        idx = list(range(len(train)))
        rng.shuffle(idx)
        order += idx
    embed = Embedder(bert, tokenizer, prefix, cfg.max_tokens)
    bert.train()
    head.train()
    history, started = [], time.time()
    t = torch.from_numpy
    for step in tqdm(range(steps), desc="fine-tuning encoder + head", disable=not progress):
        b = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        texts = [noise(train[i].text, train[i].language, noise_rng) if train[i].valid else train[i].text for i in b]
        lv, ar, ti = head(embed(texts))
        loss = (_masked_ce(lv, t(yl[b]), t(w[b]), cw_level, 0.05)
                + area_loss(ar, t(ya[b]), sets[b], t(w[b]), cw_area, 0.05, cfg.area_set_weight)
                + _title_loss(ti, t(yt[b]), t(wt[b])))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            history.append({"step": step, "loss": round(loss.item(), 4),
                            "examples_per_s": round((step + 1) * cfg.batch_size / (time.time() - started), 1)})
    bert.eval()
    head.eval()
    return history
