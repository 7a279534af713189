"""Counters shared by the data plane and the control plane, and what the control plane makes of them.

The data plane writes only into preallocated int64 arrays: ``counters`` (indexed by the ``C_*``
constants) and a callback-time histogram of ``HIST_BINS`` bins of ``HIST_BIN_NS`` ns (the last
bin collects everything slower). The control plane reads them without locking: a torn read
can be one callback stale, never wrong in kind.
"""

from __future__ import annotations

import numpy as np

(C_CALLBACKS, C_XRUNS, C_OVERSIZE, C_MIDI_DROPPED, C_MAX_NS, C_LAST_NS, C_SUM_NS, C_FRAMES) = range(8)
N_COUNTERS = 8
COUNTER_NAMES = ("callbacks", "xruns", "oversize_blocks", "midi_dropped",
                 "max_ns", "last_ns", "sum_ns", "frames")

HIST_BIN_NS = 250
HIST_BINS = 40000  # 10 ms at 250 ns


def new_counters():
    """Zeroed ``(counters, histogram)`` arrays."""
    return np.zeros(N_COUNTERS, np.int64), np.zeros(HIST_BINS, np.int64)


def percentile_us(hist: np.ndarray, q: float, max_us: float | None = None) -> float:
    """The ``q``-th percentile (0-100) of callback time in us, from the histogram (bin upper edge).

    A percentile that falls in the last bin (every callback slower than the histogram's range,
    10 ms) has no upper edge: it is ``max_us`` (the longest callback, an upper bound) when
    given, else infinity, never the histogram's range as if it were a measurement.
    """
    total = int(hist.sum())
    if total == 0:
        return 0.0
    rank = np.ceil(q / 100.0 * total)
    idx = int(np.searchsorted(np.cumsum(hist), max(rank, 1)))
    if idx >= hist.size - 1:
        return float(max_us) if max_us is not None else float("inf")
    return (idx + 1) * HIST_BIN_NS / 1000.0


def summary(counters: np.ndarray, hist: np.ndarray, sample_rate: float, block: int) -> dict:
    """Counters and callback-time percentiles as a JSON-ready dict (times in us)."""
    c = {name: int(counters[i]) for i, name in enumerate(COUNTER_NAMES)}
    n = max(c["callbacks"], 1)
    return {
        "callbacks": c["callbacks"],
        "xruns": c["xruns"],
        "oversize_blocks": c["oversize_blocks"],
        "midi_dropped": c["midi_dropped"],
        "frames": c["frames"],
        "callback_us": {
            "mean": c["sum_ns"] / n / 1000.0,
            "p50": percentile_us(hist, 50.0, c["max_ns"] / 1000.0),
            "p99": percentile_us(hist, 99.0, c["max_ns"] / 1000.0),
            "p99.9": percentile_us(hist, 99.9, c["max_ns"] / 1000.0),
            "max": c["max_ns"] / 1000.0,
            # callbacks beyond the histogram's range: their percentiles read the max
            "over_range": int(hist[-1]),
        },
        "deadline_us": 1e6 * block / sample_rate if sample_rate else None,
    }
