"""Envelope follower: peak or RMS detector, then hold, attack and release.

The same attack/hold/release step (:func:`_ahr_step`) smooths the gain activity of every
channel in :mod:`debleed.dsp.chain`, so the timing documented here is the timing of the gates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from debleed.dsp._common import check_block
from debleed.dsp.params import PARAMS
from debleed.dsp.processor import ProcessSpec, Processor
from debleed.dsp.units import ms_to_coef, ms_to_samples

#: Below this, state snaps to exactly 0 (denormal guard, as JUCE does). debleed snaps every
#: sample rather than every block, so the output does not depend on the block size.
SNAP = 1e-8

#: The level detectors, as the parameter table lists them.
DETECTORS = PARAMS["detector"].choices


@njit(cache=True, inline="always")
def _snap(v):
    """``v``, or exactly 0 when ``|v| < SNAP``."""
    return v if abs(v) >= SNAP else 0.0


@njit(cache=True, inline="always")
def _detect(v, rms, ms, a_rms):
    """Detector step: ``(|v|, ms)`` for peak, ``(sqrt(ms'), ms')`` for RMS with a one-pole mean square."""
    if rms:
        ms = a_rms * ms + (1.0 - a_rms) * v * v
        if ms < SNAP * SNAP:
            ms = 0.0
        return math.sqrt(ms), ms
    return abs(v), ms


@njit(cache=True, inline="always")
def _ahr_step(x, held, hold_left, y, a_att, a_rel, hold_n):
    """One sample of peak-hold, then a branching one-pole smoother.

    The target ``held`` follows ``x`` upwards at once and stays at its peak for ``hold_n``
    samples after ``x`` falls, then follows ``x`` down. ``y`` approaches ``held`` with
    coefficient ``a_att`` when below it and ``a_rel`` when above it (Giannoulis et al. 2012,
    eq. 17, "branching" detector). Returns ``(held, hold_left, y)``.
    """
    if x >= held:
        held = x
        hold_left = hold_n
    elif hold_left > 0:
        hold_left -= 1
    else:
        held = x
    if held > y:
        y = a_att * y + (1.0 - a_att) * held
    else:
        y = a_rel * y + (1.0 - a_rel) * held
    return held, hold_left, y


@njit(cache=True)
def _envelope_kernel(x, out, state, n, a_att, a_rel, hold_n, rms, a_rms):
    """Envelope of ``x[:, :n]`` into ``out[:, :n]``; state rows are (mean square, held, hold_left, y)."""
    for c in range(x.shape[0]):
        ms = state[c, 0]
        held = state[c, 1]
        hold_left = int(state[c, 2])
        y = state[c, 3]
        for i in range(n):
            v = x[c, i]
            if not math.isfinite(v):
                v = 0.0
            level, ms = _detect(v, rms, ms, a_rms)
            held, hold_left, y = _ahr_step(level, held, hold_left, y, a_att, a_rel, hold_n)
            held = _snap(held)
            y = _snap(y)
            out[c, i] = y
        state[c, 0] = ms
        state[c, 1] = held
        state[c, 2] = hold_left
        state[c, 3] = y


class EnvelopeFollower(Processor):
    """Peak or RMS envelope with attack, hold and release.

    Parameters
    ----------
    attack_ms : float
        Time constant for a rising envelope, ms, in [0, 1000]; default 1.0. After a step the
        envelope reaches ``1 - 1/e`` (63.2 %) of the step after ``attack_ms`` (RC convention,
        Giannoulis, Massberg and Reiss, JAES 2012; see :mod:`debleed.dsp.units`).
    release_ms : float
        Time constant for a falling envelope, ms, in [0, 10000]; default 100.0.
    hold_ms : float
        How long the detected peak is held before the release starts, ms, in [0, 5000];
        default 0.0.
    detector : {"peak", "rms"}
        ``peak`` follows ``|x|``; ``rms`` follows ``sqrt`` of a one-pole mean square with time
        constant ``rms_ms``. Default ``"peak"``.
    rms_ms : float
        Mean-square time constant of the RMS detector, ms, in (0, 1000]; default 10.0.

    Raises
    ------
    ParameterError
        If any value is out of range; the message names it.

    Notes
    -----
    Real-time safe: ``process`` allocates nothing. Latency: 0 samples. A NaN or Inf input
    sample is read as 0, so it never poisons the state. State below 1e-8 snaps to 0 after each
    sample.

    Examples
    --------
    >>> import numpy as np
    >>> env = EnvelopeFollower(attack_ms=1.0, release_ms=50.0)
    >>> env.prepare(ProcessSpec(48000, 256, 1))
    >>> x = np.ones((1, 48), np.float32); y = np.empty_like(x)
    >>> env.process(x, y)
    >>> round(float(y[0, 47]), 3)   # 48 samples = 1 ms at 48 kHz
    0.632
    """

    def __init__(self, *, attack_ms=PARAMS["attack_ms"].default, release_ms=PARAMS["release_ms"].default,
                 hold_ms=0.0, detector="peak", rms_ms=PARAMS["rms_ms"].default):
        # ranges from the one parameter table (debleed.dsp.params); no hold by default here
        self.attack_ms = PARAMS["attack_ms"].check(attack_ms)
        self.release_ms = PARAMS["release_ms"].check(release_ms)
        self.hold_ms = PARAMS["hold_ms"].check(hold_ms)
        self.detector = PARAMS["detector"].check(detector)
        self.rms_ms = PARAMS["rms_ms"].check(rms_ms)

    def _allocate(self, spec: ProcessSpec) -> None:
        """Coefficients for ``spec.sample_rate``; 4 state values per channel."""
        sr = spec.sample_rate
        self._a_att = ms_to_coef(self.attack_ms, sr)
        self._a_rel = ms_to_coef(self.release_ms, sr)
        self._a_rms = ms_to_coef(self.rms_ms, sr)
        self._hold_n = ms_to_samples(self.hold_ms, sr)
        self._state = np.zeros((spec.n_channels, 4), np.float64)

    def state_arrays(self) -> tuple:
        return (self._state,)

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the envelope of ``x`` into ``out``.

        Parameters
        ----------
        x : ndarray, float32, shape (n_channels, n_frames)
            Input, ``0 <= n_frames <= max_block``.
        out : ndarray, float32, same shape
            Envelope, linear amplitude. Write ``process(x, out)``, not ``out = ...``. May be ``x``.

        Raises
        ------
        ParameterError
            On a wrong dtype or shape, or more than ``max_block`` frames.
        DebleedError
            If called before :meth:`prepare`.
        """
        n = check_block(self, x, out)
        _envelope_kernel(x, out, self._state, n, self._a_att, self._a_rel, self._hold_n,
                         self.detector == "rms", self._a_rms)
