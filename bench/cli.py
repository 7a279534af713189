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
QUICK_PERIODS = (128,)
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


#: ``--smoke``: the smallest grid of every section (for tests of the report's structure).
SMOKE = dict(repeats=2, run_s=0.5, soak_s=1.0, periods=(64,), channels=(1,), peer_periods=(128,), peer_channels=(1,),
             kernel_samples=4096, kernel_blocks=(64, 128), offline_s=1.0, rt_periods=(128,), denoiser_blocks=(64,),
             denoiser_n_blocks=50, live_hogs=("no_hog",), soak_modes=("nort",), denoiser_rates=(48000,),
             control_periods=(128,), live_engine="python", engines=("python",))
#: ``--quick``: fewer repeats, shorter runs, one point of each grid where a section has several.
QUICK = dict(repeats=2, run_s=1.0, soak_s=5.0, periods=QUICK_PERIODS, channels=QUICK_CHANNELS, peer_periods=(128,),
             peer_channels=(8,), kernel_samples=1 << 16, offline_s=10.0, denoiser_n_blocks=300,
             live_hogs=("hog",), control_periods=(128,), soak_modes=("nort",), denoiser_rates=(48000,),
             denoiser_blocks=(64, 128))


def options_from_args(args) -> Options:
    """Validate the command line into :class:`Options` (``--quick`` and ``--smoke`` set smaller
    defaults; an explicit flag wins over both)."""
    if args.quick and getattr(args, "smoke", False):
        raise ParameterError("--quick and --smoke are exclusive (--smoke is the smaller of the two)")
    base = SMOKE if getattr(args, "smoke", False) else QUICK if args.quick else {}
    full = Options(out=Path(args.out))
    d = {k: base.get(k, getattr(full, k)) for k in vars(full) if k != "out"}
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip()) if args.sections else SECTIONS
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ParameterError(f"--sections: unknown section(s) {', '.join(bad)} (allowed: {', '.join(SECTIONS)})")
    repeats = args.repeats if args.repeats is not None else d["repeats"]
    if repeats < 2:
        raise ParameterError(f"--repeats must be >= 2 (results are medians over repeats), got {repeats}")
    soak_s = args.soak_s if args.soak_s is not None else d["soak_s"]
    run_s = args.run_s if args.run_s is not None else d["run_s"]
    if not (soak_s > 0 and run_s > 0):  # NaN is refused too
        raise ParameterError(f"--soak-s and --run-s must be > 0 s, got {soak_s} and {run_s}")
    soak_modes = (tuple(m.strip() for m in args.soak_modes.split(",") if m.strip()) if args.soak_modes
                  else d["soak_modes"])
    if not soak_modes or any(m not in ("nort", "rt") for m in soak_modes):
        raise ParameterError(f"--soak-modes must be among nort,rt, got {args.soak_modes!r}")
    engines = tuple(args.engines.split(",")) if args.engines else base.get("engines", ENGINES)
    if any(e not in ENGINES for e in engines):
        raise ParameterError(f"--engines must be among {', '.join(ENGINES)}, got {args.engines!r}")
    d.update(
        quick=args.quick, smoke=getattr(args, "smoke", False), repeats=repeats, sections=sections, soak_s=soak_s,
        run_s=run_s, engines=engines, soak_modes=soak_modes,
        periods=_ints(args.periods, "--periods") if args.periods else d["periods"],
        channels=_ints(args.channels, "--channels") if args.channels else d["channels"],
        peer_periods=_ints(args.peer_periods, "--peer-periods") if args.peer_periods else d["peer_periods"],
        peer_channels=_ints(args.peer_channels, "--peer-channels") if args.peer_channels else d["peer_channels"],
    )
    return Options(out=Path(args.out), **d)


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
                   help="3 repeats, 1 s callback runs at 64/128 frames and 8 channels, peer at 128 frames and 8 "
                        "channels, control at 128 frames, the denoiser's live runs with a CPU hog and one worker mode "
                        "only, 5 s soaks (default: 5 repeats, 5 s runs, the full grids, 600 s soaks); about 5 "
                        "minutes on 2 cores")
    p.add_argument("--smoke", action="store_true",
                   help="the smallest grid of every section (2 repeats, 0.5 s runs, one period, one channel, 1 s "
                        "soak without -R): checks that everything runs and the report is whole, in about a "
                        "minute; its numbers are not worth reading")
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
