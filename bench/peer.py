"""Section 3, peer: JACK DSP load of debleed against LSP's headless sidechain gate, same run.

For every period and channel count, on one private dummy jackd with the looping player feeding
real-kit audio in real time, each repeat measures three windows of the same length, in turn:

1. ``baseline``: the player alone;
2. ``debleed``: a fresh ``debleed live`` (cfunc engine) with the generated gig of N channels;
3. ``lsp``: N fresh ``lsp-plugins-sc-gate-mono -hl`` processes (one per channel, LSP's stock
   settings), each with ``in`` connected to the channel's mic and ``sc`` to its key source
   (the piezo for trigger keys, the key mic for mic keys, its own mic for MIDI keys: LSP has
   no MIDI key), like debleed's ports.

JACK's DSP load (``jack_cpu_load``, percent of the period spent in the graph, smoothed by
jackd) is sampled every 100 ms in each window (median per window: jackd's value jumps after one slow cycle). The report gives each condition's median, min
and max over the repeats, the ratio debleed / LSP of the medians, and the same ratio after
subtracting the baseline (the player's own share).
"""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np

from debleed.bench.common import (GIG_KINDS, LSP_BINARY, SAMPLE_RATE, SETTLE_S, Context, LoopPlayer, Processes,
                                  gig_config, parse_jackd_log, run_live_window, stat)
from debleed.errors import EngineError
from debleed.rt.server import popen_dies_with_parent
from debleed.testing import JACK_CLIENT_TIMEOUT_MS, DummyServer

LSP_CLIENT = "sc_gate_mono"


def steps(ctx: Context) -> int:
    o = ctx.options
    return len(o.peer_periods) * len(o.peer_channels)


def lsp_available() -> bool:
    return shutil.which(LSP_BINARY) is not None


def _lsp_sources(i: int) -> tuple[str, str]:
    """(audio input, sidechain source) of generated channel ``i``."""
    inp, key, _ = GIG_KINDS[i % len(GIG_KINDS)]
    kind, _, ref = key.partition(":")
    return inp, ref if kind in ("input", "trigger") else inp


def _start_lsp(srv, player: LoopPlayer, n: int, procs: Processes, timeout_s: float = 30.0) -> list[str]:
    before = {p.name.split(":")[0] for p in player.client.get_ports(name_pattern=f"^{LSP_CLIENT}")}
    for _ in range(n):
        procs.add(popen_dies_with_parent([shutil.which(LSP_BINARY), "-hl"], env=srv.env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + timeout_s
    while True:
        clients = sorted({p.name.split(":")[0] for p in player.client.get_ports(name_pattern=f"^{LSP_CLIENT}.*:out$")}
                         - before)
        if len(clients) >= n:
            break
        if time.monotonic() > deadline:
            raise EngineError(f"only {len(clients)} of {n} {LSP_BINARY} clients appeared within {timeout_s} s")
        time.sleep(0.1)
    time.sleep(0.3)  # let every instance finish registering its ports
    for i, name in enumerate(clients):
        inp, sc = _lsp_sources(i)
        player.client.connect(f"{player.client.name}:out_{inp}", f"{name}:in")
        player.client.connect(f"{player.client.name}:out_{sc}", f"{name}:sc")
    time.sleep(SETTLE_S)
    return clients


def run(ctx: Context, progress) -> dict:
    opt = ctx.options
    if not lsp_available():
        return {"skipped": f"{LSP_BINARY} is not installed (Debian package lsp-plugins-jack; `make bench` "
                           "installs it)"}
    mt = ctx.multitrack()
    work = ctx.workdir()
    rows = []
    for period in opt.peer_periods:
        for n_ch in opt.peer_channels:
            procs = Processes()
            base, dbl, lsp, lsp_blamed, dbl_blamed = [], [], [], 0, 0
            with DummyServer(client_timeout_ms=JACK_CLIENT_TIMEOUT_MS, sample_rate=SAMPLE_RATE, period_frames=period) as srv:
                player = LoopPlayer(srv.name, ctx.tracks(), mt.midi)
                try:
                    for r in range(opt.repeats):
                        base.append(float(np.median(player.sample_load(opt.run_s))))
                        res = run_live_window(srv, player, gig_config(n_ch), work, engine=opt.live_engine,
                                              seconds=opt.run_s, tag=f"peer-{period}-{n_ch}-{r}", procs=procs)
                        dbl.append(float(np.median(res["dsp_load_samples"])))
                        dbl_blamed += res["blamed_debleed"]
                        log_off = len(srv.log())
                        lsp_procs = Processes()
                        try:
                            clients = _start_lsp(srv, player, n_ch, lsp_procs)
                            lsp.append(float(np.median(player.sample_load(opt.run_s))))
                        finally:
                            lsp_procs.kill_all()
                        blamed = parse_jackd_log(srv.log()[log_off:])["blamed"]
                        lsp_blamed += sum(v for k, v in blamed.items() if k in clients)
                finally:
                    player.close()
                    procs.kill_all()
            b, d, l_ = stat(base), stat(dbl), stat(lsp)
            net_d = d["median"] - b["median"]
            net_l = l_["median"] - b["median"]
            rows.append({
                "period": period, "channels": n_ch, "deadline_us": 1e6 * period / SAMPLE_RATE,
                "baseline_load_percent": b, "debleed_load_percent": d, "lsp_load_percent": l_,
                "ratio_debleed_over_lsp": d["median"] / l_["median"] if l_["median"] else None,
                "net_ratio_debleed_over_lsp": net_d / net_l if net_l > 0 else None,
                "blamed_debleed_total": dbl_blamed, "blamed_lsp_total": lsp_blamed,
            })
            progress(f"peer: {period} frames {n_ch} ch")
    return {
        "peer": f"{LSP_BINARY} -hl (Debian lsp-plugins-jack {ctx.machine.get('lsp-plugins-jack')}), stock settings",
        "run_s": opt.run_s, "repeats": opt.repeats, "runs": rows,
        "notes": ["load: jack_cpu_load() sampled every 100 ms, median per window; median/min/max over repeats",
                  "ratio: median debleed load / median LSP load; net ratio: both minus the baseline (player only)",
                  "debleed: one client for all channels; LSP: one process (JACK client) per channel"],
    }
