"""What several soundcheck steps share: the velocity classes, the hit-loss targets, clamping
a value to a channel parameter's range (:data:`debleed.dsp.params.PARAMS`), and where a rebuilt
key event lands."""

from __future__ import annotations

from debleed.dsp.params import PARAMS

#: Loud hits and ghost notes (velocity, 0-1 of the piece's loudest hit) for the fit, the
#: denoiser's before/after table and the show prediction: loud from this velocity up ...
LOUD_VELOCITY = 0.6
#: ... ghost notes below this one.
GHOST_VELOCITY = 0.2
#: Hit-loss targets (dB, first 30 ms, against the mic): loud hits, ghost notes (the fit measures
#: ghost notes against the clean own piece, see :func:`debleed.soundcheck.fit.fit_score`).
MAX_LOUD_LOSS_DB, MAX_GHOST_LOSS_DB = 0.5, 1.0


def clamp(name: str, value: float) -> float:
    """``value`` clamped to the range of the channel parameter ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`debleed.dsp.params.PARAMS` (e.g. ``"hold_ms"``).
    value : float
        In the parameter's unit.

    Returns
    -------
    float
        ``value`` within ``[lo, hi]`` of the parameter (just above ``lo`` when the range is open
        there).

    Raises
    ------
    KeyError
        ``name`` is not a parameter (a programming error, not user input).
    """
    p = PARAMS[name]
    lo = p.lo if not getattr(p, "lo_open", False) else p.lo + 1e-6
    return float(min(max(float(value), lo), p.hi))


def key_frame(hit_frame: int, delay_ms: float, sample_rate: int, n: int) -> int | None:
    """Where a key event rebuilt for a mixture lands: ``delay_ms`` (a measured key delay, may be
    negative) after its hit, clamped into the mixture's ``[0, n)``.

    A key measured ahead of its hit, for a hit at a mixture's first frame, came before the
    recording began: it lands at frame 0 (dropped, the gate would stay shut for that stroke and
    the mixture would score the gate as missing it).

    Returns
    -------
    int or None
        The frame; None when the hit itself lies outside ``[0, n)``.
    """
    if not 0 <= int(hit_frame) < int(n):
        return None
    f = int(hit_frame) + int(round(float(delay_ms) * sample_rate / 1000.0))
    return min(max(f, 0), int(n) - 1)
