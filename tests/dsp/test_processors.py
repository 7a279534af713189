"""The processor contract (keyword-only user units, prepare / process / reset, latency_samples) for every processor in dsp/.

Block sizes 0, 1, 63, 64, 65, 128, 1024 and 1, 2, 8 channels: chunked equals one-shot bit for
bit; reset restores fresh output; tiny inputs drive state to exactly 0; NaN/Inf does not poison
later blocks; process allocates nothing. Processors keyed by MIDI take their events from a fixed
schedule in absolute frames (:class:`MidiSchedule`), cut at the same block boundaries as the audio.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from debleed.dsp import (Chain, ChannelSpec, EnvelopeFollower, GainComputer, KeyFilter, LookaheadDelay,
                         MidiKey, TriggerDetector)
from debleed.errors import DebleedError, ParameterError
from debleed.dsp.processor import ProcessSpec

SR = 48000
BLOCKS = [0, 1, 63, 64, 65, 128, 1024]
CHANNELS = [1, 2, 8]


class MidiSchedule:
    """Note-ons every 97 frames from frame 0, cycling through valid ones and ones to ignore
    (note-off, other channel, data bytes outside 0..127), handed out block by block."""

    EVERY = 97
    ROWS = [(0x99, 38, 100), (0x99, 40, 0), (0x90, 38, 64), (0x99, 138, 100), (0x99, 40, 255),
            (0x89, 38, 100), (0x99, 40, 1), (0x99, 38, 127)]

    def __init__(self, n_frames=1 << 17):
        k = np.arange(n_frames // self.EVERY)
        self.table = np.zeros((k.size, 4), np.int32)
        self.table[:, 0] = k * self.EVERY
        self.table[:, 1:] = np.array(self.ROWS, np.int32)[k % len(self.ROWS)]
        self.buf = np.zeros_like(self.table)
        self.pos = 0

    def block(self, n):
        """``(events, n_events)`` of the next ``n`` frames, offsets relative to the block."""
        lo, hi = -(-self.pos // self.EVERY), -(-(self.pos + n) // self.EVERY)
        self.buf[:hi - lo] = self.table[lo:hi]
        self.buf[:hi - lo, 0] -= self.pos
        self.pos += n
        return self.buf, hi - lo


class ChainAdapter:
    """A Chain of n gated channels keyed by themselves (or by MIDI), with the one-array process signature."""

    def __init__(self, **kw):
        self.kw = kw
        self.midi = MidiSchedule() if kw.get("key") == "midi" else None

    def prepare(self, spec):
        specs = [ChannelSpec(name=f"c{i}", input=i, **self.kw) for i in range(spec.n_channels)]
        self.chain = Chain(specs, n_inputs=spec.n_channels)
        self.chain.prepare(spec)
        self._state = self.chain.state

    def reset(self):
        self.chain.reset()
        if self.midi is not None:
            self.midi.pos = 0

    def process(self, x, out):
        if self.midi is None:
            self.chain.process(x, out)
        else:
            self.chain.process(x, out, *self.midi.block(x.shape[1]))

    def state_arrays(self):
        return self.chain.state_arrays()


class MidiKeyAdapter:
    """A MidiKey fed by a :class:`MidiSchedule`, with the one-array process signature (``x`` is unused)."""

    def __init__(self, **kw):
        self.key = MidiKey(**kw)
        self.midi = MidiSchedule()

    def prepare(self, spec):
        self.key.prepare(spec)

    def reset(self):
        self.key.reset()
        self.midi.pos = 0

    def process(self, x, out):
        self.key.process(*self.midi.block(x.shape[1]), out)

    def state_arrays(self):
        return self.key.state_arrays()


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
    "midi_key": lambda: MidiKeyAdapter(notes=[38, 40], midi_channel=10),
    "chain_midi": lambda: ChainAdapter(mode="gate", key="midi", notes=(38, 40), midi_channel=10, hold_ms=0.5,
                                       release_ms=1.0, velocity_depth=True, lookahead_ms=0.2),
}
#: The processors themselves (no adapter): prepare and reset are called on them directly.
PLAIN = [name for name in FACTORIES if not name.startswith(("chain", "midi"))]


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
    ref.prepare(ProcessSpec(SR, 8192, n_channels))
    one = np.zeros_like(x)
    ref.process(x, one)
    for block in BLOCKS[1:]:
        p = FACTORIES[name]()
        p.prepare(ProcessSpec(SR, 1024, n_channels))
        assert np.array_equal(run(p, x, block), one), f"{name}: block {block} differs from one-shot"


@pytest.mark.parametrize("name", FACTORIES)
def test_empty_block_changes_nothing(name):
    x = level_input(name, signal(2, 512))
    a, b = FACTORIES[name](), FACTORIES[name]()
    for p in (a, b):
        p.prepare(ProcessSpec(SR, 512, 2))
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
    p.prepare(ProcessSpec(SR, 2000, 2))
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
    p.prepare(ProcessSpec(SR, 1000, 2))
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
    for arr in p.state_arrays():
        assert np.all(np.isfinite(arr))


@pytest.mark.parametrize("name", ["envelope_peak", "envelope_rms", "key_filter", "chain_gate", "chain_duck_rms"])
def test_tiny_input_drives_state_to_exact_zero(name):
    p = FACTORIES[name]()
    p.prepare(ProcessSpec(SR, 4096, 2))
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
    p.prepare(ProcessSpec(SR, 1024, 8))
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
    p = FACTORIES[name]()
    p.prepare(ProcessSpec(SR, 64, 1))
    x = np.zeros((1, 65), np.float32)
    with pytest.raises(ParameterError, match="max_block"):
        p.process(x, np.zeros_like(x))


def test_midi_key_pulses_only_for_the_valid_note_ons_of_the_schedule():
    p = FACTORIES["midi_key"]()
    p.prepare(ProcessSpec(SR, 1024, 1))
    out = np.zeros((1, 1024), np.float32)
    p.process(out, out)
    # rows 0, 6 and 7 of the cycle of 8 are valid note-ons on channel 10; the others are ignored
    assert list(np.nonzero(out[0])[0]) == [k * MidiSchedule.EVERY for k in (0, 6, 7, 8)]


@pytest.mark.parametrize("name", PLAIN)
def test_in_place_equals_separate_output(name):
    x = level_input(name, signal(2, 1000, seed=6))
    a, b = FACTORIES[name](), FACTORIES[name]()
    for p in (a, b):
        p.prepare(ProcessSpec(SR, 1000, 2))
    want = np.zeros_like(x)
    a.process(x, want)
    b.process(x, x)
    assert np.array_equal(x, want)


@pytest.mark.parametrize("args, match", [
    ((-48000, 64, 1), r"sample_rate must be in \[8000.0, 384000.0\], got -48000"),
    ((0, 64, 1), r"sample_rate must be in \[8000.0, 384000.0\], got 0"),
    ((float("inf"), 64, 1), r"sample_rate must be in \[8000.0, 384000.0\], got inf"),
    (("x", 64, 1), r"sample_rate must be a number, got 'x'"),
    ((SR, 0, 1), r"max_block must be an integer in \[1, 1048576\], got 0"),
    ((SR, 64.5, 1), r"max_block must be an integer in \[1, 1048576\], got 64.5"),
    ((SR, "64", 1), r"max_block must be an integer in \[1, 1048576\], got '64'"),
    ((SR, 64, 0), r"n_channels must be an integer >= 1, got 0"),
    ((SR, 64, 2.0), r"n_channels must be an integer >= 1, got 2.0"),
    ((SR, 64, True), r"n_channels must be an integer >= 1, got True"),
])
def test_bad_process_spec_names_the_value(args, match):
    with pytest.raises(ParameterError, match=match):
        ProcessSpec(*args)


@pytest.mark.parametrize("name", PLAIN + ["midi_key"])
def test_prepare_takes_a_process_spec(name):
    p = getattr(FACTORIES[name](), "key", FACTORIES[name]())
    with pytest.raises(ParameterError, match=rf"{type(p).__name__}.prepare takes a ProcessSpec"):
        p.prepare((SR, 64, 1))
    p.prepare(ProcessSpec(SR, 64, 2))
    assert (p.sample_rate, p.max_block, p.n_channels) == (float(SR), 64, 2)


def test_fixed_channel_counts_are_checked_and_a_failed_prepare_leaves_it_unprepared():
    ch = Chain([ChannelSpec(name="s", input=0), ChannelSpec(name="k", input=0)], n_inputs=1)
    with pytest.raises(ParameterError, match=r"Chain.prepare: n_channels must be 2 \(its channels: s, k\), got 1"):
        ch.prepare(ProcessSpec(SR, 64, 1))
    assert ch.spec is None
    with pytest.raises(DebleedError, match=r"Chain.reset called before prepare"):
        ch.reset()
    f = KeyFilter(hpf_hz=30000.0)
    f.prepare(ProcessSpec(96000, 64))
    with pytest.raises(ParameterError, match=r"highpass cutoff must be in \(0, 24000\) Hz at 48000 Hz, got 30000"):
        f.prepare(ProcessSpec(48000, 64))
    assert f.spec is None


@pytest.mark.parametrize("name", PLAIN + ["midi_key"])
def test_reset_before_prepare_says_so(name):
    p = FACTORIES[name]()
    p = getattr(p, "key", p)
    with pytest.raises(DebleedError, match=rf"{type(p).__name__}.reset called before prepare\(\)"):
        p.reset()
