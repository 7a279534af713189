"""``debleed soundcheck``: learn the kit, the room and the mics from takes of each piece alone.

The work is :func:`debleed.soundcheck.run_soundcheck`; this module holds the command
line and ``--record`` (record every ``[inputs]`` port's source from a running JACK server first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from debleed.errors import DebleedError

#: Default of --predict-grooves (``debleed.soundcheck.predict.PREDICT_GROOVES``; not imported here,
#: so that ``debleed --help`` does not load the soundcheck).
PREDICT_GROOVES = 8

HELP = """\
Learn this kit, this room and these mics before the show. Record each piece played alone
(kick, snare, toms, hi-hat, cymbals; any order, pauses between), every mic open, one mono WAV
per [inputs] entry named <input>.wav in --takes (the files `debleed render` reads; or
--record SECONDS records them from the running JACK server). The soundcheck finds every hit
and its piece, measures the bleed matrix and the trigger/MIDI-to-mic delays, sets each gated
channel's lookahead, threshold, hysteresis, hold, release and range (fitted through the live
chain on grooves mixed from the hits), fine-tunes the snare denoiser of denoised channels on
the kit's own hits (kept only when it beats the shipped model on held-out hits) and writes
OUT/gig.toml (the config with the new values, one comment per value), OUT/<channel>.onnx,
OUT/report.md, OUT/report.json and PNGs. The fit sees half of each piece's hits; the report
predicts the show from the other half: the gig rendered on show grooves at the measured balance
and at +10 dB of bleed, SI-SDR and bleed reduction as median and 10-90 % range.
"""


def write_midi_file(path: Path, events, sample_rate: int) -> None:
    """Write MIDI events ``(frame, bytes)`` as a standard MIDI file whose ticks are samples.

    One tick is one sample (``ticks_per_beat = sample_rate / 2`` at 120 BPM, for rates up to
    65534 Hz; otherwise ticks of two samples), so the frames read back exactly
    (:func:`debleed.offline.render.midi_file_events`). Written atomically.
    """
    import mido

    from debleed.fileio import atomic_path

    step = 1 if sample_rate // 2 <= 32767 else 2
    tpb = sample_rate // (2 * step)
    mid = mido.MidiFile(ticks_per_beat=int(tpb))
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    last = 0
    for frame, data in sorted(events, key=lambda e: e[0]):
        try:
            msg = mido.Message.from_bytes(list(data))
        except (ValueError, TypeError):
            continue  # not a channel message (a clock, sysex fragment): not a key
        t = int(frame) // step
        tr.append(msg.copy(time=t - last))
        last = t
    with atomic_path(path) as tmp:
        mid.save(str(tmp))


def record_takes(cfg, takes_dir: Path, seconds: float, server: str | None = None) -> None:
    """Record ``seconds`` of every ``[inputs]`` entry's first source port into ``<input>.wav``,
    and the ``[midi] connect`` ports' MIDI into ``notes.mid`` (sample-exact).

    Raises
    ------
    DebleedError
        An input with no source port in the config, an existing take (never overwritten), no
        JACK server.
    """
    import jack

    from debleed.offline.audiofile import write_audio
    from debleed.rt.player import play_record

    if not seconds > 0:
        raise DebleedError(f"--record must be > 0 seconds, got {seconds!r}")
    bare = [n for n, ports in cfg.inputs.items() if not ports]
    if bare:
        raise DebleedError(f"--record needs a source port for every input; none in the config for {', '.join(bare)} "
                           "(e.g. kick = [\"system:capture_1\"])")
    takes_dir = Path(takes_dir)
    exist = [str(takes_dir / f"{n}.wav") for n in cfg.inputs if (takes_dir / f"{n}.wav").exists()]
    if cfg.midi.connect and (takes_dir / "notes.mid").exists():
        exist.append(str(takes_dir / "notes.mid"))
    if exist:
        raise DebleedError(f"--record would overwrite {', '.join(exist)}: give an empty --takes folder")
    try:
        probe = jack.Client("debleed-soundcheck-probe", no_start_server=True, servername=server)
    except jack.JackOpenError:
        raise DebleedError("--record needs a running JACK server (start jackd first)") from None
    sr = probe.samplerate
    probe.close()
    print(f"soundcheck: recording {seconds:g} s of {len(cfg.inputs)} inputs at {sr} Hz: play each piece alone now",
          flush=True)
    info: dict = {}
    rec = play_record({}, [ports[0] for ports in cfg.inputs.values()], server_name=server, freewheel=False,
                      tail_frames=int(round(seconds * sr)), timeout_s=seconds + 60.0, name="debleed-soundcheck",
                      info=info, midi_capture=list(cfg.midi.connect) or None)
    takes_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(cfg.inputs):
        write_audio(takes_dir / f"{name}.wav", np.asarray(rec[i], np.float32)[None], sr, subtype="FLOAT")
    if cfg.midi.connect:
        write_midi_file(takes_dir / "notes.mid", info.get("midi", []), sr)
        print(f"soundcheck: {len(info.get('midi', []))} MIDI events recorded into {takes_dir / 'notes.mid'}")


def cmd_soundcheck(args) -> int:
    from debleed.soundcheck import check_options, run_soundcheck
    from debleed.rt.config import load_config

    check_options(args.minutes, args.device, args.block, args.predict_grooves)
    if args.record is not None:
        cfg = load_config(args.config)
        record_takes(cfg, Path(args.takes), args.record, server=args.server)
        if args.midi is None and cfg.midi.connect:
            args.midi = str(Path(args.takes) / "notes.mid")  # what --record just captured
    rep = run_soundcheck(args.config, args.takes, args.out, midi_path=args.midi, minutes=args.minutes,
                         device=args.device, block=args.block, progress=not args.quiet,
                         predict_grooves=args.predict_grooves)
    print(f"soundcheck: wrote {rep['gig']} and {Path(args.out) / 'report.md'}")
    return 0


def register(subparsers) -> None:
    """Add ``soundcheck`` to the ``debleed`` command line."""
    import argparse

    p = subparsers.add_parser("soundcheck", help="learn the kit, room and mics from takes of each piece alone",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="gig config, TOML")
    p.add_argument("--takes", required=True, metavar="DIR", help="folder of <input>.wav takes (mono, one rate and length)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (not inside --takes)")
    p.add_argument("--midi", default=None, metavar="FILE", help="standard MIDI file of the takes (for midi: keys)")
    p.add_argument("--record", type=float, default=None, metavar="SECONDS",
                   help="first record SECONDS of every input from the running JACK server into --takes")
    p.add_argument("--server", default=None, help="JACK server name for --record")
    p.add_argument("--minutes", type=float, default=5.0, metavar="M",
                   help="denoiser fine-tuning time, minutes (default 5)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device for fine-tuning (default cpu)")
    p.add_argument("--block", type=int, default=128, metavar="FRAMES",
                   help="the JACK period the gig will run at: the show prediction renders at it (a denoised "
                        "channel's delay is the model's 63 samples whatever the period; default 128)")
    p.add_argument("--predict-grooves", type=int, default=PREDICT_GROOVES, metavar="N",
                   help=f"grooves per bleed balance for the show prediction (default {PREDICT_GROOVES})")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_soundcheck)
