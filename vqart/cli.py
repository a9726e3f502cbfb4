"""The `vqart` command: each subcommand parses its options and calls one library function."""

from __future__ import annotations

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


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
