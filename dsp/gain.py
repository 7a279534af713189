"""Gain computer: the static curve of a gate (downward expander) or a ducker, with hysteresis.

Curves, for key level ``L`` and threshold ``T`` in dB, ratio ``R`` and knee width ``W`` in dB
(Giannoulis, Massberg and Reiss, JAES 2012, eq. 4 for the soft knee; the expander form is the
same construction mirrored below the threshold, Reiss and McPherson, "Audio Effects", 2015,
ch. 6):

- ``gate`` (attenuate when the key is *below* T)::

      g = 0                                   if 2(L - T) >= W
      g = -(R - 1) (L - T - W/2)^2 / (2W)     if |2(L - T)| < W
      g = (R - 1) (L - T)                     if 2(L - T) <= -W

  ``R = inf`` is a hard gate: ``g = range_db`` below T, 0 at or above it (the knee is unused).

- ``duck`` (attenuate when the key is *above* T)::

      g = 0                                   if 2(L - T) <= -W
      g = (1/R - 1) (L - T + W/2)^2 / (2W)    if |2(L - T)| < W
      g = (1/R - 1) (L - T)                   if 2(L - T) >= W

Then ``g = max(g, range_db)``. Hysteresis: once open (gate) or ducking (duck), the threshold
drops to ``T + hysteresis_db`` until the key falls below it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from debleed.dsp._common import check_block, check_choice
from debleed.dsp.params import GAIN_MODES, PARAMS
from debleed.dsp.processor import ProcessSpec, Processor


@njit(cache=True, inline="always")
def _gain_db(level_db, thr_db, ratio, knee_db, range_db, duck):
    """Static curve: gain in dB (<= 0, >= range_db) for a key level in dB."""
    d = level_db - thr_db
    if duck:
        slope = 1.0 / ratio - 1.0
        if 2.0 * d <= -knee_db:
            g = 0.0
        elif 2.0 * d < knee_db:
            t = d + 0.5 * knee_db
            g = slope * t * t / (2.0 * knee_db)
        else:
            g = slope * d
    else:
        if math.isinf(ratio):
            g = 0.0 if d >= 0.0 else range_db
        elif 2.0 * d >= knee_db:
            g = 0.0
        elif 2.0 * d > -knee_db:
            t = d - 0.5 * knee_db
            g = -(ratio - 1.0) * t * t / (2.0 * knee_db)
        else:
            g = (ratio - 1.0) * d
    if g < range_db:
        g = range_db
    return g


@njit(cache=True, inline="always")
def _hysteresis(level_db, is_open, thr_db, hyst_db):
    """Update the open flag; return ``(is_open, effective threshold in dB)``."""
    if is_open:
        if level_db < thr_db + hyst_db:
            is_open = False
    elif level_db >= thr_db:
        is_open = True
    return is_open, (thr_db + hyst_db if is_open else thr_db)


@njit(cache=True)
def _curve_kernel(level_db, gain_db, thr, ratio, knee, rng, duck):
    for i in range(level_db.size):
        gain_db[i] = _gain_db(level_db[i], thr, ratio, knee, rng, duck)


@njit(cache=True)
def _gain_kernel(level_db, gain_db, state, n, thr, ratio, knee, rng, hyst, duck):
    for c in range(level_db.shape[0]):
        is_open = state[c] != 0.0
        for i in range(n):
            lv = level_db[c, i]
            if not math.isfinite(lv):
                lv = -200.0
            is_open, t = _hysteresis(lv, is_open, thr, hyst)
            gain_db[c, i] = _gain_db(lv, t, ratio, knee, rng, duck)
        state[c] = 1.0 if is_open else 0.0


class GainComputer(Processor):
    """Static gain curve of a gate or ducker, in dB, with hysteresis.

    Parameters
    ----------
    mode : {"gate", "duck"}
        ``gate`` attenuates while the key is below the threshold; ``duck`` while it is above.
    threshold_db : float
        Threshold, dBFS, in [-120, 0]; default -30.0.
    ratio : float
        Expansion (gate) or compression (duck) ratio, >= 1, ``inf`` allowed (hard gate or
        full-depth duck); default 10.0.
    knee_db : float
        Soft-knee width, dB, in [0, 48]; default 6.0. 0 is a hard knee.
    range_db : float
        Maximum attenuation, dB, in [-120, 0]; default -60.0.
    hysteresis_db : float
        Close threshold relative to the open threshold, dB, in [-48, 0]; default 0.0.

    Raises
    ------
    ParameterError
        If any value is out of range, e.g. ``ratio must be in [1.0, 1000000.0] or inf, got 0.5``.

    Notes
    -----
    Formula and sources in the module docstring. Real-time safe; latency 0 samples. NaN key
    levels are read as silence (-200 dB).
    """

    def __init__(self, *, mode="gate", threshold_db=PARAMS["threshold_db"].default, ratio=PARAMS["ratio"].default,
                 knee_db=PARAMS["knee_db"].default, range_db=PARAMS["range_db"].default,
                 hysteresis_db=PARAMS["hysteresis_db"].default):
        # ranges from the one parameter table (debleed.dsp.params)
        self.mode = check_choice("mode", mode, GAIN_MODES)
        self.threshold_db = PARAMS["threshold_db"].check(threshold_db)
        self.ratio = PARAMS["ratio"].check(ratio)
        self.knee_db = PARAMS["knee_db"].check(knee_db)
        self.range_db = PARAMS["range_db"].check(range_db)
        self.hysteresis_db = PARAMS["hysteresis_db"].check(hysteresis_db)

    def _allocate(self, spec: ProcessSpec) -> None:
        """The hysteresis state: one flag per channel (1 while open)."""
        self._state = np.zeros(spec.n_channels, np.float64)

    def state_arrays(self) -> tuple:
        return (self._state,)

    def gain_db(self, level_db):
        """Static curve without hysteresis, for any array of key levels in dB (not real-time)."""
        lv = np.asarray(level_db, dtype=np.float64)
        out = np.empty(lv.shape, np.float64)
        _curve_kernel(lv.reshape(-1), out.reshape(-1), self.threshold_db, self.ratio,
                      self.knee_db, self.range_db, self.mode == "duck")
        return out

    def process(self, level_db: np.ndarray, gain_db: np.ndarray) -> None:
        """Gain in dB for key levels in dB.

        Parameters
        ----------
        level_db : ndarray, float32, shape (n_channels, n_frames)
            Key level, dBFS, ``0 <= n_frames <= max_block``.
        gain_db : ndarray, float32, same shape
            Output gain, dB, in [range_db, 0]; may be ``level_db``.

        Raises
        ------
        ParameterError
            On a wrong dtype or shape, or more than ``max_block`` frames.
        DebleedError
            If called before :meth:`prepare`.
        """
        n = check_block(self, level_db, gain_db)
        _gain_kernel(level_db, gain_db, self._state, n, self.threshold_db, self.ratio,
                     self.knee_db, self.range_db, self.hysteresis_db, self.mode == "duck")
