"""Checkpoints: written atomically, loaded without ever running code from the file."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqart.atomic import atomic_path
from vqart.errors import VqartError


def is_finite_state(state_dict: dict[str, torch.Tensor]) -> bool:
    """True when every floating tensor of a state dict is free of NaN and inf."""
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint (plain dicts, numbers, strings and tensors only) atomically; refuse a non-finite model."""
    if not is_finite_state(checkpoint["model"]):
        raise ValueError(f"refusing to save {path}: the model holds NaN or inf")
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True: a file holding pickled objects is refused, not executed."""
    path = Path(path)
    if not path.is_file():
        raise VqartError(f"checkpoint {path} not found; train first (vqart train --out {path.parent.parent})")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise VqartError(f"refusing to load {path}: it holds more than tensors and plain values ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise VqartError(f"checkpoint {path} is unreadable or truncated ({err}); retrain or use another checkpoint") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise VqartError(f"{path} is not a vqart checkpoint (no model weights in it)")
    return checkpoint


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load weights into `model`, turning a shape or key mismatch into a VqartError naming `source`."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        detail = str(err).splitlines()
        brief = next((line.strip() for line in detail[1:] if line.strip()), detail[0])
        raise VqartError(
            f"checkpoint {source} does not fit this model's shape ({brief}); "
            "use the config.json the checkpoint was trained with"
        ) from None
