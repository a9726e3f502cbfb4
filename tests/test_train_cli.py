"""`vqart train` / `vqart eval` from the command line, the frame loader, and every bad input a user can make."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from synthetic import moving_shapes, write_sketch

from vqart.cli import cli
from vqart.config import TrainConfig, load_config
from vqart.data import held_out_masks, load_frames, parse_ref, split_frames
from vqart.errors import VqartError


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _fails_cleanly(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_eval_json_reports_the_promised_keys(tiny_run):
    result = _invoke("eval", str(tiny_run), "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("mse", "psnr", "ssim", "perplexity", "active_codes", "codebook_size"):
        assert key in report
    assert report["codebook_size"] == 32 and 0 < report["ssim"] <= 1
    assert report["psnr"] == pytest.approx(10 * np.log10(1 / report["mse"]))


def test_eval_on_another_folder_and_as_a_table(tiny_run, tmp_path):
    write_sketch(tmp_path, "unseen", moving_shapes(10, (64, 64), kind=3))
    result = _invoke("eval", str(tiny_run), "--data", str(tmp_path), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "psnr" in result.output and "10 frames" in result.output


def test_eval_refuses_frames_of_another_size(tiny_run, tmp_path):
    write_sketch(tmp_path, "small", moving_shapes(4, (32, 32)))
    _fails_cleanly(_invoke("eval", str(tiny_run), "--data", str(tmp_path)), "but the model was trained on 64x64")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no frames found"),
        ("mixed", "mixed frame sizes"),
        ("indivisible", "not divisible by the model's downsampling 4"),
    ],
)
def test_train_refuses_bad_data_without_leaving_a_run_behind(tmp_path, setup, message):
    data = tmp_path / "data"
    if setup != "missing":
        data.mkdir()
    if setup == "mixed":
        write_sketch(data, "a", moving_shapes(4, (64, 64)))
        write_sketch(data, "b", moving_shapes(4, (32, 32)))
    if setup == "indivisible":
        write_sketch(data, "a", moving_shapes(20, (66, 66)))
    out = tmp_path / "runs" / "x"
    _fails_cleanly(_invoke("train", "--data", str(data), "--out", str(out), "--device", "cpu"), message)
    assert not out.exists()


def test_unknown_config_key_lists_the_valid_ones(tmp_path, frames_dir):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ncodebok_size = 64\n")
    result = _invoke("train", "--data", str(frames_dir), "--out", str(tmp_path / "r"), "--config", str(bad))
    _fails_cleanly(result, "unknown key(s) codebok_size in [model]; valid keys: channels")
    assert "codebook_size" in result.output
    bad.write_text("[trian]\nepochs = 2\n")
    _fails_cleanly(_invoke("train", "--config", str(bad)), "unknown section(s) trian; valid sections: model, train")
    bad.write_text("[train]\nepochs = 'many'\n")
    _fails_cleanly(_invoke("train", "--config", str(bad)), "[train] epochs should be int")
    bad.write_text("[train\n")
    _fails_cleanly(_invoke("train", "--config", str(bad)), "is not valid TOML")


def test_config_file_and_options_override_defaults(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("[model]\ncodebook_size = 64\nlevels = 2\n[train]\nepochs = 7\nlr = 1\n")
    cfg = load_config(file, epochs=3, minutes=None)
    assert (cfg.model.codebook_size, cfg.model.levels, cfg.train.epochs, cfg.train.lr) == (64, 2, 3, 1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present here")
def test_an_unavailable_device_is_a_clear_error(frames_dir, tmp_path):
    out = tmp_path / "r"
    _fails_cleanly(_invoke("train", "--data", str(frames_dir), "--out", str(out), "--device", "cuda"),
                   "no CUDA GPU is available")
    assert not out.exists()


def test_resume_needs_a_run_and_a_new_run_needs_a_free_folder(tiny_run, tmp_path):
    _fails_cleanly(_invoke("train", "--out", str(tmp_path / "none"), "--resume"), "nothing to resume")
    _fails_cleanly(_invoke("train", "--out", str(tiny_run)), "already holds a run")


def test_eval_of_a_missing_run_is_a_clear_error(tmp_path):
    _fails_cleanly(_invoke("eval", str(tmp_path / "nope")), "is not a training run")


def test_load_frames_keeps_order_and_skips_a_corrupt_png_with_a_warning(tmp_path, caplog):
    frames = moving_shapes(5, (32, 32))
    folder = write_sketch(tmp_path, "s", frames)
    (folder / "frame_00005.png").write_bytes(b"not a png at all")
    with caplog.at_level(logging.WARNING, logger="vqart"):
        loaded = load_frames(tmp_path)
    assert list(loaded) == ["s"]
    np.testing.assert_array_equal(loaded["s"], frames)
    assert "frame_00005.png" in caplog.text and "corrupt" in caplog.text


def test_load_frames_reads_a_flat_folder_of_pngs_as_one_sketch(tmp_path):
    folder = write_sketch(tmp_path, "flat", moving_shapes(3, (32, 32)))
    assert load_frames(folder)["flat"].shape == (3, 32, 32)


def test_parse_ref():
    assert parse_ref("orbits:12") == ("orbits", 12)
    assert parse_ref(" my-sketch:0 ") == ("my-sketch", 0)
    for bad in ("orbits", "orbits:", ":3", "orbits:-1", "orbits:x"):
        with pytest.raises(VqartError, match="malformed"):
            parse_ref(bad)


def test_held_out_frames_are_whole_time_segments_alternately_selecting_and_testing_with_a_gap():
    m = held_out_masks(100, 0.2, segments=4, gap=2)
    assert m["select"].sum() == 10 and m["test"].sum() == 10
    assert not (m["train"] & (m["select"] | m["test"])).any() and not (m["select"] & m["test"]).any()
    held = m["select"] | m["test"]
    starts = np.flatnonzero(np.diff(held.astype(int)) == 1) + 1
    assert len(starts) == 4  # four contiguous blocks, the first one selecting
    assert m["select"][starts[0]] and m["test"][starts[1]] and m["select"][starts[2]] and m["test"][starts[3]]
    for i in np.flatnonzero(held):  # no training frame within `gap` frames of a held-out frame
        assert not m["train"][max(0, i - 2) : i + 3].any()


def test_held_out_twins_of_training_frames_are_dropped_and_reported():
    looping = np.stack([moving_shapes(20, kind=1) for _ in range(6)]).reshape(120, 64, 64)
    looping[:, -3:] = 0  # erase the progress line: the sketch now repeats exactly every 20 frames
    varied = moving_shapes(120, kind=0)
    split = split_frames({"loop": looping, "varied": varied}, TrainConfig())
    assert split.dropped["loop"] == {"select": 12, "test": 12} and split.without_held_out() == ["loop"]
    assert split.dropped["varied"] == {"select": 0, "test": 0}
    assert len(split.frames("test")) == 12 and (split.labels("test") == 1).all()
    summary = split.summary()["loop"]
    assert summary["train"] > 0 and summary["test"] == 0 and summary["dropped_test"] == 12
    with pytest.raises(VqartError, match="every held-out frame has a twin"):
        split_frames({"loop": looping}, TrainConfig())


def test_train_from_the_command_line_prints_the_run_folder_and_force_replaces_it(frames_dir, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nchannels = 16\nres_blocks = 1\ncodebook_size = 32\ncode_dim = 16\n"
        "[train]\nbatch_size = 32\nwarmup_steps = 2\nprecision = 'fp32'\n"
    )
    out = tmp_path / "runs" / "cli"
    args = ("train", "--data", str(frames_dir), "--out", str(out), "--config", str(config), "--epochs", "1",
            "--device", "cpu")
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert f"run folder: {out}" in result.output.replace("\n", "")
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 1
    _fails_cleanly(_invoke(*args), "already holds a run")
    assert _invoke(*args, "--force").exit_code == 0
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "keep.txt").write_text("mine")
    _fails_cleanly(_invoke("train", "--out", str(tmp_path / "notarun"), "--force"), "is not a run folder")
    assert (tmp_path / "notarun" / "keep.txt").exists()


def test_one_place_picks_device_and_precision():
    from vqart.device import autocast_dtype, cpu_has_bf16, describe, pick_device

    cpu = pick_device("cpu")
    assert cpu.type == "cpu"
    assert autocast_dtype(cpu, "fp32") is None and autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if cpu_has_bf16() else None)
    assert "precision: fp32" in describe(cpu, None)
    with pytest.raises(VqartError, match="unknown device 'tpu'"):
        pick_device("tpu")
