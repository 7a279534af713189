"""The processor contract (STYLE.md) for every processor in dsp/.

Block sizes 0, 1, 63, 64, 65, 128, 1024 and 1, 2, 8 channels: chunked equals one-shot bit for
bit; reset restores fresh output; tiny inputs drive state to exactly 0; NaN/Inf does not poison
later blocks; process allocates nothing.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from debleed.dsp import (Chain, ChannelSpec, EnvelopeFollower, GainComputer, KeyFilter, LookaheadDelay,
                         TriggerDetector)

SR = 48000
BLOCKS = [0, 1, 63, 64, 65, 128, 1024]
CHANNELS = [1, 2, 8]


class ChainAdapter:
    """A Chain of n gated channels keyed by themselves, with the one-array process signature."""

    def __init__(self, **kw):
        self.kw = kw

    def prepare(self, sr, max_block, n_channels):
        specs = [ChannelSpec(name=f"c{i}", input=i, **self.kw) for i in range(n_channels)]
        self.chain = Chain(specs, n_inputs=n_channels)
        self.chain.prepare(sr, max_block)
        self._state = self.chain.state

    def reset(self):
        self.chain.reset()

    def process(self, x, out):
        self.chain.process(x, out)

    def state_arrays(self):
        c = self.chain
        return [c.state, c.delay]


FACTORIES = {
    "envelope_peak": lambda: EnvelopeFollower(attack_ms=1.0, release_ms=30.0, hold_ms=2.0),
    "envelope_rms": lambda: EnvelopeFollower(attack_ms=0.5, release_ms=20.0, detector="rms", rms_ms=5.0),
    "gain_gate": lambda: GainComputer(mode="gate", threshold_db=-20.0, hysteresis_db=-6.0),
    "gain_duck": lambda: GainComputer(mode="duck", threshold_db=-20.0, ratio=4.0),
    "key_filter": lambda: KeyFilter(hpf_hz=120.0, lpf_hz=5000.0),
    "trigger": lambda: TriggerDetector(trigger_threshold_db=-12.0, retrigger_ms=2.0),
    "lookahead": lambda: LookaheadDelay(lookahead_ms=1.3),
    "chain_gate": lambda: ChainAdapter(mode="gate", threshold_db=-20.0, hold_ms=3.0, release_ms=10.0,
                                       lookahead_ms=0.5, key_hpf_hz=80.0),
    "chain_duck_rms": lambda: ChainAdapter(mode="duck", threshold_db=-20.0, ratio=4.0, detector="rms",
                                           dry_wet=0.8),
}


def signal(n_channels, n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    bursts = (np.sin(2 * np.pi * 9.0 * t) > 0.3).astype(np.float64)
    x = rng.standard_normal((n_channels, n)) * 0.3 * bursts
    return np.ascontiguousarray(x, dtype=np.float32)


def level_input(name, x):
    """Gain computers take levels in dB, not audio."""
    if name.startswith("gain"):
        return np.ascontiguousarray(20 * np.log10(np.maximum(np.abs(x), 1e-10)), dtype=np.float32)
    return x


def run(proc, x, block):
    out = np.zeros_like(x)
    if block == 0:
        proc.process(x[:, :0], out[:, :0])
        return out
    for s in range(0, x.shape[1], block):
        proc.process(x[:, s:s + block], out[:, s:s + block])
    return out


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("n_channels", CHANNELS)
def test_chunked_equals_one_shot(name, n_channels):
    x = level_input(name, signal(n_channels, 4100))
    ref = FACTORIES[name]()
    ref.prepare(SR, 8192, n_channels)
    one = np.zeros_like(x)
    ref.process(x, one)
    for block in BLOCKS[1:]:
        p = FACTORIES[name]()
        p.prepare(SR, 1024, n_channels)
        assert np.array_equal(run(p, x, block), one), f"{name}: block {block} differs from one-shot"


@pytest.mark.parametrize("name", FACTORIES)
def test_empty_block_changes_nothing(name):
    x = level_input(name, signal(2, 512))
    a, b = FACTORIES[name](), FACTORIES[name]()
    for p in (a, b):
        p.prepare(SR, 512, 2)
    ya, yb = np.zeros_like(x), np.zeros_like(x)
    a.process(x[:, :100], ya[:, :100])
    b.process(x[:, :100], yb[:, :100])
    b.process(x[:, :0], yb[:, :0])
    a.process(x[:, 100:], ya[:, 100:])
    b.process(x[:, 100:], yb[:, 100:])
    assert np.array_equal(ya, yb)


@pytest.mark.parametrize("name", FACTORIES)
def test_reset_restores_fresh_output(name):
    x = level_input(name, signal(2, 2000, seed=1))
    p = FACTORIES[name]()
    p.prepare(SR, 2000, 2)
    first = np.zeros_like(x)
    p.process(x, first)
    p.process(level_input(name, signal(2, 2000, seed=2)), np.zeros_like(x))
    p.reset()
    again = np.zeros_like(x)
    p.process(x, again)
    assert np.array_equal(first, again)


@pytest.mark.parametrize("name", FACTORIES)
def test_nan_and_inf_do_not_poison_later_blocks(name):
    x = level_input(name, signal(2, 3000, seed=3))
    p = FACTORIES[name]()
    p.prepare(SR, 1000, 2)
    bad = x[:, :1000].copy()
    bad[0, 10] = np.nan
    bad[1, 20] = np.inf
    bad[0, 30] = -np.inf
    out = np.zeros_like(x)
    p.process(bad, out[:, :1000])
    for s in (1000, 2000):
        p.process(x[:, s:s + 1000], out[:, s:s + 1000])
    assert np.all(np.isfinite(out[:, 1000:])), f"{name}: non-finite output after a NaN block"
    # state is finite too
    for arr in (p.state_arrays() if hasattr(p, "state_arrays") else [p._state]):
        assert np.all(np.isfinite(arr))


@pytest.mark.parametrize("name", ["envelope_peak", "envelope_rms", "key_filter", "chain_gate", "chain_duck_rms"])
def test_tiny_input_drives_state_to_exact_zero(name):
    p = FACTORIES[name]()
    p.prepare(SR, 4096, 2)
    loud = signal(2, 4096, seed=4)
    p.process(loud, np.zeros_like(loud))
    tiny = np.full((2, 4096), 1e-12, np.float32)
    tiny[:, ::2] = -1e-12
    for _ in range(60):
        p.process(tiny, np.zeros_like(tiny))
    if isinstance(p, ChainAdapter):
        from debleed.dsp.chain import S_HZ1, S_HZ2, S_LZ1, S_LZ2, S_MS

        st = p.chain.state
        for col in (S_MS, S_HZ1, S_HZ2, S_LZ1, S_LZ2):
            assert np.all(st[:, col] == 0.0), f"state column {col} = {st[:, col]}"
    else:
        state = p._state
        if name.startswith("envelope"):
            state = p._state[:, [0, 1, 3]]  # mean square, held, y (hold counter is an integer)
        assert np.all(state == 0.0), state


@pytest.mark.parametrize("name", FACTORIES)
def test_process_allocates_nothing(name):
    x = level_input(name, signal(8, 1024, seed=5))
    p = FACTORIES[name]()
    p.prepare(SR, 1024, 8)
    out = np.zeros_like(x)
    p.process(x, out)  # compile and warm up
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(50):
            p.process(x, out)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one 8 x 1024 float32 block is 32 KiB: any array allocated per call would show here
    assert peak - base < 4096, f"{name}: process peaked {peak - base} bytes above baseline"
    assert current - base < 1024


@pytest.mark.parametrize("name", FACTORIES)
def test_block_longer_than_max_block_is_refused(name):
    from debleed.errors import ParameterError

    p = FACTORIES[name]()
    p.prepare(SR, 64, 1)
    x = np.zeros((1, 65), np.float32)
    with pytest.raises(ParameterError, match="max_block"):
        p.process(x, np.zeros_like(x))
