"""``debleed demo``: a real-drum multitrack with bleed through ``debleed live`` (:mod:`debleed.demo`)."""

from __future__ import annotations


def cmd_demo(args) -> int:
    from debleed.demo import run_demo

    return run_demo(out_dir=args.out, seconds=args.seconds, engine=args.engine, period_frames=args.period,
                    freewheel=args.freewheel)


def register(sub) -> None:
    """Add ``demo`` to the ``debleed`` subparsers."""
    demo = sub.add_parser("demo", help="render a real-drum multitrack with bleed and run it through debleed live")
    demo.add_argument("--out", default="demo-out", help="folder for inputs, outputs and report (default demo-out)")
    demo.add_argument("--seconds", type=float, default=10.0, help="length of the groove, s (default 10)")
    demo.add_argument("--engine", choices=("cfunc", "python"), default="cfunc")
    demo.add_argument("--period", type=int, default=128, help="JACK period of the dummy server, frames (default 128)")
    demo.add_argument("--freewheel", action="store_true",
                      help="run the server in freewheel mode: as fast as possible and deterministic "
                           "(callback times then say little about real time)")
    demo.set_defaults(func=cmd_demo)
