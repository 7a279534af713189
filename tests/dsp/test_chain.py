"""The chain: keys, timing, linking, dry/wet, lookahead, meters."""

import math

import numpy as np
import pytest

from debleed.dsp import Chain, ChannelSpec
from debleed.dsp.chain import M_BAD, M_GR
from debleed.errors import ParameterError

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
    ch.prepare(SR, 128)
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
    ch.prepare(SR, 4096)
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
    ch.prepare(SR, 2048)
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
    ch.prepare(SR, 1024)
    y = gain_of(ch, x, block=1024)
    open_ = y[0] > 0.5
    starts = np.nonzero(np.diff(open_.astype(int)) == 1)[0] + 1
    assert len(starts) == 1 and 2000 <= starts[0] < 2030
    assert np.count_nonzero(open_) == pytest.approx(round(0.020 * SR) + 1, abs=60)


def test_duck_attenuates_while_the_key_is_above_threshold():
    spec = ChannelSpec(name="kick", input=0, mode="duck", key="input", key_input=1, threshold_db=-30.0,
                       ratio=math.inf, knee_db=0.0, range_db=-24.0, attack_ms=0.0, hold_ms=0.0, release_ms=0.0)
    ch = Chain([spec], n_inputs=2)
    ch.prepare(SR, 300)
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
        ch.prepare(SR, x.shape[1])
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
    ch.prepare(SR, 4000)
    y = gain_of(ch, x)
    assert np.array_equal(y[0], y[1])
    unlinked = Chain([ChannelSpec(name="R", input=1, key="input", key_input=3)], n_inputs=4)
    unlinked.prepare(SR, 4000)
    assert not np.array_equal(gain_of(unlinked, x)[0], y[1])


@pytest.mark.parametrize("dry_wet", [0.0, 0.3, 1.0])
def test_dry_wet_mixes_processed_and_dry(dry_wet):
    spec = ChannelSpec(name="s", input=0, key="input", key_input=1, dry_wet=dry_wet, range_db=-60.0)
    ch = Chain([spec], n_inputs=2)
    ch.prepare(SR, 256)
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
        ch.prepare(SR, 128)
        ev, n = midi_events([(10, 0x99, 38, vel)])
        return 20 * np.log10(gain_of(ch, np.ones((1, 128), np.float32), ev, n)[0, 20])

    assert opened(127) == pytest.approx(0.0, abs=1e-6)
    assert opened(64) == pytest.approx(-40.0 * (1 - 64 / 127), abs=1e-4)


def test_lookahead_lets_the_gate_open_before_the_audio_arrives():
    base = dict(name="s", input=0, key="self", attack_ms=0.5, hold_ms=5.0, threshold_db=-30.0,
                ratio=math.inf, range_db=-60.0)
    x = np.zeros((1, 2000), np.float32)
    x[0, 1000:] = 0.5
    ch = Chain([ChannelSpec(lookahead_ms=1.0, **base)], n_inputs=1)
    ch.prepare(SR, 2000)
    y = gain_of(ch, x)
    la = ch.latency_samples
    assert la == 48
    # first delayed sample of the hit: the gain has had la + 1 samples of attack (in dB)
    tau = 0.5e-3 * SR
    assert 20 * np.log10(y[0, 1000 + la] / 0.5) == pytest.approx(-60 * math.exp(-(la + 1) / tau), abs=0.2)
    ch0 = Chain([ChannelSpec(**base)], n_inputs=1)
    ch0.prepare(SR, 2000)
    assert gain_of(ch0, x)[0, 1000] / 0.5 < 0.01  # without lookahead the first sample is lost


def test_meters_report_gain_reduction_and_nonfinite_samples():
    spec = ChannelSpec(name="s", input=0, key="self", range_db=-40.0)
    ch = Chain([spec], n_inputs=1)
    ch.prepare(SR, 256)
    x = np.zeros((1, 256), np.float32)
    x[0, 3] = np.nan
    ch.process(x, np.zeros_like(x))
    assert ch.meters[0, M_GR] == pytest.approx(-40.0)
    assert ch.meters[0, M_BAD] == 1


def test_bypass_passes_audio_unchanged():
    ch = Chain([ChannelSpec(name="s", input=0, mode="bypass")], n_inputs=1)
    ch.prepare(SR, 512)
    x = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    y = np.zeros_like(x)
    ch.process(x, y)
    assert np.array_equal(x, y)


@pytest.mark.parametrize("kw, match", [
    ({"key": "input", "key_input": 5}, r"key_input index 5 is outside \[0, 1\)"),
    ({"key": "midi", "notes": ()}, "key 'midi' needs notes"),
    ({"threshold_db": 6.0}, "channel 's': threshold_db must be in"),
    ({"lookahead_ms": 200.0}, r"lookahead_ms must be in \[0.0, 100.0\]"),
])
def test_bad_channel_specs(kw, match):
    with pytest.raises(ParameterError, match=match):
        Chain([ChannelSpec(name="s", input=0, **kw)], n_inputs=1)


def test_bad_process_arguments():
    ch = Chain([ChannelSpec(name="s", input=0)], n_inputs=1)
    ch.prepare(SR, 64)
    with pytest.raises(ParameterError, match="inputs must be float32 of shape"):
        ch.process(np.zeros((1, 64)), np.zeros((1, 64), np.float32))
    with pytest.raises(ParameterError, match="sample_rate must be in"):
        ch.prepare(1000, 64)
