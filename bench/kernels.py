"""Section 1, kernels: ns per sample per channel of each DSP processor and of the chain, per
block size, and the real-time factor of an offline render.

Two views:

- ``processors``: each processor of :mod:`debleed.dsp` (envelope follower, gain computer, key
  filter, trigger detector, MIDI key, lookahead delay) through its public ``process`` method,
  called from Python block by block. This includes the wrapper's validation, so small blocks
  show the per-call cost of Python.
- ``chain``: :func:`debleed.dsp.chain.run_block`, the njit function every engine calls, driven
  block by block from an njit loop (no Python per block: what the cfunc engine pays), for a
  one-channel chain of each key kind and for a chain with one channel of each kind plus
  lookahead.

``offline_rtf``: :meth:`Chain.process` over one minute of 8-channel audio at block 128 (every
key kind twice), as an offline renderer drives it; real-time factor = audio seconds / wall
seconds (how many times faster than real time).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from debleed.bench.common import BLOCK_SIZES, SAMPLE_RATE, Context, bursts, stat
from debleed.dsp.chain import Chain, ChannelSpec, run_block
from debleed.dsp.delay import LookaheadDelay
from debleed.dsp.envelope import EnvelopeFollower
from debleed.dsp.gain import GainComputer
from debleed.dsp.keys import KeyFilter, MidiKey, TriggerDetector
from debleed.dsp.processor import ProcessSpec

N_CH = 8  # channels per processor instance (ns are divided by it)


@njit(cache=True)
def _drive_chain(inputs, outputs, block, events, ev_counts, itabs, ptabs, notes, ctl, state, delay, meters, scratch):
    """Run ``run_block`` over ``inputs`` block by block (events: the same table every block)."""
    n_total = inputs.shape[1]
    b = 0
    for start in range(0, n_total - block + 1, block):
        run_block(block, inputs[:, start:start + block], outputs, events, ev_counts[b % ev_counts.size],
                  itabs, ptabs, notes, ctl, state, delay, meters, scratch)
        b += 1
    return b


def _midi_events(block: int) -> tuple[np.ndarray, np.ndarray]:
    """A note-on (38, velocity 100) every 6000 frames, as (events table, events per block)."""
    from debleed.dsp.keys import MAX_MIDI_EVENTS

    events = np.zeros((MAX_MIDI_EVENTS, 4), np.int32)
    events[0] = (block // 2, 0x99, 38, 100)
    every = max(6000 // block, 1)
    counts = np.zeros(every, np.int64)
    counts[0] = 1
    return events, counts


def _processors(block: int):
    """(name, processor, call) for every processor at ``block`` frames and N_CH channels."""
    env = EnvelopeFollower(attack_ms=1.0, release_ms=100.0, hold_ms=20.0)
    gain = GainComputer(mode="gate", threshold_db=-30.0, ratio=10.0, knee_db=6.0, hysteresis_db=-6.0)
    filt = KeyFilter(hpf_hz=80.0, lpf_hz=2000.0)
    trig = TriggerDetector(trigger_threshold_db=-20.0, retrigger_ms=30.0)
    midi = MidiKey(notes=[38, 40])
    delay = LookaheadDelay(lookahead_ms=2.0)
    procs = [("envelope follower", env), ("gain computer", gain), ("key filter (hpf+lpf)", filt),
             ("trigger detector", trig), ("MIDI key", midi), ("lookahead delay 2 ms", delay)]
    for _, p in procs:
        p.prepare(ProcessSpec(SAMPLE_RATE, block, N_CH))
    return procs


def _time_processor(name, proc, x: np.ndarray, block: int) -> float:
    """ns per sample per channel of ``proc`` over ``x`` (N_CH, n) in blocks of ``block``."""
    out = np.empty((N_CH, block), np.float32)
    level_db = (20.0 * np.log10(np.abs(x) + 1e-9)).astype(np.float32)
    events, counts = _midi_events(block)
    src = level_db if name == "gain computer" else x
    n_blocks = x.shape[1] // block
    views = [src[:, i * block:(i + 1) * block] for i in range(n_blocks)]
    if name == "MIDI key":  # warm up (first-call dispatch), then start from a fresh state
        proc.process(events, 1, out)
    else:
        proc.process(views[0], out)
    proc.reset()
    if name == "MIDI key":
        t0 = time.perf_counter_ns()
        for i in range(n_blocks):
            proc.process(events, counts[i % counts.size], out)
        dt = time.perf_counter_ns() - t0
    else:
        t0 = time.perf_counter_ns()
        for v in views:
            proc.process(v, out)
        dt = time.perf_counter_ns() - t0
    return dt / (n_blocks * block * N_CH)


CHAIN_KINDS = {
    "self": dict(key="self"),
    "input (hpf+lpf key)": dict(key="input", key_input=1, key_hpf_hz=80.0, key_lpf_hz=2000.0),
    "trigger": dict(key="trigger", key_input=1),
    "midi": dict(key="midi", notes=(38, 40)),
    "self + lookahead 2 ms": dict(key="self", lookahead_ms=2.0),
}


def _chain_specs(kind: str) -> list[ChannelSpec]:
    if kind == "one of each kind + lookahead":
        return [ChannelSpec(name=f"c{i}", input=0, mode="gate", lookahead_ms=2.0, **{k: v for k, v in kw.items()
                                                                                 if k != "lookahead_ms"})
                for i, kw in enumerate(list(CHAIN_KINDS.values())[:4])]
    return [ChannelSpec(name="c0", input=0, mode="gate", **CHAIN_KINDS[kind])]


def _time_chain(kind: str, x: np.ndarray, block: int) -> float:
    """ns per sample per channel of ``run_block`` for the chain ``kind``."""
    ch = Chain(_chain_specs(kind), n_inputs=2)
    ch.prepare(ProcessSpec(SAMPLE_RATE, block, ch.n_channels))
    out = np.zeros((ch.n_channels, block), np.float32)
    events, counts = _midi_events(block)
    args = (events, counts, *ch.arrays.args())
    # warm up with the same array types as below (numba types a C-contiguous array apart from a view)
    _drive_chain(np.ascontiguousarray(x[:, :block * 2]), out, block, *args)
    ch.reset()
    t0 = time.perf_counter_ns()
    n_blocks = _drive_chain(x, out, block, *args)
    dt = time.perf_counter_ns() - t0
    return dt / (n_blocks * block * ch.n_channels)


def offline_rtf(seconds: float = 60.0, block: int = 128) -> dict:
    """Real-time factor of :meth:`Chain.process` over ``seconds`` of 8-channel audio at ``block``."""
    specs = []
    for i in range(8):
        kw = list(CHAIN_KINDS.values())[i % 4]
        kw = {**kw, "key_input": 6} if kw.get("key_input") else kw
        specs.append(ChannelSpec(name=f"c{i}", input=i % 6, mode="gate", lookahead_ms=1.0,
                                 **{k: v for k, v in kw.items() if k != "lookahead_ms"}))
    ch = Chain(specs, n_inputs=7)
    ch.prepare(ProcessSpec(SAMPLE_RATE, block, ch.n_channels))
    n = int(seconds * SAMPLE_RATE) // block * block
    x = bursts(7, n, seed=3)
    y = np.empty((8, n), np.float32)
    events, counts = _midi_events(block)
    ch.process(x[:, :block], y[:, :block])  # warm up
    ch.reset()
    t0 = time.perf_counter()
    for b, s in enumerate(range(0, n, block)):
        ch.process(x[:, s:s + block], y[:, s:s + block], events, int(counts[b % counts.size]))
    wall = time.perf_counter() - t0
    return {"audio_s": n / SAMPLE_RATE, "wall_s": wall, "rtf": n / SAMPLE_RATE / wall}


def run(ctx: Context, progress) -> dict:
    """Run the section; ``progress(desc)`` advances the bar by one step."""
    opt = ctx.options
    n = max(opt.kernel_samples // 1024, 1) * 1024
    x = bursts(N_CH, n, seed=1)
    x2 = bursts(2, n, seed=2)
    procs: dict = {}
    chains: dict = {}
    chain_kinds = list(CHAIN_KINDS) + ["one of each kind + lookahead"]
    for block in opt.kernel_blocks:
        samples_p = {name: [] for name, _ in _processors(block)}
        samples_c = {k: [] for k in chain_kinds}
        for _ in range(opt.repeats):
            for name, p in _processors(block):
                samples_p[name].append(_time_processor(name, p, x, block))
            for k in chain_kinds:
                samples_c[k].append(_time_chain(k, x2, block))
        for name, v in samples_p.items():
            procs.setdefault(name, {})[str(block)] = stat(v)
        for k, v in samples_c.items():
            chains.setdefault(k, {})[str(block)] = stat(v)
        progress(f"kernels: block {block}")
    rtf = [offline_rtf(opt.offline_s) for _ in range(opt.repeats)]
    progress("kernels: offline render")
    return {
        "unit": "ns per sample per channel",
        "block_sizes": list(opt.kernel_blocks),
        "samples_per_repeat": n,
        "processors": procs,
        "chain": chains,
        "offline_rtf": {"block": 128, "channels": 8, "audio_s": rtf[0]["audio_s"],
                        "rtf": stat([r["rtf"] for r in rtf]), "wall_s": stat([r["wall_s"] for r in rtf])},
        "notes": ["processors: public process() called from Python per block (includes the wrapper's "
                  "validation), 8 channels per instance",
                  "chain: run_block driven from an njit loop, as the engines call it (no Python per block)",
                  f"offline_rtf: Chain.process over {opt.offline_s:g} s of 8-channel audio at block 128; "
                  "rtf = audio s / wall s"],
    }


def steps(ctx: Context) -> int:
    return len(ctx.options.kernel_blocks) + 1
