"""The continuous-VAE baseline (quantizer = "none"): it trains, and opens everywhere a run opens, saying in one line
what does not apply to it (priors, codes, motion)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_config

from vqart import generate
from vqart.cli import cli
from vqart.run import open_run
from vqart.server.engine import Engine
from vqart.train import train


@pytest.fixture(scope="module")
def vae_run(frames_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tiny_config()
    config.model = replace(config.model, quantizer="none")
    return train(frames_dir, tmp_path_factory.mktemp("vae") / "run", config=config, device="cpu")


def test_the_vae_trains_and_reports_its_kl_not_a_codebook(vae_run):
    rows = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_mse"] < rows[0]["val_mse"] and rows[-1]["train_kl"] > 0
    assert "perplexity" not in rows[-1] and (vae_run / "progression.png").is_file()
    result = CliRunner().invoke(cli, ["eval", str(vae_run), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["quantizer"] == "none" and report["psnr"] > 10 and "perplexity" not in report


def test_the_vae_samples_from_a_gaussian_by_seed_and_interpolates(vae_run):
    run = open_run(vae_run, device="cpu")
    first = generate.sample(run, 3, seed=2)
    assert first.shape == (3, 64, 64) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, generate.sample(run, 3, seed=2))
    assert not np.array_equal(first, generate.sample(run, 3, seed=3))
    path = generate.interpolate(run, "discs:0", "boxes:5", steps=4)
    np.testing.assert_array_equal(path[0], generate.reconstruct(run, "discs:0"))
    engine = Engine(run)
    try:
        assert engine.info()["quantizer"] == "none" and engine.info()["sampler"] == "gaussian"
    finally:
        engine.close()


@pytest.mark.parametrize("mode", ["sample", "interpolate", "walk"])
def test_dream_works_on_a_vae(vae_run, tmp_path, mode):
    out = tmp_path / f"{mode}.gif"
    result = CliRunner().invoke(cli, ["dream", str(vae_run), "-o", str(out), "--mode", mode, "--frames", "6",
                                      "--seed", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert iio.imread(out, index=None).shape[0] == 6


@pytest.mark.parametrize("args", [["prior", "{run}", "--minutes", "0.01"], ["dream", "{run}", "-o", "{out}", "--mode", "motion"],
                                  ["dream", "{run}", "-o", "{out}", "--mode", "sample", "--sampler", "prior"],
                                  ["dream", "{run}", "-o", "{out}", "--mode", "sample", "--steps", "8"]])
def test_what_does_not_apply_to_a_vae_says_so_in_one_line(vae_run, tmp_path, args):
    args = [a.format(run=vae_run, out=tmp_path / "x.gif") for a in args]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is a VAE" in result.output and "does not apply" in result.output
    assert len(result.output.strip().splitlines()) == 1
