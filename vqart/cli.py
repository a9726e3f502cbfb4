"""The `vqart` command: each subcommand parses its options and calls one library function."""

from __future__ import annotations

import threading

import click

from vqart import __version__
from vqart.errors import VqartError


class _Group(click.Group):
    """A Click group that turns a VqartError into a one-line message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VqartError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vqart")
def cli() -> None:
    """Teach a small VQ-VAE the motion of p5.js sketches, then sample, interpolate and dream."""


@cli.command("capture")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", type=click.Path(path_type=str), default="data", show_default=True, help="Frames go to OUT/<sketch>/.")
@click.option("--frames", type=click.IntRange(min=1), default=240, show_default=True, help="Frames per sketch.")
@click.option("--fps", type=float, default=30, show_default=True, help="Virtual frame rate: millis() advances 1000/fps per frame.")
@click.option("--size", default="64", show_default=True, help="Frame size: 64 or WIDTHxHEIGHT (the canvas is scaled to it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds Math.random, random() and noise().")
@click.option("--force", is_flag=True, help="Capture again even if an up-to-date capture exists.")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds a frame (or setup) may take before the sketch is stopped.")
@click.option("--p5", "p5_major", type=click.Choice(["auto", "1", "2"]), default="auto", show_default=True,
              help="p5.js major version. auto: 2.x, or 1.x for '// p5 1', a preload(), or a sketch that fails under "
                   "2.x on an API 2.x removed (retried).")
def capture_command(paths, out, frames, fps, size, seed, force, timeout, p5_major) -> None:
    """Capture p5.js sketches (files or folders) headlessly into grayscale PNG frames."""
    from vqart.capture import capture, parse_size

    results = capture(
        paths, out, frames=frames, fps=fps, size=parse_size(size), seed=seed, force=force, timeout=timeout,
        p5=p5_major if p5_major == "auto" else int(p5_major),
    )
    failed = [r.sketch for r in results if r.status == "failed"]
    if failed:
        raise VqartError(f"{len(failed)} of {len(results)} sketches failed: {', '.join(failed)} (see above)")


@cli.command("train")
@click.option("--data", type=click.Path(path_type=str), default=None, help="Frames folder (default data/, or the run's own when resuming).")
@click.option("--out", type=click.Path(path_type=str), default=None, help="Run folder (default runs/run-DATE-TIME).")
@click.option("--config", "config_file", type=click.Path(path_type=str), default=None, help="TOML file with [model] and [train] tables.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs (over the whole run).")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Wall-clock budget; the schedule fits in it. With --resume: minutes MORE, the cosine refitted to "
                   "the whole run (an interrupted run carries on along its curve; a finished one warms up again).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped (Ctrl-C, a crash, --minutes).")
@click.option("--force", is_flag=True, help="Replace the run already in --out.")
@click.option("--seed", type=int, default=None, help="Random seed (default 0).")
@click.option("--live", is_flag=True, help="Watch it learn at http://HOST:PORT/ (curves, codebook, controls).")
@click.option("--port", type=click.IntRange(0, 65535), default=5001, show_default=True, help="The live view's port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The live view's interface (0.0.0.0: the network).")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="URL", help="Another page origin allowed to connect.")
def train_command(data, out, config_file, epochs, minutes, device, resume, force, seed, live, port, host,
                  allow_origins) -> None:
    """Train the VQ-VAE on captured frames; prints the run folder."""
    from vqart.observers import ConsoleReport
    from vqart.train import train

    observers, server = [ConsoleReport()], None
    if live:
        from vqart.live import LiveView
        from vqart.server import serve_live

        view = LiveView()
        server = serve_live(view, host, port, allow_origins)  # a taken port stops here, before any training
        observers.append(view)
        click.echo(f"live view: http://{host}:{server.server_port}/", err=True)
    try:
        run = train(data, out, config=config_file, epochs=epochs, minutes=minutes, device=device, resume=resume,
                    force=force, seed=seed, observers=observers)
        click.echo(f"run folder: {run}")
        if server is not None:
            click.echo(f"training ended; the live view stays at http://{host}:{server.server_port}/ (Ctrl+C stops)",
                       err=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:  # the end of a finished run's view, not an interrupted training
                pass
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


@cli.command("eval")
@click.argument("run", type=click.Path(path_type=str))
@click.option("--data", type=click.Path(path_type=str), default=None, help="Any frames folder (default: the run's validation frames).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_command(run, data, device, as_json) -> None:
    """Measure a run's reconstructions (MSE, PSNR, SSIM) and codebook use (perplexity, active codes)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from vqart.metrics import eval_run

    result = eval_run(run, data, device=device)
    if as_json:
        click.echo(json.dumps(result))
        return
    table = Table(title=f"{result['run']} on {result['data']} ({result['frames']} frames)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    keys = ("mse", "psnr", "ssim", "sharpness", "perplexity", "active_codes", "codebook_size", "levels")
    for key in (k for k in keys if k in result):
        value = result[key]
        table.add_row(key, f"{value:.5g}" if isinstance(value, float) else str(value))
    for level, (ppl, active) in enumerate(zip(result.get("perplexity_levels", [])[1:], result.get("active_levels", [])[1:]), 2):
        table.add_row(f"level {level}: perplexity, active", f"{ppl:.1f}, {active}")
    Console().print(table)
    for name in result.get("sketches_without_test_frames", []):
        click.echo(f"note: {name} has no test frames (all were twins of training frames) and is not measured")


@cli.command("serve")
@click.argument("run", type=click.Path(path_type=str))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 exposes it to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True, help="TCP port (0 picks a free one).")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="URL", help="Another page origin allowed to connect (repeatable).")
def serve_command(run, host, port, allow_origins) -> None:
    """Serve the live page, the p5.js bridge and the model's Socket.IO events for a run."""
    from vqart.server import serve

    serve(run, host=host, port=port, allowed_origins=allow_origins)


@cli.command("prior")
@click.argument("run", type=click.Path(path_type=str))
@click.option("--motion", is_flag=True, help="Train the motion prior (the next frame given the last ones) instead of the spatial one.")
@click.option("--minutes", type=float, default=None, help="Wall-clock training budget (default 1.5, motion 2).")
@click.option("--context", type=int, default=None, help="Motion prior: how many previous frames it sees (default 2).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
def prior_command(run, motion, minutes, context, seed, device) -> None:
    """Train a prior over the run's code grids: spatial (samples) or, with --motion, temporal (motion dreams)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from vqart.prior import train_prior
    from vqart.prior.motion import train_motion
    from vqart.run import open_run

    if context is not None and not motion:
        raise VqartError("--context is the motion prior's; add --motion, or leave --context out for the spatial prior")
    context = 2 if context is None else context
    opened = open_run(run, device=device)
    minutes = minutes if minutes is not None else 2.0 if motion else 1.5
    console = Console(stderr=True)
    columns = (TextColumn("motion prior" if motion else "prior"), BarColumn(), TextColumn("{task.description}"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task("", total=minutes * 60)
        report = lambda t, loss: bar.update(task, completed=t, description=f"loss {loss:.3f}")
        if motion:
            m = train_motion(opened, minutes=minutes, context=context, seed=seed, on_step=report)
        else:
            m = train_prior(opened, minutes=minutes, seed=seed, on_step=report)
    what = f"motion prior ({context} frames of context)" if motion else "prior"
    _bits_table(f"{what} for {run} ({m['params']:,} params, {m['train_steps']} steps, {m['held_out_frames']} "
                f"{m['held_out']} frames, decoded in {m['eval_steps']} steps)", m, m["baseline"])
    if motion:
        others = ", ".join(f"{name} {bits:.2f}" for name, bits in m["baselines"].items())
        click.echo(f"baselines, bits per code: {others}")
        if m["started_from"]:
            click.echo(f"started from the {m['started_from']}'s weights")


def _bits_table(title: str, m: dict, baseline: str) -> None:
    """Print a prior's held-out bits against its baseline: per frame, per code, per level."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("held-out bits", "prior", baseline):
        table.add_column(column, justify="right")
    table.add_row("per frame", f"{m['bits_per_frame']:.0f}", f"{m['baseline_bits_per_frame']:.0f}")
    table.add_row("per code", f"{m['bits_per_code']:.3f}", f"{m['baseline_bits_per_code']:.3f}")
    for level, (ours, base) in enumerate(zip(m["bits_per_level"], m["baseline_bits_per_level"]), 1):
        table.add_row(f"per code, level {level}", f"{ours:.3f}", f"{base:.3f}")
    table.add_row("saved by the prior", f"{m['bits_saved']:.0%}", "")
    Console().print(table)


@cli.command("dream")
@click.argument("run", type=click.Path(path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(path_type=str), help="OUT.gif, OUT.mp4, OUT.png (contact sheet) or a folder.")
@click.option("--mode", type=click.Choice(["sample", "interpolate", "walk", "grid", "motion"]), default="walk", show_default=True)
@click.option("--frames", type=int, default=120, show_default=True, help="Frames to make (grid: the largest square that fits).")
@click.option("--fps", type=float, default=30, show_default=True)
@click.option("--scale", type=int, default=4, show_default=True, help="Upscaling factor.")
@click.option("--smooth", is_flag=True, help="Bicubic upscaling instead of crisp nearest-neighbour pixels.")
@click.option("--seed", type=int, default=None, help="Same seed, same dream.")
@click.option("--start", "--a", "a", default=None, metavar="REF",
              help="Start frame: SKETCH:FRAME, an image file, or 'sample' (motion); the first end (interpolate).")
@click.option("--b", "b", default=None, metavar="REF", help="End frame (interpolate).")
@click.option("--key", "keys", multiple=True, metavar="REF", help="Walk keyframe or grid corner (repeatable).")
@click.option("--source", type=click.Choice(["dataset", "sample"]), default="dataset", show_default=True, help="Where walk keyframes come from when no --key is given.")
@click.option("--method", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True)
@click.option("--snap", is_flag=True, help="Snap every interpolated latent to the codebook.")
@click.option("--sampler", type=click.Choice(["auto", "prior", "unigram"]), default="auto", show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=None, help="Sample only among the k likeliest codes.")
@click.option("--steps", type=int, default=None,
              help="Prior samples: decoding steps (default: the prior's choice; more are slower and sharper).")
@click.option("--like", default=None, metavar="SKETCH", help="Sample: frames of this sketch (default: any). Motion: steer the style toward it (default: the start's).")
@click.option("--morph-to", default=None, metavar="SKETCH", help="Motion: move the steering to this sketch over the rollout.")
@click.option("--guidance", type=float, default=1.0, show_default=True, help="Motion: classifier-free guidance (> 1 steers harder).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
def dream_command(run, out, mode, frames, fps, scale, smooth, seed, a, b, keys, source, method, snap, sampler,
                  temperature, top_k, steps, like, morph_to, guidance, device) -> None:
    """Generate frames from a run (sample, interpolate, walk, grid, motion) and write a GIF, MP4 or PNGs."""
    from vqart.generate import dream

    path = dream(
        run, out, mode=mode, frames=frames, fps=fps, scale=scale, smooth=smooth, seed=seed, a=a, b=b, keys=keys,
        source=source, method=method, snap=snap, sampler=sampler, temperature=temperature, top_k=top_k,
        like=like, morph_to=morph_to, guidance=guidance, steps=steps, device=device,
    )
    files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    click.echo(f"{path} ({size / 1024:.1f} KiB{f', {len(files)} files' if path.is_dir() else ''})")


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
