"""The server's one door to the model: every Run call on one model thread, the dataset frames, and a pool of samples."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

from vqart import generate
from vqart.errors import VqartError
from vqart.prior import PRIOR_FILE
from vqart.prior.motion import MOTION_FILE, MotionState, advance
from vqart.run import Run
from vqart.server.validate import PayloadError, Ref

log = logging.getLogger("vqart")
T = TypeVar("T")

# The pool refills only after this long without requests: on a 2-core machine a refill running beside
# requests slows them (it competes for the model thread and the CPU), while idle moments are plentiful.
QUIET_S = 0.05
CLOSING = "the server is shutting down; try again once it is back"
# Torch threads for an interpolation, which decodes its frames in one batch; the server runs on one (app._open).
# 16 frames offline on the benchmark's run of ea3aa9c, this 2-core machine: 29 ms on one thread, 17 on two;
# through the server (benchmark p50) 35.2 ms before, 32.7 after, 18.9 once on the model thread. Never more than the
# machine has.
BATCH_THREADS = min(2, os.cpu_count() or 1)


class Engine:
    """Thread-safe access to one Run: every model call runs on one model thread, in turn; default samples come from
    a refilled pool."""

    def __init__(self, run: Run, pool_size: int = 256, pool_batch: int = 4):
        self.run = run
        # One long-lived thread keeps torch's thread team warm: run on each request's own new handler thread, a
        # 16-frame interpolation took p50 19-21 ms and p90 33-37 inside the server, on it 14.8-15.6 and 18-22.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vqart-model")
        self.sketches = _dataset(run)
        self.pool_size = pool_size
        self.pool_batch = pool_batch
        self._pool: deque[np.ndarray] = deque()
        self._state = threading.Condition()  # guards the pool, the request bookkeeping below and `_closed`
        self._busy = 0  # requests waiting for or holding the model
        self._last_request = 0.0  # time.monotonic() of the last request's model use or pool take
        self._closed = False
        self._filler = threading.Thread(target=self._fill, name="vqart-sample-pool", daemon=True)
        self._filler.start()

    def info(self) -> dict:
        """What a client needs to know: the bottleneck (codebook and levels, or a VAE's Gaussian), grid and frame
        size, the dataset's sketches, the sampler "auto" uses."""
        model, quantized = self.run.model, self.run.quantized
        if not quantized:
            sampler = "gaussian"
        else:
            sampler = "prior" if (self.run.path / PRIOR_FILE).is_file() else "unigram"
        return {
            "quantizer": model.config.quantizer,
            "codebook_size": int(model.codebook_size) if quantized else None,
            "levels": int(model.levels) if quantized else 0,
            "grid": list(self.run.grid_size),
            "frame_size": list(self.run.frame_size),
            "sketches": {name: len(frames) for name, frames in self.sketches.items()},
            "sampler": sampler,
            "motion": quantized and (self.run.path / MOTION_FILE).is_file(),
        }

    def pooled(self) -> int:
        """Samples waiting in the pool."""
        with self._state:
            return len(self._pool)

    def frame(self, ref: Ref) -> np.ndarray:
        """A dataset frame named "sketch:frame" (looked up by name, never as a path), or an uploaded image as given."""
        if isinstance(ref, np.ndarray):
            return ref
        if not self.sketches:  # the data folder is gone; say so without naming a server path
            raise PayloadError("not_found", "this server has no dataset frames; send images as endpoints instead")
        try:
            return generate.dataset_frame(self.run, ref)
        except VqartError as err:
            raise PayloadError("not_found", str(err)) from None

    def sample(self, n: int, temperature: float = 1.0, seed: int | None = None, sampler: str = "auto") -> np.ndarray:
        """n samples as uint8 (n, H, W); unseeded default-temperature ones come from the pool when it has them."""
        frames = []
        if seed is None and temperature == 1.0 and sampler == "auto":
            frames = self._take(n)
        if len(frames) < n:
            frames.extend(self._call(
                generate.sample, self.run, n - len(frames), sampler=sampler, temperature=temperature, seed=seed
            ))
        return np.stack(frames)

    def interpolate(self, a: Ref, b: Ref, steps: int, method: str) -> np.ndarray:
        """Frames from a to b as uint8 (steps, H, W)."""
        fa, fb = self.frame(a), self.frame(b)
        return self._call(_on_threads, BATCH_THREADS, generate.interpolate, self.run, fa, fb, steps=steps,
                          method=method)

    def walk(
        self, frames: int, seed: int | None, source: str = "dataset", temperature: float = 1.0, sampler: str = "auto"
    ) -> np.ndarray:
        """A seamless looping walk as uint8 (frames, H, W) through keyframes from the dataset or sampled."""
        return self._call(
            generate.walk, self.run, frames=frames, seed=seed, source=source, temperature=temperature, sampler=sampler
        )

    def motion_state(self, start: Ref | None, like: str | None, temperature: float, seed: int | None) -> MotionState:
        """A new motion stream's state: its start (a dataset frame with its past, an uploaded image, or one picked by
        the seed), steered toward `like`; PayloadError with the command to run when the run has no motion prior."""
        if isinstance(start, str):
            self.frame(start)  # a dataset frame, looked up by name (never a path on the server)
        elif start is None and not self.sketches:
            raise PayloadError("not_found", "this server has no dataset frames to start from; send an image as start")
        return self._call(self._motion_state, start, like, temperature, seed)

    def _motion_state(self, start: Ref | None, like: str | None, temperature: float, seed: int | None) -> MotionState:
        """motion_state's model work, on the model thread."""
        try:
            prior = generate.cached_motion(self.run)
        except VqartError as err:  # none, or made by another version: the message says what to run
            missing = not (self.run.path / MOTION_FILE).is_file()
            raise PayloadError("not_found" if missing else "bad_request", str(err)) from None
        try:
            prior.label(like)
        except VqartError as err:
            raise PayloadError("not_found", str(err)) from None
        try:
            generator = generate.make_generator(self.run, seed)
            past, values, sketch = generate.motion_start(self.run, prior, start, generator)
            return prior.state(past, values, like if like is not None else sketch, temperature, generator)
        except VqartError as err:
            raise PayloadError("bad_request", str(err)) from None

    def advance(self, states: list[MotionState]) -> np.ndarray:
        """The next frame of every motion stream, in one batched model call: uint8 (B, H, W)."""
        return self._call(lambda: advance(generate.cached_motion(self.run), states))

    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """The model's reconstruction of one image as uint8 (1, H, W)."""
        return self._call(generate.reconstruct, self.run, image)[None]

    def close(self) -> None:
        """Stop the pool's filler and the model thread: the call running finishes, queued ones answer `busy`."""
        with self._state:
            self._closed = True
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._state.notify_all()
        self._filler.join(timeout=5)
        self._worker.shutdown()

    def _call(self, work: Callable[..., T], *args, **kwargs) -> T:
        """work(*args, **kwargs) for a request, on the model thread in turn; the pool filler stands aside meanwhile."""
        with self._state:
            future = self._submit(work, *args, **kwargs)
            if future is None:
                raise PayloadError("busy", CLOSING)
            self._busy += 1
        try:
            return future.result()
        except CancelledError:  # closed while it waited its turn
            raise PayloadError("busy", CLOSING) from None
        finally:
            with self._state:
                self._busy -= 1
                self._last_request = time.monotonic()
                self._state.notify_all()

    def _submit(self, work: Callable[..., T], *args, **kwargs) -> Future[T] | None:
        """work queued on the model thread, or None once closed (call holding `_state`, which close() takes)."""
        if self._closed:
            return None
        try:
            return self._worker.submit(work, *args, **kwargs)
        except RuntimeError:  # the interpreter is exiting: concurrent.futures has stopped every executor
            return None

    def _take(self, n: int) -> list[np.ndarray]:
        """Up to n pooled samples."""
        with self._state:
            taken = [self._pool.popleft() for _ in range(min(n, len(self._pool)))]
            self._last_request = time.monotonic()
            self._state.notify_all()
        return taken

    def _fill_delay(self) -> float | None:
        """Seconds until the filler may sample (0: now), or None to wait to be notified."""
        if self._busy or len(self._pool) >= self.pool_size:
            return None
        return max(0.0, self._last_request + QUIET_S - time.monotonic())

    def _fill(self) -> None:
        """Keep the pool topped up in small batches, only once requests have left the server quiet for QUIET_S."""
        while True:
            with self._state:
                while not self._closed and (delay := self._fill_delay()) != 0:
                    self._state.wait(delay)
                if (future := self._submit(generate.sample, self.run, self.pool_batch)) is None:
                    return
            try:
                batch = future.result()
            except CancelledError:
                return
            except Exception:  # a broken sampler must not kill the server; requests then compute (and report) it
                log.exception("sample pool: sampling failed; requests will sample on demand")
                return
            with self._state:
                self._pool.extend(batch)


def _on_threads(n: int, work: Callable[..., T], *args, **kwargs) -> T:
    """work(*args, **kwargs) on n torch threads, then the count before it (on the model thread: no call overlaps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return work(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def _dataset(run: Run) -> dict[str, np.ndarray]:
    """The run's training frames (for references and thumbnails), or none when the folder has moved."""
    try:
        return generate.dataset_frames(run)
    except VqartError as err:
        log.warning("dataset frames unavailable (%s); only uploaded images can be used as endpoints", err)
        return {}
