"""Static gain curve against the formulas in dsp/gain.py, hysteresis and range."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from debleed.dsp import GainComputer
from debleed.errors import ParameterError
from debleed.dsp.processor import ProcessSpec


def gate_formula(L, T, R, W, rng):
    d = L - T
    if 2 * d >= W:
        g = 0.0
    elif 2 * d > -W:
        g = -(R - 1) * (d - W / 2) ** 2 / (2 * W)
    else:
        g = (R - 1) * d
    return max(g, rng)


def duck_formula(L, T, R, W, rng):
    d = L - T
    if 2 * d <= -W:
        g = 0.0
    elif 2 * d < W:
        g = (1 / R - 1) * (d + W / 2) ** 2 / (2 * W)
    else:
        g = (1 / R - 1) * d
    return max(g, rng)


@settings(max_examples=200, deadline=None)
@given(L=st.floats(-150, 10), T=st.floats(-80, 0), R=st.floats(1, 100), W=st.floats(0, 24),
       rng=st.floats(-120, 0), duck=st.booleans())
def test_curve_matches_formula(L, T, R, W, rng, duck):
    gc = GainComputer(mode="duck" if duck else "gate", threshold_db=T, ratio=R, knee_db=W, range_db=rng)
    want = (duck_formula if duck else gate_formula)(L, T, R, W, rng)
    assert gc.gain_db([L])[0] == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("mode", ["gate", "duck"])
def test_soft_knee_is_continuous_with_matching_slopes(mode):
    gc = GainComputer(mode=mode, threshold_db=-30, ratio=4, knee_db=10, range_db=-120)
    for edge in (-35.0, -25.0):
        lo, at, hi = gc.gain_db([edge - 1e-6, edge, edge + 1e-6])
        assert abs(hi - lo) < 1e-5  # continuous
        s_in = (gc.gain_db([edge + 1e-3])[0] - gc.gain_db([edge - 1e-3])[0]) / 2e-3
        s_left = (gc.gain_db([edge - 1e-3])[0] - gc.gain_db([edge - 2e-3])[0]) / 1e-3
        assert s_in == pytest.approx(s_left, abs=2e-3)


def test_gate_at_threshold_with_hard_knee_and_below():
    gc = GainComputer(mode="gate", threshold_db=-30, ratio=10, knee_db=0, range_db=-60)
    assert list(gc.gain_db([-30.0, -20.0, -31.0, -40.0])) == pytest.approx([0.0, 0.0, -9.0, -60.0])


def test_infinite_ratio_is_a_hard_gate_and_a_full_duck():
    gate = GainComputer(mode="gate", threshold_db=-30, ratio=math.inf, knee_db=6, range_db=-50)
    assert list(gate.gain_db([-29.9, -30.0, -30.1])) == [0.0, 0.0, -50.0]
    duck = GainComputer(mode="duck", threshold_db=-30, ratio=math.inf, knee_db=0, range_db=-120)
    assert duck.gain_db([-10.0])[0] == pytest.approx(-20.0)


def test_range_limits_attenuation():
    gc = GainComputer(mode="duck", threshold_db=-40, ratio=math.inf, knee_db=0, range_db=-12)
    assert gc.gain_db([0.0])[0] == -12.0


def test_hysteresis_opens_at_threshold_and_closes_below_it():
    gc = GainComputer(mode="gate", threshold_db=-30, ratio=math.inf, knee_db=0, range_db=-60, hysteresis_db=-10)
    gc.prepare(ProcessSpec(48000, 16, 1))
    levels = np.array([[-35, -29, -35, -39, -41, -35, -29]], np.float32)
    out = np.zeros_like(levels)
    gc.process(levels, out)
    # closed until -29 opens it; stays open down to -39 (> -40); -41 closes; -35 stays closed
    assert list(out[0]) == [-60, 0, 0, 0, -60, -60, 0]


@pytest.mark.parametrize("kw, match", [
    ({"ratio": 0.5}, r"ratio must be in \[1, 1e\+06\] or inf, got 0.5"),
    ({"threshold_db": 3}, "threshold_db must be in"),
    ({"hysteresis_db": 2}, "hysteresis_db"),
    ({"mode": "expand"}, "mode must be one of 'gate', 'duck'"),
    ({"range_db": "deep"}, r"range_db must be a number in \[-120, 0\] dB, got 'deep'"),
])
def test_bad_parameters_name_the_value(kw, match):
    with pytest.raises(ParameterError, match=match):
        GainComputer(**kw)
