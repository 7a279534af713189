"""Section 7, control: the callback's tail with live parameter changes against the same run without.

One private ``jackd --no-realtime -d dummy`` per period; ``debleed live`` (cfunc engine) runs the
8-channel bench gig (:func:`debleed.bench.common.gig_config`) fed by the looping real-kit player,
once quietly and once while an OSC client sends 100 parameter changes per second (threshold,
range, dry/wet, release and bypass, round robin over the channels; every one waits for the
audio thread's table swap, as a live change does). Runs alternate (quiet, changes, quiet, ...)
so that the machine's drift hits both alike. Reported: callback p50/p99.9/max from the engine's
histogram, xruns, late cycles jackd's log blames on debleed, and how many changes took effect
(from the change log in ``--stats-json``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from debleed.bench.common import (GIG_INPUTS, fmt, fmt_mm, SAMPLE_RATE, SETTLE_S, Context, LoopPlayer, Processes, gig_config,
                                  live_stats, parse_jackd_log, stat)
from debleed.testing import JACK_CLIENT_TIMEOUT_MS, DummyServer

CHANNELS = 8
RATE_HZ = 100.0
PERIODS = (64, 128)
#: (parameter, values it alternates between)
CHANGES = (("threshold_db", (-30.0, -24.0)), ("range_db", (-60.0, -40.0)), ("dry_wet", (1.0, 0.9)),
           ("release_ms", (60.0, 80.0)), ("bypass", (False, True)))


def steps(ctx: Context) -> int:
    return len(_periods(ctx)) * ctx.options.repeats


def _periods(ctx: Context) -> tuple:
    return ctx.options.control_periods


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sender(port: int, channels: list[str], stop: threading.Event, sent: list) -> None:
    """Send ``RATE_HZ`` changes per second until ``stop``; each waits for its reply."""
    from pythonosc import osc_message
    from pythonosc.osc_message_builder import OscMessageBuilder

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    k = 0
    t_next = time.monotonic()
    try:
        while not stop.is_set():
            name, values = CHANGES[k % len(CHANGES)]
            ch = channels[(k // len(CHANGES)) % len(channels)]
            b = OscMessageBuilder(address=f"/debleed/{ch}/{name}")
            b.add_arg(values[(k // (len(CHANGES) * len(channels))) % 2])
            sock.sendto(b.build().dgram, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError, socket.timeout):
                reply = osc_message.OscMessage(sock.recvfrom(65536)[0])
                sent.append(reply.address != "/debleed/error")
            k += 1
            t_next += 1.0 / RATE_HZ
            stop.wait(max(0.0, t_next - time.monotonic()))
    finally:
        sock.close()


def _window(srv, player, text, work, tag, procs, seconds, changes: bool, engine: str = "cfunc") -> dict:
    from debleed.testing import start_live, stop_live

    cfg = work / f"{tag}.toml"
    cfg.write_text(text)
    stats_path = work / f"{tag}.stats.json"
    with contextlib.suppress(FileNotFoundError):
        stats_path.unlink()
    port = _free_port()
    log_off = len(srv.log())
    proc = procs.add(start_live(cfg, srv.env, engine=engine, stats_json=stats_path,
                                extra_args=["--osc-port", str(port)]))
    stop, sent = threading.Event(), []
    th = None
    try:
        player.connect("debleed", GIG_INPUTS, midi="midi:" in text)
        time.sleep(SETTLE_S)
        if changes:
            names = [line.split('"')[1] for line in text.splitlines() if line.startswith("name = ") and "ch" in line]
            th = threading.Thread(target=_sender, args=(port, names, stop, sent), daemon=True)
            th.start()
        time.sleep(seconds)
    finally:
        stop.set()
        if th is not None:
            th.join(timeout=5.0)
        log = stop_live(proc)
    st = live_stats(log, stats_path)
    jl = parse_jackd_log(srv.log()[log_off:])
    return {"stats": st, "blamed_debleed": jl["blamed"].get("debleed", 0), "sent": len(sent),
            "accepted": int(sum(sent)), "applied": len(st.get("changes", []))}


def run(ctx: Context, progress) -> dict:
    opt = ctx.options
    mt = ctx.multitrack()
    work = ctx.workdir()
    text = gig_config(CHANNELS)
    rows = []
    for period in _periods(ctx):
        procs = Processes()
        runs = {"quiet": [], "changes": []}
        with DummyServer(client_timeout_ms=JACK_CLIENT_TIMEOUT_MS, sample_rate=SAMPLE_RATE, period_frames=period) as srv:
            player = LoopPlayer(srv.name, ctx.tracks(), mt.midi)
            try:
                for r in range(opt.repeats):
                    for cond in ("quiet", "changes"):
                        runs[cond].append(_window(srv, player, text, work, f"ctl-{period}-{cond}-{r}", procs,
                                                  opt.run_s, cond == "changes", opt.live_engine))
                    progress(f"control: {period} frames, run {r + 1}")
            finally:
                player.close()
                procs.kill_all()
        row = {"period": period, "channels": CHANNELS, "deadline_us": 1e6 * period / SAMPLE_RATE}
        for cond, rr in runs.items():
            row[cond] = {
                "callback_us": {p: stat([x["stats"]["callback_us"][p] for x in rr]) for p in ("p50", "p99.9", "max")},
                "xruns": stat([x["stats"]["xruns"] for x in rr]),
                "blamed_debleed": stat([x["blamed_debleed"] for x in rr]),
                "changes_per_s": stat([x["applied"] / opt.run_s for x in rr]),
                "changes_sent": int(sum(x["sent"] for x in rr)), "changes_applied": int(sum(x["applied"] for x in rr)),
            }
        rows.append(row)
    return {"rate_hz": RATE_HZ, "run_s": opt.run_s, "repeats": opt.repeats, "runs": rows,
            "notes": ["changes: an OSC client on loopback sends threshold/range/dry-wet/release/bypass changes "
                      f"round robin over the {CHANNELS} channels at {RATE_HZ:g} per second; each waits for "
                      "the audio thread's table swap before the reply",
                      f"quiet and changes runs alternate, each a fresh debleed live process ({opt.live_engine} "
                      "engine)"]}


def markdown_lines(sec: dict) -> list[str]:
    """The report's table for this section."""

    L = ["## 7. Live parameter changes", "",
         f"{sec['rate_hz']:g} changes per second over OSC against the same gig without changes "
         f"({sec['run_s']:g} s runs, {sec['repeats']} repeats each):", "",
         "| period | condition | changes applied / s | callback p50 / p99.9 / max us | xruns | blamed on debleed |",
         "|---:|---|---:|---|---:|---:|"]
    for r in sec["runs"]:
        for cond in ("quiet", "changes"):
            c = r[cond]
            cb = c["callback_us"]
            L.append(f"| {r['period']} | {cond} | {fmt_mm(c['changes_per_s'], 0)} | {fmt(cb['p50']['median'])} / "
                     f"{fmt_mm(cb['p99.9'])} / {fmt_mm(cb['max'])} | {fmt_mm(c['xruns'], 0)} | {fmt_mm(c['blamed_debleed'], 0)} |")
    return L + [""] + [f"- {n}" for n in sec["notes"]] + [""]
