"""``debleed bench``: run the benchmark sections and write the report."""

from __future__ import annotations

import datetime
import importlib
import shlex
import sys
import time
import traceback
from pathlib import Path

from tqdm import tqdm

from debleed.bench.common import CHANNELS, ENGINES, PERIODS, SECTIONS, Context, Options

#: ``--quick`` callback grid (the full one: PERIODS x CHANNELS).
QUICK_PERIODS = (64, 128)
QUICK_CHANNELS = (8,)
from debleed.errors import ParameterError


def _ints(text: str, what: str, allowed=None) -> tuple:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ParameterError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ParameterError(f"{what} must be positive integers, got {text!r}")
    if allowed and any(v not in allowed for v in vals):
        raise ParameterError(f"{what} must be among {', '.join(map(str, allowed))}, got {text!r}")
    return vals


def options_from_args(args) -> Options:
    """Validate the command line into :class:`Options` (``--quick`` sets shorter defaults)."""
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip()) if args.sections else SECTIONS
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ParameterError(f"--sections: unknown section(s) {', '.join(bad)} (allowed: {', '.join(SECTIONS)})")
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if repeats < 2:
        raise ParameterError(f"--repeats must be >= 2 (results are medians over repeats), got {repeats}")
    soak_s = args.soak_s if args.soak_s is not None else (20.0 if args.quick else 600.0)
    run_s = args.run_s if args.run_s is not None else (2.0 if args.quick else 5.0)
    if soak_s <= 0 or run_s <= 0:
        raise ParameterError(f"--soak-s and --run-s must be > 0 s, got {soak_s} and {run_s}")
    soak_modes = tuple(m.strip() for m in (args.soak_modes or "nort,rt").split(",") if m.strip())
    if not soak_modes or any(m not in ("nort", "rt") for m in soak_modes):
        raise ParameterError(f"--soak-modes must be among nort,rt, got {args.soak_modes!r}")
    engines = tuple(args.engines.split(",")) if args.engines else ENGINES
    if any(e not in ENGINES for e in engines):
        raise ParameterError(f"--engines must be among {', '.join(ENGINES)}, got {args.engines!r}")
    return Options(
        out=Path(args.out), quick=args.quick, repeats=repeats, sections=sections, soak_s=soak_s, run_s=run_s,
        periods=_ints(args.periods, "--periods") if args.periods else (QUICK_PERIODS if args.quick else PERIODS),
        channels=_ints(args.channels, "--channels") if args.channels else (QUICK_CHANNELS if args.quick else CHANNELS),
        engines=engines,
        peer_periods=_ints(args.peer_periods, "--peer-periods") if args.peer_periods else
        ((128,) if args.quick else (64, 128)),
        peer_channels=_ints(args.peer_channels, "--peer-channels") if args.peer_channels else
        ((8,) if args.quick else (1, 8)),
        kernel_samples=(1 << 16) if args.quick else (1 << 18),
        soak_modes=soak_modes,
    )


def run_bench(opt: Options, argv: list[str] | None = None) -> dict:
    """Run the chosen sections, write the report into ``opt.out``; returns the report dict.

    A section that fails is recorded with its error (the others still run); every jackd,
    ``debleed live`` and LSP process a section starts is stopped by that section.
    """
    from debleed.bench import report as rep

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    t0 = time.monotonic()
    ctx = Context(opt)
    mods = {name: importlib.import_module(f"debleed.bench.{name}") for name in opt.sections}
    total = sum(m.steps(ctx) for m in mods.values())
    sections = {}
    with tqdm(total=total, desc="bench", unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
        def progress(desc: str) -> None:
            bar.set_postfix_str(desc, refresh=False)
            bar.update(1)

        for name, mod in mods.items():
            bar.set_description(name)
            t, n_before, n_steps = time.monotonic(), bar.n, mod.steps(ctx)
            try:
                res = mod.run(ctx, progress)
            except Exception as e:  # noqa: BLE001 - one failed section must not lose the others
                res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
                print(f"debleed bench: section {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            bar.update(max(0, n_before + n_steps - bar.n))  # a skipped or failed section still completes
            res["machine"] = ctx.machine
            res["section_wall_s"] = time.monotonic() - t
            sections[name] = res
    report = {
        "command": "debleed bench " + " ".join(shlex.quote(a) for a in (argv or [])),
        "started": started, "wall_s": time.monotonic() - t0, "machine": ctx.machine,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opt).items()},
        "sections": sections,
    }
    rep.write(report, Path(opt.out))
    return report


def cmd_bench(args) -> int:
    from debleed.rt.server import sigterm_raises

    opt = options_from_args(args)
    with sigterm_raises():  # SIGTERM stops every server and process the sections started, as Ctrl-C does
        report = run_bench(opt, sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else [])
    failed = [k for k, v in report["sections"].items() if "error" in v]
    print(f"debleed bench: report written to {opt.out}/report.json, report.md and "
          f"{len(report['plots'])} plots ({report['wall_s']:.0f} s)")
    if failed:
        print(f"debleed bench: section(s) failed: {', '.join(failed)} (see report.json)", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    """Add ``debleed bench`` to the CLI."""
    p = subparsers.add_parser(
        "bench", help="latency and throughput benchmarks on a private dummy jackd; writes a report",
        description="Measure kernels, process-callback time against the deadline, DSP load against LSP's "
                    "sidechain gate, latency truth, the denoiser and a soak; write report.json, report.md "
                    "and PNG plots. Results are medians over repeated runs with min and max.")
    p.add_argument("--out", default="bench-report", help="report folder (default bench-report)")
    p.add_argument("--quick", action="store_true",
                   help="3 repeats, 2 s callback runs at 64/128 frames and 8 channels, peer at 128 frames and 8 "
                        "channels, control at 128 frames, 20 s soaks (default: 5 repeats, 5 s runs, the full grids, 600 s soaks); under 8 minutes")
    p.add_argument("--repeats", type=int, default=None, metavar="N", help="repeated runs per measurement, >= 2")
    p.add_argument("--sections", default=None, metavar="LIST",
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--soak-s", type=float, default=None, metavar="S", help="soak duration, s (per mode)")
    p.add_argument("--soak-modes", default=None, metavar="LIST",
                   help="soak runs: nort (jackd --no-realtime), rt (jackd -R); default nort,rt")
    p.add_argument("--run-s", type=float, default=None, metavar="S",
                   help="audio played per callback/peer run, s")
    p.add_argument("--periods", default=None, metavar="LIST",
                   help=f"callback section periods, frames (default {','.join(map(str, PERIODS))})")
    p.add_argument("--channels", default=None, metavar="LIST",
                   help=f"callback section channel counts (default {','.join(map(str, CHANNELS))})")
    p.add_argument("--engines", default=None, metavar="LIST", help="callback section engines (default cfunc,python)")
    p.add_argument("--peer-periods", default=None, metavar="LIST", help="peer section periods, frames (default 64,128)")
    p.add_argument("--peer-channels", default=None, metavar="LIST", help="peer section channel counts (default 1,8)")
    p.set_defaults(func=cmd_bench)
