"""EMA vector quantizer (k-means init, dead-code recovery) and its residual stack."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(N, K) squared Euclidean distances between rows of x (N, D) and codebook (K, D)."""
    return (
        x.pow(2).sum(1, keepdim=True)
        - 2.0 * x @ codebook.t()
        + codebook.pow(2).sum(1)[None, :]
    )


def kmeans_plus_plus(x: torch.Tensor, k: int) -> torch.Tensor:
    """k seeds among rows of x, each drawn with probability proportional to its squared distance to the seeds so far."""
    centers = x.new_empty(k, x.shape[1])
    centers[0] = x[torch.randint(len(x), (1,), device=x.device)]
    x_sq = x.pow(2).sum(1)
    nearest = squared_distances(x, centers[:1])[:, 0]
    for i in range(1, k):
        weights = nearest.clamp(min=0) if bool(nearest.max() > 0) else torch.ones_like(nearest)
        centers[i] = x[torch.multinomial(weights, 1)]
        nearest = torch.minimum(nearest, x_sq - 2.0 * (x @ centers[i]) + centers[i].pow(2).sum())
    return centers


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding then Lloyd steps on rows of x: (centers (k, D), counts (k,)); empty clusters keep their seed."""
    centers = kmeans_plus_plus(x, k)
    counts = torch.zeros(k, device=x.device)
    for _ in range(iters):
        codes = squared_distances(x, centers).argmin(1)
        counts = torch.bincount(codes, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centers).index_add_(0, codes, x)
        centers = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
    return centers, counts


class Quantizer(nn.Module):
    """One codebook: nearest code by squared distance, EMA updates, k-means init, dead-code re-seeding.

    Works on flat fp32 vectors (N, D). Codebook statistics are buffers, so they are saved, restored
    and never touched by the optimizer; they move only in training mode.
    """

    def __init__(self, size: int, dim: int, decay: float = 0.95, eps: float = 1e-5,
                 kmeans_iters: int = 10, dead_after: int = 10):
        super().__init__()
        self.size, self.dim, self.decay, self.eps = size, dim, decay, eps
        self.kmeans_iters, self.dead_after = kmeans_iters, dead_after
        self.register_buffer("embed", torch.randn(size, dim))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("unused_steps", torch.zeros(size, dtype=torch.long))
        self.register_buffer("recoveries", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.reseed_requested = False  # set between steps: the next training step re-seeds every code it left unused

    @torch.no_grad()
    def init_kmeans(self, x: torch.Tensor) -> None:
        """Seed the codebook with k-means centres of encoder outputs x (N, D)."""
        centers, counts = kmeans(x, self.size, self.kmeans_iters)
        self.embed.copy_(centers)
        self.cluster_size.copy_(counts.clamp(min=1.0))
        self.embed_sum.copy_(centers * self.cluster_size[:, None])
        self.unused_steps.zero_()
        self.initialized.fill_(True)

    @torch.no_grad()
    def update_ema(self, x: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        """Move counts and sums toward this batch's assignment (codes (N,), their per-code counts (K,))."""
        sums = torch.zeros_like(self.embed).index_add_(0, codes, x)
        # lerp_ rather than mul_().add_(alpha=...): Inductor on CPU has been seen to drop `alpha`.
        self.cluster_size.lerp_(counts.to(x.dtype), 1.0 - self.decay)
        self.embed_sum.lerp_(sums, 1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def revive_dead(self, x: torch.Tensor, counts: torch.Tensor) -> int:
        """Re-seed codes unused for `dead_after` steps (or, when asked, unused in this step) with random recent
        encoder outputs; return how many."""
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        after = 1 if self.reseed_requested else self.dead_after
        self.reseed_requested = False
        dead = (self.unused_steps >= after).nonzero().squeeze(1)
        if len(dead) == 0:
            return 0
        pick = torch.randint(len(x), (len(dead),), device=x.device)
        self.embed[dead] = x[pick]
        self.embed_sum[dead] = x[pick]
        self.cluster_size[dead] = 1.0
        self.unused_steps[dead] = 0
        self.recoveries.add_(len(dead))
        return len(dead)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize fp32 rows x (N, D): (nearest codes' vectors, codes (N,), per-code counts (K,))."""
        learning = self.training and torch.is_grad_enabled()
        finite = bool(torch.isfinite(x).all()) if learning else True
        if learning and finite and not self.initialized:
            self.init_kmeans(x.detach())
        with torch.no_grad():
            codes = squared_distances(x, self.embed).argmin(1)
        counts = torch.bincount(codes, minlength=self.size)
        vectors = self.embed[codes]  # the codes chosen from the codebook as it was, before this batch moves it
        if learning and finite:
            self.update_ema(x.detach(), codes, counts)
            self.revive_dead(x.detach(), counts)
        return vectors, codes, counts

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors for integer codes of any shape: (..., D)."""
        return F.embedding(codes, self.embed)


class ResidualQuantizer(nn.Module):
    """`levels` Quantizers in a chain, each quantizing what the previous ones left (levels=1: plain VQ)."""

    def __init__(self, levels: int, size: int, dim: int, **quantizer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(Quantizer(size, dim, **quantizer_kwargs) for _ in range(levels))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, D, h, w) -> (z_q straight-through (B, D, h, w), codes (B, L, h, w), commitment loss, counts (L, K))."""
        b, d, h, w = z.shape
        # Distances and EMA statistics stay in fp32 even under autocast: low precision there breeds NaNs and collapse.
        with torch.autocast(z.device.type, enabled=False):
            flat = z.float().permute(0, 2, 3, 1).reshape(-1, d)
            residual, total = flat.detach(), torch.zeros_like(flat)
            codes, counts, commit = [], [], flat.new_zeros(())
            for layer in self.layers:
                q, c, n = layer(residual)
                total = total + q
                residual = residual - q
                commit = commit + F.mse_loss(flat, total.detach())
                codes.append(c)
                counts.append(n)
            z_q = flat + (total - flat).detach()
        z_q = z_q.reshape(b, h, w, d).permute(0, 3, 1, 2)
        codes_t = torch.stack(codes, 1).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return z_q, codes_t, commit, torch.stack(counts)

    @property
    def codebooks(self) -> torch.Tensor:
        """Every level's code vectors: (L, K, D)."""
        return torch.stack([layer.embed for layer in self.layers])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, L, h, w), or the first L' < L levels' (B, L', h, w) -> summed code vectors (B, D, h, w)."""
        total = sum(layer.lookup(level) for layer, level in zip(self.layers, codes.unbind(1)))
        return total.permute(0, 3, 1, 2)

    @property
    def usage(self) -> torch.Tensor:
        """EMA code counts per level (L, K)."""
        return torch.stack([layer.cluster_size for layer in self.layers])

    @property
    def recoveries(self) -> int:
        """Dead codes re-seeded so far, over every level."""
        return int(sum(layer.recoveries for layer in self.layers))

    @property
    def initialized(self) -> bool:
        """Whether k-means has seeded the codebooks (the first training step does)."""
        return bool(self.layers[0].initialized)

    def request_reseed(self) -> None:
        """Have the next training step re-seed every code it leaves unused, on every level."""
        for layer in self.layers:
            layer.reseed_requested = True
