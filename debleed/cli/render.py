"""``debleed render``: the offline render of a gig over recorded takes (:mod:`debleed.offline.render`),
exactly as ``debleed live`` would run it at a JACK period of ``--block`` frames."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from debleed.cli.clean_stems import _table

RENDER_HELP = """\
Run a gig config over a recorded multitrack (offline render), exactly as `debleed live`
would at a JACK period of --block frames: the outputs equal a live run bit for bit.

Reads INPUT_DIR/<input name>.wav (mono, same rate and length) for each [inputs] entry of the
config and MIDI keys from --midi (standard MIDI file, tempo changes honoured). Writes to
OUTPUT_DIR: <channel>.wav (32-bit float WAV, the chain's samples unchanged), <channel>.png
(input, output and gain reduction over time) and report.json (per channel: gain reduction,
latency, parameters, block size). Like a live run, each output is delayed by its channel's
lookahead (reported as latency_samples) and as long as the input.
"""


def cmd_render(args) -> int:
    from debleed.offline.render import render_gig

    t0 = time.perf_counter()
    rep = render_gig(args.config, args.input_dir, args.output_dir, block=args.block, midi_path=args.midi,
                     plots=not args.no_plots, changes_path=args.changes, changes_origin=args.changes_origin)
    wall = time.perf_counter() - t0
    rows = [["channel", "mode", "key", "GR median", "GR max", "ducking/closed", "latency"]]
    for name, c in rep["channels"].items():
        g = c["gain_reduction_db"]
        rows.append([name, c["mode"], c["key"], f"{g['median_active_db']:.1f} dB", f"{g['max_db']:.1f} dB",
                     f"{g['active_percent']:.1f} %", f"{c['latency_samples']} smp"])
    print(_table(rows, right={3, 4, 5, 6}))
    midi = rep["midi"]
    chg = rep.get("changes")
    if chg and chg["moved_to_block_boundary"]:
        print(f"debleed: warning: {chg['moved_to_block_boundary']} of {chg['applied']} change(s) were logged inside "
              f"a block of {rep['block']} frames and took effect at the next block boundary (render with the live "
              "run's period to replay it exactly)", file=sys.stderr)
    if midi and (midi["dropped"] or midi["after_end"]):
        print(f"debleed: warning: MIDI: {midi['dropped']} event(s) over {midi['events']} dropped (too many in one "
              f"block), {midi['after_end']} after the end of the audio", file=sys.stderr)
    print(f"render: {rep['seconds']:.1f} s at {rep['sample_rate']} Hz, block {rep['block']}, in {wall:.2f} s; "
          f"outputs, plots and report.json in {args.output_dir}/")
    return 0


def register(subparsers) -> None:
    """Add ``render`` to the ``debleed`` command line."""
    import argparse

    r = subparsers.add_parser("render", help="run a gig config over recorded multitracks (offline render)",
                              description=RENDER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--config", required=True, help="gig config, TOML")
    r.add_argument("--input-dir", required=True, metavar="DIR", help="folder with <input name>.wav per [inputs] entry")
    r.add_argument("--output-dir", required=True, metavar="DIR", help="where outputs, plots and report.json go")
    r.add_argument("--block", type=int, default=128, metavar="FRAMES",
                   help="frames per block, like a JACK period, 1-16384 (default 128)")
    r.add_argument("--midi", type=Path, metavar="FILE", help="standard MIDI file with the notes of MIDI keys")
    r.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    r.add_argument("--changes", type=Path, metavar="LOG",
                   help="replay the parameter changes of a live run (the JSON-lines log of `debleed live "
                        "--changes-log`): each takes effect at the block boundary it did live")
    r.add_argument("--changes-origin", type=int, default=0, metavar="FRAME",
                   help="the log's frame that is the takes' first sample (default 0: the takes start when "
                        "debleed started)")
    r.set_defaults(func=cmd_render)
