"""The run folder contract: what `vqart train` leaves behind and what open_run gives back."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from vqart.data import load_frames
from vqart.errors import VqartError
from vqart.run import open_run


def test_run_folder_holds_config_metrics_checkpoints_and_pictures(tiny_run):
    for name in ("config.json", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "training_curve.png", "codebook_usage.png", "previews/epoch_0002.png"):
        assert (tiny_run / name).is_file(), name
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for key in ("train_loss", "val_loss", "train_recon", "train_commit", "perplexity", "active_codes",
                "dead_codes", "recoveries", "lr", "beta", "images_per_s", "seconds"):
        assert key in rows[-1], key
    assert not list(tiny_run.rglob("*.tmp*")), "a temporary file was left behind"


def test_open_run_round_trips_uint8_frames(tiny_run, frames_dir):
    run = open_run(tiny_run, device="cpu")
    assert run.frame_size == (64, 64) and run.grid_size == (16, 16)
    assert run.data_dir == frames_dir.resolve()
    assert run.code_usage.shape == (2, run.model.codebook_size)
    frames = np.zeros((3, 64, 64), dtype=np.uint8)
    z = run.encode(frames)
    assert z.shape == (3, run.config["model"]["code_dim"], 16, 16) and z.dtype == torch.float32
    codes = run.encode_codes(frames)
    assert codes.shape == (3, 2, 16, 16) and codes.dtype == torch.long
    out = run.decode_codes(codes)
    assert out.shape == (3, 64, 64) and out.dtype == np.uint8
    np.testing.assert_array_equal(run.decode(run.quantize(z)), out)


def test_on_the_cpu_a_run_computes_channels_last_with_the_plain_layouts_results(tiny_run, frames_dir):
    run = open_run(tiny_run, device="cpu")
    convs = [m for m in run.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = copy.deepcopy(run.model).to(memory_format=torch.contiguous_format)
    assert not all(c.weight.is_contiguous(memory_format=torch.channels_last)
                   for c in plain.modules() if isinstance(c, torch.nn.Conv2d))
    frames = torch.from_numpy(load_frames(frames_dir)["orbits"][:8])[:, None].float() / 255.0
    with torch.no_grad():
        codes = run.model.quantize(run.model.encode(frames))[1]
        same = (codes == plain.quantize(plain.encode(frames))[1]).float().mean()
        assert same > 0.999  # a channel within float error of a rounding boundary may round the other way
        torch.testing.assert_close(run.model.decode_codes(codes), plain.decode_codes(codes), atol=1e-5, rtol=0)


def test_open_run_refuses_frames_of_another_size_and_missing_runs(tiny_run, tmp_path):
    run = open_run(tiny_run, device="cpu")
    with pytest.raises(VqartError, match="expected uint8 frames"):
        run.encode(np.zeros((1, 32, 32), dtype=np.uint8))
    with pytest.raises(VqartError, match="not a training run"):
        open_run(tmp_path)


def test_a_residual_run_opens_with_per_level_codes_and_usage(frames_dir, tmp_path):
    from conftest import tiny_config
    from vqart.train import train

    cfg = tiny_config(epochs=1)
    cfg.model.levels = 2
    run = open_run(train(frames_dir, tmp_path / "rq", config=cfg, device="cpu"), "cpu")
    assert run.code_usage.shape == (2, 32)
    frames = np.zeros((2, 64, 64), dtype=np.uint8)
    codes = run.encode_codes(frames)
    assert codes.shape == (2, 2, 16, 16)
    np.testing.assert_array_equal(run.decode_codes(codes), run.decode(run.quantize(run.encode(frames))))


def test_a_run_from_before_the_quantizer_setting_opens_with_its_codebooks(tiny_run, tmp_path):
    old = shutil.copytree(tiny_run, tmp_path / "old")
    config = json.loads((old / "config.json").read_text())
    del config["model"]["quantizer"]  # written before FSQ became the default
    (old / "config.json").write_text(json.dumps(config))
    run = open_run(old, device="cpu")
    assert run.model.config.quantizer == "vq" and run.code_usage.shape == (2, 32)
