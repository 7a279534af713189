"""The chain: keys, timing, linking, dry/wet, lookahead, meters."""

import math

import numpy as np
import pytest

from debleed.dsp import Chain, ChannelSpec, MidiKey
from debleed.dsp.chain import M_BAD, M_GR, M_GR_RUN
from debleed.errors import DebleedError, ParameterError
from debleed.dsp.processor import ProcessSpec

SR = 48000


def gain_of(chain, inputs, events=None, n_events=0, block=None):
    """Run the chain on a DC-1.0 audio input 0 to read its gain; other inputs are keys."""
    out = np.zeros((chain.n_channels, inputs.shape[1]), np.float32)
    block = block or inputs.shape[1]
    for s in range(0, inputs.shape[1], block):
        ev, ne = (events, n_events) if s == 0 else (None, 0)
        chain.process(inputs[:, s:s + block], out[:, s:s + block], ev, ne)
    return out


def midi_events(rows):
    ev = np.zeros((16, 4), np.int32)
    ev[:len(rows)] = rows
    return ev, len(rows)


@pytest.mark.parametrize("frame", [0, 1, 57, 127])
def test_midi_key_opens_the_gate_on_the_event_frame(frame):
    spec = ChannelSpec(name="snare", input=0, key="midi", notes=(38,), attack_ms=0.0, hold_ms=1.0,
                       release_ms=10.0, range_db=-60.0)
    ch = Chain([spec], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 128, ch.n_channels))
    x = np.ones((1, 128), np.float32)
    ev, n = midi_events([(frame, 0x99, 38, 100)])
    y = gain_of(ch, x, ev, n)
    closed = np.float32(10 ** (-60 / 20))
    assert np.all(y[0, :frame] == closed)
    assert y[0, frame] == 1.0


def test_midi_hold_then_release_timing():
    spec = ChannelSpec(name="s", input=0, key="midi", notes=(38,), attack_ms=0.0, hold_ms=10.0,
                       release_ms=5.0, range_db=-60.0, threshold_db=-30.0)
    ch = Chain([spec], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 4096, ch.n_channels))
    ev, n = midi_events([(100, 0x99, 38, 100)])
    y = gain_of(ch, np.ones((1, 4096), np.float32), ev, n)
    hold = round(10.0 * SR / 1000)
    assert np.all(y[0, 100:101 + hold] == 1.0)
    assert y[0, 101 + hold] < 1.0
    # release in dB: the gain falls by 1 - 1/e of its 60 dB range one release time later
    rel = round(5.0 * SR / 1000)
    g_db = 20 * np.log10(y[0, 100 + hold + rel])
    assert g_db == pytest.approx(-60 * (1 - math.exp(-1)), abs=0.05)


def test_gate_attack_reaches_documented_fraction_in_db():
    spec = ChannelSpec(name="s", input=0, key="input", key_input=1, attack_ms=2.0, hold_ms=0.0,
                       release_ms=50.0, threshold_db=-30.0, ratio=math.inf, range_db=-60.0)
    ch = Chain([spec], n_inputs=2)
    ch.prepare(ProcessSpec(SR, 2048, ch.n_channels))
    x = np.ones((2, 2048), np.float32)
    x[1, :1000] = 0.0  # key off, then on at frame 1000
    y = gain_of(ch, x)
    n = round(2.0 * SR / 1000)
    g_db = 20 * np.log10(y[0, 1000 + n - 1])
    assert g_db == pytest.approx(-60 * math.exp(-1), abs=0.01)


def test_trigger_key_opens_once_per_hit_and_hold_sets_the_opening():
    t = np.arange(int(0.05 * SR)) / SR
    burst = (0.9 * np.sin(2 * np.pi * 180 * t) * np.exp(-t / 0.01)).astype(np.float32)
    x = np.ones((2, SR // 2), np.float32)
    x[1] = 0.0
    x[1, 2000:2000 + burst.size] = burst
    spec = ChannelSpec(name="k", input=0, key="trigger", key_input=1, trigger_threshold_db=-20.0,
                       retrigger_ms=30.0, attack_ms=0.0, hold_ms=20.0, release_ms=1.0, range_db=-60.0)
    ch = Chain([spec], n_inputs=2)
    ch.prepare(ProcessSpec(SR, 1024, ch.n_channels))
    y = gain_of(ch, x, block=1024)
    open_ = y[0] > 0.5
    starts = np.nonzero(np.diff(open_.astype(int)) == 1)[0] + 1
    assert len(starts) == 1 and 2000 <= starts[0] < 2030
    assert np.count_nonzero(open_) == pytest.approx(round(0.020 * SR) + 1, abs=60)


def test_duck_attenuates_while_the_key_is_above_threshold():
    spec = ChannelSpec(name="kick", input=0, mode="duck", key="input", key_input=1, threshold_db=-30.0,
                       ratio=math.inf, knee_db=0.0, range_db=-24.0, attack_ms=0.0, hold_ms=0.0, release_ms=0.0)
    ch = Chain([spec], n_inputs=2)
    ch.prepare(ProcessSpec(SR, 300, ch.n_channels))
    x = np.ones((2, 300), np.float32)
    x[1, :100] = 0.001   # -60 dBFS: no ducking
    x[1, 100:200] = 1.0  # 0 dBFS: 30 dB over, limited by range
    x[1, 200:] = 0.001
    y = gain_of(ch, x)
    assert np.all(y[0, :100] == 1.0)
    assert np.allclose(20 * np.log10(y[0, 100:200]), -24.0, atol=1e-4)
    assert np.all(y[0, 200:] == 1.0)


def test_key_highpass_stops_low_bleed_from_ducking():
    t = np.arange(SR // 4) / SR
    key = (0.5 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    kw = dict(name="kick", input=0, mode="duck", key="input", key_input=1, threshold_db=-40.0,
              ratio=math.inf, range_db=-30.0, hold_ms=0.0)
    x = np.vstack([np.ones_like(key), key])
    results = []
    for hpf in (0.0, 1000.0):
        ch = Chain([ChannelSpec(key_hpf_hz=hpf, **kw)], n_inputs=2)
        ch.prepare(ProcessSpec(SR, x.shape[1], ch.n_channels))
        results.append(gain_of(ch, x)[0, -1000:].min())
    assert results[0] < 0.1 and results[1] > 0.99


def test_linked_channels_share_one_gain():
    rng = np.random.default_rng(0)
    x = np.ones((4, 4000), np.float32)
    x[2] = (rng.standard_normal(4000) * 0.3).astype(np.float32)  # loud key for L
    x[3] = 0.0                                                    # silent key for R
    specs = [ChannelSpec(name=n, input=i, key="input", key_input=k, link="oh")
             for n, i, k in (("L", 0, 2), ("R", 1, 3))]
    ch = Chain(specs, n_inputs=4)
    ch.prepare(ProcessSpec(SR, 4000, ch.n_channels))
    y = gain_of(ch, x)
    assert np.array_equal(y[0], y[1])
    unlinked = Chain([ChannelSpec(name="R", input=1, key="input", key_input=3)], n_inputs=4)
    unlinked.prepare(ProcessSpec(SR, 4000, unlinked.n_channels))
    assert not np.array_equal(gain_of(unlinked, x)[0], y[1])


@pytest.mark.parametrize("dry_wet", [0.0, 0.3, 1.0])
def test_dry_wet_mixes_processed_and_dry(dry_wet):
    spec = ChannelSpec(name="s", input=0, key="input", key_input=1, dry_wet=dry_wet, range_db=-60.0)
    ch = Chain([spec], n_inputs=2)
    ch.prepare(ProcessSpec(SR, 256, ch.n_channels))
    x = np.ones((2, 256), np.float32)
    x[1] = 0.0  # gate stays closed
    y = gain_of(ch, x)
    want = (1 - dry_wet) + dry_wet * 10 ** (-60 / 20)
    assert np.allclose(y[0], want, rtol=1e-6)


def test_velocity_depth_scales_the_opening():
    def opened(vel):
        spec = ChannelSpec(name="s", input=0, key="midi", notes=(38,), attack_ms=0.0, hold_ms=5.0,
                           range_db=-40.0, velocity_depth=True)
        ch = Chain([spec], n_inputs=1)
        ch.prepare(ProcessSpec(SR, 128, ch.n_channels))
        ev, n = midi_events([(10, 0x99, 38, vel)])
        return 20 * np.log10(gain_of(ch, np.ones((1, 128), np.float32), ev, n)[0, 20])

    assert opened(127) == pytest.approx(0.0, abs=1e-6)
    assert opened(64) == pytest.approx(-40.0 * (1 - 64 / 127), abs=1e-4)


@pytest.mark.parametrize("data1", [138, -118])
def test_a_note_byte_outside_0_127_opens_no_channel(data1):
    # 138 and -118 are note 10 modulo 128: they must not reach the mask row of channel "b"
    specs = [ChannelSpec(name=name, input=0, key="midi", notes=notes, attack_ms=0.0, hold_ms=1.0, range_db=-60.0)
             for name, notes in (("a", (38,)), ("b", (10,)))]
    ch = Chain(specs, n_inputs=1)
    ch.prepare(ProcessSpec(SR, 128, ch.n_channels))
    ev, n = midi_events([(5, 0x90, data1, 100)])
    y = gain_of(ch, np.ones((1, 128), np.float32), ev, n)
    assert np.all(y == np.float32(10 ** (-60 / 20)))


@pytest.mark.parametrize("mode, data2", [("gate", 128), ("gate", 255), ("duck", -1), ("duck", -127)])
def test_a_velocity_byte_outside_0_127_is_ignored_and_never_gives_gain_above_0_db(mode, data2):
    spec = ChannelSpec(name="s", input=0, mode=mode, key="midi", notes=(38,), attack_ms=0.0, hold_ms=0.0,
                       release_ms=0.0, range_db=-60.0, velocity_depth=True)
    x = np.ones((1, 512), np.float32)
    results = []
    for ev, n in (midi_events([(10, 0x99, 38, data2)]), (None, 0)):
        ch = Chain([spec], n_inputs=1)
        ch.prepare(ProcessSpec(SR, 512, ch.n_channels))
        results.append(gain_of(ch, x, ev, n))
    assert results[0].max() <= 1.0
    assert np.array_equal(results[0], results[1])


def test_lookahead_lets_the_gate_open_before_the_audio_arrives():
    base = dict(name="s", input=0, key="self", attack_ms=0.5, hold_ms=5.0, threshold_db=-30.0,
                ratio=math.inf, range_db=-60.0)
    x = np.zeros((1, 2000), np.float32)
    x[0, 1000:] = 0.5
    ch = Chain([ChannelSpec(lookahead_ms=1.0, **base)], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 2000, ch.n_channels))
    y = gain_of(ch, x)
    la = ch.latency_samples
    assert la == 48
    # first delayed sample of the hit: the gain has had la + 1 samples of attack (in dB)
    tau = 0.5e-3 * SR
    assert 20 * np.log10(y[0, 1000 + la] / 0.5) == pytest.approx(-60 * math.exp(-(la + 1) / tau), abs=0.2)
    ch0 = Chain([ChannelSpec(**base)], n_inputs=1)
    ch0.prepare(ProcessSpec(SR, 2000, ch0.n_channels))
    assert gain_of(ch0, x)[0, 1000] / 0.5 < 0.01  # without lookahead the first sample is lost


def test_meters_report_gain_reduction_and_nonfinite_samples():
    spec = ChannelSpec(name="s", input=0, key="self", range_db=-40.0)
    ch = Chain([spec], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 256, ch.n_channels))
    x = np.zeros((1, 256), np.float32)
    x[0, 3] = np.nan
    ch.process(x, np.zeros_like(x))
    assert ch.meters[0, M_GR] == pytest.approx(-40.0)
    assert ch.meters[0, M_BAD] == 1
    # a reader's reset starts a new interval; the run's minimum survives it, a Chain.reset clears it
    ch.reset_meters()
    assert ch.meters[0, M_GR] == 0.0 and ch.meters[0, M_GR_RUN] == pytest.approx(-40.0)
    ch.reset()
    assert ch.meters[0, M_GR_RUN] == 0.0


def test_bypass_passes_audio_unchanged():
    ch = Chain([ChannelSpec(name="s", input=0, mode="bypass")], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 512, ch.n_channels))
    x = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    y = np.zeros_like(x)
    ch.process(x, y)
    assert np.array_equal(x, y)


@pytest.mark.parametrize("kw, match", [
    ({"key": "input", "key_input": 5}, r"key_input index 5 is outside \[0, 1\)"),
    ({"key": "midi", "notes": ()}, "key 'midi' needs notes"),
    ({"threshold_db": 6.0}, "channel 's': threshold_db must be in"),
    ({"lookahead_ms": 200.0}, r"lookahead_ms must be in \[0, 100\] ms, got 200.0"),
    ({"midi_channel": "ten"}, r"channel 's': midi_channel must be an integer in \[0, 16\], got 'ten'"),
    ({"midi_channel": 1.7}, r"channel 's': midi_channel must be an integer in \[0, 16\], got 1.7"),
    ({"midi_channel": 17}, r"channel 's': midi_channel must be an integer in \[0, 16\], got 17"),
    ({"key": "midi", "notes": (38.5,)}, r"channel 's': notes must be MIDI note numbers, integers in \[0, 127\], "
                                        r"got \(38.5,\)"),
    ({"key": "midi", "notes": ("38",)}, r"channel 's': notes must be .*got \('38',\)"),
    ({"key": "midi", "notes": (128,)}, r"channel 's': notes must be .*got \(128,\)"),
    ({"key": "midi", "notes": 38}, r"channel 's': notes must be .*got 38"),
    ({"notes": (-1,)}, r"channel 's': notes must be .*got \(-1,\)"),
    ({"input": 0.9}, r"channel 's': input must be an integer >= 0, got 0.9"),
    ({"input": True}, r"channel 's': input must be an integer >= 0, got True"),
    ({"key": "input", "key_input": None}, r"channel 's': key_input must be an integer >= -1, got None"),
    ({"key": "input", "key_input": 0.0}, r"channel 's': key_input must be an integer >= -1, got 0.0"),
    ({"velocity_depth": "yes"}, r"channel 's': velocity_depth must be true or false, got 'yes'"),
    ({"link": ["a"]}, r"channel 's': link must be a str or None, got \['a'\]"),
])
def test_bad_channel_specs(kw, match):
    with pytest.raises(ParameterError, match=match):
        Chain([ChannelSpec(**{"name": "s", "input": 0, **kw})], n_inputs=1)


def test_channel_spec_takes_numpy_integers_and_keeps_notes_as_a_tuple_of_int():
    spec = ChannelSpec(name="s", input=np.int64(0), key="midi", notes=[np.int32(38), 40], midi_channel=np.uint8(10),
                       velocity_depth=np.bool_(True))
    assert spec.notes == (38, 40) and all(type(v) is int for v in spec.notes)
    ch = Chain([spec], n_inputs=np.int32(1))
    ch.prepare(ProcessSpec(SR, np.int64(64), ch.n_channels))
    assert ch.max_block == 64 and type(ch.max_block) is int


def test_bad_n_inputs_and_reset_before_prepare():
    with pytest.raises(ParameterError, match=r"n_inputs must be an integer >= 1, got '2'"):
        Chain([ChannelSpec(name="s", input=0)], n_inputs="2")
    with pytest.raises(DebleedError, match=r"Chain.reset called before prepare\(\)"):
        Chain([ChannelSpec(name="s", input=0)], n_inputs=1).reset()


def test_process_in_place_is_refused_and_disjoint_views_of_one_array_work():
    ch = Chain([ChannelSpec(name="s", input=0, key="input", key_input=1, range_db=-20.0)], n_inputs=2)
    ch.prepare(ProcessSpec(SR, 64, ch.n_channels))
    buf = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    for inputs, outputs in ((buf[:2], buf[:1]), (buf[:2], buf[1:2]), (buf[:2, :32], buf[1:2, 16:48])):
        with pytest.raises(ParameterError, match="outputs shares memory with inputs"):
            ch.process(inputs, outputs)
    want = np.zeros((1, 64), np.float32)
    ch.process(buf[:2].copy(), want)
    ch.reset()
    ch.process(buf[:2], buf[2:])
    assert np.array_equal(buf[2:], want)


def midi_key_runner():
    mk = MidiKey(notes=[38])
    mk.prepare(ProcessSpec(SR, 64, 1))
    out = np.zeros((1, 64), np.float32)
    return lambda events, n_events: mk.process(events, n_events, out)


def chain_runner():
    ch = Chain([ChannelSpec(name="s", input=0, key="midi", notes=(38,))], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 64, ch.n_channels))
    x, y = np.zeros((1, 64), np.float32), np.zeros((1, 64), np.float32)
    return lambda events, n_events: ch.process(x, y, events, n_events)


def rows(*frames, dtype=np.int32):
    ev = np.zeros((4, 4), dtype)
    ev[:len(frames)] = [(f, 0x99, 38, 100) for f in frames]
    return ev


@pytest.mark.parametrize("runner", [midi_key_runner, chain_runner])
@pytest.mark.parametrize("events, n_events, match", [
    (rows(3, dtype=np.float64), 1, r"events must be an int32 array of shape \(k, 4\).*got float64 with shape \(4, 4\)"),
    (rows(3, dtype=np.int64), 1, r"events must be an int32 array .*got int64"),
    (np.zeros((4, 3), np.int32), 1, r"events must be an int32 array .*got int32 with shape \(4, 3\)"),
    ([[3, 0x99, 38, 100]], 1, r"events must be an int32 array .*got list"),
    (rows(3), 5, r"n_events must be an integer in \[0, 4\], got 5"),
    (rows(3), -1, r"n_events must be an integer in \[0, 4\], got -1"),
    (rows(3), 1.0, r"n_events must be an integer in \[0, 4\], got 1.0"),
    (rows(10, 5), 2, r"event 1 has frame offset 5: offsets must be .* non-decreasing"),
    (rows(3, 64), 2, r"event 1 has frame offset 64: offsets must be in \[0, 64\) for a block of 64 frames"),
    (rows(-1), 1, r"event 0 has frame offset -1: offsets must be in \[0, 64\)"),
])
def test_bad_events_are_refused_with_the_value(runner, events, n_events, match):
    with pytest.raises(ParameterError, match=match):
        runner()(events, n_events)


@pytest.mark.parametrize("runner", [midi_key_runner, chain_runner])
def test_only_the_first_n_events_rows_are_checked(runner):
    ev = rows(3, 3, 63)
    ev[3] = (-5, 0, 0, 0)  # past n_events: never read
    run = runner()
    run(ev, np.int64(3))
    run(ev, 0)


def test_events_count_without_events_is_refused():
    with pytest.raises(ParameterError, match="n_events must be 0 when no events are given, got 2"):
        chain_runner()(None, 2)


def test_bad_process_arguments():
    ch = Chain([ChannelSpec(name="s", input=0)], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 64, ch.n_channels))
    with pytest.raises(ParameterError, match="inputs must be float32 of shape"):
        ch.process(np.zeros((1, 64)), np.zeros((1, 64), np.float32))
    with pytest.raises(ParameterError, match="sample_rate must be in"):
        ch.prepare(ProcessSpec(1000, 64, ch.n_channels))


def test_render_is_the_engine_loop_over_whole_signals():
    """Chain.render at block N equals process() called block by block with the events cut per
    block; before_block sees and may change each block's inputs; bad arguments are refused."""
    import pytest as _pytest

    from debleed.dsp.chain import Chain, ChannelSpec
    from debleed.errors import ParameterError

    specs = [ChannelSpec(name="g", input=0, mode="gate", key="self", threshold_db=-20.0, hold_ms=5.0),
             ChannelSpec(name="m", input=0, mode="gate", key="midi", notes=(38,), hold_ms=5.0, range_db=-40.0)]
    rng = np.random.default_rng(3)
    n = 5000
    x = (rng.standard_normal((1, n)) * 0.2).astype(np.float32)
    events = np.array([(f, 0x90, 38, 100) for f in (10, 900, 901, 2500, 4999)], np.int64)
    for block in (1, 64, 100, 1024):
        a = Chain(specs, n_inputs=1)
        a.prepare(ProcessSpec(48000, block, a.n_channels))
        y = a.render(x, events, block=block)
        b = Chain(specs, n_inputs=1)
        b.prepare(ProcessSpec(48000, block, b.n_channels))
        ref = np.zeros_like(y)
        for s in range(0, n, block):
            m = min(block, n - s)
            ev = events[(events[:, 0] >= s) & (events[:, 0] < s + m)].copy()
            ev[:, 0] -= s
            out = np.zeros((2, m), np.float32)
            b.process(np.ascontiguousarray(x[:, s:s + m]), out, ev.astype(np.int32), len(ev))
            ref[:, s:s + m] = out
        assert np.array_equal(y, ref), block
    seen = []

    def halve(s, xb, ev, n_ev):
        seen.append((s, xb.shape[1]))
        xb *= 0.5

    c = Chain(specs[:1], n_inputs=1)
    c.prepare(ProcessSpec(48000, 1000, c.n_channels))
    y = c.render(x, block=1000, before_block=halve)
    c2 = Chain(specs[:1], n_inputs=1)
    c2.prepare(ProcessSpec(48000, 1000, c2.n_channels))
    assert seen == [(0, 1000), (1000, 1000), (2000, 1000), (3000, 1000), (4000, 1000)]
    assert np.array_equal(y, c2.render(x * np.float32(0.5), block=1000))
    with _pytest.raises(ParameterError, match="block must be an integer from 1 to max_block=1000 frames, got 1001"):
        c.render(x, block=1001)
    with _pytest.raises(ParameterError, match=r"event frames must be sorted and in \[0, 5000\)"):
        c.render(x, events[::-1], block=100)
