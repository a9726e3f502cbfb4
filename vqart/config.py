"""Model and training settings: dataclasses with defaults, overridden by a TOML file and CLI options."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from vqart.errors import VqartError


QUANTIZERS = ("vq", "fsq", "none")


@dataclass
class ModelConfig:
    """Shape of the autoencoder and the behaviour of its bottleneck (a residual EMA codebook, or a Gaussian)."""

    channels: int = 64  # width of the residual trunk at the code grid's resolution
    res_blocks: int = 2
    downsample: int = 4  # total factor, a power of two: 64x64 frames -> 16x16 codes
    # "fsq": finite scalar quantization; "vq": residual EMA codebooks; "none": a Gaussian latent and a KL term (the VAE)
    quantizer: str = "fsq"
    codebook_size: int = 128  # "vq" only; an FSQ codebook's size is the product of fsq_levels
    code_dim: int = 64
    levels: int = 8  # codes per grid position: residual levels ("vq", summed) or groups of FSQ channels ("fsq")
    fsq_levels: list[int] = field(default_factory=lambda: [5, 5, 5])  # "fsq": values per channel of a group
    ema_decay: float = 0.95
    ema_eps: float = 1e-5  # Laplace smoothing of the EMA counts
    kmeans_iters: int = 10
    dead_after: int = 10  # steps a code may go unused before it is re-seeded from encoder outputs
    normalize: bool = True  # l2-normalise latents before lookup: measured here to lift perplexity 74 -> 107
    kl_weight: float = 0.01  # quantizer "none": KL (per pixel) against N(0, I), as 2 sigma^2 of a Gaussian decoder

    @property
    def codes_per_level(self) -> int:
        """The number of distinct codes at one level (or FSQ group) of a grid position."""
        return math.prod(self.fsq_levels) if self.quantizer == "fsq" else self.codebook_size

    def validate(self) -> None:
        """Raise VqartError naming the key and its valid range when a value cannot build a model."""
        ds = self.downsample
        if ds < 2 or ds & (ds - 1) or ds > 64:
            raise VqartError(f"model.downsample must be a power of two from 2 to 64, got {ds}")
        if self.quantizer not in QUANTIZERS:
            raise VqartError(f"model.quantizer must be one of {', '.join(QUANTIZERS)}, got {self.quantizer!r}")
        ranges = {"channels": (8, 1024), "code_dim": (1, 1024), "levels": (1, 16), "kmeans_iters": (1, 100),
                  "dead_after": (1, 10**6), "codebook_size": (2, 65536), "res_blocks": (0, 32)}
        for name, (lo, hi) in ranges.items():
            if not lo <= getattr(self, name) <= hi:
                raise VqartError(f"model.{name} must be between {lo} and {hi}, got {getattr(self, name)}")
        if self.quantizer == "fsq" and not (self.fsq_levels and all(isinstance(n, int) and 2 <= n <= 256
                                                                    for n in self.fsq_levels)
                                            and 2 <= self.codes_per_level <= 65536):
            raise VqartError(f"model.fsq_levels must be integers from 2 to 256 whose product (the codes of a group) "
                             f"is between 2 and 65536, got {self.fsq_levels}")
        if not 0.0 < self.ema_decay < 1.0:
            raise VqartError(f"model.ema_decay must be in (0, 1), got {self.ema_decay}")
        if not self.kl_weight > 0:
            raise VqartError(f"model.kl_weight must be > 0, got {self.kl_weight}")


@dataclass
class TrainConfig:
    """How the model is trained: optimisation, schedules, validation split, outputs."""

    epochs: int = 300
    minutes: float | None = None  # wall-clock budget; the lr schedule finishes within it
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    patience: int = 30  # epochs without a better validation loss before stopping
    beta_start: float = 0.05
    beta_end: float = 0.25
    beta_warmup_epochs: int = 30
    edge_weight: float = 0.1  # L1 between image gradients: keeps lines crisp
    val_fraction: float = 0.2  # held out per sketch: half chooses checkpoints ("select"), half is reported ("test")
    val_segments: int = 4  # held-out time segments per sketch, alternately select and test
    val_gap: int = 2  # frames dropped on each side of a held-out segment (near-duplicates)
    twin_threshold: float = 1.0  # held-out frames this close (mean abs. difference, 0-255) to a training frame are dropped
    checkpoint_seconds: float = 60.0  # a resumable checkpoint at least this often, mid-epoch too
    precision: str = "auto"  # auto | fp32 | bf16
    nan_limit: int = 3  # non-finite steps in a row before restoring the last good state
    seed: int = 0

    def validate(self) -> None:
        """Raise VqartError when a value cannot drive a training."""
        if self.epochs < 1 or self.batch_size < 1:
            raise VqartError("train.epochs and train.batch_size must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise VqartError(f"train.minutes must be > 0, got {self.minutes}")
        if not 0.0 < self.val_fraction < 1.0:
            raise VqartError(f"train.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise VqartError(f"train.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.lr <= 0:
            raise VqartError(f"train.lr must be > 0, got {self.lr}")
        if self.val_segments < 1 or self.val_gap < 0 or self.twin_threshold < 0:
            raise VqartError("train.val_segments must be >= 1, train.val_gap and train.twin_threshold >= 0")
        if not self.checkpoint_seconds > 0:
            raise VqartError(f"train.checkpoint_seconds must be > 0, got {self.checkpoint_seconds}")


@dataclass
class Config:
    """Everything a training run needs, written whole into the run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, for config.json and checkpoints."""
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelConfig, "train": TrainConfig}


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build one section, rejecting unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise VqartError(f"[{where}] should be a table of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise VqartError(
            f"unknown key(s) {', '.join(unknown)} in [{where}]; valid keys: {', '.join(fields)}"
        )
    defaults = cls()
    for key, value in values.items():
        default = getattr(defaults, key)
        expected = type(default) if default is not None else float
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if isinstance(value, bool) and expected is not bool:
            ok = False
        if not ok and not (value is None and default is None):
            raise VqartError(
                f"[{where}] {key} should be {expected.__name__}, got {value!r}"
            )
    obj = cls(**values)
    obj.validate()
    return obj


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a Config from nested dicts ({"model": {...}, "train": {...}}), validating every key."""
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise VqartError(
            f"unknown section(s) {', '.join(unknown)}; valid sections: {', '.join(_SECTIONS)}"
        )
    return Config(**{name: _section(cls, data.get(name, {}), name) for name, cls in _SECTIONS.items()})


def load_config(path: str | Path | None = None, **train_overrides: Any) -> Config:
    """Defaults, then the TOML file at `path`, then non-None `train_overrides` (e.g. epochs=5)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise VqartError(f"config file {path} not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise VqartError(f"config file {path} is not valid TOML: {err}") from None
    train = data.get("train", {})
    if isinstance(train, dict):
        train = {**train, **{k: v for k, v in train_overrides.items() if v is not None}}
    return config_from_dict({**data, "train": train})
