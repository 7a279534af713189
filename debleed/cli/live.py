"""``debleed live``: run a gig config as a JACK insert (or on a PortAudio device) until stopped."""

from __future__ import annotations

import os
import signal
import sys
import time

from debleed.errors import DebleedError


def _startup_line(eng, cfg) -> str:
    """One readable line, whatever the number of channels: counts, not every port name."""
    lat = eng.channel_latency_samples()
    sr = eng.sample_rate or 48000
    groups = {}
    for v in lat:
        groups[v] = groups.get(v, 0) + 1
    if len(groups) > 3:
        latency = f"{min(lat)} to {max(lat)} smp ({1000.0 * min(lat) / sr:.2f} to {1000.0 * max(lat) / sr:.2f} ms)"
    else:
        latency = ", ".join(f"{v} smp ({1000.0 * v / sr:.2f} ms) x{k}" if len(groups) > 1 else
                            f"{v} smp ({1000.0 * v / sr:.2f} ms)" for v, k in sorted(groups.items()))
    if eng.backend == "portaudio":
        where = f"on '{eng.client_name}'"
    else:
        where = f"as '{eng.client_name}'"
    n_in, n_ch = len(cfg.input_names), len(cfg.channel)
    midi = ", midi_in" if cfg.uses_midi else ""
    ports = f"{n_in} in, {n_ch} out{midi}"
    if n_in + n_ch <= 12 and eng.backend != "portaudio":
        ports += " (" + ", ".join(p.name for p in eng.inports + eng.outports) + ")"
    return (f"debleed: {eng.engine} engine running {where} at {eng.sample_rate} Hz, {eng.period_frames} frames; "
            f"{n_ch} channel(s), latency {latency}; ports: {ports}")


def _session(args):
    """``(config path, NSM client or None)``: under a session manager the gig file lives in the
    session folder (NSM_URL is set by the manager)."""
    url = os.environ.get("NSM_URL")
    if not url or args.no_nsm:
        if args.config is None:
            raise DebleedError("--config FILE is required (outside an NSM session)")
        return args.config, None
    from debleed.rt.control.nsm import NsmClient

    nsm = NsmClient(url, template=args.config)
    path = nsm.open()
    return path, nsm


def cmd_live(args) -> int:
    args.osc_port_given = args.osc_port is not None
    if args.osc_port is None:
        from debleed.rt.control.osc import DEFAULT_PORT

        args.osc_port = DEFAULT_PORT

    config_path, nsm = _session(args)
    try:
        return _run_live(args, config_path, nsm)
    except DebleedError as e:
        if nsm is not None:
            nsm.fail(str(e))
            nsm.close()
        raise


def _run_live(args, config_path, nsm) -> int:
    from debleed.rt.config import ClientConfig, load_config
    from debleed.rt.control import LiveControl

    import math

    if not (math.isfinite(args.duration) and args.duration >= 0):
        raise DebleedError(f"--duration must be a finite number of seconds >= 0 (0: until stopped), got {args.duration}")
    cfg = load_config(config_path)
    if args.name is not None:
        try:
            cfg.client = ClientConfig(name=args.name)
        except Exception as e:  # pydantic's error, named
            msg = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors()) if hasattr(e, "errors") else e
            raise DebleedError(f"--name {args.name!r} is not a usable JACK client name: {msg}") from None
    if nsm is not None:
        try:
            cfg.client = ClientConfig(name=nsm.client_name)
        except Exception as e:  # pydantic's error, named
            raise DebleedError(f"NSM client id {nsm.client_name!r} is not a usable JACK client name: {e}") from None
    if args.backend == "portaudio":
        from debleed.rt.portaudio import PortAudioEngine

        if args.engine == "cfunc":
            raise DebleedError("--engine cfunc needs --backend jack; PortAudio runs a Python callback")
        device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
        eng = PortAudioEngine(cfg, device=device, sample_rate=args.samplerate, period_frames=args.period,
                              midi_in=args.midi_in)
    else:
        from debleed.rt.engine import JackEngine

        eng = JackEngine(cfg, engine=args.engine or "cfunc", server_name=args.server)
    # The handler only sets a flag: taking a lock here (Event.set) can deadlock against the
    # main thread's own wait on the same lock, which the handler interrupts.
    stop = {"requested": False}

    def on_signal(signum, _frame):
        stop["requested"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    eng.start()
    control = LiveControl(eng, config_path, changes_log=args.changes_log)
    control.start_metering()
    osc = None
    try:
        if not args.no_osc:
            from debleed.rt.control.osc import OscServer

            try:
                osc = OscServer(control, host=args.osc_host, port=args.osc_port).start()
            except DebleedError as e:
                if args.osc_port_given:
                    raise
                print(f"debleed: warning: {e}; OSC is off (choose another --osc-port)", file=sys.stderr)
        if nsm is not None:
            nsm.on_save = control.save
            nsm.ready()
        print(_startup_line(eng, cfg) + (f"; OSC on {osc.host}:{osc.port}" if osc else ""), flush=True)
        if getattr(eng, "process_nice_error", None):
            print(f"debleed: warning: {eng.process_nice_error}", file=sys.stderr)
        t_end = time.monotonic() + args.duration if args.duration else float("inf")
        if args.tui:
            from debleed.rt.control.tui import run_tui

            run_tui(control, should_stop=lambda: (stop["requested"] or eng.stopped.is_set()
                                                  or time.monotonic() >= t_end))
        else:
            tty = sys.stdout.isatty() and not args.quiet
            next_status = 0.0
            while not stop["requested"] and not eng.stopped.is_set() and time.monotonic() < t_end:
                time.sleep(min(0.1, max(t_end - time.monotonic(), 0.0)))
                if tty and time.monotonic() >= next_status:
                    next_status = time.monotonic() + 0.25
                    print("\r" + eng.status_line(control.take_status_gr())[:200].ljust(120), end="", flush=True)
            if tty:
                print()
    finally:
        if osc is not None:
            osc.close()
        control.stop_metering()
        s = eng.stats()
        s["changes"] = list(control.changes)
        if args.stats_json:
            try:
                eng.write_stats(args.stats_json, s)
            except DebleedError as e:  # a full disk at exit must not skip stopping and saving
                print(f"debleed: error: cannot write the stats: {e}", file=sys.stderr)
        eng.stop()
        control.close()
        if args.save and control.changes:
            try:
                print(f"debleed: saved {len(control.changes)} change(s) into {control.save()}", flush=True)
            except DebleedError as e:
                print(f"debleed: error: cannot save: {e}", file=sys.stderr)
        if nsm is not None:
            nsm.close()
    if eng.shutdown_reason:
        if eng.backend == "jack":
            what = "JACK server went away" if eng.server_gone else "JACK changed under debleed"
        else:
            what = "audio device stopped"
        print(f"debleed: {what} ({eng.shutdown_reason}); stopped", file=sys.stderr)
        return 1
    if s.get("callback_errors"):
        print(f"debleed: warning: {s['callback_errors']} block(s) silenced: the process callback raised "
              f"({s['callback_error']})", file=sys.stderr)
    cb = s["callback_us"]
    print(f"debleed: stopped after {s['callbacks']} callbacks, {s['xruns']} xruns, callback p99.9 "
          f"{cb['p99.9']:.1f} us, max {cb['max']:.1f} us (deadline {s['deadline_us']:.0f} us)", flush=True)
    return 0


def register(sub) -> None:
    """Add ``live`` to the ``debleed`` subparsers."""
    live = sub.add_parser("live", help="run a gig config as a JACK insert until stopped (Ctrl-C)")
    live.add_argument("--config", default=None,
                      help="gig config, TOML (see configs/gigs/); under NSM, the template for a new session")
    live.add_argument("--backend", choices=("jack", "portaudio"), default="jack",
                      help="audio backend: a JACK client (default) or a PortAudio device")
    live.add_argument("--engine", choices=("cfunc", "python"), default=None,
                      help="JACK process callback: numba cfunc without the GIL (default) or Python")
    live.add_argument("--device", default=None,
                      help="PortAudio device, name substring or index (default: the default device)")
    live.add_argument("--samplerate", type=int, default=48000, metavar="HZ",
                      help="PortAudio sample rate, Hz (default 48000; JACK uses the server's)")
    live.add_argument("--period", type=int, default=128, metavar="FRAMES",
                      help="PortAudio frames per callback (default 128; JACK uses the server's)")
    live.add_argument("--midi-in", default=None, metavar="NAME",
                      help="PortAudio backend: MIDI input port name substring for midi: keys (python-rtmidi)")
    live.add_argument("--stats-json", metavar="FILE", help="write counters and callback times (us) here at exit")
    live.add_argument("--server", default=None, help="JACK server name (default: $JACK_DEFAULT_SERVER)")
    live.add_argument("--name", default=None, metavar="NAME",
                      help="JACK client name (default: [client] name of the gig file, else debleed); a name "
                           "in use on the server is refused")
    live.add_argument("--duration", type=float, default=0.0, metavar="S",
                      help="stop after S seconds (default 0: run until Ctrl-C/SIGTERM)")
    live.add_argument("--quiet", action="store_true", help="no live status line")
    live.add_argument("--tui", action="store_true",
                      help="terminal UI: meters per channel, change parameters with the keys, bypass, save")
    live.add_argument("--osc-port", type=int, default=None, metavar="PORT",
                      help="OSC control port, UDP (default 9000; see README, OSC)")
    live.add_argument("--osc-host", default="127.0.0.1", metavar="ADDR",
                      help="address the OSC server binds (default 127.0.0.1: this machine only)")
    live.add_argument("--no-osc", action="store_true", help="no OSC server")
    live.add_argument("--changes-log", metavar="FILE",
                      help="write every parameter change, with the frame it took effect at, to FILE "
                           "(JSON lines; replay with `debleed render --changes FILE`)")
    live.add_argument("--save", action="store_true",
                      help="on exit, write the parameters changed while running into the gig file "
                           "(its comments and layout kept)")
    live.add_argument("--no-nsm", action="store_true", help="ignore NSM_URL (do not join a session manager)")
    live.set_defaults(func=cmd_live)
