"""The classification head: a shared residual / squeeze-excitation trunk with level, area and title heads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from jobtitles.train import require_train_extra

require_train_extra("torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402


@dataclass(frozen=True)
class HeadConfig:
    """Shape of the head; saved beside its weights."""

    input_dim: int
    hidden_dim: int
    n_levels: int
    n_areas: int
    dropout: float = 0.2
    se_reduction: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualBlock(nn.Module):
    """x + Dropout(Linear(GELU(BN(Linear(x)))))."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SqueezeExcitation(nn.Module):
    """Feature gate computed from each sample's own features (never pooled over the batch)."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim // reduction), nn.GELU(), nn.Linear(dim // reduction, dim),
                                  nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MultiTaskHead(nn.Module):
    """Shared trunk (Linear → BN → GELU → Dropout → residual → SE → Linear), then three linear heads:
    level, area, and one logit that the input is a job title at all (the learned non-title detector)."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        self.trunk = nn.Sequential(
            nn.Linear(cfg.input_dim, h), nn.BatchNorm1d(h), nn.GELU(), nn.Dropout(cfg.dropout),
            ResidualBlock(h, cfg.dropout), SqueezeExcitation(h, cfg.se_reduction), nn.Linear(h, h), nn.GELU(),
        )
        self.level = nn.Linear(h, cfg.n_levels)
        self.area = nn.Linear(h, cfg.n_areas)
        self.title = nn.Linear(h, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits for level ``[B, n_levels]``, area ``[B, n_areas]`` and is-a-title ``[B]``."""
        z = self.trunk(x)
        return self.level(z), self.area(z), self.title(z)[:, 0]
