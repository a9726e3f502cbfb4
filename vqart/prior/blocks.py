"""What every prior over code grids is built from: grid-aware transformer blocks, the depth head that predicts a
grid cell's codes one level at a time, the masking schedule and the logit filter.

Tokens are (B, L, P) integer codes: L levels at P = h * w grid cells (residual levels, coarse to fine, or the
groups of an FSQ bottleneck). A cell enters the spatial transformer as the sum of its L level embeddings (so a
pass is P tokens wide whatever L is), and a masked cell as the mask embedding; the depth head then predicts its
L codes one level at a time, each given the cell's spatial context and the levels already chosen, as in
RQ-Transformer (Lee et al., CVPR 2022).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def masked_fraction(r: torch.Tensor | float) -> torch.Tensor | float:
    """MaskGIT's cosine schedule: the fraction of positions still masked at progress r in [0, 1]."""
    return torch.cos(r * math.pi / 2) if isinstance(r, torch.Tensor) else math.cos(r * math.pi / 2)


def still_masked(unknown: int, steps: int) -> list[int]:
    """How many of `unknown` positions remain masked after each of `steps` decoding steps (ends at 0)."""
    counts = [math.floor(unknown * masked_fraction((t + 1) / steps)) for t in range(steps)]
    counts[-1] = 0
    return counts


def filter_logits(logits: torch.Tensor, temperature: float | torch.Tensor = 1.0, top_k: int | None = None,
                  min_p: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Logits (..., K) divided by the temperature (a number, or one per row: (..., 1)), all but the top_k set to
    -inf, and those less than `min_p` times as likely as the likeliest (min-p sampling: the long tail of a broad
    distribution is where noise comes from)."""
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if torch.is_tensor(min_p) or min_p > 0:  # a number, or one per row: (..., 1)
        floor = torch.as_tensor(min_p, dtype=logits.dtype, device=logits.device).clamp(min=1e-12).log()
        logits = logits.masked_fill(logits < logits.amax(dim=-1, keepdim=True) + floor, float("-inf"))
    return logits


Generators = torch.Generator | list[torch.Generator] | None


def uniform(shape: tuple[int, ...], generator: Generators, device: torch.device | str) -> torch.Tensor:
    """Uniform [0, 1) numbers of `shape`; with a list of generators, row i comes from generator i alone, so each
    row is the same whatever else is in the batch (streams of different clients sampled together)."""
    if isinstance(generator, list):
        return torch.stack([torch.rand(shape[1:], generator=g, device=device) for g in generator])
    return torch.rand(shape, generator=generator, device=device)


def draw(logits: torch.Tensor, temperature: float | torch.Tensor = 1.0, top_k: int | None = None,
         u: torch.Tensor | None = None, generator: torch.Generator | None = None,
         min_p: float | torch.Tensor = 0.0) -> torch.Tensor:
    """One code per row of logits (..., K), drawn by inverse CDF from one uniform each (`u`, shaped like the rows;
    else from `generator`; torch.multinomial draws K exponentials per row, serially: 10x slower), after
    temperature and top-k."""
    if top_k is not None and top_k < logits.shape[-1]:
        # Drawn among the top k alone: on the CPU, softmax and cumsum over k codes instead of masking all of them
        # saved a motion rollout at top-k 12 about 2 ms of its 25 per frame.
        values, index = logits.topk(top_k, dim=-1)
        return index.gather(-1, draw(values, temperature, None, u, generator, min_p)[..., None])[..., 0]
    probs = filter_logits(logits, temperature, None, min_p).softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    if u is None:
        u = torch.rand(probs.shape[:-1], device=probs.device, generator=generator)
    return torch.searchsorted(cdf, (u[..., None] * cdf[..., -1:]).contiguous(), right=True).clamp(max=probs.shape[-1] - 1)[..., 0]


class Block(nn.Module):
    """A pre-norm transformer block (nanoGPT's). Over a grid it first mixes each cell with its 3x3 neighbours
    (a depthwise convolution: attention alone must learn 2-D locality from flat positions, which CPU minutes
    do not buy) and attends both ways; over a cell's levels (no grid) it attends causally.
    """

    def __init__(self, dim: int, heads: int, grid: tuple[int, int] | None = None):
        super().__init__()
        self.heads, self.grid = heads, grid
        if grid is not None:
            self.ln_0 = nn.LayerNorm(dim)
            self.local = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); T = h * w over a grid, else the levels so far."""
        b, t, c = x.shape
        if self.grid is not None:
            h, w = self.grid
            grids = self.ln_0(x).view(b, h, w, c).permute(0, 3, 1, 2)
            x = x + self.local(grids).permute(0, 2, 3, 1).reshape(b, t, c)
        q, k, v = self.qkv(self.ln_1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        # Fused attention (a flash kernel on the CPU too); no dropout, which would force the slow unfused path.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.grid is None)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln_2(x))

    def extend(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One more token per sequence, x (B, 1, C), attending to the cached keys and values of the earlier ones
        (causal blocks only): (its output, the cache with it added)."""
        b, _, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(b, 1, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v)  # the newest token may see every earlier one
        x = x + self.proj(y.transpose(1, 2).reshape(b, 1, c))
        return x + self.mlp(self.ln_2(x)), (k, v)


class CodeEmbedding(nn.Module):
    """One embedding per (level, code), and a mask embedding: a cell is the sum of its levels' embeddings."""

    def __init__(self, levels: int, codebook_size: int, dim: int):
        super().__init__()
        self.levels, self.k = levels, codebook_size
        self.table = nn.Embedding(levels * codebook_size + 1, dim)
        self.register_buffer("offset", torch.arange(levels) * codebook_size, persistent=False)

    @property
    def mask_id(self) -> int:
        """The index of the mask embedding."""
        return self.levels * self.k

    def levels_of(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (..., l) of the first l levels -> each level's embedding (..., l, dim)."""
        return self.table(codes + self.offset[: codes.shape[-1]])

    def cells(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (B, L, P) -> cell embeddings (B, P, dim); cells where `mask` (B, P) is True get the mask's."""
        x = self.levels_of(tokens.transpose(1, 2)).sum(dim=2)
        if mask is None:
            return x
        return torch.where(mask[..., None], self.table.weight[self.mask_id], x)


class DepthHead(nn.Module):
    """Predicts a cell's L codes in order (residual levels coarse to fine): input 1 is the cell's spatial context,
    input l the sum of the embeddings of levels 1..l-1 (RQ-Transformer's depth transformer), through causal blocks.

    With `sources` > 0 it can also point: each level's logits get a bonus, predicted from the cell's context, for
    each of `sources` candidate codes (the motion prior's: the previous frame's 3x3 neighbourhood of the cell),
    the first candidate starting favoured. Copying is then there from the first step, and training goes to
    learning where things move from.
    """

    def __init__(self, embed: CodeEmbedding, dim: int, heads: int, layers: int, sources: int = 0):
        super().__init__()
        self.embed, self.levels, self.k, self.sources = embed, embed.levels, embed.k, sources
        self.pos = nn.Parameter(torch.randn(1, self.levels, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(layers)))
        self.ln = nn.LayerNorm(dim)
        self.out_weight = nn.Parameter(torch.randn(self.levels, self.k, dim) * dim**-0.5)  # one output layer per level
        self.out_bias = nn.Parameter(torch.zeros(self.levels, self.k))
        if sources:
            self.pointer = nn.Linear(dim, self.levels * sources)
            nn.init.zeros_(self.pointer.weight)
            with torch.no_grad():
                self.pointer.bias.view(self.levels, sources).copy_(torch.tensor([2.0] + [0.0] * (sources - 1)))

    def bonuses(self, context: torch.Tensor) -> torch.Tensor:
        """The pointer's bonus for each level's candidates: (N, L, S) from contexts (N, dim)."""
        return self.pointer(context).view(len(context), self.levels, self.sources)

    def _inputs(self, context: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(N, dim) context and (N, l) codes chosen so far -> depth inputs (N, l + 1, dim)."""
        prefix = self.embed.levels_of(codes).cumsum(dim=1)  # (N, l, dim): the partial sums
        x = torch.cat([context[:, None], prefix], dim=1)
        return x + self.pos[:, : x.shape[1]]

    def forward(self, context: torch.Tensor, codes: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (N, L, K) for every level of N cells with true codes (N, L)."""
        y = self.ln(self.blocks(self._inputs(context, codes[:, :-1])))
        logits = torch.einsum("nld,lkd->nlk", y, self.out_weight) + self.out_bias
        return logits if candidates is None else logits.scatter_add(-1, candidates, self.bonuses(context))

    def level_logits(self, y: torch.Tensor, level: int) -> torch.Tensor:
        """Level `level`'s logits (N, K) from the depth blocks' output (N, dim) at that level."""
        return self.ln(y) @ self.out_weight[level].t() + self.out_bias[level]

    def sample(self, context: torch.Tensor, temperature: float | torch.Tensor, top_k: int | None,
               uniforms: torch.Tensor, codes: torch.Tensor | None = None,
               uncond: torch.Tensor | None = None, guidance: float = 1.0,
               candidates: torch.Tensor | None = None, min_p: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Draw N cells' codes (N, L) level by level given their contexts (N, dim), one cached block step per
        level, each from its uniform in `uniforms` (N, L). With `uncond` contexts (classifier-free guidance)
        each level's logits are u + guidance * (c - u). With `codes` (N, L) given, returns the logits (N, L, K)
        those codes get instead (a check that this path and `forward` agree)."""
        n = len(context)
        both = context if uncond is None else torch.cat([context, uncond])
        caches: list = [None] * len(self.blocks)
        chosen, logits_seen = [], []
        x, prefix = both[:, None] + self.pos[:, :1], 0.0
        if candidates is not None:  # once per call, not per level
            candidates, bonus = candidates.repeat(len(both) // n, 1, 1), self.bonuses(both)
        for level in range(self.levels):
            for i, block in enumerate(self.blocks):
                x, caches[i] = block.extend(x, caches[i])
            logits = self.level_logits(x[:, 0], level)
            if candidates is not None:
                logits = logits.scatter_add(-1, candidates[:, level], bonus[:, level])
            if uncond is not None:
                logits = logits[n:] + guidance * (logits[:n] - logits[n:])
            if codes is None:
                code = draw(logits, temperature, top_k, u=uniforms[:, level], min_p=min_p)
            else:
                code = codes[:, level]
                logits_seen.append(logits)
            chosen.append(code)
            if level + 1 < self.levels:
                prefix = prefix + self.embed.table(code + level * self.k).repeat(len(both) // n, 1)
                x = (prefix + self.pos[:, level + 1])[:, None]
        return torch.stack(chosen, 1) if codes is None else torch.stack(logits_seen, 1)
