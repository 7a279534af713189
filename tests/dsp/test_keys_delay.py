"""Key sources (filters, piezo triggers, MIDI) and the lookahead delay."""

import numpy as np
import pytest

from debleed.dsp import KeyFilter, LookaheadDelay, MidiKey, TriggerDetector
from debleed.errors import ParameterError
from debleed.dsp.processor import ProcessSpec

SR = 48000


def sine(freq, n=SR // 2, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)[None]


def steady_gain_db(proc, x):
    y = np.zeros_like(x)
    proc.process(x, y)
    tail = slice(x.shape[1] // 2, None)
    return 20 * np.log10(np.sqrt(np.mean(y[0, tail] ** 2)) / np.sqrt(np.mean(x[0, tail] ** 2)))


def test_key_highpass_passes_above_and_cuts_below_cutoff():
    f = KeyFilter(hpf_hz=200.0)
    f.prepare(ProcessSpec(SR, SR, 1))
    assert steady_gain_db(f, sine(200.0)) == pytest.approx(-3.01, abs=0.1)  # Butterworth -3 dB point
    f.reset()
    assert steady_gain_db(f, sine(2000.0)) == pytest.approx(0.0, abs=0.1)
    f.reset()
    assert steady_gain_db(f, sine(50.0)) < -20.0  # two octaves below, 12 dB/oct: ~ -24 dB


def test_key_lowpass_cuts_above_cutoff():
    f = KeyFilter(lpf_hz=1000.0)
    f.prepare(ProcessSpec(SR, SR, 1))
    assert steady_gain_db(f, sine(4000.0)) < -20.0


def test_cutoff_above_nyquist_is_refused_at_prepare():
    f = KeyFilter(hpf_hz=30000.0)
    with pytest.raises(ParameterError, match="highpass cutoff must be in"):
        f.prepare(ProcessSpec(SR, 64, 1))


def test_one_ringing_piezo_hit_gives_one_pulse():
    t = np.arange(int(0.05 * SR)) / SR
    burst = (0.9 * np.sin(2 * np.pi * 180 * t) * np.exp(-t / 0.01)).astype(np.float32)
    x = np.zeros((1, SR // 2), np.float32)
    x[0, 1000:1000 + burst.size] += burst
    x[0, 10000:10000 + burst.size] += burst
    trig = TriggerDetector(trigger_threshold_db=-20.0, retrigger_ms=30.0)
    trig.prepare(ProcessSpec(SR, x.shape[1], 1))
    y = np.zeros_like(x)
    trig.process(x, y)
    hits = np.nonzero(y[0])[0]
    assert len(hits) == 2
    assert 1000 <= hits[0] < 1000 + 30 and 10000 <= hits[1] < 10000 + 30  # first crossing of -20 dBFS


def test_without_mask_the_ringing_piezo_retriggers():
    t = np.arange(int(0.05 * SR)) / SR
    burst = (0.9 * np.sin(2 * np.pi * 180 * t) * np.exp(-t / 0.01)).astype(np.float32)[None]
    trig = TriggerDetector(trigger_threshold_db=-20.0, retrigger_ms=0.0)
    trig.prepare(ProcessSpec(SR, burst.shape[1], 1))
    y = np.zeros_like(burst)
    trig.process(burst, y)
    assert np.count_nonzero(y) > 5


def test_midi_key_pulses_at_exact_frame_offsets_for_listed_notes_only():
    mk = MidiKey(notes=[38, 40], midi_channel=10)
    mk.prepare(ProcessSpec(SR, 128, 1))
    ev = np.zeros((8, 4), np.int32)
    ev[:5] = [(3, 0x99, 38, 100),   # ch 10, snare: yes
              (17, 0x99, 36, 100),  # kick: not listed
              (40, 0x90, 38, 100),  # ch 1: wrong channel
              (77, 0x99, 40, 0),    # velocity 0 = note-off
              (127, 0x99, 40, 1)]   # last frame of the block
    out = np.zeros((1, 128), np.float32)
    mk.process(ev, 5, out)
    assert list(np.nonzero(out[0])[0]) == [3, 127]


@pytest.mark.parametrize("data1", [138, -118, 255])
def test_midi_key_ignores_a_note_byte_outside_0_127(data1):
    # 138 and -118 are note 10 modulo 128: they must not read the mask entry of note 10
    mk = MidiKey(notes=[10])
    mk.prepare(ProcessSpec(SR, 64, 1))
    ev = np.array([(3, 0x90, data1, 100), (9, 0x90, 10, 100)], np.int32)
    out = np.zeros((1, 64), np.float32)
    mk.process(ev, 2, out)
    assert list(np.nonzero(out[0])[0]) == [9]


@pytest.mark.parametrize("data2", [128, 255, -1, -127])
def test_midi_key_ignores_a_velocity_byte_outside_0_127(data2):
    mk = MidiKey(notes=[38])
    mk.prepare(ProcessSpec(SR, 64, 1))
    ev = np.array([(3, 0x99, 38, data2), (9, 0x99, 38, 127)], np.int32)
    out = np.zeros((1, 64), np.float32)
    mk.process(ev, 2, out)
    assert list(np.nonzero(out[0])[0]) == [9]


@pytest.mark.parametrize("kw, match", [
    ({"notes": []}, r"notes must be a non-empty list of MIDI notes in \[0, 127\], got \[\]"),
    ({"notes": [128]}, r"notes must be MIDI note numbers, integers in \[0, 127\], got \[128\]"),
    ({"notes": [38.5]}, r"notes must be .*got \[38.5\]"),
    ({"notes": ["38"]}, r"notes must be .*got \['38'\]"),
    ({"notes": 38}, r"notes must be .*got 38"),
    ({"notes": [38], "midi_channel": 17}, r"midi_channel must be an integer in \[0, 16\], got 17"),
    ({"notes": [38], "midi_channel": 1.5}, r"midi_channel must be an integer in \[0, 16\], got 1.5"),
    ({"notes": [38], "midi_channel": True}, r"midi_channel must be an integer in \[0, 16\], got True"),
])
def test_bad_midi_key_parameters(kw, match):
    with pytest.raises(ParameterError, match=match):
        MidiKey(**kw)


def test_midi_key_takes_numpy_integers():
    mk = MidiKey(notes=np.array([38, 40], np.int16), midi_channel=np.int64(10))
    assert mk.notes == [38, 40] and mk.midi_channel == 10


@pytest.mark.parametrize("ms", [0.0, 0.5, 2.0, 10.0])
def test_lookahead_delays_an_impulse_by_its_reported_latency(ms):
    d = LookaheadDelay(lookahead_ms=ms)
    d.prepare(ProcessSpec(SR, 1024, 2))
    x = np.zeros((2, 1024), np.float32)
    x[:, 5] = 1.0
    y = np.zeros_like(x)
    d.process(x, y)
    assert d.latency_samples == round(ms * SR / 1000)
    assert list(np.nonzero(y[0])[0]) == [5 + d.latency_samples]
