"""The FSQ bottleneck (quantizer = "fsq"): its rounding and codes by hand, and a run made with it opening everywhere
a residual run opens (eval, the spatial and motion priors, dreams, the server's info)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_config

from vqart import generate
from vqart.cli import cli
from vqart.config import ModelConfig
from vqart.errors import VqartError
from vqart.model.fsq import FSQ
from vqart.model.vqvae import build_model
from vqart.run import open_run
from vqart.server.engine import Engine
from vqart.server.training import FileSource
from vqart.train import train


@pytest.mark.parametrize("levels", [[5, 5, 5], [8, 6, 5], [2]])
def test_codes_lie_in_the_implicit_codebook_and_look_up_to_what_the_decoder_sees(levels):
    torch.manual_seed(0)
    fsq = FSQ(tokens=2, levels=levels, dim=8).eval()
    z = torch.randn(64, 8, 4, 4) * 3
    z_q, codes, commit, counts = fsq(z)
    size = int(np.prod(levels))
    assert codes.shape == (64, 2, 4, 4) and int(codes.min()) >= 0 and int(codes.max()) < size
    assert counts.shape == (2, size) and int(counts.sum()) == codes.numel() and float(commit) == 0.0
    assert fsq.codebooks.shape == (2, size, 8)
    torch.testing.assert_close(fsq.lookup(codes), z_q)
    values = fsq._values(codes)  # (B, L, h, w, C): every channel on its grid of levels, within [-1, 1]
    assert float(values.abs().max()) <= 1.0
    half = torch.tensor(levels) // 2
    steps = torch.round(values * half)
    torch.testing.assert_close(steps, values * half)
    every = fsq.code_values()  # (K, C): code k's digits, read back, are k
    digits = (every * half).round().long() + half
    assert every.shape == (size, len(levels))
    assert (digits * torch.cumprod(torch.tensor([1] + levels[:-1]), 0)).sum(-1).tolist() == list(range(size))


def test_rounding_is_ordered_and_passes_gradients_straight_through():
    fsq = FSQ(tokens=1, levels=[5], dim=1)
    u = torch.linspace(-4, 4, 41, requires_grad=True)
    q = fsq._round(u[:, None])[:, 0]
    assert torch.all(q[1:] >= q[:-1]) and set(q.tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    q.sum().backward()
    assert torch.all(u.grad > 0)  # the rounding itself is skipped by the gradient; only tanh's slope remains


def test_unrounded_latents_move_smoothly_where_the_quantized_ones_step():
    torch.manual_seed(0)
    fsq = FSQ(tokens=2, levels=[5, 5, 5], dim=8)
    a, b = torch.randn(2, 8, 1, 1).unbind(0)
    path = torch.stack([a + t * (b - a) for t in torch.linspace(0, 1, 50)])  # a slow move of one cell's latent
    with torch.no_grad():
        quantized = fsq(path)[0].flatten(1)
        smooth = fsq.unrounded(path).flatten(1)
    q_moves = (quantized[1:] - quantized[:-1]).abs().sum(1) > 1e-6
    assert 0 < int(q_moves.sum()) < 25  # a staircase: held, then a jump
    assert bool(((smooth[1:] - smooth[:-1]).abs().sum(1) > 1e-6).all())  # every step moves
    # The rounding is the only difference: the gap is the projection (linear, bias aside) of the rounding error.
    with torch.no_grad():
        bounded = fsq._bound(fsq._channels(path))
        gap = fsq._project_out((bounded - bounded.round()) / fsq.half_width) - fsq.project_out.bias[:, None, None]
    torch.testing.assert_close(smooth - quantized, gap.flatten(1), atol=1e-5, rtol=1e-4)


def test_channel_values_round_to_their_codes_and_decode_as_the_codes_do():
    torch.manual_seed(0)
    for levels in ([5, 5, 5], [8, 6, 5]):
        fsq = FSQ(tokens=2, levels=levels, dim=8).eval()
        z = torch.randn(16, 8, 3, 3) * 3
        z_q, codes, _, _ = fsq(z)
        values = fsq.values(z)  # (B, L, h, w, C) before rounding, on the codes' scale
        low, high = fsq.intervals(codes)
        assert bool(((values >= low) & (values <= high)).all()) and bool((low < high).all())
        assert torch.equal(fsq.codes(values), codes)  # the codes are what the values round to
        torch.testing.assert_close(fsq.from_values(fsq.code_values()[codes]), z_q)
        torch.testing.assert_close(fsq.from_values(values), fsq.unrounded(z))
        inside = (values - fsq.code_values()[codes]).abs() * (torch.tensor(levels) // 2)
        assert float(inside.max()) <= 0.5 + 1e-5  # within half a step of the code's own value


def test_an_fsq_model_trains_its_projections_and_has_no_commitment_term():
    torch.manual_seed(0)
    model = build_model(ModelConfig(channels=16, res_blocks=1, code_dim=8, levels=2, quantizer="fsq")).train()
    out = model(torch.rand(2, 1, 32, 32))
    (out.recon.mean() + out.reg).backward()
    assert model.quantizer.project_in.weight.grad.abs().sum() > 0 and model.encoder.net[0].weight.grad is not None
    assert out.codes.shape == (2, 2, 8, 8) and float(out.reg) == 0.0


@pytest.mark.parametrize(("levels", "message"), [
    ([], "got []"), ([1, 5], "got [1, 5]"), ([5] * 8, "whose product (the codes of a group) is between 2 and 65536"),
])
def test_impossible_fsq_levels_are_refused_naming_the_key_and_its_range(levels, message):
    with pytest.raises(VqartError, match=r"^model\.fsq_levels must be integers from 2 to 256 .*" + re.escape(message)):
        build_model(ModelConfig(quantizer="fsq", fsq_levels=levels))


@pytest.fixture(scope="module")
def fsq_run(frames_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tiny_config()
    config.model = replace(config.model, quantizer="fsq", fsq_levels=[4, 4])
    return train(frames_dir, tmp_path_factory.mktemp("fsq") / "run", config=config, device="cpu")


def test_an_fsq_run_reports_the_share_of_its_implicit_codes_in_use(fsq_run):
    result = CliRunner().invoke(cli, ["eval", str(fsq_run), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["quantizer"] == "fsq" and report["codebook_size"] == 16 and report["levels"] == 2
    assert 1 <= report["active_codes"] <= 16 and len(report["active_levels"]) == 2
    run = open_run(fsq_run, device="cpu")
    assert run.code_usage.shape == (2, 16) and (fsq_run / "codebook_usage.png").is_file()
    info = FileSource(run).history()["info"]  # what the training page shows of the finished run
    assert (info["quantizer"], info["levels"], info["codebook_size"]) == ("fsq", 2, 16)
    frames = np.zeros((2, 64, 64), dtype=np.uint8)
    np.testing.assert_array_equal(run.decode_codes(run.encode_codes(frames)), run.decode(run.quantize(run.encode(frames))))


@pytest.mark.slow
def test_the_priors_and_dreams_work_on_an_fsq_run(fsq_run, tmp_path):
    from vqart.prior import train_prior
    from vqart.prior.motion import advance, load_motion, train_motion

    run = open_run(fsq_run, device="cpu")
    metrics = train_prior(run, minutes=0.03, dim=32, depth=1, heads=2)
    assert len(metrics["bits_per_level"]) == 2 and metrics["config"]["codebook_size"] == 16
    first = generate.sample_codes(run, 2, seed=4)
    assert first.shape == (2, 2, 16, 16) and int(first.max()) < 16
    np.testing.assert_array_equal(first, generate.sample_codes(run, 2, seed=4))
    assert train_motion(run, minutes=0.03, dim=32, depth=1, heads=2)["started_from"] == "spatial prior"
    prior = load_motion(run)  # FSQ's codes have an order: the prior sees their values, unrounded, and places its own
    torch.testing.assert_close(prior.model.centres(torch.arange(16)), run.model.quantizer.code_values())
    assert prior.model.moves.in_channels == 2 * 2 * len(run.model.quantizer.levels) and prior.model.cfg.sources == 10
    frames = generate.dataset_frames(run)["discs"]
    state = prior.state(*generate.motion_start(run, prior, "discs:5", torch.Generator())[:2], None, 1.0,
                        torch.Generator().manual_seed(0))
    torch.testing.assert_close(state.values[-1], run.encode_values(frames[5:6]).flatten(2, 3)[0])
    before = state.values.clone()
    frame = advance(prior, [state])[0]
    low, high = prior.model.table[1][state.past[-1]], prior.model.table[2][state.past[-1]]
    assert bool(((state.values[-1] >= low - 1e-6) & (state.values[-1] <= high + 1e-6)).all())
    torch.testing.assert_close(state.values[0], before[-1])  # the values move on with the codes
    np.testing.assert_array_equal(frame, run.decode_values(state.values[-1:].unflatten(2, (16, 16)))[0])
    engine = Engine(open_run(fsq_run, device="cpu"))
    try:
        assert engine.info()["quantizer"] == "fsq" and engine.info()["motion"]
    finally:
        engine.close()
    for mode in ("motion", "walk"):
        out = tmp_path / f"{mode}.gif"
        result = CliRunner().invoke(cli, ["dream", str(fsq_run), "-o", str(out), "--mode", mode, "--frames", "5",
                                          "--seed", "1", "--device", "cpu"])
        assert result.exit_code == 0, result.output
