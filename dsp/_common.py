"""Validation helpers shared by the processors (not real-time code)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from debleed.errors import ParameterError


def check_range(name, value, low, high, *, low_open=False, allow_inf=False):
    """Return ``float(value)`` if ``low <= value <= high`` (``low < value`` if ``low_open``).

    Raises
    ------
    ParameterError
        Naming ``name``, the value and the allowed range.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)):
        allowed = f"{'(' if low_open else '['}{low}, {high}]" + (" or inf" if allow_inf else "")
        raise ParameterError(f"{name} must be in {allowed}, got {value!r}")
    if math.isinf(v):
        return v
    if (v <= low if low_open else v < low) or v > high:
        allowed = f"{'(' if low_open else '['}{low}, {high}]" + (" or inf" if allow_inf else "")
        raise ParameterError(f"{name} must be in {allowed}, got {value!r}")
    return v


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise :class:`ParameterError`."""
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_int(name, value, low, high=None):
    """Return ``int(value)`` if it is an integer (not a bool) in ``[low, high]`` (no upper bound if None).

    Raises
    ------
    ParameterError
        Naming ``name``, the value and the allowed range.
    """
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            or value < low or (high is not None and value > high)):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ParameterError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def check_notes(notes):
    """Return ``notes`` as a tuple of ints if each is an integer MIDI note in [0, 127] (may be empty).

    Raises
    ------
    ParameterError
        Naming the notes and the allowed range.
    """
    try:
        return tuple(check_int("note", v, 0, 127) for v in notes)
    except (TypeError, ParameterError):
        raise ParameterError(f"notes must be MIDI note numbers, integers in [0, 127], got {notes!r}") from None


#: Sample rates and block lengths a :class:`~debleed.dsp.processor.ProcessSpec` accepts.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000.0, 384000.0
MAX_BLOCK = 1 << 20


@njit(cache=True)
def _first_bad_frame(events, n_events, n_frames):
    """Index of the first of ``events[:n_events]`` whose frame is outside [0, n_frames) or below
    the frame before it; -1 if there is none."""
    prev = 0
    for e in range(n_events):
        f = events[e, 0]
        if f < prev or f >= n_frames:
            return e
        prev = f
    return -1


def check_events(events, n_events, n_frames):
    """Check the MIDI ``events`` of one block of ``n_frames``; return ``n_events`` as an int.

    ``events`` must be int32 of shape ``(k, 4)``, rows ``(frame, status, data1, data2)``;
    ``0 <= n_events <= k``; the frames of the first ``n_events`` rows non-decreasing and in
    ``[0, n_frames)``. Only those rows are read, in one allocation-free pass.

    Raises
    ------
    ParameterError
        Naming the wrong dtype, shape, count or frame offset and what is allowed.
    """
    if not isinstance(events, np.ndarray) or events.dtype != np.int32 or events.ndim != 2 or events.shape[1] != 4:
        raise ParameterError(
            f"events must be an int32 array of shape (k, 4), rows (frame, status, data1, data2), got "
            f"{getattr(events, 'dtype', type(events).__name__)} with shape {getattr(events, 'shape', None)}")
    k = events.shape[0]
    n_events = check_int("n_events", n_events, 0, k)
    bad = _first_bad_frame(events, n_events, n_frames) if n_events else -1
    if bad >= 0:
        raise ParameterError(
            f"event {bad} has frame offset {events[bad, 0]}: offsets must be in [0, {n_frames}) for a "
            f"block of {n_frames} frames and non-decreasing (events sorted by frame)")
    return n_events


def check_block(proc, x, out):
    """Check the ``(n_channels, n_frames)`` float32 in/out pair of ``proc.process``; return n_frames."""
    proc.check_prepared("process")
    for label, a in (("input", x), ("output", out)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2:
            raise ParameterError(
                f"{label} must be a float32 array of shape (n_channels, n_frames), got "
                f"{getattr(a, 'dtype', type(a).__name__)} with shape {getattr(a, 'shape', None)}")
    if x.shape[0] != proc.n_channels or out.shape != x.shape:
        raise ParameterError(
            f"expected input and output of shape ({proc.n_channels}, n_frames), got {x.shape} and {out.shape}")
    if x.shape[1] > proc.max_block:
        raise ParameterError(f"block of {x.shape[1]} frames exceeds max_block={proc.max_block}")
    return x.shape[1]
