"""The ``debleed`` command line: one module per command (:data:`COMMAND_MODULES`), each with
``register(subparsers)`` adding its parser with ``set_defaults(func=...)``; ``func(args)``
returns the exit status."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from debleed import __version__
from debleed.errors import DebleedError


#: Modules that add subcommands: each has ``register(subparsers)`` adding its parsers with
#: ``set_defaults(func=...)``; ``func(args)`` returns the exit code.
COMMAND_MODULES = (
    "debleed.cli.live", "debleed.cli.ports", "debleed.cli.demo", "debleed.cli.devices",  # devices, midi-ports
    "debleed.cli.clean_stems", "debleed.cli.render", "debleed.cli.soundcheck",
    "debleed.cli.denoise", "debleed.cli.eval", "debleed.cli.train",
)
#: ``debleed bench`` lives in ``bench/``, which the application never imports: found at run time.
BENCH_MODULE = "debleed.bench.cli"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="debleed", description="Real-time drum-mic bleed processor for JACK.")
    p.add_argument("--version", action="version", version=f"debleed {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    if importlib.util.find_spec(BENCH_MODULE) is not None:  # a wheel built without bench/ has no bench command
        importlib.import_module(BENCH_MODULE).register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DebleedError as e:
        print(f"debleed: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 2)
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM where a command turns it into one)
        print(f"\ndebleed: {args.command}: interrupted; outputs written completely are kept, none is half "
              "written", file=sys.stderr)
        return 130
    except OSError as e:  # a file error no command caught itself: one line, the path and the cause
        from debleed.fileio import os_error_text

        print(f"debleed: error: {os_error_text(e)}", file=sys.stderr)
        return 1

