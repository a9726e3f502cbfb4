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
"why" row per smooth sketch shows where its own flow lives: the flow of its captures decoded from their first 1, 2
and 4 levels only, and how many cells change code per frame at the first and last level, own and rollout (the
rollout's frames encoded again, as the captures are).
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
from vqart.prior import as_tokens, load_prior, spatial_steps, train_prior
from vqart.prior.motion import frame_change, train_motion
from vqart.run import Run, open_run

TITLE = "Motion: the temporal prior's next-frame bits, 300-frame rollouts, speed (CPU, 64x64)"
SKETCHES = ("waves", "lissajous", "flowfield", "tree", "spirograph", "polygons", "rain", "bodies")
SMOOTH = ("waves", "lissajous", "flowfield", "tree")  # the ones whose real motion carries on frame to frame


def change(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0-255) between consecutive frames: what the rollouts' guard holds."""
    return frame_change(frames[1:], frames[:-1])


def flow(frames: np.ndarray) -> float:
    """Mean correlation between the signed change at t and at t+1 (pixels as samples)."""
    d = np.diff(frames.astype(np.float32), axis=0).reshape(len(frames) - 1, -1)
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(d[:-1], d[1:]) if a.std() > 0 and b.std() > 0]
    return float(np.mean(corr)) if corr else float("nan")


def coarse_flows(run: Run, frames: np.ndarray, counts: tuple[int, ...] = (1, 2, 4)) -> list[float]:
    """Where motion lives in the codes: the flow of frames encoded and decoded from their first n levels only,
    one per n in counts."""
    codes = run.encode_codes(frames)
    return [flow(run.decode(run.model.quantizer.lookup(codes[:, :n]))) for n in counts]


def code_changes(run: Run, frames: np.ndarray) -> list[float]:
    """The share of cells whose code changes from one frame to the next, level by level (frames encoded)."""
    codes = run.encode_codes(frames)
    return (codes[1:] != codes[:-1]).float().mean(dim=(0, 2, 3)).tolist()


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


def _why(run: Run, name: str, real: np.ndarray, tail: np.ndarray) -> dict:
    """A row on why a smooth sketch's rollout flow misses: how the sketch's own flow builds up over the levels."""
    flows, real_changed, tail_changed = coarse_flows(run, real), code_changes(run, real), code_changes(run, tail)
    levels = run.model.levels
    return _row(f"  why, {name}: own flow from the first 1, 2, 4 of {levels} levels {', '.join(f'{f:.2f}' for f in flows)}; "
                f"codes changed per frame at levels 1 and {levels}: own {real_changed[0]:.0%}, {real_changed[-1]:.0%}, "
                f"rollout {tail_changed[0]:.0%}, {tail_changed[-1]:.0%}", "")


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
        if name in SMOOTH and run.model.levels >= 4:
            whys.append(_why(run, name, data[name], frames[2 * length // 3 :]))
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
    started = time.perf_counter()
    generate.motion(run, 60, seed=0, start=f"{names[0]}:10")
    fps = 60 / (time.perf_counter() - started)
    rows.append(_row("rollout speed, batch 1, decoding included", fps, "frames/s", ">= 30", bool(fps >= 30)))
    Image.fromarray(export.contact_sheet(export.upscale(np.concatenate(sheet), 2), cols=4)).save(OUT / "motion_sheet.png")
    tiles = np.stack(gif)  # (4, T, H, W) -> a 2x2 mosaic per frame
    mosaic = np.concatenate([np.concatenate(tiles[:2], axis=2), np.concatenate(tiles[2:4], axis=2)], axis=1) \
        if len(tiles) == 4 else tiles[0]
    export.save(mosaic, OUT / "motion.gif", fps=30, scale=2)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
