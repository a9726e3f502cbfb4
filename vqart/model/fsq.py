"""Finite scalar quantization (Mentzer et al. 2023): channels bounded and rounded to a few ordered values.

A cell's latent is projected to `tokens` groups of len(levels) channels; each channel is rounded to one of its
levels, so a group is one code of an implicit codebook of prod(levels) entries. Nothing is learned in the
codebook itself, so it cannot collapse and needs no k-means, EMA or re-seeding; a small shift of the latent moves
a channel to its neighbouring value. The projection out is linear, so a cell's vector is the sum of one vector
per group: the same (L, K, D) codebooks the residual quantizer has, and everything built on them works alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FSQ(nn.Module):
    """`tokens` groups of FSQ channels per cell, each group one code in [0, prod(levels))."""

    def __init__(self, tokens: int, levels: list[int], dim: int, decay: float = 0.95):
        super().__init__()
        self.tokens, self.channels, self.size, self.decay = tokens, len(levels), math.prod(levels), decay
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1] + levels[:-1]), 0), persistent=False)
        self.register_buffer("half_width", (lv // 2), persistent=False)
        self.project_in = nn.Conv2d(dim, tokens * self.channels, 1)
        # Unit-length latents (model.normalize) then give channels of unit scale: spread over the levels from step one.
        nn.init.normal_(self.project_in.weight, std=1.0)
        self.project_out = nn.Conv2d(tokens * self.channels, dim, 1)
        self.register_buffer("ema_usage", torch.ones(tokens, self.size))  # what the health views plot

    def _span(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(half, offset) per channel: bounded values reach (-half - offset, half - offset)."""
        half = (self.levels - 1) * (1 + 1e-3) / 2
        offset = (self.levels % 2 == 0).float() * 0.5  # even levels: values are centred between integers
        return half, offset

    def _bound(self, u: torch.Tensor) -> torch.Tensor:
        """Channels (..., C) -> real values in [-half_width, levels - 1 - half_width], before rounding."""
        half, offset = self._span()
        return torch.tanh(u + torch.atanh(offset / half)) * half - offset

    def _round(self, u: torch.Tensor) -> torch.Tensor:
        """Channels (..., C) -> integer values in [-half_width, levels - 1 - half_width], straight-through."""
        bounded = self._bound(u)
        return bounded + (bounded.round() - bounded).detach()

    def _channels(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, h, w) -> its groups' channels before bounding (B, L, h, w, C)."""
        b, _, h, w = z.shape
        return self.project_in(z.float()).view(b, self.tokens, self.channels, h, w).movedim(2, -1)

    def _project_out(self, values: torch.Tensor) -> torch.Tensor:
        """Channel values (B, L, h, w, C) on the scale of `code_values` -> the decoder's input (B, D, h, w)."""
        b, _, h, w, _ = values.shape
        return self.project_out(values.movedim(-1, 2).reshape(b, -1, h, w))

    def _codes(self, q: torch.Tensor) -> torch.Tensor:
        """Integer channel values (..., C) in [-half_width, levels - 1 - half_width] -> their codes (...)."""
        return ((q + self.half_width).long() * self.basis).sum(-1)

    @torch.no_grad()
    def unrounded(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, h, w) -> what the decoder would get if the channels were not rounded (B, D, h, w): how much
        of a picture, or of its motion from frame to frame, the rounding alone loses."""
        return self.from_values(self.values(z))

    @torch.no_grad()
    def values(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, h, w) -> its channels' values before rounding (B, L, h, w, C), on the scale of `code_values`:
        where between two codes' values each channel of a cell sits."""
        with torch.autocast(z.device.type, enabled=False):  # in float32, as `forward` computes its channels
            return self._bound(self._channels(z)) / self.half_width

    def from_values(self, values: torch.Tensor) -> torch.Tensor:
        """Channel values (B, L, h, w, C), rounded or not, on the scale of `code_values` -> the decoder's input."""
        with torch.autocast(values.device.type, enabled=False):
            return self._project_out(values.float())

    def codes(self, values: torch.Tensor) -> torch.Tensor:
        """Channel values (..., C) on the scale of `code_values`, rounded or not -> the codes they round to (...)."""
        return self._codes((values * self.half_width).round())

    def intervals(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (...) -> the lowest and highest channel values (..., C) that round to them, within the bounds
        `values` can reach."""
        half, offset = self._span()
        centre = self._values(codes) * self.half_width
        low = torch.maximum(centre - 0.5, -half - offset)
        high = torch.minimum(centre + 0.5, half - offset)
        return low / self.half_width, high / self.half_width

    def _values(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes (...) -> their channel values (..., C) in [-1, 1]."""
        digits = (codes[..., None] // self.basis) % self.levels.long()
        return (digits - self.half_width) / self.half_width

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, D, h, w) -> (z_q (B, D, h, w), codes (B, L, h, w), a zero commitment loss, counts (L, K))."""
        with torch.autocast(z.device.type, enabled=False):
            q = self._round(self._channels(z))  # (B, L, h, w, C)
            codes = self._codes(q.detach())
            z_q = self._project_out(q / self.half_width)
        counts = torch.stack([torch.bincount(c.flatten(), minlength=self.size) for c in codes.unbind(1)])
        if self.training and torch.is_grad_enabled():
            self.ema_usage.lerp_(counts.float(), 1.0 - self.decay)
        return z_q, codes, z.new_zeros(()), counts

    def code_values(self) -> torch.Tensor:
        """Every code's channel values (K, C) in [-1, 1]: where each code sits among its neighbours."""
        return self._values(torch.arange(self.size, device=self.basis.device))

    @property
    def codebooks(self) -> torch.Tensor:
        """Every group's code vectors (L, K, D): what each code adds to the projection out (its bias aside)."""
        values = self.code_values()  # (K, C)
        weight = self.project_out.weight[..., 0, 0].view(-1, self.tokens, self.channels)  # (D, L, C)
        return torch.einsum("kc,dlc->lkd", values, weight).detach()  # read, never trained through (as RQ's buffers)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, L, h, w), or the first L' < L groups' -> summed code vectors plus the bias (B, D, h, w)."""
        books = self.codebooks
        total = sum(F.embedding(level, book) for book, level in zip(books, codes.unbind(1)))
        return (total + self.project_out.bias).permute(0, 3, 1, 2)

    @property
    def usage(self) -> torch.Tensor:
        """Smoothed code counts per group (L, K)."""
        return self.ema_usage

    @property
    def recoveries(self) -> int:
        """Codes re-seeded so far: none, an implicit codebook has nothing to revive."""
        return 0

    @property
    def initialized(self) -> bool:
        """Always: there is no k-means initialisation to wait for."""
        return True

    def request_reseed(self) -> None:
        """Nothing to re-seed: every code of the implicit codebook is always there."""
