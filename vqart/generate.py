"""New frames from a trained run: samplers, latent interpolation, grids, looping walks and prior-driven motion.

Every function takes an open Run and returns uint8 frames (N,H,W); the server and `vqart dream` call them.
Interpolation works on the quantized latents of its keyframes (continuous vectors, one per grid position),
so a path's ends decode to exactly the keyframes' reconstructions; `snap` re-quantizes every step.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from vqart import export
from vqart.data import load_frames, parse_ref
from vqart.errors import VqartError
from vqart.prior import PRIOR_FILE, SpatialPrior, as_grids, as_tokens, load_prior, spatial_steps
from vqart.prior.blocks import filter_logits
from vqart.prior.motion import MOTION_FILE, MotionPrior, advance, encode_past, load_motion, start_context
from vqart.run import Run, open_run

log = logging.getLogger(__name__)

Ref = str | Path | np.ndarray
OnProgress = Callable[[int], None]  # told how many more frames are done
MODES = ("sample", "interpolate", "walk", "grid", "motion")
SAMPLERS = ("auto", "prior", "unigram")
METHODS = ("slerp", "lerp")
DECODE_BATCH = 64


def make_generator(run: Run, seed: int | None) -> torch.Generator:
    """A torch.Generator on the run's device: the same seed gives the same frames; None draws a fresh seed."""
    return torch.Generator(device=run.device).manual_seed(secrets.randbits(63) if seed is None else seed)


def _check_count(name: str, value: int, least: int = 1) -> None:
    """VqartError unless `value` is a whole number >= least."""
    if int(value) != value or value < least:
        raise VqartError(f"{name} must be a whole number >= {least}, got {value}")


def _batched(decode: Callable[[torch.Tensor], np.ndarray], items: torch.Tensor, progress: OnProgress | None) -> np.ndarray:
    """Apply `decode` to DECODE_BATCH items at a time, reporting progress after each batch."""
    out = []
    for batch in items.split(DECODE_BATCH):
        out.append(decode(batch))
        if progress:
            progress(len(batch))
    return np.concatenate(out)


def _decode(run: Run, z: torch.Tensor, snap: bool = False, progress: OnProgress | None = None) -> np.ndarray:
    """Decode latents (N,D,h,w) in batches, optionally snapping each to the codebook first."""
    return _batched(lambda batch: run.decode(run.quantize(batch) if snap else batch), z, progress)


def _decode_codes(run: Run, codes: torch.Tensor, progress: OnProgress | None = None) -> np.ndarray:
    """Decode code grids in batches."""
    return _batched(run.decode_codes, codes, progress)


# ---- frames in -------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _dataset(data_dir: str, stamp: int) -> dict[str, np.ndarray]:
    """The run's dataset frames, cached until the data folder changes (its mtime is part of the key)."""
    return load_frames(data_dir)


def dataset_frames(run: Run) -> dict[str, np.ndarray]:
    """Sketch name -> uint8 (N,H,W) frames the run was trained on."""
    data_dir = Path(run.data_dir)
    if not data_dir.is_dir():
        raise VqartError(f"the run's data folder {data_dir} is gone; capture it again or give image files instead")
    return _dataset(str(data_dir), data_dir.stat().st_mtime_ns)


def _fit(run: Run, image: np.ndarray, source: str) -> np.ndarray:
    """A grayscale uint8 (H,W) image at the run's frame size, resized with a note when it is another size."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise VqartError(f"{source}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = np.asarray(Image.fromarray(image).convert("L"))
    elif image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise VqartError(f"{source}: expected a grayscale (H,W) or colour (H,W,3) image, got shape {image.shape}")
    h, w = run.frame_size
    if image.shape != (h, w):
        log.warning("note: %s is %dx%d; resized to the run's %dx%d", source, image.shape[1], image.shape[0], w, h)
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS))
    return image


def resolve_frame(run: Run, ref: Ref) -> np.ndarray:
    """One uint8 (H,W) frame from "sketch:frame", an image file, or an array; other sizes are resized with a note."""
    if isinstance(ref, np.ndarray):
        return _fit(run, ref, "the given array")
    path = Path(ref)
    if path.is_file():
        try:
            with Image.open(path) as img:
                return _fit(run, np.asarray(img.convert("L")), str(path))
        except (UnidentifiedImageError, OSError) as err:
            raise VqartError(f"{path} is not an image Pillow can read ({err}); give a PNG/JPEG or SKETCH:FRAME") from None
    if ":" not in str(ref):
        raise VqartError(f"{ref!r} is neither an image file nor a SKETCH:FRAME reference like orbits:12")
    return dataset_frame(run, str(ref))


def dataset_frame(run: Run, ref: str) -> np.ndarray:
    """The dataset frame named "sketch:frame", looked up by name only (never as a path: the server relies on it)."""
    sketch, index = parse_ref(ref)
    frames = dataset_frames(run)
    if sketch not in frames:
        raise VqartError(f"unknown sketch {sketch!r} in {ref!r}; the run's data has {', '.join(sorted(frames))}")
    if not 0 <= index < len(frames[sketch]):
        raise VqartError(f"{ref!r}: sketch {sketch!r} has frames 0..{len(frames[sketch]) - 1}")
    return frames[sketch][index]


def random_refs(run: Run, n: int, seed: int | None = None) -> list[str]:
    """n distinct dataset frames (as far as the dataset allows) picked by the seed, as "sketch:frame"."""
    refs = [f"{name}:{i}" for name, frames in dataset_frames(run).items() for i in range(len(frames))]
    rng = np.random.default_rng(seed)
    return [refs[j] for j in rng.choice(len(refs), size=n, replace=n > len(refs))]


def random_frames(run: Run, n: int, seed: int | None = None) -> np.ndarray:
    """n distinct dataset frames (as far as the dataset allows) picked by the seed: uint8 (n, H, W)."""
    return np.stack([dataset_frame(run, ref) for ref in random_refs(run, n, seed)])


def key_track(run: Run, key: Ref, offsets: np.ndarray) -> np.ndarray:
    """uint8 frames (len(offsets), H, W) of a keyframe over time: a dataset frame plays its sketch's own frames at
    its index + offset (to and fro at the ends of the capture); an image or array holds still."""
    if isinstance(key, str) and not Path(key).is_file() and ":" in key:
        sketch, index = parse_ref(key)
        dataset_frame(run, key)  # checks the name and the range
        frames = dataset_frames(run)[sketch]
        period = max(1, 2 * (len(frames) - 1))
        phase = (index + offsets) % period
        return frames[np.where(phase < len(frames), phase, period - phase)]
    return np.repeat(resolve_frame(run, key)[None], len(offsets), axis=0)


def _latents(run: Run, refs: Sequence[Ref]) -> torch.Tensor:
    """Quantized latents (N,D,h,w) of the given frames: the points interpolation moves between."""
    frames = np.stack([resolve_frame(run, r) for r in refs])
    return run.quantize(run.encode(frames))


def reconstruct(run: Run, image: Ref) -> np.ndarray:
    """The run's reconstruction of one frame: encode, quantize, decode."""
    return run.decode(_latents(run, [image]))[0]


# ---- samplers --------------------------------------------------------------------------------------------


_LOADED: dict[str, tuple[tuple[str, int, str], Any]] = {}  # file name -> (the version loaded, what it made)


def _load_once(run: Run, name: str, load: Callable[[Run], Any]) -> Any:
    """What `load(run)` makes of the run's file `name`, loaded once per file version and device; None without
    the file."""
    path = Path(run.path) / name
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime_ns, str(run.device))
    if name not in _LOADED or _LOADED[name][0] != key:
        _LOADED[name] = (key, load(run))  # a retrained prior replaces the old one
    return _LOADED[name][1]


def _cached_prior(run: Run) -> SpatialPrior | None:
    """The run's spatial prior (None when untrained), loaded once per file version and device."""
    return _load_once(run, PRIOR_FILE, load_prior)


def sample_codes(
    run: Run,
    n: int = 16,
    *,
    sampler: str = "auto",
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    like: str | None = None,
) -> torch.Tensor:
    """n code grids from the prior (sampler "prior", or "auto" when one is trained; in `steps` decoding steps, by
    default those the prior was chosen with; all of sketch `like`, or of sketches drawn by their share of the
    training frames) or the codebook histogram."""
    run.require_codes("sampling code grids")
    _check_count("n", n)
    if steps is not None:
        _check_count("steps", steps)
    if sampler not in SAMPLERS:
        raise VqartError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not temperature > 0:
        raise VqartError(f"temperature must be > 0, got {temperature}")
    k = run.model.codebook_size
    if top_k is not None and not 1 <= top_k <= k:
        raise VqartError(f"top_k must be between 1 and the codebook size {k}, got {top_k}")
    prior = _cached_prior(run) if sampler != "unigram" else None
    if sampler == "prior" and prior is None:
        raise VqartError(f"no prior trained in {run.path}; train one with `vqart prior {run.path}` or use sampler unigram")
    if steps is not None and prior is None:
        fix = "use sampler auto or prior" if sampler == "unigram" else f"train a prior with `vqart prior {run.path}`"
        raise VqartError(f"steps are the prior's decoding steps, and these samples come from the code histogram; "
                         f"{fix}, or leave steps out")
    if like is not None and prior is None:
        raise VqartError(f"--like picks the spatial prior's sketch, and these samples come from the code histogram; "
                         f"train a prior with `vqart prior {run.path}`, or leave --like out")
    generator = make_generator(run, seed)
    if prior is not None:
        steps = spatial_steps(run) if steps is None else steps
        labels = None if like is None else torch.full((n,), prior.label(like), device=run.device)
        tokens = prior.sample(n, labels=labels, steps=steps, temperature=temperature, top_k=top_k, generator=generator)
        return as_grids(tokens, *run.grid_size)
    return _unigram(run, n, temperature, top_k, generator)


def _unigram(run: Run, n: int, temperature: float, top_k: int | None, generator: torch.Generator) -> torch.Tensor:
    """Codes drawn independently per position from the codebook's usage histogram (per level with RQ)."""
    levels, (h, w) = run.model.levels, run.grid_size
    usage = torch.as_tensor(np.asarray(run.code_usage, dtype=np.float64), device=run.device)
    usage = usage.reshape(-1, usage.shape[-1]).expand(levels, -1)  # one shared histogram, or one per level
    logits = filter_logits(usage.clamp(min=1e-12).log(), temperature, top_k)
    probs = logits.softmax(dim=-1).float()
    draws = torch.multinomial(probs.repeat_interleave(n * h * w, dim=0), 1, generator=generator)
    codes = draws.view(levels, n, h, w).transpose(0, 1)
    return codes[:, 0] if levels == 1 else codes


def sample(
    run: Run,
    n: int = 16,
    *,
    sampler: str = "auto",
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    like: str | None = None,
    progress: OnProgress | None = None,
) -> np.ndarray:
    """n new frames (n,H,W): codes from the prior (of sketch `like`, if given) or the unigram histogram, decoded;
    same seed, same frames. A VAE run decodes latents drawn from N(0, I) instead (it has no codes and no prior).
    """
    if not run.quantized:
        if sampler == "prior" or steps is not None or like is not None:
            run.require_codes("a prior")
        _check_count("n", n)
        generator = make_generator(run, seed)
        z = torch.randn(n, run.model.config.code_dim, *run.grid_size, device=run.device, generator=generator)
        return _decode(run, z * temperature, progress=progress)
    codes = sample_codes(run, n, sampler=sampler, temperature=temperature, top_k=top_k, seed=seed, steps=steps,
                         like=like)
    return _decode_codes(run, codes, progress)


# ---- latent paths ----------------------------------------------------------------------------------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of latents (D,h,w), or (S,D,h,w) pairs, at times t (S,): (S,D,h,w)."""
    t = t.view(-1, 1, 1, 1).to(a.dtype)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per grid position: the direction turns on the great circle, the norm goes linearly.

    Latents (D,h,w), or (S,D,h,w) pairs, hold one D-vector per position; each vector's norm moves linearly from
    |a| to |b|, so it stays between its ends. Written as weights on a and b so that t=0 and t=1 give a and b
    bit for bit.
    """
    t = t.view(-1, 1, 1, 1).to(a.dtype)
    na, nb = a.norm(dim=-3, keepdim=True).clamp(min=1e-8), b.norm(dim=-3, keepdim=True).clamp(min=1e-8)
    omega = ((a / na) * (b / nb)).sum(dim=-3, keepdim=True).clamp(-1, 1).acos()
    sin = omega.sin()
    # (Anti)parallel directions have no single great circle: go straight there instead.
    straight = sin.abs() < 1e-4
    safe_sin = sin.where(~straight, 1.0)
    wa = torch.where(straight, 1 - t, ((1 - t) * omega).sin() / safe_sin)
    wb = torch.where(straight, t, (t * omega).sin() / safe_sin)
    norm = (1 - t) * na + t * nb
    return wa * (norm / na) * a + wb * (norm / nb) * b


def mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, method: str = "slerp") -> torch.Tensor:
    """Interpolate latents a -> b at times t with `method` ("slerp" or "lerp")."""
    if method not in METHODS:
        raise VqartError(f"unknown interpolation method {method!r}; choose one of {', '.join(METHODS)}")
    return slerp(a, b, t) if method == "slerp" else lerp(a, b, t)


def _pair(run: Run, a: Ref | None, b: Ref | None, seed: int | None) -> list[Ref]:
    """The two endpoints: those given, the missing ones picked from the dataset by the seed."""
    picked = iter(random_frames(run, 2, seed))
    return [a if a is not None else next(picked), b if b is not None else next(picked)]


def interpolate(
    run: Run,
    a: Ref | None = None,
    b: Ref | None = None,
    steps: int = 30,
    method: str = "slerp",
    snap: bool = False,
    *,
    seed: int | None = None,
    progress: OnProgress | None = None,
) -> np.ndarray:
    """steps frames (steps,H,W) from a to b through latent space; the ends are a's and b's reconstructions."""
    _check_count("steps", steps, 2)
    za, zb = _latents(run, _pair(run, a, b, seed))
    t = torch.linspace(0, 1, steps, device=za.device)
    return _decode(run, mix(za, zb, t, method), snap, progress)


def grid(
    run: Run,
    corners: Sequence[Ref] | None = None,
    rows: int = 8,
    cols: int = 8,
    method: str = "slerp",
    snap: bool = False,
    *,
    seed: int | None = None,
    progress: OnProgress | None = None,
) -> np.ndarray:
    """rows*cols frames, row by row, blending four corners (top-left, top-right, bottom-left, bottom-right)."""
    _check_count("rows", rows, 2)
    _check_count("cols", cols, 2)
    if corners is None:
        corners = list(random_frames(run, 4, seed))
    if len(corners) != 4:
        raise VqartError(f"a grid needs 4 corner frames (top-left, top-right, bottom-left, bottom-right), got {len(corners)}")
    tl, tr, bl, br = _latents(run, corners)
    u = torch.linspace(0, 1, cols, device=tl.device)
    top, bottom = mix(tl, tr, u, method), mix(bl, br, u, method)
    v = torch.linspace(0, 1, rows, device=tl.device)
    z = torch.stack([mix(top[c], bottom[c], v, method) for c in range(cols)], dim=1)  # (rows, cols, D, h, w)
    return _decode(run, z.flatten(0, 1), snap, progress)


def walk(
    run: Run,
    keyframes: Sequence[Ref] | None = None,
    frames: int = 120,
    seed: int | None = None,
    *,
    n_keys: int = 4,
    source: str = "dataset",
    method: str = "slerp",
    snap: bool = False,
    sampler: str = "auto",
    temperature: float = 1.0,
    top_k: int | None = None,
    steps: int | None = None,
    progress: OnProgress | None = None,
) -> np.ndarray:
    """A seamless loop of `frames` frames through keyframes and back to the first, easing in and out of each.

    Without keyframes, `n_keys` are chosen by the seed: dataset frames (source "dataset") or samples ("sample",
    decoded in `steps`).
    """
    _check_count("frames", frames)
    if keyframes is None:
        _check_count("n_keys", n_keys, 2)
        if source == "dataset":
            keyframes = random_refs(run, n_keys, seed)
        elif source == "sample":
            keyframes = list(sample(run, n_keys, sampler=sampler, temperature=temperature, top_k=top_k, seed=seed,
                                    steps=steps))
        else:
            raise VqartError(f"unknown keyframe source {source!r}; choose dataset or sample")
    if len(keyframes) < 2:
        raise VqartError(f"a walk needs at least 2 keyframes, got {len(keyframes)}")
    n = len(keyframes)
    # Frame i sits at position i * n / frames on the closed loop k0 -> k1 -> ... -> k(n-1) -> k0, so the frame
    # after the last one would be k0 again: the GIF loops without a seam. The cosine ease slows down into every
    # keyframe, so the speed has no jolt there. While a segment blends keyframe A into B, both play their
    # sketch's real motion: A onward from its frame, B so that it arrives at its own frame as the segment ends.
    segment = (np.arange(frames) * n) // frames
    paths = []
    for s in range(n):
        j = np.arange(int((segment == s).sum()))
        if not len(j):
            continue
        t = torch.as_tensor((1 - np.cos(np.pi * j / len(j))) / 2, dtype=torch.float32, device=run.device)
        a = _latents(run, key_track(run, keyframes[s], j))
        b = _latents(run, key_track(run, keyframes[(s + 1) % n], j - len(j)))
        paths.append(mix(a, b, t, method))
    return _decode(run, torch.cat(paths), snap, progress)


def cached_motion(run: Run) -> MotionPrior:
    """The run's motion prior, loaded once per file version and device; VqartError with the command that
    trains one when there is none."""
    run.require_codes("motion")
    prior = _load_once(run, MOTION_FILE, load_motion)
    if prior is None:
        raise VqartError(f"{run.path} has no motion prior; train one with `vqart prior {run.path} --motion`")
    return prior


def motion_start(run: Run, prior: MotionPrior, start: Ref | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None, str | None]:
    """A rollout's past (K, L, P), its channel values (K, L, P, C) on FSQ codes (None for a sample, known only by
    its codes) and the sketch it comes from: a dataset frame "sketch:frame" brings the frames before it (its real
    motion); an image, or "sample" (a spatial prior sample), is held still for K frames; None picks a dataset
    frame by the seed."""
    k = prior.model.context_frames
    if start is None:
        names = sorted(dataset_frames(run))
        sketch = names[int(torch.randint(len(names), (1,), generator=generator, device=run.device))]
        count = len(dataset_frames(run)[sketch])
        first = min(k, count - 1)  # a frame with K frames before it, where the sketch has that many
        start = f"{sketch}:{int(torch.randint(first, count, (1,), generator=generator, device=run.device))}"
    if isinstance(start, str) and start == "sample":
        grids = sample_codes(run, 1, seed=int(torch.randint(2**31, (1,), generator=generator, device=run.device)))
        return start_context(as_tokens(grids), k), None, None
    sketch = None
    if isinstance(start, str) and not Path(start).is_file() and ":" in start:
        sketch, index = parse_ref(start)
        dataset_frame(run, start)  # checks the name and the range
        frames = dataset_frames(run)[sketch][max(0, index - k + 1) : index + 1]
    else:
        frames = resolve_frame(run, start)[None]
    tokens, values = encode_past(run, frames)
    return start_context(tokens, k), None if values is None else start_context(values, k), sketch


def motion(
    run: Run,
    frames: int = 300,
    seed: int | None = None,
    *,
    start: Ref | None = None,
    like: str | None = None,
    morph_to: str | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    guidance: float = 1.0,
    progress: OnProgress | None = None,
) -> np.ndarray:
    """New motion: the motion prior rolls a start frame forward, frame by frame (the start is frame 0).

    `like` steers the style toward a sketch (default: the start frame's own sketch); `morph_to` moves the
    steering to another sketch over the rollout; `guidance` > 1 strengthens it (classifier-free guidance).
    """
    _check_count("frames", frames)
    if not temperature > 0 or not guidance > 0:
        raise VqartError(f"temperature and guidance must be > 0, got {temperature} and {guidance}")
    prior = cached_motion(run)
    if top_k is not None and not 1 <= top_k <= run.model.codebook_size:
        raise VqartError(f"top_k must be between 1 and the codebook size {run.model.codebook_size}, got {top_k}")
    generator = make_generator(run, seed)
    past, values, sketch = motion_start(run, prior, start, generator)
    state = prior.state(past, values, like if like is not None else sketch, temperature, generator, morph_to)
    out = [state.seen[None]]
    if progress:
        progress(1)
    for i in range(1, frames):
        if morph_to is not None:
            t = i / max(1, frames - 1)
            state.label = (*state.label[:2], t * t * (3 - 2 * t))  # eased: the ends hold their sketches a while
        out.append(advance(prior, [state], top_k=top_k, guidance=guidance))
        if progress:
            progress(1)
    return np.concatenate(out)


def dream(
    run_path: str | Path,
    out: str | Path,
    *,
    mode: str = "walk",
    frames: int = 120,
    fps: float = 30,
    scale: int = 4,
    smooth: bool = False,
    seed: int | None = None,
    a: Ref | None = None,
    b: Ref | None = None,
    keys: Sequence[Ref] = (),
    source: str = "dataset",
    method: str = "slerp",
    snap: bool = False,
    sampler: str = "auto",
    temperature: float = 1.0,
    top_k: int | None = None,
    like: str | None = None,
    morph_to: str | None = None,
    guidance: float = 1.0,
    steps: int | None = None,
    device: str = "auto",
) -> Path:
    """Open a run, generate `frames` frames in `mode` and write them to `out` (.gif .mp4 .png or a folder).

    Everything cheap to check is checked before any model work, so bad input never leaves a partial file.
    `grid` lays out the largest square that fits in `frames`; `a` and `b` are the interpolation ends
    (and `a` the start of `motion`); `keys` are walk keyframes or the 4 grid corners; `steps` are the
    spatial prior's decoding steps for samples (sample mode, or walk keyframes from samples).
    """
    export.check(out, fps, scale)
    _check_count("--frames", frames)
    if mode not in MODES:
        raise VqartError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode not in ("sample", "motion") and like is not None:
        raise VqartError(f"--like picks the sketch of --mode sample or motion, not of --mode {mode}")
    if mode != "motion" and (morph_to is not None or guidance != 1.0):
        raise VqartError(f"--morph-to and --guidance steer --mode motion only, not --mode {mode}")
    if steps is not None:
        _check_count("--steps", steps)
        if mode not in ("sample", "walk") or (mode == "walk" and (keys or source != "sample")):
            raise VqartError("--steps decodes prior samples: --mode sample, or --mode walk --source sample")
    if mode == "interpolate" and frames < 2:
        raise VqartError("--mode interpolate needs --frames of at least 2")
    side = math.isqrt(frames)
    if mode == "grid" and side < 2:
        raise VqartError("--mode grid needs --frames of at least 4 (a 2x2 grid)")
    run = open_run(run_path, device=device)
    total = side * side if mode == "grid" else frames
    console = Console(stderr=True)
    with Progress(
        TextColumn(f"dream {mode}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(mode, total=total)
        progress = partial(bar.advance, task)
        if mode == "sample":
            result = sample(run, frames, sampler=sampler, temperature=temperature, top_k=top_k, seed=seed, steps=steps,
                            like=like, progress=progress)
        elif mode == "interpolate":
            result = interpolate(run, a, b, frames, method, snap, seed=seed, progress=progress)
        elif mode == "walk":
            result = walk(
                run, list(keys) or None, frames, seed, source=source, method=method, snap=snap,
                sampler=sampler, temperature=temperature, top_k=top_k, steps=steps, progress=progress,
            )
        elif mode == "grid":
            if side * side != frames:
                log.warning("note: --mode grid uses a %dx%d grid (%d frames)", side, side, side * side)
            result = grid(run, list(keys) or None, side, side, method, snap, seed=seed, progress=progress)
        else:
            result = motion(run, frames, seed, start=a, like=like, morph_to=morph_to, temperature=temperature,
                            top_k=top_k, guidance=guidance, progress=progress)
    return export.save(result, out, fps=fps, scale=scale, smooth=smooth)
