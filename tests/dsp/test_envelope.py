"""Envelope follower timing against the RC convention (Giannoulis et al., JAES 2012)."""

import math

import numpy as np
import pytest

from debleed.dsp import EnvelopeFollower, coef_to_ms, ms_to_coef, ms_to_samples
from debleed.dsp.units import STEP_FRACTION
from debleed.errors import ParameterError
from debleed.dsp.processor import ProcessSpec

SR = 48000


@pytest.mark.parametrize("attack_ms", [0.5, 1.0, 5.0, 20.0])
def test_step_reaches_one_minus_1_over_e_after_attack_ms(attack_ms):
    env = EnvelopeFollower(attack_ms=attack_ms, release_ms=100.0)
    n = int(attack_ms * SR / 1000)
    env.prepare(ProcessSpec(SR, 4 * n, 1))
    x = np.ones((1, 4 * n), np.float32)
    y = np.zeros_like(x)
    env.process(x, y)
    # sample k (0-based) has seen k + 1 steps: 1 - c^(k+1); after n samples: 1 - c^n = 1 - 1/e
    assert y[0, n - 1] == pytest.approx(STEP_FRACTION, abs=1e-6)
    assert y[0, n - 2] < STEP_FRACTION < y[0, n]


@pytest.mark.parametrize("release_ms", [10.0, 100.0])
def test_release_falls_to_1_over_e_after_release_ms(release_ms):
    env = EnvelopeFollower(attack_ms=0.0, release_ms=release_ms)
    n = int(release_ms * SR / 1000)
    env.prepare(ProcessSpec(SR, 2 * n + 1, 1))
    x = np.zeros((1, 2 * n + 1), np.float32)
    x[0, 0] = 1.0
    y = np.zeros_like(x)
    env.process(x, y)
    assert y[0, 0] == 1.0  # attack 0: instant
    assert y[0, n] == pytest.approx(math.exp(-1.0), rel=1e-6)


def test_hold_keeps_the_peak_for_hold_ms_then_releases():
    env = EnvelopeFollower(attack_ms=0.0, release_ms=10.0, hold_ms=5.0)
    env.prepare(ProcessSpec(SR, 2000, 1))
    x = np.zeros((1, 2000), np.float32)
    x[0, 100] = 0.8
    y = np.zeros_like(x)
    env.process(x, y)
    hold = int(5.0 * SR / 1000)
    assert np.all(y[0, 100:101 + hold] == np.float32(0.8))
    assert y[0, 101 + hold] < np.float32(0.8)


def test_rms_detector_of_a_sine_settles_at_amplitude_over_sqrt2():
    env = EnvelopeFollower(attack_ms=0.0, release_ms=0.0, detector="rms", rms_ms=20.0)
    env.prepare(ProcessSpec(SR, SR, 1))
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
    y = np.zeros_like(x)
    env.process(x, y)
    assert np.mean(y[0, -4800:]) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_coefficient_conversions_round_trip():
    for ms in (0.1, 1.0, 37.0, 1000.0):
        assert coef_to_ms(ms_to_coef(ms, SR), SR) == pytest.approx(ms, rel=1e-12)
    assert ms_to_coef(0.0, SR) == 0.0


@pytest.mark.parametrize("call", [
    lambda sr: ms_to_samples(10.0, sr),
    lambda sr: coef_to_ms(0.5, sr),
    lambda sr: ms_to_coef(1.0, sr),
])
@pytest.mark.parametrize("sr", [-48000, 0, 0.0, float("nan"), float("inf"), "48k", None])
def test_unit_conversions_refuse_a_non_positive_or_non_finite_sample_rate(call, sr):
    with pytest.raises(ParameterError, match=rf"sample_rate must be finite and > 0 Hz, got {sr!r}"):
        call(sr)


@pytest.mark.parametrize("kw, match", [
    ({"attack_ms": -1.0}, "attack_ms must be in"),
    ({"release_ms": float("nan")}, "release_ms"),
    ({"detector": "avg"}, "detector must be one of 'peak', 'rms', got 'avg'"),
    ({"rms_ms": 0.0}, r"rms_ms must be in \(0, 1000\] ms, got 0.0"),
])
def test_bad_parameters_name_the_value(kw, match):
    with pytest.raises(ParameterError, match=match):
        EnvelopeFollower(**kw)
