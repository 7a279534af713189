"""Bleed and hit metrics on rendered multitracks (demo, eval, tests).

- *Bleed reduction* (dB): energy of the mic signal over energy of the processed signal, over
  the samples where the channel's own piece is silent next to the bleed (its 10 ms RMS
  envelope is at least 20 dB under the bleed's, bleed = mic - direct), i.e. where one hears
  only bleed. Higher is better.
- *Hit loss* (dB): energy of the mic signal over energy of the processed signal in the first
  30 ms of each own hit. 0 is perfect; a gate that opens late or shallow loses level.
Both compare input and output after removing the processor's latency.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

EPS = 1e-20


def rms_envelope(x: np.ndarray, sample_rate: int, time_ms: float = 10.0) -> np.ndarray:
    """One-pole RMS envelope of ``x`` (time constant ``time_ms``), same length."""
    a = np.exp(-1000.0 / (time_ms * sample_rate))
    return np.sqrt(np.maximum(lfilter([1 - a], [1, -a], np.asarray(x, np.float64) ** 2), 0.0))


def silent_mask(direct: np.ndarray, mic: np.ndarray, sample_rate: int, below_db: float = 20.0) -> np.ndarray:
    """True where the own piece (``direct``) is ``below_db`` or more under the bleed (``mic - direct``)."""
    own = rms_envelope(direct, sample_rate)
    bleed = rms_envelope(np.asarray(mic, np.float64) - direct, sample_rate)
    return (own * 10.0 ** (below_db / 20.0) <= bleed) & (bleed > 0.0)


def align(out: np.ndarray, latency: int, n: int) -> np.ndarray:
    """``out`` advanced by ``latency`` samples and cut/padded to ``n``."""
    y = np.zeros(n, np.float64)
    seg = np.asarray(out[latency:latency + n], np.float64)
    y[:seg.size] = seg
    return y


def bleed_reduction_db(mic: np.ndarray, out: np.ndarray, direct: np.ndarray, sample_rate: int,
                       latency: int = 0, exclude: np.ndarray | None = None) -> float:
    """Bleed reduction between hits, dB (see module docstring); NaN if the piece never rests.

    ``exclude`` (bool, the shape of ``mic``, optional) leaves those samples out of both
    energies: e.g. where an xrun cut a live recording (see :func:`stream_cuts`).

    Raises
    ------
    ValueError
        If ``exclude`` does not have ``mic``'s shape.
    """
    n = mic.size
    y = align(out, latency, n)
    m = silent_mask(direct, mic, sample_rate)
    if exclude is not None:
        exclude = np.asarray(exclude, bool)
        if exclude.shape != np.shape(mic):
            raise ValueError(f"exclude has shape {exclude.shape}; it must have the mic's, {np.shape(mic)}")
        m &= ~exclude
    e_in = float(np.sum(np.asarray(mic, np.float64)[m] ** 2))
    if not m.any() or e_in <= EPS:
        return float("nan")
    return 10.0 * np.log10(e_in / max(float(np.sum(y[m] ** 2)), EPS))


def stream_cuts(played: list[np.ndarray], recorded: list[np.ndarray], n: int, block: int,
                settle: int) -> np.ndarray:
    """Where a live run's stream was cut, from channels that pass their input unchanged.

    In real time an xrun (a client of the graph scheduled too late for its cycle) can drop or
    repeat a block on its way through the graph. A bypassed channel with no latency must
    record exactly what was played, so every block where one differs marks a cut, for every
    channel of that run. Each cut marks its block and the ``settle`` samples after it (the
    time a processor's state takes to forget the wrong block).

    Parameters
    ----------
    played, recorded : lists of 1-D arrays, the same length
        What each pass-through channel was fed, and what it recorded (>= ``n`` samples each).
    n : int
        Samples to check, from the start.
    block : int
        The period, frames (> 0).
    settle : int
        Samples marked after each cut block (>= 0).

    Returns
    -------
    ndarray of bool, shape (n,)
        True in and after every cut.

    Raises
    ------
    ValueError
        On a bad ``block`` or ``settle``, or a recording shorter than ``n``.
    """
    if block <= 0 or settle < 0:
        raise ValueError(f"block must be > 0 and settle >= 0, got {block} and {settle}")
    bad = np.zeros(n, bool)
    for x, y in zip(played, recorded):
        if np.size(x) < n or np.size(y) < n:
            raise ValueError(f"every channel needs {n} samples, got {np.size(x)} played and {np.size(y)} recorded")
        bad |= np.asarray(x[:n]) != np.asarray(y[:n])
    cut = np.zeros(n, bool)
    for b in np.unique(np.flatnonzero(bad) // block):
        cut[b * block:min(n, (b + 1) * block + settle)] = True
    return cut


def hit_loss_db(mic: np.ndarray, out: np.ndarray, frames, sample_rate: int, latency: int = 0,
                window_ms: float = 30.0) -> np.ndarray:
    """Hit loss per hit, dB, over ``window_ms`` from each frame in ``frames``."""
    n = mic.size
    y = align(out, latency, n)
    x = np.asarray(mic, np.float64)
    w = int(window_ms * sample_rate / 1000.0)
    losses = []
    for f in frames:
        e_in = float(np.sum(x[f:f + w] ** 2))
        e_out = float(np.sum(y[f:f + w] ** 2))
        losses.append(10.0 * np.log10(max(e_in, EPS) / max(e_out, EPS)))
    return np.asarray(losses)


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio of ``estimate`` against ``reference``, dB.

    SI-SDR = 10 log10(|a s|^2 / |a s - y|^2) with a = <y, s> / |s|^2, both means removed
    (Le Roux, Wisdom, Erdogan, Hershey, "SDR - half-baked or well done?", ICASSP 2019).
    """
    s = np.asarray(reference, np.float64) - np.mean(reference)
    y = np.asarray(estimate, np.float64) - np.mean(estimate)
    a = float(np.dot(y, s)) / max(float(np.dot(s, s)), EPS)
    t = a * s
    return 10.0 * np.log10(max(float(np.dot(t, t)), EPS) / max(float(np.sum((y - t) ** 2)), EPS))
