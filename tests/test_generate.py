"""Samplers, interpolation, walks and `vqart dream` / `vqart prior` on a real tiny run, bad input included."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageSequence

from vqart import generate
from vqart.cli import cli
from vqart.errors import VqartError
from vqart.generate import lerp, slerp
from vqart.run import open_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run(tiny_run: Path):
    """The shared tiny run, opened on the CPU (no prior: tests must not write into the shared folder)."""
    return open_run(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def prior_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the tiny run with a prior trained for a few seconds through `vqart prior`."""
    path = tmp_path_factory.mktemp("prior") / "tiny"
    shutil.copytree(tiny_run, path)
    result = CliRunner().invoke(cli, ["prior", str(path), "--minutes", "0.04", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "unigram" in result.output and (path / "prior.pt").is_file() and (path / "prior.json").is_file()
    return open_run(path, device="cpu")


def dream(*args: str) -> object:
    """Run `vqart dream` in-process."""
    return CliRunner().invoke(cli, ["dream", *args])


# ---- latent maths ----------------------------------------------------------------------------------------


def test_slerp_keeps_each_position_norm_between_its_ends():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 3, 3, generator=g) * 2, torch.randn(8, 3, 3, generator=g) * 0.5
    path = slerp(a, b, torch.linspace(0, 1, 11))
    norms = path.norm(dim=1)
    low, high = torch.minimum(a.norm(dim=0), b.norm(dim=0)), torch.maximum(a.norm(dim=0), b.norm(dim=0))
    assert ((norms >= low - 1e-5) & (norms <= high + 1e-5)).all()
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)


def test_slerp_turns_on_the_great_circle_and_lerp_goes_straight():
    a, b = torch.zeros(2, 1, 1), torch.zeros(2, 1, 1)
    a[0], b[1] = 1.0, 1.0
    half = torch.tensor([0.5])
    torch.testing.assert_close(slerp(a, b, half)[0, :, 0, 0], torch.tensor([0.5**0.5, 0.5**0.5]))
    torch.testing.assert_close(lerp(a, b, half)[0, :, 0, 0], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(slerp(a, a, half)[0], a)  # parallel ends: no division by zero


# ---- frames in and out -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "snap"), [("slerp", False), ("lerp", False), ("slerp", True)])
def test_interpolation_ends_are_the_endpoint_reconstructions(run, method, snap):
    frames = generate.interpolate(run, "discs:3", "boxes:20", steps=7, method=method, snap=snap)
    assert frames.shape == (7, 64, 64) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], generate.reconstruct(run, "discs:3"))
    np.testing.assert_array_equal(frames[-1], generate.reconstruct(run, "boxes:20"))
    assert len({f.tobytes() for f in frames}) > 2  # it moves in between


def test_interpolation_without_ends_picks_dataset_frames_by_seed(run):
    first = generate.interpolate(run, steps=4, seed=5)
    np.testing.assert_array_equal(first, generate.interpolate(run, steps=4, seed=5))
    assert not np.array_equal(first, generate.interpolate(run, steps=4, seed=6))


def test_grid_corners_and_walk_keyframes_are_reconstructions(run):
    corners = ["discs:0", "boxes:5", "orbits:10", "discs:30"]
    frames = generate.grid(run, corners, rows=3, cols=4)
    recon = [generate.reconstruct(run, c) for c in corners]
    # The same latent decoded in a batch of 12 and alone may round a rare pixel differently (oneDNN picks its
    # convolution kernels by batch size): equal up to one level.
    same = lambda a, b: np.testing.assert_allclose(a.astype(int), b.astype(int), rtol=0, atol=1)
    for index, expected in zip((0, 3, 8, 11), recon):
        same(frames[index], expected)
    loop = generate.walk(run, corners[:2], frames=8, method="lerp")
    same(loop[0], recon[0])
    same(loop[4], recon[1])  # halfway round the loop; frame 8 would be frame 0 again
    step = lambda i, j: np.abs(loop[i].astype(int) - loop[j].astype(int)).mean()
    assert step(7, 0) < 2 * max(step(i, i + 1) for i in range(7))  # no jump at the seam


def test_resolve_frame_reads_refs_arrays_and_resizes_other_sizes(run, tiny_run, tmp_path, caplog):
    data = generate.dataset_frames(run)
    np.testing.assert_array_equal(generate.resolve_frame(run, "orbits:7"), data["orbits"][7])
    big = tmp_path / "big.png"
    Image.fromarray(data["discs"][2]).resize((128, 96)).convert("RGB").save(big)
    with caplog.at_level(logging.WARNING):
        frame = generate.resolve_frame(run, big)
    assert frame.shape == (64, 64) and frame.dtype == np.uint8
    assert "128x96" in caplog.text and "resized" in caplog.text
    assert generate.resolve_frame(run, np.zeros((32, 32), np.uint8)).shape == (64, 64)


@pytest.mark.parametrize(
    ("ref", "match"),
    [("nosuch:1", "unknown sketch 'nosuch'.*discs"), ("discs:999", "frames 0..39"), ("discs-3", "neither")],
)
def test_resolve_frame_explains_bad_refs(run, ref, match):
    with pytest.raises(VqartError, match=match):
        generate.resolve_frame(run, ref)


def test_resolve_frame_refuses_a_file_that_is_not_an_image(run, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not pixels")
    with pytest.raises(VqartError, match="not an image"):
        generate.resolve_frame(run, text)


# ---- samplers --------------------------------------------------------------------------------------------


def test_unigram_sampler_is_deterministic_by_seed(run):
    first = generate.sample(run, 3, sampler="unigram", seed=1)
    assert first.shape == (3, 64, 64) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, generate.sample(run, 3, sampler="unigram", seed=1))
    assert not np.array_equal(first, generate.sample(run, 3, sampler="unigram", seed=2))
    # Without a prior, auto is the unigram sampler.
    np.testing.assert_array_equal(first, generate.sample(run, 3, seed=1))
    # top_k=1 always draws the most used code, whatever the seed.
    codes = generate.sample_codes(run, 2, sampler="unigram", top_k=1, seed=3)  # (2, L, h, w)
    for level, usage in enumerate(run.code_usage):
        assert (codes[:, level] == int(np.argmax(usage))).all()


def test_prior_sampler_needs_a_prior(run):
    with pytest.raises(VqartError, match="no prior trained.*vqart prior"):
        generate.sample(run, 2, sampler="prior")


def test_a_prior_from_another_vqart_version_is_refused_with_the_fix(prior_run, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(prior_run.path, copy)
    saved = torch.load(copy / "prior.pt", weights_only=True)
    for version in (None, 2):  # before the depth head (vqart 0.1); before the sketch label (vqart 0.2)
        torch.save({**saved, "format": version}, copy / "prior.pt")
        with pytest.raises(VqartError, match=r"another version of vqart; retrain it with `vqart prior"):
            generate.sample(open_run(copy, device="cpu"), 1, sampler="prior")


def test_prior_sampling_is_deterministic_by_seed(prior_run):
    first = generate.sample(prior_run, 3, seed=4, temperature=0.8, top_k=5)
    np.testing.assert_array_equal(first, generate.sample(prior_run, 3, seed=4, temperature=0.8, top_k=5))
    assert not np.array_equal(first, generate.sample(prior_run, 3, sampler="unigram", seed=4))


def test_samples_like_a_sketch_are_all_of_it_and_a_sketch_the_prior_never_saw_is_named(prior_run, tmp_path):
    first = generate.sample(prior_run, 3, seed=4, like="orbits")
    np.testing.assert_array_equal(first, generate.sample(prior_run, 3, seed=4, like="orbits"))
    assert not np.array_equal(first, generate.sample(prior_run, 3, seed=4, like="boxes"))
    with pytest.raises(VqartError, match="unknown sketch 'nowhere'; the spatial prior knows boxes, discs, orbits"):
        generate.sample(prior_run, 1, like="nowhere")
    with pytest.raises(VqartError, match="--like picks the spatial prior's sketch.*leave --like out"):
        generate.sample(prior_run, 1, sampler="unigram", like="orbits")
    result = dream(str(prior_run.path), "-o", str(tmp_path / "like"), "--mode", "sample", "--frames", "3", "--seed",
                   "4", "--like", "orbits", "--scale", "1")
    assert result.exit_code == 0, result.output
    written = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "like").glob("frame_*.png"))])
    np.testing.assert_array_equal(written, first)


def test_prior_sampling_decodes_in_the_steps_the_prior_was_chosen_with(prior_run):
    from vqart.prior import spatial_steps

    chosen = json.loads((prior_run.path / "prior.json").read_text())["eval_steps"]
    assert spatial_steps(prior_run) == chosen and 1 <= chosen <= 8
    other = 8 if chosen != 8 else 1
    default = generate.sample_codes(prior_run, 2, seed=3)
    torch.testing.assert_close(default, generate.sample_codes(prior_run, 2, seed=3, steps=chosen))
    assert not torch.equal(default, generate.sample_codes(prior_run, 2, seed=3, steps=other))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n": 0}, "n must be"), ({"temperature": 0}, "temperature"), ({"top_k": 999}, "top_k"), ({"sampler": "x"}, "sampler")],
)
def test_sampler_options_are_checked(run, kwargs, match):
    with pytest.raises(VqartError, match=match):
        generate.sample(run, **{"n": 2, **kwargs})


# ---- vqart dream through the CLI -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sample", "interpolate", "walk", "grid"])
def test_dream_writes_a_looping_gif_and_prints_its_size(tiny_run, tmp_path, mode):
    out = tmp_path / f"{mode}.gif"
    result = dream(str(tiny_run), "-o", str(out), "--mode", mode, "--frames", "9", "--seed", "1", "--scale", "2")
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "KiB" in result.output
    # Pillow folds a frame identical to the one before into that one's duration: count time, not frames.
    with Image.open(out) as gif:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
        assert gif.size == (128, 128) and gif.info["loop"] == 0
    assert sum(durations) == pytest.approx(9 * 1000 / 30, abs=9 * 10)


def test_dream_prior_samples_to_mp4(prior_run, tmp_path):
    out = tmp_path / "samples.mp4"
    result = dream(str(prior_run.path), "-o", str(out), "--mode", "sample", "--frames", "6", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert iio.imread(out).shape[:3] == (6, 256, 256)


def test_dream_decodes_prior_samples_in_the_steps_asked_for(prior_run, tmp_path):
    from vqart.prior import spatial_steps

    other = 8 if spatial_steps(prior_run) != 8 else 1
    result = dream(str(prior_run.path), "-o", str(tmp_path / "more"), "--mode", "sample", "--frames", "3", "--seed", "3",
                   "--steps", str(other), "--scale", "1")
    assert result.exit_code == 0, result.output
    written = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "more").glob("frame_*.png"))])
    np.testing.assert_array_equal(written, generate.sample(prior_run, 3, seed=3, steps=other))
    assert not np.array_equal(written, generate.sample(prior_run, 3, seed=3))  # the prior's own steps differ
    keys = list(generate.sample(prior_run, 3, seed=3, steps=other))  # a walk through samples decodes them so too
    np.testing.assert_array_equal(generate.walk(prior_run, None, 6, 3, n_keys=3, source="sample", steps=other),
                                  generate.walk(prior_run, keys, 6, 3))
    with pytest.raises(VqartError, match="use sampler auto or prior"):
        generate.sample(prior_run, 2, sampler="unigram", steps=other)


def test_dream_image_of_another_size_is_resized_with_a_note(tiny_run, tmp_path, caplog):
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((50, 70), 200, np.uint8)).save(image)
    with caplog.at_level(logging.WARNING):
        result = dream(str(tiny_run), "-o", str(tmp_path / "i.gif"), "--mode", "interpolate", "--a", str(image), "--b", "discs:1", "--frames", "3")
    assert result.exit_code == 0, result.output
    assert "70x50" in caplog.text and (tmp_path / "i.gif").is_file()


def _broken_run(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the run whose checkpoints are gone."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    shutil.rmtree(broken / "checkpoints")
    return broken


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("unknown run", "not a training run"),
        ("missing checkpoint", "checkpoint"),
        ("unknown sketch:frame", "unknown sketch 'nosuch'"),
        ("not an image", "not an image"),
        ("unsupported extension", r"unsupported extension '\.avi'.*\.gif.*\.mp4.*\.png"),
        ("zero frames", "--frames must be"),
        ("prior missing", "no prior trained"),
        ("zero steps", "--steps must be"),
        ("steps where no sample is", "--steps decodes prior samples"),
        ("steps without a prior", "steps are the prior's decoding steps"),
    ],
)
def test_dream_bad_input_is_one_clear_line_and_writes_nothing(case, match, tiny_run, tmp_path):
    out, run_path, extra = tmp_path / "out" / "dream.gif", str(tiny_run), []
    if case == "unknown run":
        run_path = str(tmp_path / "no-such-run")
    elif case == "missing checkpoint":
        run_path = str(_broken_run(tiny_run, tmp_path))
    elif case == "unknown sketch:frame":
        extra = ["--mode", "interpolate", "--a", "nosuch:1"]
    elif case == "not an image":
        (tmp_path / "notes.txt").write_text("hello")
        extra = ["--mode", "interpolate", "--a", str(tmp_path / "notes.txt")]
    elif case == "unsupported extension":
        out = out.with_suffix(".avi")
    elif case == "zero frames":
        extra = ["--frames", "0"]
    elif case == "zero steps":
        extra = ["--mode", "sample", "--steps", "0"]
    elif case == "steps where no sample is":
        extra = ["--mode", "interpolate", "--steps", "4"]
    elif case == "steps without a prior":
        extra = ["--mode", "sample", "--steps", "4"]
    else:
        extra = ["--mode", "sample", "--sampler", "prior"]
    result = dream(run_path, "-o", str(out), "--frames", "4", *extra)  # a later --frames wins
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("Error: ")
    assert re.search(match, result.output), result.output
    assert not out.parent.exists() or not list(out.parent.iterdir())


@pytest.mark.slow
def test_residual_levels_are_modelled_whole(frames_dir, tmp_path):
    from dataclasses import replace

    from conftest import tiny_config

    from vqart.prior import load_prior, train_prior
    from vqart.train import train

    config = tiny_config()
    config.model = replace(config.model, levels=2)
    path = train(frames_dir, tmp_path / "rq", config=config, device="cpu")
    rq = open_run(path, device="cpu")
    metrics = train_prior(rq, minutes=0.03, dim=32, depth=1, heads=2)
    assert metrics["config"]["levels"] == 2 and metrics["bits_per_code"] > 0
    assert len(metrics["bits_per_level"]) == len(metrics["baseline_bits_per_level"]) == 2
    assert metrics["bits_per_frame"] == pytest.approx(sum(metrics["bits_per_level"]) * 16 * 16)
    prior = load_prior(rq)
    assert prior.grid.cells == 16 * 16 and prior.cfg.levels == 2
    assert generate.sample_codes(rq, 2, seed=0).shape == (2, 2, 16, 16)
    assert generate.sample(rq, 2, seed=0).shape == (2, 64, 64)

