"""Conversions between user units and kernel coefficients.

Time-constant convention (used everywhere in debleed)
-----------------------------------------------------
A one-pole smoother ``y[n] = c * y[n-1] + (1 - c) * x[n]`` with

    c = exp(-1 / (t_s * fs))

reaches ``1 - 1/e`` (about 63.2 %) of a step after ``t_s`` seconds: the analog RC time
constant. This is the convention of Giannoulis, Massberg and Reiss, "Digital Dynamic Range
Compressor Design -- A Tutorial and Analysis", JAES 60(6), 2012, section 3 (and of torchcomp).
A time of 0 gives ``c = 0``: the smoother follows its input instantly.
"""

from __future__ import annotations

import math

import numpy as np

from debleed.errors import ParameterError

#: Fraction of a step that a one-pole smoother reaches after one time constant: 1 - 1/e.
STEP_FRACTION = 1.0 - math.exp(-1.0)

#: Level floor in dB: linear levels below 1e-10 (-200 dB) are treated as silence.
FLOOR_DB = -200.0


def _check_sample_rate(sample_rate) -> float:
    """``float(sample_rate)`` if it is a finite number > 0, else :class:`ParameterError`."""
    try:
        sr = float(sample_rate)
    except (TypeError, ValueError):
        sr = math.nan
    if not (math.isfinite(sr) and sr > 0.0):
        raise ParameterError(f"sample_rate must be finite and > 0 Hz, got {sample_rate!r}")
    return sr


def ms_to_coef(time_ms: float, sample_rate: float) -> float:
    """One-pole coefficient for a time constant in milliseconds.

    Parameters
    ----------
    time_ms : float
        Time constant in ms, >= 0. 0 means instantaneous (coefficient 0).
    sample_rate : float
        Sample rate in Hz, > 0.

    Returns
    -------
    float
        ``exp(-1000 / (time_ms * sample_rate))`` in [0, 1).

    Raises
    ------
    ParameterError
        If ``time_ms`` is negative or not finite, or ``sample_rate`` is not a finite number > 0.

    Examples
    --------
    >>> round(ms_to_coef(1.0, 48000.0), 6)
    0.979374
    """
    if not math.isfinite(time_ms) or time_ms < 0.0:
        raise ParameterError(f"time must be a finite number of ms >= 0, got {time_ms!r}")
    sample_rate = _check_sample_rate(sample_rate)
    if time_ms == 0.0:
        return 0.0
    return math.exp(-1000.0 / (time_ms * sample_rate))


def coef_to_ms(coef: float, sample_rate: float) -> float:
    """Inverse of :func:`ms_to_coef`: the time constant of a one-pole coefficient.

    Parameters
    ----------
    coef : float
        Coefficient, in [0, 1). 0 means instantaneous.
    sample_rate : float
        Sample rate in Hz, > 0.

    Returns
    -------
    float
        ``-1000 / (ln(coef) * sample_rate)``, ms, >= 0 (0 for ``coef = 0``).

    Raises
    ------
    ParameterError
        If ``coef`` is not in [0, 1) or ``sample_rate`` is not a finite number > 0.

    Examples
    --------
    >>> round(coef_to_ms(ms_to_coef(5.0, 48000.0), 48000.0), 9)
    5.0
    """
    if not 0.0 <= coef < 1.0:
        raise ParameterError(f"coefficient must be in [0, 1), got {coef!r}")
    sample_rate = _check_sample_rate(sample_rate)
    if coef == 0.0:
        return 0.0
    return -1000.0 / (math.log(coef) * sample_rate)


def ms_to_samples(time_ms: float, sample_rate: float) -> int:
    """Round a duration to whole samples.

    Parameters
    ----------
    time_ms : float
        Duration in ms, >= 0.
    sample_rate : float
        Sample rate in Hz, > 0.

    Returns
    -------
    int
        ``round(time_ms * sample_rate / 1000)``, samples, >= 0 (halves round to even).

    Raises
    ------
    ParameterError
        If ``time_ms`` is negative or not finite, or ``sample_rate`` is not a finite number > 0.

    Examples
    --------
    >>> ms_to_samples(10.0, 48000.0)
    480
    """
    if not math.isfinite(time_ms) or time_ms < 0.0:
        raise ParameterError(f"time must be a finite number of ms >= 0, got {time_ms!r}")
    return int(round(time_ms * _check_sample_rate(sample_rate) / 1000.0))


def db_to_lin(db):
    """Amplitude ratio of a level in dB: ``10 ** (db / 20)``.

    Parameters
    ----------
    db : float or array_like
        Level, dB, any real value (-inf gives 0, NaN gives NaN).

    Returns
    -------
    ndarray, float64
        Linear amplitude ratio, >= 0, same shape as ``db`` (0-d for a scalar).

    Raises
    ------
    TypeError or ValueError
        If ``db`` is not numeric (from numpy).

    Examples
    --------
    >>> float(db_to_lin(-20.0))
    0.1
    """
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 20.0)


def lin_to_db(lin):
    """Level in dB of an amplitude ratio, floored at :data:`FLOOR_DB`.

    Parameters
    ----------
    lin : float or array_like
        Linear amplitude; its absolute value is used, so the sign does not matter.

    Returns
    -------
    ndarray, float64
        ``20 * log10(max(|lin|, 1e-10))``, dB, >= -200 (:data:`FLOOR_DB`), same shape as ``lin``
        (0-d for a scalar). NaN stays NaN.

    Raises
    ------
    TypeError or ValueError
        If ``lin`` is not numeric (from numpy).

    Examples
    --------
    >>> round(float(lin_to_db(0.5)), 3)
    -6.021
    >>> float(lin_to_db(0.0))
    -200.0
    """
    lin = np.abs(np.asarray(lin, dtype=np.float64))
    return 20.0 * np.log10(np.maximum(lin, 10.0 ** (FLOOR_DB / 20.0)))
