"""The motion prior: the next frame's codes given the codes of the previous K frames and, optionally, a sketch.

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
On FSQ codes each cell also sees the channel values of its 3x3 neighbourhood over the K frames (one convolution,
silent at the start): an embedding learned per code does not tell which codes are neighbours, and a channel
stepping to its next value is how motion shows in these codes. Measured side by side (an 8-minute VQ-VAE and
5-minute spatial prior, 6 minutes of motion prior from it each, select pairs): 2.585 bits per code against 2.667,
and 22.9% fewer than the count model on the test pairs against 20.4%; the values given to the depth head's
output instead (a bonus per level linear and quadratic in each code's values) gave 2.629, both 2.581. Neither
makes a step drawn from the real past follow the motion (lissajous -0.18 with the values, -0.15 without).
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
NO_LABEL = -1
MIN_P = 0.3  # where a rollout starts
MIN_P_RANGE = (0.02, 0.6)
HEAT_MAX = 3.0
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
    """A GridModel over the next frame whose cells also see the last `context` frames and a sketch label, and,
    given `code_values` (K, C) (FSQ's), the values of those frames' codes around them."""

    def __init__(self, cfg: GridConfig, context: int, labels: int, code_values: torch.Tensor | None = None):
        super().__init__()
        self.cfg, self.context_frames, self.labels = cfg, context, labels
        self.grid = GridModel(cfg)
        self.lags = nn.Linear(context * cfg.dim, cfg.dim)  # a cell's K past embeddings, oldest first, as one
        self.label_emb = nn.Embedding(labels + 1, cfg.dim)  # the last one is "no label"
        self.register_buffer("loss_weights", level_weights(cfg.levels), persistent=False)
        self.moves = None
        if code_values is not None:
            self.register_buffer("code_values", code_values.float(), persistent=False)
            self.moves = nn.Conv2d(context * cfg.levels * code_values.shape[1], cfg.dim, 3, padding=1)
            nn.init.zeros_(self.moves.weight)  # silent at first: the model starts as the spatial prior left it
            nn.init.zeros_(self.moves.bias)

    def label_vectors(self, labels: torch.Tensor) -> torch.Tensor:
        """Label ids (B,), NO_LABEL for none, as embeddings (B, dim)."""
        return self.label_emb(torch.where(labels < 0, self.labels, labels))

    def candidates(self, frame: torch.Tensor) -> torch.Tensor:
        """What the depth head may copy: each cell's 3x3 neighbourhood in `frame` (B, L, P), the cell itself first
        (edges repeat their border): (B, P, L, 9)."""
        b, levels, _ = frame.shape
        grid = frame.reshape(b * levels, 1, self.cfg.height, self.cfg.width).float()
        patches = F.unfold(F.pad(grid, (1, 1, 1, 1), mode="replicate"), 3)  # (B*L, 9, P), row by row
        patches = patches[:, [4, 0, 1, 2, 3, 5, 6, 7, 8]].round().long()
        return patches.view(b, levels, 9, -1).permute(0, 3, 1, 2)

    def context(self, past: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Past tokens (B, K, L, P), oldest first, and label vectors (B, dim) -> every cell's context (B, P, dim)."""
        b, k = past.shape[:2]
        cells = self.grid.embed.cells(past.flatten(0, 1)).view(b, k, self.grid.cells, -1)
        context = self.lags(cells.transpose(1, 2).reshape(b, self.grid.cells, -1)) + label[:, None]
        if self.moves is None:
            return context
        values = self.code_values[past].movedim(-1, 3)  # (B, K, L, C, P): every frame's, level's and channel's
        grid = values.reshape(b, -1, self.cfg.height, self.cfg.width)
        return context + self.moves(grid).flatten(2).transpose(1, 2)

    def loss(self, past: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
             corrupt: float = 0.2, drop_label: float = 0.1) -> torch.Tensor:
        """Masked cross-entropy of the next frame, the context corrupted (up to `corrupt` of its codes replaced
        by random ones) and the label dropped `drop_label` of the time."""
        b = len(past)
        rate = torch.rand(b, 1, 1, 1, device=past.device, generator=generator) * corrupt
        noise = torch.randint(0, self.cfg.codebook_size, past.shape, device=past.device, generator=generator)
        hit = torch.rand(past.shape, device=past.device, generator=generator) < rate
        past = torch.where(hit, noise, past)
        dropped = torch.rand(b, device=past.device, generator=generator) < drop_label
        label = self.label_vectors(torch.where(dropped, NO_LABEL, labels))
        return self.grid.loss(target, generator, context=self.context(past, label),
                              candidates=self.candidates(past[:, -1]), level_weights=self.loss_weights,
                              scored=SCORED)

    @torch.no_grad()
    def bits(self, past: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, steps: int) -> torch.Tensor:
        """Total bits per level (L,) of the targets given their true pasts (the sampler's factorisation)."""
        return self.grid.bits(target, steps=steps, context=self.context(past, self.label_vectors(labels)),
                              candidates=self.candidates(past[:, -1])).sum(0)

    @torch.no_grad()
    def next_frame(self, past: torch.Tensor, label: torch.Tensor, *, steps: int, temperature: torch.Tensor,
                   top_k: int | None, guidance: float, generator: Generators,
                   min_p: float | torch.Tensor = MIN_P) -> torch.Tensor:
        """Sample the next tokens (B, L, P) given pasts (B, K, L, P) and label vectors (B, dim); temperature (B,)."""
        context = self.context(past, label)
        uncond = None
        if guidance != 1.0:
            uncond = self.context(past, self.label_vectors(torch.full((len(past),), NO_LABEL, device=past.device)))
        return self.grid.sample(len(past), steps=steps, temperature=temperature, top_k=top_k, generator=generator,
                                context=context, uncond=uncond, guidance=guidance,
                                candidates=self.candidates(past[:, -1]), min_p=min_p)


@dataclass
class MotionData:
    """Every sketch's frames as tokens, and which (sketch, frame) targets each part of the split offers."""

    names: list[str]
    tokens: list[torch.Tensor]  # per sketch: (N, L, P)
    pairs: dict[str, np.ndarray]  # part -> (M, 2) rows of (sketch index, target frame)
    context: int

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(past (B, K, L, P), target (B, L, P), labels (B,)) for rows of (sketch, frame)."""
        k = self.context
        past = torch.stack([self.tokens[s][t - k : t] for s, t in rows])
        target = torch.stack([self.tokens[s][t] for s, t in rows])
        return past, target, torch.as_tensor(rows[:, 0], device=target.device)


def motion_data(run: Run, context: int) -> MotionData:
    """The run's frames as tokens, with every target whose `context` previous frames exist: in "train" all of
    them training frames; in "select" and "test" the target a held-out frame (its past is whatever came before)."""
    split = run.split()
    names = list(split.sketches)
    tokens = [encode_tokens(run, split.sketches[name]) for name in names]
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
    return MotionData(names, tokens, {p: np.array(v, dtype=np.int64).reshape(-1, 2) for p, v in pairs.items()}, context)


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
    past, target, _ = data.batch(data.pairs["train"])
    h_past, h_target, _ = data.batch(held)
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
        past, target, _ = data.batch(data.pairs["train"])
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
        past, target, _ = self.data.batch(held)
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
    decode: Callable[[torch.Tensor], np.ndarray]  # tokens (B, L, P) -> uint8 frames (B, H, W)

    def label(self, sketch: str | None) -> int:
        """The label id of a sketch name (NO_LABEL for None); VqartError naming the choices otherwise."""
        return NO_LABEL if sketch is None else sketch_label(self.sketches, sketch, "the motion prior")

    def state(self, past: torch.Tensor, like: str | None, temperature: float, generator: torch.Generator,
              morph_to: str | None = None) -> MotionState:
        """A new stream from its past (K, L, P), steered toward `like` (blending to `morph_to` as its label's t
        moves), held near `like`'s own change per frame (the median sketch's without one)."""
        a = self.label(like)
        b = self.label(morph_to) if morph_to is not None else a
        target = self.change[like] if like is not None else self.change["*"]
        return MotionState(past, self.decode(past[-1:])[0], (a, b, 0.0), temperature, generator, target)


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
    cfg = GridConfig(run.model.codebook_size, run.model.levels, *run.grid_size, **{"sources": 9, **shape})
    torch.manual_seed(seed)
    values = code_values(run)
    model = MotionModel(cfg, context, len(data.names), values).to(run.device)
    spatial = load_prior(run)
    started_from = start_from_spatial(model, spatial)
    train_rows, select_rows = data.pairs["train"], data.pairs["select"]
    probe = data.batch(select_rows[:: max(1, len(select_rows) // 48)])

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        pick = torch.randint(0, len(train_rows), (batch_size,), generator=generator).numpy()
        return model.loss(*data.batch(train_rows[pick]), generator=generator)

    history = fit(model, batch_loss, lambda: float(model.bits(*probe, steps=steps).sum()), seconds=minutes * 60,
                  max_steps=max_steps, lr=lr, seed=seed, device=run.device, on_step=on_step)
    select = data.batch(select_rows[:: max(1, len(select_rows) // 256)])
    steps = fewest_steps(lambda s: float(model.bits(*select, steps=s).sum()), steps)
    metrics = motion_report(run, model, data, steps, spatial)
    metrics.update({"train_steps": history["steps"], "minutes": minutes, "seed": seed, "context": context,
                    "started_from": started_from,
                    "params": sum(p.numel() for p in model.parameters()), "config": asdict(cfg)})
    save_model(run, model, cfg, MOTION_FILE, context=context, sketches=data.names, steps=steps,
               change=change_rates(run))
    write_json(run.path / MOTION_METRICS, metrics)
    return metrics


def code_values(run: Run) -> torch.Tensor | None:
    """The run's codes' channel values (K, C) when its quantizer is FSQ; None for learned codebooks, whose codes
    have no order."""
    quantizer = run.model.quantizer
    return quantizer.code_values().detach() if isinstance(quantizer, FSQ) else None


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
    past, target, labels = data.batch(held)
    ours = model.bits(past, target, labels, steps)
    counts = CountModel(data, k, run.grid_size)
    smoothing = min((0.5, 2.0, 8.0), key=lambda a: float(counts.bits(data.pairs["select"], a).sum()))
    baselines = {
        "copy previous frame": copy_bits(data, held, k),
        "count model (previous code, 3x3 neighbourhood)": counts.bits(held, smoothing),
        "unigram": unigram_bits(data.batch(data.pairs["train"])[1], target, k),
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
    saved = read_model(run, MOTION_FILE, retrain)
    if saved is None:
        return None
    # The codes' values are the run's own; whether the prior reads them is in its weights (older ones do not).
    values = code_values(run) if "moves.weight" in saved["state"] else None
    model = MotionModel(saved["config"], int(saved["context"]), len(saved["sketches"]), values).to(run.device)
    try:
        model.load_state_dict(saved["state"])
        rates = dict(saved["change"])
    except (RuntimeError, KeyError):
        raise VqartError(f"{run.path / MOTION_FILE} was made by another version of vqart; retrain it with `{retrain}`") from None
    decode = lambda tokens: run.decode_codes(as_grids(tokens, *run.grid_size))
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


def advance(prior: MotionPrior, states: list[MotionState], *, top_k: int | None = None,
            guidance: float = 1.0) -> np.ndarray:
    """The next frame of every stream in one batched model call, decoded: uint8 (B, H, W). Each stream draws from
    its own generator, so its frames do not depend on the others; each state moves on by one frame."""
    m = prior.model
    a, b, t = (torch.tensor(col, device=states[0].past.device) for col in zip(*(s.label for s in states)))
    label = torch.lerp(m.label_vectors(a), m.label_vectors(b), t.float()[:, None])
    temperature = torch.tensor([s.temperature * s.heat for s in states], device=label.device)
    min_p = torch.tensor([s.min_p for s in states], device=label.device)
    tokens = m.next_frame(torch.stack([s.past for s in states]), label, steps=prior.steps, temperature=temperature,
                          top_k=top_k, guidance=guidance, generator=[s.generator for s in states], min_p=min_p)
    frames = prior.decode(tokens)
    changed = frame_change(frames, np.stack([s.seen for s in states])).tolist()
    for state, codes, frame, amount in zip(states, tokens, frames, changed):
        steer(state, amount)
        state.past, state.seen = torch.cat([state.past[1:], codes[None]]), frame
    return frames


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
    """The last `context` tokens (n, L, P) of a start as a past (K, L, P); a short start repeats its first frame."""
    if len(frames) < context:
        frames = torch.cat([frames[:1].expand(context - len(frames), *frames.shape[1:]), frames])
    return frames[-context:]

