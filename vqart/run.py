"""A trained run folder opened for use: the model on its device plus uint8-in, uint8-out helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqart.checkpoint import load_checkpoint, load_weights
from vqart.config import config_from_dict
from vqart.data import Split, load_frames, split_frames
from vqart.device import pick_device, place
from vqart.errors import VqartError
from vqart.model.fsq import FSQ
from vqart.model.vqvae import VAE, VQVAE, build_model

_BATCH = 256  # frames per forward pass: bounds memory for long inputs


@dataclass
class Run:
    """A trained model and what it was trained on. Not thread-safe: callers serialise access."""

    path: Path
    model: VQVAE | VAE
    config: dict[str, Any]
    device: torch.device
    frame_size: tuple[int, int]
    grid_size: tuple[int, int]
    data_dir: Path
    code_usage: np.ndarray | None  # EMA counts per code: (K,), or (L, K) with residual levels; None for a VAE

    @property
    def quantized(self) -> bool:
        """True for a VQ-VAE (codes, codebooks, priors), False for the Gaussian VAE baseline."""
        return self.model.quantized

    def require_codes(self, what: str) -> None:
        """VqartError for a VAE run asked for something only codes give (priors, code grids, codebook views)."""
        if not self.quantized:
            raise VqartError(
                f"{self.path} is a VAE (quantizer = \"none\"): it has no codes, so {what} does not apply; "
                "its samples come from N(0, I) (vqart dream --mode sample)"
            )

    def split(self) -> Split:
        """The run's own train/select/test split of its data folder."""
        return split_frames(load_frames(self.data_dir), self.config.get("train", {}))

    def _images(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W) -> float (N, 1, H, W) in [0, 1] on the run's device, checking the size."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.dtype != np.uint8 or frames.shape[1:] != self.frame_size:
            h, w = self.frame_size
            raise VqartError(f"expected uint8 frames shaped (N, {h}, {w}), got {frames.dtype} {frames.shape}")
        return torch.from_numpy(np.require(frames, requirements=["C", "W"])).to(self.device)[:, None].float() / 255.0

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (N, H, W) -> continuous latents z_e (N, D, h, w), float32 on the device."""
        x = self._images(frames)
        return torch.cat([self.model.encode(x[i : i + _BATCH]) for i in range(0, len(x), _BATCH)])

    @torch.no_grad()
    def encode_codes(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (N, H, W) -> codes (N, h, w), or (N, L, h, w) for residual levels."""
        self.require_codes("encoding frames to codes")
        z = self.encode(frames)
        return torch.cat([self.model.quantize(z[i : i + _BATCH])[1] for i in range(0, len(z), _BATCH)])

    def require_values(self, what: str) -> FSQ:
        """The run's FSQ quantizer; VqartError for a run whose codes have no channel values (learned codebooks)."""
        self.require_codes(what)
        if not isinstance(self.model.quantizer, FSQ):
            raise VqartError(f"{self.path} has learned codebooks, whose codes have no channel values: {what} needs an "
                             "FSQ run (the default shape)")
        return self.model.quantizer

    @torch.no_grad()
    def encode_values(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (N, H, W) -> their FSQ channel values before rounding (N, L, h, w, C)."""
        fsq = self.require_values("encoding channel values")
        z = self.encode(frames)
        return torch.cat([fsq.values(z[i : i + _BATCH]) for i in range(0, len(z), _BATCH)])

    @torch.no_grad()
    def quantize(self, z_e: torch.Tensor) -> torch.Tensor:
        """Snap latents (N, D, h, w) to their nearest codes: z_q (N, D, h, w)."""
        z_e = z_e.to(self.device, torch.float32)
        return torch.cat([self.model.quantize(z_e[i : i + _BATCH])[0] for i in range(0, len(z_e), _BATCH)])

    @staticmethod
    def _to_uint8(images: torch.Tensor) -> np.ndarray:
        """(N, 1, H, W) float -> uint8 (N, H, W), clamped to [0, 1] and rounded."""
        return (images[:, 0].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        """Latents (N, D, h, w) (quantized or not) -> uint8 frames (N, H, W)."""
        z = z.to(self.device, torch.float32)
        return np.concatenate([self._to_uint8(self.model.decode(z[i : i + _BATCH])) for i in range(0, len(z), _BATCH)])

    @torch.no_grad()
    def decode_values(self, values: torch.Tensor) -> np.ndarray:
        """FSQ channel values (N, L, h, w, C), rounded or not -> uint8 frames (N, H, W)."""
        fsq = self.require_values("decoding channel values")
        values = values.to(self.device, torch.float32)
        return np.concatenate([self.decode(fsq.from_values(values[i : i + _BATCH])) for i in range(0, len(values), _BATCH)])

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """Codes (N, h, w) or (N, L, h, w) -> uint8 frames (N, H, W)."""
        self.require_codes("decoding code grids")
        codes = torch.as_tensor(codes, device=self.device).long()
        return np.concatenate(
            [self._to_uint8(self.model.decode_codes(codes[i : i + _BATCH])) for i in range(0, len(codes), _BATCH)]
        )


def _usage(model: VQVAE | VAE) -> np.ndarray | None:
    """EMA code counts: (K,) for plain VQ, (L, K) with residual levels, None for a VAE."""
    if not model.quantized:
        return None
    usage = model.quantizer.usage.cpu().numpy().astype(np.float64)
    return usage[0] if model.levels == 1 else usage


def open_run(path: str | Path, device: str = "auto", checkpoint: str = "best") -> Run:
    """Open runs/NAME: read config.json, build the model and load its `best` (or `last`) checkpoint."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise VqartError(f"{path} is not a training run (no config.json); train one with vqart train --out {path}")
    if checkpoint not in ("best", "last"):
        raise VqartError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    try:
        config = json.loads(config_file.read_text())
        # Runs from before the quantizer was a setting all had codebooks (the default is FSQ now).
        model_config = config_from_dict({"model": {"quantizer": "vq", **config["model"]}}).model
        frame_size = tuple(config["frame_size"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise VqartError(f"{config_file} is damaged ({err}); retrain the run") from None
    dev = pick_device(device)
    ckpt_file = path / "checkpoints" / f"{checkpoint}.pt"
    if checkpoint == "best" and not ckpt_file.is_file():
        ckpt_file = path / "checkpoints" / "last.pt"  # a run interrupted before its first validation
    state = load_checkpoint(ckpt_file, map_location=dev)
    model = place(build_model(model_config), dev)
    load_weights(model, state["model"], ckpt_file)
    model.eval()
    ds = model.downsample
    return Run(
        path=path,
        model=model,
        config=config,
        device=dev,
        frame_size=frame_size,
        grid_size=(frame_size[0] // ds, frame_size[1] // ds),
        data_dir=Path(config["data"]),
        code_usage=_usage(model),
    )
