"""Motion benchmark: the motion prior trained 10 CPU minutes into the generation benchmark's run (beside its
spatial prior), then (1) held-out next-frame bits against three baselines, (2) 300-frame rollouts from 8 bundled
sketches judged over frames 200-300 against each sketch's own captures, (3) rollouts from the held-out sketches,
(4) frames/s of a rollout at batch 1, decoding included.

(1) Baselines: "copy the previous frame" as a proper distribution, the count model (previous code and 3x3
neighbourhood, backed off), the spatial prior; the count model's smoothing is chosen on the select frames.
(2) Each rollout starts at the first test frame of its sketch (with the frames before it as its past). Change is
the mean absolute difference (0-255) between consecutive frames; "frozen" is a 30-frame stretch under 0.2x the
sketch's own; flow is the correlation of the signed change at t and t+1 (real motion carries on: 0.5-0.93 on
waves, lissajous, flowfield and tree; boiling texture about -0.1); "looks like a frame" compares the spatial
prior's bits per code on frames 200-300 with its bits on the sketch's real test frames. Under the rollouts, a
"why" row per smooth sketch separates the tokenizer from the prior: the flow of its captures encoded and decoded
frame by frame (what a rollout whose codes were the captures' own would show), the same with the FSQ channels
left unrounded (what the rounding alone loses of the motion), and one step drawn from the real past of each test
frame against the captures' own step, both decoded.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from PIL import Image

from common import OUT, PRIOR_RUN, heldout_data, short_run
from vqart import export, generate
from vqart.data import load_frames
from vqart.model.fsq import FSQ
from vqart.prior import as_tokens, load_prior, spatial_steps, train_prior
from vqart.prior.motion import encode_past, frame_change, train_motion
from vqart.run import Run, open_run

TITLE = "Motion: the temporal prior's next-frame bits, 300-frame rollouts, speed (CPU, 64x64)"
SKETCHES = ("waves", "lissajous", "flowfield", "tree", "spirograph", "polygons", "rain", "bodies")
SMOOTH = ("waves", "lissajous", "flowfield", "tree")  # the ones whose real motion carries on frame to frame


def change(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0-255) between consecutive frames: what the rollouts' guard holds."""
    return frame_change(frames[1:], frames[:-1])


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean correlation between matching rows of two stacks of changes (pixels as samples)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    corr = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b) if x.std() > 0 and y.std() > 0]
    return float(np.mean(corr)) if corr else float("nan")


def flow(frames: np.ndarray) -> float:
    """Mean correlation between the signed change at t and at t+1 (pixels as samples)."""
    d = np.diff(frames.astype(np.float32), axis=0)
    return _correlation(d[:-1], d[1:])


def step_flows(run: Run, real: np.ndarray, coded: np.ndarray, targets: np.ndarray, sketch: str) -> tuple[float, float]:
    """One step from the real past, for target frames t (indices into the captures `real`, decoded from their codes
    as `coded`): the correlation between the change to t and the captures' change from t-2 to t-1: (the motion
    prior's step, drawn from the captures' past as a rollout's first frame is drawn, everything decoded as a
    rollout decodes it (from the channel values on FSQ codes); the captures' own step, decoded from codes)."""
    prior = generate.cached_motion(run)
    k = prior.model.context_frames
    targets = targets[targets >= max(k, 2)]
    if not len(targets):
        return float("nan"), float("nan")
    tokens, values = encode_past(run, real)
    past = torch.stack([tokens[t - k : t] for t in targets])
    past_values = None if values is None else torch.stack([values[t - k : t] for t in targets])
    label = prior.model.label_vectors(torch.full((len(past),), prior.label(sketch), device=past.device))
    drawn = prior.model.next_frame(past, label, past_values, steps=prior.steps, temperature=torch.ones(len(past)),
                                   top_k=None, guidance=1.0, generator=torch.Generator(device=past.device).manual_seed(0))
    coded = coded.astype(np.float32)
    shown = coded if values is None else prior.decode(tokens, values).astype(np.float32)  # as a rollout shows its past
    step = lambda frames, now: _correlation(now - frames[targets - 1], frames[targets - 1] - frames[targets - 2])
    return step(shown, prior.decode(*drawn).astype(np.float32)), step(coded, coded[targets])


def spatial_bits(run: Run, frames: np.ndarray, sketch: str) -> float:
    """The spatial prior's bits per code on frames of a sketch (in the prior's own steps)."""
    prior = load_prior(run)
    tokens = as_tokens(run.encode_codes(frames))
    labels = torch.full((len(tokens),), prior.label(sketch), device=tokens.device)
    return float(prior.bits(tokens, labels, steps=spatial_steps(run)).sum()) / tokens.numel()


def slowest(c: np.ndarray, width: int = 30) -> float:
    """The lowest mean change over `width` consecutive frames (the whole when shorter)."""
    width = min(width, len(c))
    return min(c[i : i + width].mean() for i in range(len(c) - width + 1))


def judge(run: Run, name: str, frames: np.ndarray, real: np.ndarray, real_test: np.ndarray) -> dict:
    """How a rollout's last third (frames 200-300 of 300) compares with the sketch's own motion and looks."""
    tail = frames[2 * len(frames) // 3 :]
    late, own = change(tail), change(real).mean()
    ratio_bits = spatial_bits(run, tail, name) / spatial_bits(run, real_test, name)
    result = {"change": late.mean() / own, "frozen": slowest(late) / own < 0.2, "bits": ratio_bits,
              "flow": flow(tail), "own_flow": flow(real)}
    smooth_ok = name not in SMOOTH or result["flow"] >= result["own_flow"] - 0.3
    result["ok"] = bool(0.5 <= result["change"] <= 2 and not result["frozen"] and smooth_ok and 0.85 <= ratio_bits <= 1.15)
    return result


def _why(run: Run, name: str, real: np.ndarray, targets: np.ndarray) -> dict:
    """A row on why a smooth sketch's rollout flow misses: its captures' flow through the VQ-VAE, each frame
    encoded and decoded on its own (the most a rollout decoded frame by frame can show of the sketch's motion
    when its codes are the captures' own), the same with its FSQ channels unrounded, and one step the motion
    prior draws from the real past (test targets) against the captures' own step through the VQ-VAE."""
    coded = generate.cached_motion(run).decode(as_tokens(run.encode_codes(real)), None)
    drawn, own_step = step_flows(run, real, coded, targets, name)
    unrounded = ""
    if isinstance(run.model.quantizer, FSQ):
        unrounded = f" (its FSQ channels unrounded: {flow(run.decode(run.model.quantizer.unrounded(run.encode(real)))):.2f})"
    return _row(f"  why, {name}: own flow {flow(real):.2f}, through the VQ-VAE {flow(coded):.2f}{unrounded}; one step "
                f"from the real past: drawn {drawn:.2f}, the captures' own through the VQ-VAE {own_step:.2f}", "")


def rollout_fps(run: Run, start: str, frames: int = 60) -> float:
    """Frames/s of one rollout at batch 1, decoding included (one of several timings: a single one can catch a
    stall of this shared machine, as one did at 29.4 frames/s where five more read 60-77)."""
    started = time.perf_counter()
    generate.motion(run, frames, seed=0, start=start)
    return frames / (time.perf_counter() - started)


def _row(measure: str, value, unit: str = "", target: str = "", ok: bool | None = None) -> dict:
    return {"measure": measure, "value": value, "unit": unit, "target": target, "ok": ok}


def _prepared(quick: bool) -> Run:
    """The generation benchmark's run (spatial prior inside), or a short one, with the motion prior trained in."""
    path = PRIOR_RUN if not quick and (PRIOR_RUN / "prior.pt").exists() else short_run(OUT / "motion_scratch", quick)
    run = open_run(path, device="cpu")
    if load_prior(run) is None:
        train_prior(run, minutes=0.1 if quick else 10.0)
    return run


def run(quick: bool = False) -> list[dict]:
    """Train the motion prior, then measure bits, bundled and held-out rollouts, and speed."""
    torch.set_num_threads(2)
    run = _prepared(quick)
    m = train_motion(run, minutes=0.1 if quick else 10.0)
    rows = [_row("motion prior bits per code (held-out next frames)", m["bits_per_code"], "bits")]
    rows += [_row(f"  {name}", bits, "bits") for name, bits in m["baselines"].items()]
    rows.append(_row(f"bits saved against the best baseline ({m['baseline']})", 100 * m["bits_saved"], "%",
                     ">= 25", bool(m["bits_saved"] >= 0.25)))
    data, split = load_frames(run.data_dir), run.split()
    names = [n for n in SKETCHES if n in data] or list(data)[:2]
    length = 60 if quick else 300
    sheet, gif, passed, whys = [], [], 0, []
    for i, name in enumerate(names):
        start = int(np.flatnonzero(split.masks[name]["test"])[0]) if split.masks[name]["test"].any() else len(data[name]) // 2
        frames = generate.motion(run, length, seed=i, start=f"{name}:{start}")
        test = split.sketches[name][split.masks[name]["test"]] if split.masks[name]["test"].any() else data[name]
        r = judge(run, name, frames, data[name], test)
        passed += bool(r["ok"])
        if name in SMOOTH:
            whys.append(_why(run, name, data[name], np.flatnonzero(split.masks[name]["test"])))
        rows.append(_row(f"rollout {name}: change {r['change']:.2f}x own, flow {r['flow']:.2f} (own {r['own_flow']:.2f}), "
                         f"frame bits {r['bits']:.2f}x{', FROZEN' if r['frozen'] else ''}", "pass" if r["ok"] else "miss"))
        sheet.append(frames[[0, length // 3, 2 * length // 3, length - 1]])
        if i < 4:
            gif.append(frames)
    rows.append(_row("rollouts of bundled sketches alive, moving and looking like frames", passed, f"of {len(names)}",
                     f"== {len(names)}", passed == len(names)))
    rows += whys
    median_own = float(np.median([change(f).mean() for f in data.values()]))
    held = load_frames(heldout_data(OUT))
    alive = 0
    for i, (name, frames_real) in enumerate(list(held.items())[:4]):
        image = OUT / f"motion_start_{name}.png"
        Image.fromarray(frames_real[100]).save(image)
        frames = generate.motion(run, length, seed=i, start=str(image))
        c = change(frames)
        ok = 0.5 <= c.mean() / median_own <= 2 and slowest(c) >= 0.2 * median_own
        alive += ok
        rows.append(_row(f"held-out start {name}: change {c.mean() / median_own:.2f}x the bundled median", "pass" if ok else "miss"))
    rows.append(_row("rollouts from held-out sketches alive for the whole rollout", alive, "of 4", "== 4", alive == 4))
    fps = float(np.median([rollout_fps(run, f"{names[0]}:10") for _ in range(3)]))
    rows.append(_row("rollout speed, batch 1, decoding included (median of 3)", fps, "frames/s", ">= 30", bool(fps >= 30)))
    Image.fromarray(export.contact_sheet(export.upscale(np.concatenate(sheet), 2), cols=4)).save(OUT / "motion_sheet.png")
    tiles = np.stack(gif)  # (4, T, H, W) -> a 2x2 mosaic per frame
    mosaic = np.concatenate([np.concatenate(tiles[:2], axis=2), np.concatenate(tiles[2:4], axis=2)], axis=1) \
        if len(tiles) == 4 else tiles[0]
    # The README shows this GIF: every third frame at 10 frames/s (the same pace) and 1x keep it near 1.5 MB.
    export.save(mosaic[::3], OUT / "motion.gif", fps=10, scale=1)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
