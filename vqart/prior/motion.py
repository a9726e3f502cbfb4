"""The motion prior: the next frame's codes given the previous K frames (their codes and, on FSQ codes, their channel
values before rounding) and, optionally, a sketch.

A conditional MaskGIT over the next frame (Genie, TECO, MaskViT): every cell's input is its next-frame embedding
(masked or revealed) plus the context, the previous K frames' embeddings of that cell side by side mapped to one
vector, and a sketch label's embedding, so a pass stays h * w tokens wide and reuses the spatial prior's
grid-aware blocks and depth head, starting from the spatial prior's weights when the run has one of its shape (a
frame's look is known, and the minutes go to motion). (Summed, each with its lag's embedding as in Genie,
A-then-B reads the same as B-then-A, and which way a thing moves is lost: on the select frames, after 10 minutes
each, 4.23 bits per code summed and 4.12 mapped, the mapped run having had 17% more steps.) Copying the last
frame is the attractor such a model falls into, and its own small errors compound in a rollout; so training
corrupts the context (a random share of its codes replaced, as GameNGen and DIAMOND noise theirs; a benchmark run
without it saved 29.0% of the count model's bits, against 25.4% on the run before with it, but its rollouts' frames
lost their structure: 1.32-1.95x the spatial prior's bits of real frames on five of eight sketches, against one
sketch at 1.34x), and drops the label 10% of the time, which makes classifier-free guidance possible (Phenaki):
`like` steers a rollout toward a sketch, `morph` blends two labels.
On FSQ codes (the default) the prior reads its past as the encoder left it, before rounding. Rounding drops
where between two values a channel sits, which is the phase of every slow motion: from the codes alone the
steps of a moving edge fall on frames nothing foretells, and a prior given only codes learned to copy (its
likeliest next frame was a copy, and its drawn steps ran against the motion). So each cell sees the unrounded
channel values of its 3x3 neighbourhood over the K frames (one convolution, silent at the start); its depth
head may point at one more candidate, the code each channel reaches if it keeps its last step (`onward`),
favoured from the start as the cell's own code is; and `place` puts each new code's channels within the values
that round to it, starting where the last step leads, so a rollout carries its channels' phase from frame to
frame and is decoded from them, unrounded, as the captures' motion is. Measured side by side on one 10-minute
VQ-VAE and 6-minute spatial prior, 6 minutes of motion prior each: on the test pairs 2.234 bits per code
(30.3% fewer than the count model) against 2.550 (20.5%) for the rounded values before and 2.501 (22.0%) for the
unrounded values without the onward candidate; on the select pairs the likeliest next frame gets 74%, 72%, 61%
and 74% of the codes right on waves, lissajous, flowfield and tree, where copying gets 50%, 57%, 58% and 72%
(and `onward` alone 74%, 73%, 61%, 72%), and one drawn step carries the captures' last step on at 0.83, 0.43,
0.14, -0.01 (before: 0.22, -0.10, -0.10, -0.23). On learned codebooks, whose codes have no order, none of this
applies and the prior reads the codes alone.
Rollouts draw with min-p (codes less than min_p times as likely as the likeliest are never drawn): measured on
the bundled sketches, a next frame drawn from the full distribution decodes to 15 dB against the true one
(copying the last frame: 22 dB), because a wrongly changed code at any level is noise; at min-p 0.3 frames stay
frames, and motion stalls instead of boiling (0.1 boils). So a rollout keeps itself alive by that knob: how much
the picture changes per frame (`frame_change`: the mean absolute difference of consecutive decoded frames, 0-255)
is held near the sketch's own, measured on its training frames, by lowering min-p when the rollout stalls and
raising it when it boils, within [MIN_P_RANGE]; where min-p can open no further, a second knob warms the
temperature (up to HEAT_MAX). Measured in pixels because that is what a viewer sees: on the demo's run with
4-minute priors, 300-frame rollouts from the bundled sketches' first select frames (starts the benchmark does
not report), held to the distance between consecutive frames' code vectors instead, they changed 0.81-3.08x as
much as their sketch (four of eight over 2x) and one of eight passed the benchmark's judge; held in pixels,
0.85-1.30x, three of eight passed, and the polygons' rings and the tree's trunk lasted to frame 300.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqart.atomic import write_json
from vqart.errors import VqartError
from vqart.model.fsq import FSQ
from vqart.prior.blocks import Generators
from vqart.prior.fit import BATCH_SIZE, fit
from vqart.prior.grid import GridConfig, GridModel, fewest_steps
from vqart.prior.spatial import (
    SpatialPrior,
    as_grids,
    as_tokens,
    bits_report,
    encode_tokens,
    load_prior,
    read_model,
    save_model,
    sketch_label,
    spatial_steps,
    unigram_bits,
)
from vqart.run import Run

MOTION_FILE = "motion.pt"
MOTION_METRICS = "motion.json"
MOTION_FORMAT = 3  # 2: the past's FSQ channel values as its codes' own; nothing placed the new codes' channels
NO_LABEL = -1
MIN_P = 0.3  # where a rollout starts
MIN_P_RANGE = (0.02, 0.6)
HEAT_MAX = 3.0
# How much of each cell's draw carries over from one frame to the next. A stream draws its codes by inverse CDF
# from uniforms that drift (per cell and level, an AR(1) in normal space with this correlation) instead of fresh
# ones each frame: where a cell's distribution barely moves, it keeps drawing about the same code rather than a
# new one every frame, so what changes from frame to frame is more of what the prior moved and less of the draw's
# noise (video diffusion warps its noise along the motion for the same reason: Chang et al. 2024, "How I Warped
# Your Noise"). Chosen on select-frame starts (two runs, offsets 0 and 6), never the benchmark's test starts.
COHERENCE = 0.9
# The share of a training batch's masked cells the loss scores. The depth head, which runs over every scored
# cell's eight codes (about 10,000 tokens a batch against the grid's 2,048), costs more than the grid blocks;
# scoring a random half of the masked cells (all of them still hidden from the input) buys 48% more batches.
# Measured on a VQ-VAE and spatial prior trained as the benchmark's (10 minutes each), 10 minutes a share:
# select-pair bits 230,071 at 1/2 (7,476 batches), 231,967 scoring all (5,067), 234,138 at 1/4 (9,228); on
# the test pairs, 27.9%, 27.2% and 26.6% fewer bits than the count model. (Measured with each masked cell scored
# at that chance; `random_mask` takes exactly that share, rounded up, so no grid goes unscored.)
SCORED = 0.5


def level_weights(levels: int) -> torch.Tensor:
    """The loss's weight per level (L,), mean 1: the first level 4, the second 2, the rest 1.

    On residual levels the coarse levels carry the picture's layout, and every finer level is predicted from
    them. Chosen there, on the select frames of an earlier benchmark run, 10 minutes each: 4.05 bits per code
    against 4.20 unweighted (first level 1.55 against 1.95, the last three the same); the spatial prior gained
    nothing from it (20.0% of the unigram's bits saved against 19.9%), so it keeps the plain mean. Re-measured on
    FSQ groups (the benchmark's 10-minute FSQ run, select frames, 4 minutes each): 3.057 bits per code against
    3.079 unweighted (first group 3.05 against 3.44), so the weights stay; a context of 3 frames gave 3.071."""
    weights = torch.tensor([max(1.0, 4.0 / 2**level) for level in range(levels)])
    return weights / weights.mean()


class MotionModel(nn.Module):
    """A GridModel over the next frame whose cells also see the last `context` frames and a sketch label. Given
    `table` (3, K, C) (FSQ's `channel_table`), it also sees those frames' channel values around each cell,
    unrounded, and places each new code's channels within the values that round to it (`place`)."""

    def __init__(self, cfg: GridConfig, context: int, labels: int, table: torch.Tensor | None = None):
        super().__init__()
        cfg = replace(cfg, sources=9 if table is None else 10)  # the last frame's 3x3 neighbourhood (and onward)
        self.cfg, self.context_frames, self.labels = cfg, context, labels
        self.grid = GridModel(cfg)
        self.lags = nn.Linear(context * cfg.dim, cfg.dim)  # a cell's K past embeddings, oldest first, as one
        self.label_emb = nn.Embedding(labels + 1, cfg.dim)  # the last one is "no label"
        self.register_buffer("loss_weights", level_weights(cfg.levels), persistent=False)
        self.moves = self.placer = None
        if table is not None:
            self.register_buffer("table", table.float(), persistent=False)
            channels = cfg.levels * table.shape[-1]
            self.moves = nn.Conv2d(context * channels, cfg.dim, 3, padding=1)
            nn.init.zeros_(self.moves.weight)  # silent at first: the model starts as the spatial prior left it
            nn.init.zeros_(self.moves.bias)
            self.placer = nn.Sequential(nn.Conv2d((context + 1) * channels, cfg.dim, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(cfg.dim, channels, 1))
            nn.init.zeros_(self.placer[-1].weight)  # at first each channel goes where its last step leads
            nn.init.zeros_(self.placer[-1].bias)
            with torch.no_grad():  # the code the last steps lead to starts as favoured as the cell's own
                self.grid.depth_head.pointer.bias.view(cfg.levels, cfg.sources)[:, -1] = 2.0

    def _value_grid(self, values: torch.Tensor) -> torch.Tensor:
        """Channel values (B, ..., L, P, C) -> one image of them (B, ... * L * C, h, w)."""
        return values.movedim(-1, -2).reshape(len(values), -1, self.cfg.height, self.cfg.width)

    def centres(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (...) -> their codes' channel values (..., C): what a frame known only by its codes is given."""
        return self.table[0][tokens]

    def read_values(self, past: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor | None:
        """The channel values the model reads of a past: `values`, or its codes' own when None; None for learned
        codebooks, whose codes have none."""
        if self.placer is None:
            return None
        return self.centres(past) if values is None else values

    @staticmethod
    def onward(past_values: torch.Tensor) -> torch.Tensor:
        """Where the channels go if each keeps its last step (B, L, P, C), from the past's values (B, K, L, P, C)."""
        last = past_values[:, -1]
        return last if past_values.shape[1] < 2 else 2 * last - past_values[:, -2]

    def nearest(self, values: torch.Tensor) -> torch.Tensor:
        """Channel values (..., C) -> the codes (...) whose values are nearest."""
        return torch.cdist(values.flatten(0, -2), self.table[0]).argmin(-1).view(values.shape[:-1])

    def place(self, past_values: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Where each channel of the new codes (B, L, P) sits, given the past's values (B, K, L, P, C): values
        (B, L, P, C), each within the values that round to its code, starting from where the last step leads."""
        b, levels, cells = tokens.shape
        low, high = self.table[1][tokens], self.table[2][tokens]
        share = ((self.onward(past_values) - low) / (high - low)).clamp(0.02, 0.98)
        grid = torch.cat([self._value_grid(past_values), self._value_grid(self.centres(tokens))], dim=1)
        shift = self.placer(grid).view(b, levels, -1, cells).movedim(2, -1)
        return low + (high - low) * torch.sigmoid(torch.logit(share) + shift)

    def label_vectors(self, labels: torch.Tensor) -> torch.Tensor:
        """Label ids (B,), NO_LABEL for none, as embeddings (B, dim)."""
        return self.label_emb(torch.where(labels < 0, self.labels, labels))

    def candidates(self, past: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """What the depth head may point at: each cell's 3x3 neighbourhood in the last frame of `past`
        (B, K, L, P), the cell itself first (edges repeat their border), and with the past's channel values
        (B, K, L, P, C) the code its channels reach if each keeps its last step: (B, P, L, 9 or 10)."""
        frame = past[:, -1]
        b, levels, _ = frame.shape
        grid = frame.reshape(b * levels, 1, self.cfg.height, self.cfg.width).float()
        patches = F.unfold(F.pad(grid, (1, 1, 1, 1), mode="replicate"), 3)  # (B*L, 9, P), row by row
        patches = patches[:, [4, 0, 1, 2, 3, 5, 6, 7, 8]].round().long()
        near = patches.view(b, levels, 9, -1).permute(0, 3, 1, 2)
        values = self.read_values(past, values)
        if values is None:
            return near
        return torch.cat([near, self.nearest(self.onward(values)).transpose(1, 2)[..., None]], dim=-1)

    def context(self, past: torch.Tensor, label: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """Past tokens (B, K, L, P), oldest first, their channel values (B, K, L, P, C) (the codes' own when None)
        and label vectors (B, dim) -> every cell's context (B, P, dim)."""
        b, k = past.shape[:2]
        cells = self.grid.embed.cells(past.flatten(0, 1)).view(b, k, self.grid.cells, -1)
        context = self.lags(cells.transpose(1, 2).reshape(b, self.grid.cells, -1)) + label[:, None]
        values = self.read_values(past, values)
        if values is None:
            return context
        return context + self.moves(self._value_grid(values)).flatten(2).transpose(1, 2)

    def loss(self, pairs: Pairs, generator: torch.Generator, corrupt: float = 0.2,
             drop_label: float = 0.1) -> torch.Tensor:
        """Masked cross-entropy of the next frame, the context corrupted (up to `corrupt` of its codes replaced
        by random ones, their values by those codes') and the label dropped `drop_label` of the time; plus, with
        channel values, the squared error of where `place` puts the true codes' channels (in code widths)."""
        past, target, b = pairs.past, pairs.target, len(pairs.past)
        rate = torch.rand(b, 1, 1, 1, device=past.device, generator=generator) * corrupt
        noise = torch.randint(0, self.cfg.codebook_size, past.shape, device=past.device, generator=generator)
        hit = torch.rand(past.shape, device=past.device, generator=generator) < rate
        past = torch.where(hit, noise, past)
        values = None if pairs.past_values is None else torch.where(hit[..., None], self.centres(past), pairs.past_values)
        dropped = torch.rand(b, device=past.device, generator=generator) < drop_label
        label = self.label_vectors(torch.where(dropped, NO_LABEL, pairs.labels))
        loss = self.grid.loss(target, generator, context=self.context(past, label, values),
                              candidates=self.candidates(past, values), level_weights=self.loss_weights,
                              scored=SCORED)
        if self.placer is None or values is None:
            return loss
        width = self.table[2][target] - self.table[1][target]
        return loss + ((self.place(values, target) - pairs.target_values) / width).square().mean()

    @torch.no_grad()
    def bits(self, pairs: Pairs, steps: int) -> torch.Tensor:
        """Total bits per level (L,) of the targets' codes given their true pasts (the sampler's factorisation)."""
        context = self.context(pairs.past, self.label_vectors(pairs.labels), pairs.past_values)
        return self.grid.bits(pairs.target, steps=steps, context=context,
                              candidates=self.candidates(pairs.past, pairs.past_values)).sum(0)

    @torch.no_grad()
    def next_frame(self, past: torch.Tensor, label: torch.Tensor, values: torch.Tensor | None = None, *, steps: int,
                   temperature: torch.Tensor, top_k: int | None, guidance: float, generator: Generators,
                   min_p: float | torch.Tensor = MIN_P,
                   uniforms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample the next tokens (B, L, P) given pasts (B, K, L, P), their channel values (B, K, L, P, C) or None,
        and label vectors (B, dim); temperature (B,); the draws' uniforms (B, P, L), fresh ones when None. Returns
        them with their placed channel values (B, L, P, C) (None without channel values)."""
        values = self.read_values(past, values)
        context = self.context(past, label, values)
        uncond = None
        if guidance != 1.0:  # the label is added last: swap it rather than read the past again
            blank = self.label_vectors(torch.full((len(past),), NO_LABEL, device=past.device))
            uncond = context + (blank - label)[:, None]
        tokens = self.grid.sample(len(past), steps=steps, temperature=temperature, top_k=top_k, generator=generator,
                                  context=context, uncond=uncond, guidance=guidance,
                                  candidates=self.candidates(past, values), min_p=min_p, uniforms=uniforms)
        return tokens, None if values is None else self.place(values, tokens)


@dataclass
class Pairs:
    """A batch of next frames with their pasts: tokens, sketch labels and, on FSQ codes, channel values."""

    past: torch.Tensor  # (B, K, L, P), oldest first
    target: torch.Tensor  # (B, L, P)
    labels: torch.Tensor  # (B,)
    past_values: torch.Tensor | None = None  # (B, K, L, P, C)
    target_values: torch.Tensor | None = None  # (B, L, P, C)


@dataclass
class MotionData:
    """Every sketch's frames as tokens (and channel values), and which (sketch, frame) targets each part of the
    split offers."""

    names: list[str]
    tokens: list[torch.Tensor]  # per sketch: (N, L, P)
    values: list[torch.Tensor] | None  # per sketch: (N, L, P, C), unrounded; None for learned codebooks
    pairs: dict[str, np.ndarray]  # part -> (M, 2) rows of (sketch index, target frame)
    context: int

    def batch(self, rows: np.ndarray) -> Pairs:
        """The pairs of rows of (sketch, frame)."""
        k = self.context
        take = lambda frames: (torch.stack([frames[s][t - k : t] for s, t in rows]),
                               torch.stack([frames[s][t] for s, t in rows]))
        past, target = take(self.tokens)
        labels = torch.as_tensor(rows[:, 0], device=target.device)
        return Pairs(past, target, labels, *(take(self.values) if self.values is not None else ()))


def encode_past(run: Run, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 frames (N, H, W) as tokens (N, L, P) and, on FSQ codes, their unrounded channel values (N, L, P, C)."""
    quantizer = run.model.quantizer
    if not isinstance(quantizer, FSQ):
        return encode_tokens(run, frames), None
    values = run.encode_values(frames)  # (N, L, h, w, C): the codes are what they round to, so encode once
    return as_tokens(quantizer.codes(values)), values.flatten(2, 3)


def motion_data(run: Run, context: int) -> MotionData:
    """The run's frames as tokens, with every target whose `context` previous frames exist: in "train" all of
    them training frames; in "select" and "test" the target a held-out frame (its past is whatever came before)."""
    split = run.split()
    names = list(split.sketches)
    encoded = [encode_past(run, split.sketches[name]) for name in names]
    tokens = [t for t, _ in encoded]
    values = None if encoded[0][1] is None else [v for _, v in encoded]
    pairs: dict[str, list] = {part: [] for part in ("train", "select", "test")}
    for s, name in enumerate(names):
        masks = split.masks[name]
        for t in range(context, len(tokens[s])):
            if masks["train"][t - context : t + 1].all():
                pairs["train"].append((s, t))
            for part in ("select", "test"):
                if masks[part][t]:
                    pairs[part].append((s, t))
    if not pairs["train"]:
        longest = max(_longest_run(split.masks[n]["train"]) for n in names)
        raise VqartError(f"the motion prior needs {context + 1} consecutive training frames in a sketch (its context of "
                         f"{context} and a target); the longest run here is {longest}: capture more frames "
                         "(vqart capture --frames) or use a shorter --context")
    return MotionData(names, tokens, values, {p: np.array(v, dtype=np.int64).reshape(-1, 2) for p, v in pairs.items()},
                      context)


def _longest_run(mask: np.ndarray) -> int:
    """The longest stretch of True in a boolean mask."""
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


def copy_bits(data: MotionData, held: np.ndarray, codebook_size: int) -> torch.Tensor:
    """Bits per level (L,) of "copy the previous frame" made a proper distribution: per level, the same code as
    the last frame with the probability that happens in training, else a draw from the level's histogram."""
    train, held_out = data.batch(data.pairs["train"]), data.batch(held)
    past, target, h_past, h_target = train.past, train.target, held_out.past, held_out.target
    stay = (past[:, -1] == target).double().mean(dim=(0, 2))  # (L,)
    totals = []
    for level in range(target.shape[1]):
        counts = torch.bincount(target[:, level].flatten(), minlength=codebook_size).double() + 1
        unigram = counts / counts.sum()
        same = (h_past[:, -1, level] == h_target[:, level]).double()
        p = (1 - stay[level]) * unigram[h_target[:, level]] + stay[level] * same
        totals.append(-p.log2().sum())
    return torch.stack(totals)


class CountModel:
    """The count baseline, per level: a code given the same cell's previous code and a hash of that cell's 3x3
    neighbourhood in the previous frame, backed off to the previous code alone, then to the level's histogram
    (each interpolated with the next by `smoothing` pseudo-counts, Witten-Bell style)."""

    def __init__(self, data: MotionData, codebook_size: int, grid: tuple[int, int]):
        self.k, self.grid, self.data = codebook_size, grid, data
        train = data.batch(data.pairs["train"])
        past, target = train.past, train.target
        self.tables = []
        for level in range(target.shape[1]):
            contexts = self._contexts(past[:, -1, level])
            codes = target[:, level].flatten().cpu().numpy()
            uni = np.bincount(codes, minlength=codebook_size) + 1.0
            self.tables.append((uni / uni.sum(), [(_table(c * codebook_size + codes), _table(c)) for c in contexts]))

    def _contexts(self, previous: torch.Tensor) -> list[np.ndarray]:
        """(N, P) previous codes -> per cell, flat: the previous code, and it with its hashed 3x3 neighbourhood."""
        h, w = self.grid
        g = torch.nn.functional.pad(previous.view(-1, 1, h, w).float(), (1, 1, 1, 1), value=-1.0).long()[:, 0] + 1
        hashed = torch.zeros_like(previous)
        for dy in range(3):
            for dx in range(3):
                hashed = (hashed * 1_000_003 + g[:, dy : dy + h, dx : dx + w].reshape(len(previous), -1)) % (1 << 40)
        prev = previous.flatten().cpu().numpy()
        return [prev, prev * (1 << 40) + hashed.flatten().cpu().numpy()]

    def bits(self, held: np.ndarray, smoothing: float) -> torch.Tensor:
        """Total bits per level (L,) of the held-out targets."""
        pairs = self.data.batch(held)
        past, target = pairs.past, pairs.target
        totals = []
        for level, (unigram, tables) in enumerate(self.tables):
            codes = target[:, level].flatten().cpu().numpy()
            p = unigram[codes]
            for (joint, total), ctx in zip(tables, self._contexts(past[:, -1, level])):
                p = (_count(joint, ctx * self.k + codes) + smoothing * p) / (_count(total, ctx) + smoothing)
            totals.append(-np.log2(p).sum())
        return torch.tensor(totals, dtype=torch.float64)


def _table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and how often each occurs."""
    return np.unique(keys, return_counts=True)


def _count(table: tuple[np.ndarray, np.ndarray], keys: np.ndarray) -> np.ndarray:
    """How often each key occurs in `table` (0 when it never does), as float64."""
    distinct, counts = table
    at = np.searchsorted(distinct, keys).clip(max=len(distinct) - 1)
    return np.where(distinct[at] == keys, counts[at], 0).astype(np.float64)


@dataclass
class MotionPrior:
    """A trained motion prior as a run opens it: the model and what it was trained on."""

    model: MotionModel
    sketches: list[str]  # label i is sketches[i]
    change: dict[str, float]  # each sketch's mean change per frame (see `frame_change`); "*": the median sketch's
    steps: int
    decode: Callable[[torch.Tensor, torch.Tensor | None], np.ndarray]  # (tokens, their values or None) -> uint8

    def label(self, sketch: str | None) -> int:
        """The label id of a sketch name (NO_LABEL for None); VqartError naming the choices otherwise."""
        return NO_LABEL if sketch is None else sketch_label(self.sketches, sketch, "the motion prior")

    def state(self, past: torch.Tensor, values: torch.Tensor | None, like: str | None, temperature: float,
              generator: torch.Generator, morph_to: str | None = None) -> MotionState:
        """A new stream from its past (K, L, P) and its channel values (K, L, P, C) (None: its codes' own),
        steered toward `like` (blending to `morph_to` as its label's t moves), held near `like`'s own change per
        frame (the median sketch's without one)."""
        a = self.label(like)
        b = self.label(morph_to) if morph_to is not None else a
        target = self.change[like] if like is not None else self.change["*"]
        values = self.model.read_values(past, values)
        seen = self.decode(past[-1:], None if values is None else values[-1:])[0]
        return MotionState(past, seen, (a, b, 0.0), temperature, generator, target, values=values)


def frame_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How much frames changed from b to a, uint8 (B, H, W) each: the mean absolute difference (0-255), per frame."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=(1, 2))


def change_rates(run: Run) -> dict[str, float]:
    """Each sketch's mean change from one training frame to the next, and the median sketch's ("*"), which a
    sketch with no two consecutive training frames gets too."""
    split = run.split()
    rates = {}
    for name, frames in split.sketches.items():
        both = split.masks[name]["train"][1:] & split.masks[name]["train"][:-1]
        if both.any():
            rates[name] = float(frame_change(frames[1:][both], frames[:-1][both]).mean())
    median = float(np.median(list(rates.values())))
    return {**{name: rates.get(name, median) for name in split.sketches}, "*": median}


def train_motion(run: Run, minutes: float = 2.0, *, context: int = 2, seed: int = 0, batch_size: int = BATCH_SIZE,
                 lr: float = 6e-3, steps: int = 4, max_steps: int | None = None,
                 on_step: Callable[[float, float], None] | None = None, **shape: int) -> dict:
    """Train the motion prior on the run's consecutive training frames, save it beside the spatial prior, and
    return its held-out bits against the copy, count and spatial baselines (also written to motion.json).
    Training stops after `minutes` or `max_steps` optimizer steps, whichever comes first; rollouts then decode in
    the fewest steps, up to `steps`, that cost no bits on the select frames (fewest_steps)."""
    run.require_codes("a motion prior")
    if not minutes > 0:
        raise VqartError(f"--minutes must be > 0, got {minutes}")
    if not 1 <= context <= 16:
        raise VqartError(f"--context must be between 1 and 16 frames, got {context}")
    data = motion_data(run, context)
    torch.manual_seed(seed)
    model = MotionModel(GridConfig(run.model.codebook_size, run.model.levels, *run.grid_size, **shape), context,
                        len(data.names), channel_table(run)).to(run.device)
    cfg = model.cfg
    spatial = load_prior(run)
    started_from = start_from_spatial(model, spatial)
    train_rows, select_rows = data.pairs["train"], data.pairs["select"]
    probe = data.batch(select_rows[:: max(1, len(select_rows) // 48)])

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        pick = torch.randint(0, len(train_rows), (batch_size,), generator=generator).numpy()
        return model.loss(data.batch(train_rows[pick]), generator=generator)

    history = fit(model, batch_loss, lambda: float(model.bits(probe, steps=steps).sum()), seconds=minutes * 60,
                  max_steps=max_steps, lr=lr, seed=seed, device=run.device, on_step=on_step)
    select = data.batch(select_rows[:: max(1, len(select_rows) // 256)])
    steps = fewest_steps(lambda s: float(model.bits(select, steps=s).sum()), steps)
    metrics = motion_report(run, model, data, steps, spatial)
    metrics.update({"train_steps": history["steps"], "minutes": minutes, "seed": seed, "context": context,
                    "started_from": started_from,
                    "params": sum(p.numel() for p in model.parameters()), "config": asdict(cfg)})
    save_model(run, model, cfg, MOTION_FILE, MOTION_FORMAT, context=context, sketches=data.names, steps=steps,
               change=change_rates(run))
    write_json(run.path / MOTION_METRICS, metrics)
    return metrics


def channel_table(run: Run) -> torch.Tensor | None:
    """Every code's channel values and the lowest and highest values that round to them, (3, K, C), when the
    run's quantizer is FSQ; None for learned codebooks, whose codes have no order."""
    quantizer = run.model.quantizer
    if not isinstance(quantizer, FSQ):
        return None
    low, high = quantizer.intervals(torch.arange(quantizer.size, device=quantizer.levels.device))
    return torch.stack([quantizer.code_values(), low, high]).detach()


def start_from_spatial(model: MotionModel, spatial: SpatialPrior | None) -> str | None:
    """Start the motion prior's grid model from the spatial prior's weights when their shapes agree (its pointer
    alone starts fresh): what a frame of these codes looks like is then known from the first step, and the
    minutes go to how frames follow each other. Returns what it started from ("spatial prior", or None).

    Measured on the demo run (4-minute VQ-VAE and spatial prior), 4 minutes each (1,754 and 1,753 steps): 22.1%
    fewer bits than the count model on the select pairs started from the spatial prior, 16.6% from scratch
    (21.1% and 16.1% on the test pairs); at half the learning rate, 19.1%. The lead shrinks with training: after
    10 minutes on the benchmark's run (test pairs), 25.5% against 24.5%."""
    if spatial is None or replace(spatial.cfg, sources=model.cfg.sources) != model.cfg:
        return None
    model.grid.load_state_dict(spatial.grid.state_dict(), strict=False)
    return "spatial prior"


def motion_report(run: Run, model: MotionModel, data: MotionData, steps: int, spatial: SpatialPrior | None) -> dict:
    """Held-out bits of the next frame (test targets, or select when there are none) for the model and the
    baselines (the run's spatial prior among them, when it has one); the count model's smoothing is chosen on
    the select targets, never on the reported ones."""
    held_part = "test" if len(data.pairs["test"]) else "select"
    held, k = data.pairs[held_part], run.model.codebook_size
    pairs = data.batch(held)
    target, labels = pairs.target, pairs.labels
    ours = model.bits(pairs, steps)
    counts = CountModel(data, k, run.grid_size)
    smoothing = min((0.5, 2.0, 8.0), key=lambda a: float(counts.bits(data.pairs["select"], a).sum()))
    baselines = {
        "copy previous frame": copy_bits(data, held, k),
        "count model (previous code, 3x3 neighbourhood)": counts.bits(held, smoothing),
        "unigram": unigram_bits(data.batch(data.pairs["train"]).target, target, k),
    }
    if spatial is not None:
        sketches = torch.tensor([spatial.label(data.names[i]) for i in labels.tolist()], device=target.device)
        baselines["spatial prior"] = spatial.bits(target, sketches, steps=spatial_steps(run))
    best = min(baselines, key=lambda name: float(baselines[name].sum()))
    cells = model.grid.cells
    return {
        **bits_report(ours, baselines[best], len(held), cells),
        "baseline": best,
        "held_out": held_part,
        "held_out_frames": len(held),
        "baselines": {name: bits_report(b, b, len(held), cells)["bits_per_code"] for name, b in baselines.items()},
        "count_smoothing": smoothing,
        "eval_steps": steps,
    }


def load_motion(run: Run) -> MotionPrior | None:
    """The motion prior stored in the run folder (eval mode, on the run's device), or None when none was trained."""
    retrain = f"vqart prior {run.path} --motion"
    saved = read_model(run, MOTION_FILE, retrain, MOTION_FORMAT)
    if saved is None:
        return None
    # The channel table is the run's quantizer's own, derived here rather than stored beside the weights.
    model = MotionModel(saved["config"], int(saved["context"]), len(saved["sketches"]), channel_table(run))
    try:
        model.to(run.device).load_state_dict(saved["state"])
        rates = dict(saved["change"])
    except (RuntimeError, KeyError):
        raise VqartError(f"{run.path / MOTION_FILE} was made by another version of vqart; retrain it with `{retrain}`") from None
    h, w = run.grid_size

    def decode(tokens: torch.Tensor, values: torch.Tensor | None) -> np.ndarray:
        if values is None:
            return run.decode_codes(as_grids(tokens, h, w))
        return run.decode_values(values.unflatten(2, (h, w)))

    return MotionPrior(model.eval(), list(saved["sketches"]), rates, int(saved["steps"]), decode)


@dataclass
class MotionState:
    """One motion stream between frames: its last K frames (and the last one decoded), its label (a blend of two),
    temperature and randomness, and the liveness guard's memory."""

    past: torch.Tensor  # (K, L, P), oldest first
    seen: np.ndarray  # the last frame as uint8 (H, W)
    label: tuple[int, int, float]  # (label a, label b, blend t): the label vector is (1 - t) a + t b
    temperature: float
    generator: torch.Generator
    target: float  # the change per frame the guard holds it near
    min_p: float = MIN_P  # the guard's first knob
    heat: float = 1.0  # its second, a factor on the temperature, turned only while min-p can open no further
    recent: float | None = None  # a running mean of the change
    values: torch.Tensor | None = None  # the past's channel values (K, L, P, C), on FSQ codes
    noise: torch.Tensor | None = None  # what its last draws came from, as normal numbers (P, L)


def advance(prior: MotionPrior, states: list[MotionState], *, top_k: int | None = None,
            guidance: float = 1.0) -> np.ndarray:
    """The next frame of every stream in one batched model call, decoded: uint8 (B, H, W). Each stream draws from
    its own generator, so its frames do not depend on the others; each state moves on by one frame."""
    m = prior.model
    a, b, t = (torch.tensor(col, device=states[0].past.device) for col in zip(*(s.label for s in states)))
    label = torch.lerp(m.label_vectors(a), m.label_vectors(b), t.float()[:, None])
    temperature = torch.tensor([s.temperature * s.heat for s in states], device=label.device)
    min_p = torch.tensor([s.min_p for s in states], device=label.device)
    values = None if states[0].values is None else torch.stack([s.values for s in states])
    uniforms = torch.special.ndtr(torch.stack([drift(s) for s in states]))
    tokens, placed = m.next_frame(torch.stack([s.past for s in states]), label, values, steps=prior.steps,
                                  temperature=temperature, top_k=top_k, guidance=guidance,
                                  generator=[s.generator for s in states], min_p=min_p, uniforms=uniforms)
    frames = prior.decode(tokens, placed)
    changed = frame_change(frames, np.stack([s.seen for s in states])).tolist()
    for i, (state, amount) in enumerate(zip(states, changed)):
        steer(state, amount)
        state.past, state.seen = torch.cat([state.past[1:], tokens[i : i + 1]]), frames[i]
        if placed is not None:
            state.values = torch.cat([state.values[1:], placed[i : i + 1]])
    return frames


def drift(state: MotionState) -> torch.Tensor:
    """The normal numbers (P, L) a stream's next draws come from, one per cell and level of its frames: its last
    ones moved one AR(1) step (COHERENCE) with fresh numbers from its own generator."""
    _, levels, cells = state.past.shape
    fresh = torch.randn((cells, levels), generator=state.generator, device=state.past.device)
    state.noise = fresh if state.noise is None else COHERENCE * state.noise + (1 - COHERENCE**2) ** 0.5 * fresh
    return state.noise


def steer(state: MotionState, changed: float) -> None:
    """The liveness guard, proportional in log space: a stalled stream opens min-p, then warms; a boiling one
    cools first, then closes min-p."""
    state.recent = changed if state.recent is None else 0.8 * state.recent + 0.2 * changed
    # A sketch that never moves has a target of 0: it is then held still, and nothing divides by zero.
    step = min(4.0, max(0.25, max(state.recent, 1e-6) / max(state.target, 1e-6))) ** 0.3
    if state.heat > 1.0 or state.min_p * step < MIN_P_RANGE[0]:
        state.heat = min(HEAT_MAX, max(1.0, state.heat / step))
    else:
        state.min_p = min(MIN_P_RANGE[1], state.min_p * step)


def start_context(frames: torch.Tensor, context: int) -> torch.Tensor:
    """The last `context` of a start's frames (n, ...), tokens or values, as a past (K, ...); a short start repeats
    its first frame."""
    if len(frames) < context:
        frames = torch.cat([frames[:1].expand(context - len(frames), *frames.shape[1:]), frames])
    return frames[-context:]

