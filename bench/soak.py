"""Section 6, soak: ``debleed live`` for a long run at 64 frames, 8 channels, the full chain.

The generated gig (every key kind twice: piezo trigger, MIDI, own mic, band-passed mic key;
lookahead on the trigger and MIDI channels; the denoiser on every channel when the live engine
has a ``denoise`` stage) runs for ``--soak-s`` seconds (600 by default, 30 with ``--quick``)
while the looping player feeds it a real-kit groove and its MIDI in real time. Reported: xruns
(debleed's counter, and the cycles jackd's log blames on debleed), late denoiser blocks
(``late_blocks``), callback-time percentiles, JACK's DSP load, and the RSS of the ``debleed
live`` process (``VmRSS`` in ``/proc/<pid>/status``) sampled every 10 s from start to end.
A soak is one long run by nature; its callback times are the distribution over all its
callbacks.
"""

from __future__ import annotations

import time

import numpy as np

from debleed.bench.common import (GIG_INPUTS, SAMPLE_RATE, SETTLE_S, Context, LoopPlayer, Processes, gig_config,
                                  live_denoise_supported, live_stats, parse_jackd_log, rss_kib)
from debleed.rt.demo import start_live, stop_live
from debleed.rt.server import DummyServer

PERIOD = 64
CHANNELS = 8


def steps(ctx: Context) -> int:
    return 1


def run(ctx: Context, progress) -> dict:
    opt = ctx.options
    denoise = live_denoise_supported()
    text = gig_config(CHANNELS, extra="denoise = true" if denoise else "")
    work = ctx.workdir()
    cfg = work / "soak.toml"
    cfg.write_text(text)
    stats_path = work / "soak.stats.json"
    procs = Processes()
    rss, load = [], []
    with DummyServer(sample_rate=SAMPLE_RATE, period=PERIOD) as srv:
        player = LoopPlayer(srv.name, ctx.tracks(), ctx.multitrack().midi)
        try:
            log_off = len(srv.log())
            proc = procs.add(start_live(cfg, srv.env, stats_json=stats_path))
            try:
                player.connect("debleed", GIG_INPUTS)
                time.sleep(SETTLE_S)
                t0 = time.monotonic()
                rss.append((0.0, rss_kib(proc.pid)))
                while (left := opt.soak_s - (time.monotonic() - t0)) > 0:
                    load += player.sample_load(min(10.0, left), interval_s=0.5)
                    rss.append((time.monotonic() - t0, rss_kib(proc.pid)))
            finally:
                log = stop_live(proc)
            stats = live_stats(log, stats_path)
            blamed = parse_jackd_log(srv.log()[log_off:])
        finally:
            player.close()
            procs.kill_all()
    progress("soak")
    r0, r1 = rss[0][1], rss[-1][1]
    return {
        "period": PERIOD, "channels": CHANNELS, "seconds": opt.soak_s, "denoiser": denoise,
        "config": text,
        "callbacks": stats["callbacks"], "xruns": stats["xruns"], "late_blocks": stats.get("late_blocks"),
        "blamed_debleed": blamed["blamed"].get("debleed", 0), "blamed_by_client": blamed["blamed"],
        "server_xruns": blamed["server_xruns"],
        "callback_us": stats["callback_us"], "deadline_us": stats["deadline_us"],
        "dsp_load_percent": {"mean": float(np.mean(load)) if load else None, "max": max(load, default=None)},
        "rss_kib": {"start": r0, "end": r1, "growth": (r1 - r0) if r0 is not None and r1 is not None else None,
                    "series": rss},
        "notes": ([] if denoise else ["no denoiser in the chain: the live engine has no denoise stage yet"]),
    }
