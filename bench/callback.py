"""Section 2, callback: the process callback's time against the deadline ``n_frames / sample_rate``.

For every period (one private ``jackd --no-realtime -d dummy`` each), engine (cfunc, python) and
channel count, ``debleed live`` runs a generated gig (:func:`debleed.bench.common.gig_config`:
channels gated by a piezo trigger, by MIDI, by their own mic, and ducked by a band-passed mic
key) while a looping player feeds it 10 s of a real-kit groove with bleed and its MIDI notes, in
real time. Each repeat is a fresh ``debleed live`` process; its ``--stats-json`` gives the
callback-time percentiles (from the engine's 250 ns histogram) and xruns. JACK's DSP load is
sampled every 100 ms from the player's client while the audio plays (the stats file's own
``dsp_load_percent`` is read at exit, after the audio stopped, so it is not used). jackd's log
is parsed for the clients it blames for late cycles
(:func:`debleed.bench.common.parse_jackd_log`).
"""

from __future__ import annotations

import numpy as np

from debleed.bench.common import (SAMPLE_RATE, Context, LoopPlayer, Processes, gig_config, run_live_window,
                                  stat)
from debleed.testing import JACK_CLIENT_TIMEOUT_MS, DummyServer

PCTS = ("p50", "p99", "p99.9", "max")


def steps(ctx: Context) -> int:
    o = ctx.options
    return len(o.periods) * len(o.engines) * len(o.channels)


def run(ctx: Context, progress) -> dict:
    opt = ctx.options
    mt = ctx.multitrack()
    work = ctx.workdir()
    rows = []
    for period in opt.periods:
        procs = Processes()
        with DummyServer(client_timeout_ms=JACK_CLIENT_TIMEOUT_MS, sample_rate=SAMPLE_RATE, period_frames=period) as srv:
            player = LoopPlayer(srv.name, ctx.tracks(), mt.midi)
            try:
                for engine in opt.engines:
                    for n_ch in opt.channels:
                        runs = [run_live_window(srv, player, gig_config(n_ch), work, engine=engine,
                                                seconds=opt.run_s, tag=f"cb-{period}-{engine}-{n_ch}-{r}",
                                                procs=procs)
                                for r in range(opt.repeats)]
                        rows.append(_summarize(period, engine, n_ch, runs))
                        progress(f"callback: {engine} {period} frames {n_ch} ch")
            finally:
                player.close()
                procs.kill_all()
    return {
        "sample_rate": SAMPLE_RATE,
        "run_s": opt.run_s,
        "repeats": opt.repeats,
        "runs": rows,
        "notes": [
            "callback_us: percentiles of each run's callback-time histogram (250 ns bins, upper edge), "
            "then median/min/max across repeats (fresh debleed live process each)",
            "dsp_load_percent: jack_cpu_load() sampled every 100 ms while audio played, median per run, "
            "then median/min/max across runs; it covers the whole graph (the Python player included)",
            "xruns: debleed's xrun callback count; blamed_debleed: lines 'JackEngine::XRun: client = "
            "debleed was not finished' in jackd's log during the run; server_xruns: the driver's "
            "'Process XRun' lines (any cause)",
            "the dummy driver runs without real-time scheduling (jackd --no-realtime) on a shared machine",
        ],
    }


def _summarize(period: int, engine: str, n_ch: int, runs: list) -> dict:
    deadline_us = 1e6 * period / SAMPLE_RATE
    cb = {p: stat([r["stats"]["callback_us"][p] for r in runs]) for p in (*PCTS, "mean")}
    return {
        "period": period, "engine": engine, "channels": n_ch, "deadline_us": deadline_us,
        "callback_us": cb,
        "max_over_deadline": stat([r["stats"]["callback_us"]["max"] / deadline_us for r in runs]),
        "callbacks": stat([r["stats"]["callbacks"] for r in runs]),
        "xruns": stat([r["stats"]["xruns"] for r in runs]),
        "xruns_total": int(sum(r["stats"]["xruns"] for r in runs)),
        "blamed_debleed": stat([r["blamed_debleed"] for r in runs]),
        "blamed_debleed_total": int(sum(r["blamed_debleed"] for r in runs)),
        "blamed_other_total": int(sum(sum(v for k, v in r["blamed"].items() if k != "debleed") for r in runs)),
        "blamed_by_client": _merge([r["blamed"] for r in runs]),
        "server_xruns_total": int(sum(r["server_xruns"] for r in runs)),
        "dsp_load_percent": stat([float(np.median(r["dsp_load_samples"])) if r["dsp_load_samples"] else None
                                  for r in runs]),
        "dsp_load_max_percent": max((max(r["dsp_load_samples"]) for r in runs if r["dsp_load_samples"]),
                                    default=None),
        "latency_samples": runs[0]["stats"].get("latency_samples"),
    }


def _merge(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out
