"""Lookahead delay: delays the audio so the key can open the gate before the hit arrives."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from debleed.dsp._common import check_block
from debleed.dsp.params import PARAMS
from debleed.dsp.processor import ProcessSpec, Processor
from debleed.dsp.units import ms_to_samples


@njit(cache=True, inline="always")
def _delay_step(x, buf, w, delay_n):
    """Write ``x`` at ``buf[w]``, read ``delay_n`` samples back; returns ``(y, next w)``."""
    size = buf.shape[0]
    buf[w] = x
    r = w - delay_n
    if r < 0:
        r += size
    w += 1
    if w == size:
        w = 0
    return buf[r], w


@njit(cache=True)
def _delay_kernel(x, out, bufs, widx, n, delay_n):
    for c in range(x.shape[0]):
        w = int(widx[c])
        buf = bufs[c]
        for i in range(n):
            v = x[c, i]
            if not math.isfinite(v):
                v = 0.0
            out[c, i], w = _delay_step(v, buf, w, delay_n)
        widx[c] = w


class LookaheadDelay(Processor):
    """Delay every channel by ``lookahead_ms``.

    Parameters
    ----------
    lookahead_ms : float
        Delay, ms, in [0, 100]; default 0.0. Rounded to whole samples at prepare.

    Raises
    ------
    ParameterError
        If ``lookahead_ms`` is out of range.

    Notes
    -----
    ``latency_samples`` is the delay in samples and is reported to hosts (JACK port latency).
    Real-time safe. Non-finite input samples are written as 0.
    """

    def __init__(self, *, lookahead_ms=0.0):
        self.lookahead_ms = PARAMS["lookahead_ms"].check(lookahead_ms)
        self._delay_n = 0

    @property
    def latency_samples(self) -> int:
        """Delay in samples (valid after prepare)."""
        return self._delay_n

    def _allocate(self, spec: ProcessSpec) -> None:
        """One ring of ``delay + 1`` samples per channel, and its write index."""
        self._delay_n = ms_to_samples(self.lookahead_ms, spec.sample_rate)
        self._bufs = np.zeros((spec.n_channels, self._delay_n + 1), np.float32)
        self._state = np.zeros(spec.n_channels, np.int64)

    def state_arrays(self) -> tuple:
        return (self._bufs, self._state)

    def process(self, x, out):
        """Delay ``x`` into ``out``.

        Parameters
        ----------
        x : ndarray, float32, shape (n_channels, n_frames)
            Input, ``0 <= n_frames <= max_block``.
        out : ndarray, float32, same shape
            Written; may be ``x`` (each sample is read before it is written).

        Raises
        ------
        ParameterError
            On a wrong dtype or shape, or more than ``max_block`` frames.
        DebleedError
            If called before :meth:`prepare`.
        """
        n = check_block(self, x, out)
        _delay_kernel(x, out, self._bufs, self._state, n, self._delay_n)
