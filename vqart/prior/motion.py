"""The motion prior: the next frame's codes given the codes of the previous K frames and, optionally, a sketch.

A conditional MaskGIT over the next frame (Genie, TECO, MaskViT): every cell's input is its next-frame
embedding (masked or revealed) plus the context, the previous K frames' embeddings of that cell each with its
lag's embedding, and a sketch label's embedding, so a pass stays h * w tokens wide and reuses the spatial
prior's grid-aware blocks and depth head. Copying the last frame is the attractor such a model falls into, and
its own small errors compound in a rollout; so training corrupts the context (a random share of its codes
replaced, as GameNGen and DIAMOND noise theirs), and drops the label 10% of the time, which makes classifier-
free guidance possible (Phenaki): `like` steers a rollout toward a sketch, `morph` blends two labels.
A rollout keeps itself alive: the share of cells whose first-level code changes is held near the sketch's own
by nudging the temperature (a stalled rollout warms up, a boiling one cools down).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from vqart.atomic import write_json
from vqart.errors import VqartError
from vqart.prior.fit import fit
from vqart.prior.grid import GridConfig, GridModel
from vqart.prior.spatial import (
    METRICS_FILE,
    bits_report,
    encode_tokens,
    load_prior,
    read_model,
    save_model,
    unigram_bits,
)
from vqart.run import Run

MOTION_FILE = "motion.pt"
MOTION_METRICS = "motion.json"
NO_LABEL = -1


class MotionModel(nn.Module):
    """A GridModel over the next frame whose cells also see the last `context` frames and a sketch label."""

    def __init__(self, cfg: GridConfig, context: int, labels: int):
        super().__init__()
        self.cfg, self.context_frames, self.labels = cfg, context, labels
        self.grid = GridModel(cfg)
        self.lag = nn.Parameter(torch.randn(context, 1, cfg.dim) * 0.02)
        self.label_emb = nn.Embedding(labels + 1, cfg.dim)  # the last one is "no label"

    def label_vectors(self, labels: torch.Tensor) -> torch.Tensor:
        """Label ids (B,), NO_LABEL for none, as embeddings (B, dim)."""
        return self.label_emb(torch.where(labels < 0, self.labels, labels))

    def context(self, past: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Past tokens (B, K, L, P), oldest first, and label vectors (B, dim) -> every cell's context (B, P, dim)."""
        b, k = past.shape[:2]
        cells = self.grid.embed.cells(past.flatten(0, 1)).view(b, k, self.grid.cells, -1)
        lags = self.lag.flip(0)[None]  # lag 1 (the newest frame) is the last of `past`
        return (cells + lags).sum(dim=1) + label[:, None]

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
        return self.grid.loss(target, generator, context=self.context(past, label))

    @torch.no_grad()
    def bits(self, past: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, steps: int) -> torch.Tensor:
        """Total bits per level (L,) of the targets given their true pasts (the sampler's factorisation)."""
        return self.grid.bits(target, steps=steps, context=self.context(past, self.label_vectors(labels)))

    @torch.no_grad()
    def next_frame(self, past: torch.Tensor, label: torch.Tensor, *, steps: int, temperature: torch.Tensor,
                   top_k: int | None, guidance: float, generator: torch.Generator | None) -> torch.Tensor:
        """Sample the next tokens (B, L, P) given pasts (B, K, L, P) and label vectors (B, dim); temperature (B,)."""
        context = self.context(past, label)
        uncond = None
        if guidance != 1.0:
            uncond = self.context(past, self.label_vectors(torch.full((len(past),), NO_LABEL, device=past.device)))
        return self.grid.sample(len(past), steps=steps, temperature=temperature, top_k=top_k, generator=generator,
                                context=context, uncond=uncond, guidance=guidance)


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


def count_bits(data: MotionData, held: np.ndarray, codebook_size: int, grid: tuple[int, int],
               smoothing: float) -> torch.Tensor:
    """Bits per level (L,) of a count model: a code given the same cell's previous code and a hash of that
    cell's 3x3 neighbourhood in the previous frame, backed off to the previous code alone, then to the level's
    histogram (each level interpolated with the next by `smoothing` pseudo-counts, Witten-Bell style)."""

    def keys(past_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, P) previous codes -> (previous code, hashed 3x3 neighbourhood) keys per cell."""
        h, w = grid
        g = torch.nn.functional.pad(past_last.view(-1, 1, h, w).double(), (1, 1, 1, 1), value=-1).long()[:, 0]
        hashed = torch.zeros_like(past_last)
        for dy in range(3):
            for dx in range(3):
                hashed = hashed * 1_000_003 + g[:, dy : dy + h, dx : dx + w].reshape(len(past_last), -1) + 1
        return past_last, hashed % (1 << 40)

    past, target, _ = data.batch(data.pairs["train"])
    h_past, h_target, _ = data.batch(held)
    totals = []
    for level in range(target.shape[1]):
        prev, ngh = keys(past[:, -1, level])
        codes = target[:, level]
        tables = [_counts(torch.stack([prev, codes], -1)), _counts(torch.stack([prev * (1 << 40) + ngh, codes], -1))]
        uni = torch.bincount(codes.flatten(), minlength=codebook_size).double() + 1
        p = (uni / uni.sum())[h_target[:, level]]
        h_prev, h_ngh = keys(h_past[:, -1, level])
        for table, ctx in zip(tables, (h_prev, h_prev * (1 << 40) + h_ngh)):
            joint, total = table
            p = (_lookup(joint, torch.stack([ctx, h_target[:, level]], -1)) + smoothing * p) / \
                (_lookup(total, ctx[..., None]) + smoothing)
        totals.append(-p.log2().sum())
    return torch.stack(totals)


def _counts(pairs: torch.Tensor) -> tuple[dict, dict]:
    """Counts of (context, code) rows (..., 2) and of contexts alone, as dictionaries."""
    flat = pairs.reshape(-1, 2)
    joint_keys, joint_n = torch.unique(flat, dim=0, return_counts=True)
    ctx_keys, ctx_n = torch.unique(flat[:, 0], return_counts=True)
    joint = dict(zip(map(tuple, joint_keys.tolist()), joint_n.tolist()))
    total = dict(zip(((k,) for k in ctx_keys.tolist()), ctx_n.tolist()))
    return joint, total


def _lookup(table: dict, rows: torch.Tensor) -> torch.Tensor:
    """Counts (float64, shaped like rows without the last axis) of each row's key in `table` (0 when unseen)."""
    flat = rows.reshape(-1, rows.shape[-1]).tolist()
    return torch.tensor([table.get(tuple(r), 0) for r in flat], dtype=torch.float64).view(rows.shape[:-1])


@dataclass
class MotionPrior:
    """A trained motion prior as a run opens it: the model and what it was trained on."""

    model: MotionModel
    sketches: list[str]  # label i is sketches[i]
    change: dict[str, float]  # each sketch's share of cells whose first-level code changes per frame; "*": median
    steps: int

    def label(self, sketch: str | None) -> int:
        """The label id of a sketch name (NO_LABEL for None); VqartError naming the choices otherwise."""
        if sketch is None:
            return NO_LABEL
        if sketch not in self.sketches:
            raise VqartError(f"unknown sketch {sketch!r}; the motion prior knows {', '.join(self.sketches)}")
        return self.sketches.index(sketch)


def change_rates(data: MotionData) -> dict[str, float]:
    """Each sketch's mean share of cells whose first-level code differs from the frame before, and the median."""
    rates = {name: float((tok[1:, 0] != tok[:-1, 0]).double().mean()) for name, tok in zip(data.names, data.tokens)}
    return {**rates, "*": float(np.median(list(rates.values())))}


def train_motion(run: Run, minutes: float = 2.0, *, context: int = 2, seed: int = 0, batch_size: int = 16,
                 lr: float = 6e-3, steps: int = 4, max_steps: int | None = None,
                 on_step: Callable[[float, float], None] | None = None, **shape: int) -> dict:
    """Train the motion prior on the run's consecutive training frames, save it beside the spatial prior, and
    return its held-out bits against the copy, count and spatial baselines (also written to motion.json).
    Training stops after `minutes` or `max_steps` optimizer steps, whichever comes first."""
    run.require_codes("a motion prior")
    if not minutes > 0:
        raise VqartError(f"--minutes must be > 0, got {minutes}")
    if not 1 <= context <= 16:
        raise VqartError(f"--context must be between 1 and 16 frames, got {context}")
    data = motion_data(run, context)
    cfg = GridConfig(run.model.codebook_size, run.model.levels, *run.grid_size, **shape)
    torch.manual_seed(seed)
    model = MotionModel(cfg, context, len(data.names)).to(run.device)
    train_rows, select_rows = data.pairs["train"], data.pairs["select"]
    probe = data.batch(select_rows[:: max(1, len(select_rows) // 48)])

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        pick = torch.randint(0, len(train_rows), (batch_size,), generator=generator).numpy()
        return model.loss(*data.batch(train_rows[pick]), generator=generator)

    history = fit(model, batch_loss, lambda: float(model.bits(*probe, steps=steps).sum()), seconds=minutes * 60,
                  max_steps=max_steps, lr=lr, seed=seed, device=run.device, on_step=on_step)
    metrics = motion_report(run, model, data, steps)
    metrics.update({"train_steps": history["steps"], "minutes": minutes, "seed": seed, "context": context,
                    "params": sum(p.numel() for p in model.parameters()), "config": asdict(cfg)})
    save_model(run, model, cfg, MOTION_FILE, context=context, sketches=data.names, change=change_rates(data),
               steps=steps)
    write_json(run.path / MOTION_METRICS, metrics)
    return metrics


def motion_report(run: Run, model: MotionModel, data: MotionData, steps: int) -> dict:
    """Held-out bits of the next frame (test targets, or select when there are none) for the model and the
    baselines; the count model's smoothing is chosen on the select targets, never on the reported ones."""
    held_part = "test" if len(data.pairs["test"]) else "select"
    held, k = data.pairs[held_part], run.model.codebook_size
    past, target, labels = data.batch(held)
    ours = model.bits(past, target, labels, steps)
    smoothing = min((0.5, 2.0, 8.0), key=lambda a: float(count_bits(data, data.pairs["select"], k, run.grid_size, a).sum()))
    baselines = {
        "copy previous frame": copy_bits(data, held, k),
        "count model (previous code, 3x3 neighbourhood)": count_bits(data, held, k, run.grid_size, smoothing),
        "unigram": unigram_bits(data.batch(data.pairs["train"])[1], target, k),
    }
    spatial = load_prior(run)
    if spatial is not None:
        baselines["spatial prior"] = spatial.bits(target, steps=spatial_steps(run))
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


def spatial_steps(run: Run) -> int:
    """The decoding steps the run's spatial prior was scored with."""
    try:
        return int(json.loads((run.path / METRICS_FILE).read_text())["eval_steps"])
    except (OSError, ValueError, KeyError):
        return 8


def load_motion(run: Run) -> MotionPrior | None:
    """The motion prior stored in the run folder (eval mode, on the run's device), or None when none was trained."""
    retrain = f"vqart prior {run.path} --motion"
    saved = read_model(run, MOTION_FILE, retrain)
    if saved is None:
        return None
    model = MotionModel(saved["config"], int(saved["context"]), len(saved["sketches"])).to(run.device)
    try:
        model.load_state_dict(saved["state"])
    except RuntimeError:
        raise VqartError(f"{run.path / MOTION_FILE} was made by another version of vqart; retrain it with `{retrain}`") from None
    return MotionPrior(model.eval(), list(saved["sketches"]), dict(saved["change"]), int(saved["steps"]))


class Rollout:
    """B motion streams advanced together, one batched model call per frame, each with its own label (or blend of
    two), temperature and liveness guard. `past` starts as each stream's last K frames (B, K, L, P)."""

    def __init__(self, prior: MotionPrior, past: torch.Tensor, labels: list[tuple[int, int, float]], *,
                 temperature: list[float], top_k: int | None = None, guidance: float = 1.0,
                 generator: torch.Generator | None = None, guard: bool = True):
        self.prior, self.past = prior, past
        self.top_k, self.guidance, self.generator, self.guard = top_k, guidance, generator, guard
        self.set_labels(labels)
        self.base = torch.tensor(temperature, dtype=torch.float32, device=past.device)
        self.boost = torch.ones_like(self.base)  # the guard's factor on each stream's temperature
        self.recent = torch.full_like(self.base, float("nan"))  # running mean of each stream's change

    def set_labels(self, labels: list[tuple[int, int, float]]) -> None:
        """Per stream (label a, label b, blend t): its label vector is (1 - t) a + t b (NO_LABEL for none)."""
        m = self.prior.model
        a, b, t = (torch.tensor(col, device=self.past.device) for col in zip(*labels))
        self.label = torch.lerp(m.label_vectors(a), m.label_vectors(b), t.float()[:, None])
        names = self.prior.sketches
        self.target = torch.tensor([self.prior.change[names[i]] if i >= 0 else self.prior.change["*"]
                                    for i in a.tolist()], device=self.past.device)

    def step(self) -> torch.Tensor:
        """The next frame of every stream: tokens (B, L, P)."""
        tokens = self.prior.model.next_frame(
            self.past, self.label, steps=self.prior.steps, temperature=self.base * self.boost, top_k=self.top_k,
            guidance=self.guidance, generator=self.generator)
        if self.guard:
            change = (tokens[:, 0] != self.past[:, -1, 0]).float().mean(dim=1)
            self.recent = torch.where(self.recent.isnan(), change, 0.8 * self.recent + 0.2 * change)
            # Proportional in log space, gently: a stalled stream warms up, a boiling one cools down.
            ratio = (self.target / self.recent.clamp(min=1e-3)).clamp(0.25, 4.0)
            self.boost = (self.boost * ratio.pow(0.15)).clamp(0.6, 1.8)
        self.past = torch.cat([self.past[:, 1:], tokens[:, None]], dim=1)
        return tokens


def start_context(frames: torch.Tensor, context: int) -> torch.Tensor:
    """The last `context` tokens (n, L, P) of a start as a past (1, K, L, P); a short start repeats its first frame."""
    if len(frames) < context:
        frames = torch.cat([frames[:1].expand(context - len(frames), *frames.shape[1:]), frames])
    return frames[-context:][None]

