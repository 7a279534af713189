"""Section 6, soak: a realistic gig through ``debleed live`` for a long run, beside the LSP peer.

The gig: 8 channels at 128 frames (every key kind twice: piezo trigger, MIDI, own mic,
band-passed mic key; lookahead on the trigger and MIDI channels), the denoiser on the two MIDI-
keyed snare channels (``denoise = true``: the kernels inside the audio callback). The looping
player feeds it a real-kit groove and its MIDI in real time for ``--soak-s`` seconds (600 by
default, 5 with ``--quick``, 1 with ``--smoke``) while
one ``lsp-plugins-sc-gate-mono -hl`` per channel runs in the same server (when installed), so
the xruns jackd's log blames on debleed and on the LSP clients come from the same run.

Each mode of ``--soak-modes`` is one run on its own private dummy server: ``nort`` (``jackd
--no-realtime``) and ``rt`` (``jackd -R``, SCHED_FIFO; skipped with a note when jackd cannot
get real-time scheduling). Reported per run: callbacks, xruns (debleed's counter), the cycles
jackd's log blames on debleed and on the LSP clients, callback-time percentiles, JACK's DSP
load, the denoiser's hops and resets, and the RSS of the ``debleed live`` process (``VmRSS``) sampled every 10 s. A soak is one long run by nature; its callback
times are the distribution over all its callbacks.
"""

from __future__ import annotations

import time

import numpy as np

from debleed.bench.common import (GIG_INPUTS, SAMPLE_RATE, SETTLE_S, Context, LoopPlayer, Processes, gig_config,
                                  live_denoise_supported, live_stats, parse_jackd_log, rss_kib)
from debleed.testing import start_live, stop_live
from debleed.testing import JACK_CLIENT_TIMEOUT_MS, DummyServer

PERIOD = 128
CHANNELS = 8
#: Denoised channels of the soak gig: the two snare channels gated by MIDI (see ``GIG_KINDS``).
DENOISED = (1, 5)
MODES = ("nort", "rt")


def steps(ctx: Context) -> int:
    return len(getattr(ctx.options, "soak_modes", MODES))


def soak_config() -> str:
    denoise = live_denoise_supported()
    return gig_config(CHANNELS, denoise=DENOISED if denoise else ())


def run(ctx: Context, progress) -> dict:
    opt = ctx.options
    modes = getattr(opt, "soak_modes", MODES)
    out = {"period": PERIOD, "channels": CHANNELS, "denoised_channels": list(DENOISED), "seconds": opt.soak_s,
           "config": soak_config(), "runs": {}}
    for mode in modes:
        try:
            out["runs"][mode] = run_one(ctx, realtime=(mode == "rt"))
        except Exception as e:  # noqa: BLE001 - one mode failing (no rtprio) leaves the other
            out["runs"][mode] = {"error": f"{type(e).__name__}: {e}"}
        progress(f"soak {mode}")
    return out


def run_one(ctx: Context, *, realtime: bool) -> dict:
    from debleed.bench.peer import _start_lsp, lsp_available

    opt = ctx.options
    text = soak_config()
    work = ctx.workdir()
    tag = "rt" if realtime else "nort"
    cfg = work / f"soak-{tag}.toml"
    cfg.write_text(text)
    stats_path = work / f"soak-{tag}.stats.json"
    procs, lsp_procs = Processes(), Processes()
    rss, load = [], []
    lsp_clients: list[str] = []
    with DummyServer(client_timeout_ms=JACK_CLIENT_TIMEOUT_MS, sample_rate=SAMPLE_RATE, period_frames=PERIOD, realtime=realtime) as srv:
        player = LoopPlayer(srv.name, ctx.tracks(), ctx.multitrack().midi)
        try:
            realtime_ok = bool(player.client.realtime)
            if realtime and not realtime_ok:
                return {"skipped": "jackd -R started without real-time scheduling (no rtprio here)"}
            # before debleed: their start-up load is not part of debleed's run (--smoke and --quick
            # run the soak without them: 8 gates take about a minute to start; --quick's peer
            # section compares debleed with them)
            if lsp_available() and not (opt.smoke or opt.quick):
                lsp_clients = _start_lsp(srv, player, CHANNELS, lsp_procs)
            log_off = len(srv.log())
            proc = procs.add(start_live(cfg, srv.env, engine=opt.live_engine, stats_json=stats_path))
            try:
                player.connect("debleed", GIG_INPUTS)
                time.sleep(SETTLE_S)
                t0 = time.monotonic()
                rss.append((0.0, rss_kib(proc.pid)))
                while (left := opt.soak_s - (time.monotonic() - t0)) > 0:
                    load += player.sample_load(min(10.0, left), interval_s=0.5)
                    rss.append((time.monotonic() - t0, rss_kib(proc.pid)))
            finally:
                lsp_procs.kill_all()
                log = stop_live(proc)
            stats = live_stats(log, stats_path)
            jl = parse_jackd_log(srv.log()[log_off:])
        finally:
            player.close()
            procs.kill_all()
            lsp_procs.kill_all()
    r0, r1 = rss[0][1], rss[-1][1]
    cb = stats["callbacks"]
    blamed = jl["blamed"]
    dn = stats.get("denoiser") or {}
    return {
        "jackd": "jackd -R (SCHED_FIFO)" if realtime else "jackd --no-realtime",
        "callbacks": cb, "xruns": stats["xruns"],
        "blamed_debleed": blamed.get("debleed", 0),
        "blamed_lsp": sum(v for k, v in blamed.items() if k in lsp_clients),
        "blamed_worst_lsp": max((blamed.get(k, 0) for k in lsp_clients), default=0),
        "lsp_clients": len(lsp_clients), "blamed_by_client": blamed, "blamed_state": jl["blamed_state"],
        "server_xruns": jl["server_xruns"],
        "callback_us": stats["callback_us"], "deadline_us": stats["deadline_us"],
        "denoiser": dn,
        "dsp_load_percent": {"mean": float(np.mean(load)) if load else None, "max": max(load, default=None)},
        "rss_kib": {"start": r0, "end": r1, "growth": (r1 - r0) if r0 is not None and r1 is not None else None,
                    "series": rss},
    }
