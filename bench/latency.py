"""Section 4, latency truth: impulse in, impulse out, frames counted, against what debleed reports.

``chains``: one ``debleed live`` with one channel per chain on one mic input (gate with a
self key and 0 ms attack, so the impulse opens it on its own sample; the same with 2 ms
lookahead; bypass with 2 ms lookahead, the pure delay; the denoiser chains when the shipped
models are installed). :func:`debleed.rt.player.play_record` plays an impulse in
freewheel and records every output sample-aligned; the measured latency is the frame of the
output's peak minus the impulse's frame. The reported latency is the output port's capture
latency range as JACK holds it (``jack_port_get_latency_range(CAPTURE_LATENCY)``, read from a
bench client). Each repeat puts the impulse at another offset within the period.

``denoiser``: the same impulse through a denoised channel alone (bypass, no lookahead) at 44.1
and 48 kHz, periods 64 to 1024, both engines (``--quick``: 48 kHz at 128 frames with the cfunc
engine and 44.1 kHz at 1024 frames with the Python engine; ``--smoke``: 48 kHz at 128 frames):
the model's own latency (63 samples for the shipped models), whatever the period, measured and
as JACK is told.

``round_trip``: real time, not freewheel, at 64 and 128 frames. A bench client ``A`` writes an
impulse into ``A:out`` -> ``debleed:in_mic`` -> gate -> ``debleed:out_gate`` -> ``A:in`` and
counts the frames between writing it and reading it back (``jack_last_frame_time`` of the
cycle + offset in the buffer). The graph has a cycle, so JACK runs one edge of it as a feedback
connection whose data arrives in the next cycle: the theory is exactly ``1 x period`` frames
plus debleed's reported latency. A hardware loop (``system:playback`` cable to
``system:capture``) would add the driver's latencies as JACK reports them for the system ports;
they are listed for reference.
"""

from __future__ import annotations

import contextlib
import threading
import time

import jack
import numpy as np

from debleed.bench.common import SAMPLE_RATE, Context, Processes, live_denoise_supported, stat
from debleed.errors import EngineError
from debleed.rt import _jackptr
from debleed.testing import start_live, stop_live
from debleed.rt.player import play_record
from debleed.testing import JACK_CLIENT_TIMEOUT_MS, DummyServer

TRUTH_PERIOD = 128
RT_PERIODS = (64, 128)
_GATE = 'mode = "gate"\nkey = "self"\nthreshold_db = -60.0\nratio = inf\nattack_ms = 0.0\nhold_ms = 50.0\nrelease_ms = 50.0'


def chains(denoise: bool) -> dict:
    """Chain name -> TOML lines of its channel."""
    c = {
        "gate": _GATE,
        "gate + lookahead 2 ms": _GATE + "\nlookahead_ms = 2.0",
        "lookahead 2 ms (bypass)": 'mode = "bypass"\nlookahead_ms = 2.0',
    }
    if denoise:
        c["denoiser"] = 'mode = "bypass"\ndenoise = true'
        c["denoiser + gate"] = _GATE + "\ndenoise = true"
    return c


def _config(chain_lines: dict, client: str) -> str:
    text = f'[client]\nname = "{client}"\n[inputs]\nmic = []\n'
    for i, lines in enumerate(chain_lines.values()):
        text += f'[[channel]]\nname = "c{i}"\ninput = "mic"\n{lines}\n'
    return text


def reported_latency(server_name: str, ports: list[str]) -> list[tuple[int, int]]:
    """Capture latency range ``(min, max)`` of each port, frames, as JACK holds it."""
    c = jack.Client("bench-latency-probe", no_start_server=True, servername=server_name)
    try:
        return [_jackptr.get_latency_range(c.get_port_by_name(p), _jackptr.CAPTURE_LATENCY) for p in ports]
    finally:
        c.close()


#: ``(sample rate, period, engine)`` of the denoiser latency runs (full, then ``--quick``).
DENOISER_GRID = tuple((r, p, e) for r in (44100, 48000) for p in (64, 256, 1024) for e in ("cfunc", "python"))
DENOISER_GRID_QUICK = ((48000, 128, "cfunc"), (44100, 1024, "python"))
#: ``--smoke``: one run, with the smoke grid's engine.
DENOISER_GRID_SMOKE = ((48000, 128, None),)


def _denoiser_grid(ctx: Context) -> tuple:
    o = ctx.options
    return DENOISER_GRID_SMOKE if o.smoke else DENOISER_GRID_QUICK if o.quick else DENOISER_GRID


def impulse_truth(ctx: Context, procs: Processes, *, spec: dict | None = None, sample_rate: int = SAMPLE_RATE,
                  period: int = TRUTH_PERIOD, engine: str | None = None, tag: str = "latency") -> dict:
    opt = ctx.options
    denoise = live_denoise_supported()
    spec = chains(denoise) if spec is None else spec
    client = "debleed"
    cfg = ctx.workdir() / f"{tag}.toml"
    cfg.write_text(_config(spec, client))
    out_ports = [f"{client}:out_c{i}" for i in range(len(spec))]
    results = {name: [] for name in spec}
    peaks = {name: [] for name in spec}
    engine = engine or opt.live_engine
    with DummyServer(client_timeout_ms=JACK_CLIENT_TIMEOUT_MS, sample_rate=sample_rate, period_frames=period) as srv:
        proc = procs.add(start_live(cfg, srv.env, engine=engine))
        try:
            reported = reported_latency(srv.name, out_ports)
            for r in range(opt.repeats):
                at = 4800 + 37 * r
                x = np.zeros(at + 16 * TRUTH_PERIOD, np.float32)
                x[at] = 1.0
                rec = play_record({f"{client}:in_mic": x}, out_ports, server_name=srv.name, freewheel=True,
                                  tail_frames=SAMPLE_RATE // 4, name="bench-lat")
                for name, row in zip(spec, rec):
                    k = int(np.argmax(np.abs(row)))
                    # a denoiser may shrink a lone click (it is no snare hit): 1 % still locates it
                    results[name].append(k - at if abs(row[k]) > 0.01 else None)
                    peaks[name].append(float(abs(row[k])))
        finally:
            log = stop_live(proc)
    out = {}
    for (name, lines), rep in zip(spec.items(), reported):
        m = stat(results[name])
        out[name] = {"config": lines, "reported_frames": {"min": rep[0], "max": rep[1]}, "measured_frames": m,
                     "peak_out": stat(peaks[name]),
                     "match": m["n"] == opt.repeats and m["min"] == m["max"] == rep[0] == rep[1]}
    notes = [f"freewheel at {period} frames, {sample_rate} Hz, {engine} engine; impulse of 1.0 at frame 4800 + 37 x repeat"]
    if not denoise:
        notes.append("denoiser chains skipped: the shipped denoiser models are not installed")
    if any(v["measured_frames"]["n"] < opt.repeats for v in out.values()):
        notes.append("a chain's impulse did not come out above 0.01 in some repeat (counted as not measured); "
                     f"debleed's log: {log[-400:]}")
    return {"period": period, "sample_rate": sample_rate, "engine": engine, "chains": out, "notes": notes}


def denoiser_latency(ctx: Context, procs: Processes, progress) -> list:
    """One :func:`impulse_truth` run of a lone denoised channel per :data:`DENOISER_GRID` point."""
    rows = []
    for rate, period, engine in _denoiser_grid(ctx):
        r = impulse_truth(ctx, procs, spec={"denoiser": 'mode = "bypass"\ndenoise = true'}, sample_rate=rate,
                          period=period, engine=engine, tag=f"latency-dn-{rate}-{period}-{engine}")
        c = r["chains"]["denoiser"]
        rows.append({"sample_rate": rate, "period": period, "engine": r["engine"], "reported_frames": c["reported_frames"],
                     "measured_frames": c["measured_frames"], "match": c["match"]})
        progress(f"latency: denoiser {rate} Hz {period} frames {engine}")
    return rows


class _RoundTrip:
    """Bench client ``A``: writes an impulse every 0.25 s, finds it coming back, counts frames."""

    def __init__(self, server_name: str, n: int):
        self.client = jack.Client("bench-rt", no_start_server=True, servername=server_name)
        self.out = self.client.outports.register("out")
        self.inp = self.client.inports.register("in")
        self.n, self.results, self.lost = n, [], 0
        self.pending, self.next_t, self.armed = None, 0, False
        self.done = threading.Event()
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames):
        out = self.out.get_array()
        out.fill(0.0)
        if not self.armed or self.done.is_set():
            return
        t = self.client.last_frame_time
        if self.pending is not None:
            hit = np.flatnonzero(np.abs(self.inp.get_array()) > 0.5)
            if hit.size:
                self.results.append(int(t + hit[0] - self.pending))
                self.pending = None
            elif t - self.pending > SAMPLE_RATE:
                self.lost += 1
                self.pending = None
        elif t >= self.next_t:
            o = (frames // 3 + 7 * len(self.results)) % frames
            out[o] = 1.0
            self.pending, self.next_t = t + o, t + SAMPLE_RATE // 4
        if len(self.results) + self.lost >= self.n:
            self.done.set()

    def close(self):
        with contextlib.suppress(jack.JackError):
            self.client.deactivate()
            self.client.close()


def round_trip(ctx: Context, period: int, procs: Processes) -> dict:
    opt = ctx.options
    n = max(opt.repeats, 5)
    cfg = ctx.workdir() / f"roundtrip-{period}.toml"
    cfg.write_text(_config({"gate": _GATE}, "debleed"))
    with DummyServer(client_timeout_ms=JACK_CLIENT_TIMEOUT_MS, sample_rate=SAMPLE_RATE, period_frames=period) as srv:
        proc = procs.add(start_live(cfg, srv.env, engine=opt.live_engine))
        rt = None
        try:
            rt = _RoundTrip(srv.name, n)
            rt.client.connect("bench-rt:out", "debleed:in_mic")
            rt.client.connect("debleed:out_c0", "bench-rt:in")
            time.sleep(0.3)
            probe = rt.client
            reported = _jackptr.get_latency_range(probe.get_port_by_name("debleed:out_c0"), _jackptr.CAPTURE_LATENCY)
            sys_cap = _jackptr.get_latency_range(probe.get_port_by_name("system:capture_1"), _jackptr.CAPTURE_LATENCY)
            sys_play = _jackptr.get_latency_range(probe.get_port_by_name("system:playback_1"),
                                                  _jackptr.PLAYBACK_LATENCY)
            rt.armed = True
            if not rt.done.wait(n * 0.25 + 10 + n * 1.0):
                raise EngineError(f"round trip at {period} frames: {len(rt.results)} of {n} impulses came back")
            results, lost = list(rt.results), rt.lost
        finally:
            if rt is not None:
                rt.close()
            stop_live(proc)
    theory = period + reported[1]
    m = stat(results)
    return {"period": period, "measured_frames": m, "lost": lost, "reported_debleed_frames": reported[1],
            "theory_frames": theory, "theory": "1 x period (feedback edge of the graph cycle) + debleed's reported latency",
            "match": m["n"] > 0 and m["min"] == m["max"] == theory,
            "hardware_loop_reference_frames": {"system_capture": sys_cap[1], "system_playback": sys_play[1],
                                               "total": sys_cap[1] + sys_play[1] + reported[1]}}


def steps(ctx: Context) -> int:
    return 1 + len(ctx.options.rt_periods) + (len(_denoiser_grid(ctx)) if live_denoise_supported() else 0)


def run(ctx: Context, progress) -> dict:
    procs = Processes()
    try:
        truth = impulse_truth(ctx, procs)
        progress("latency: impulse truth")
        dn = denoiser_latency(ctx, procs, progress) if live_denoise_supported() else []
        rts = []
        for p in ctx.options.rt_periods:
            rts.append(round_trip(ctx, p, procs))
            progress(f"latency: round trip {p} frames")
    finally:
        procs.kill_all()
    return {"impulse": truth, "denoiser": dn, "round_trip": rts}
