"""Callback-time percentiles from the histogram, honest beyond its range."""

import numpy as np

from debleed.rt.stats import HIST_BIN_NS, HIST_BINS, new_counters, summary, C_CALLBACKS, C_MAX_NS


def test_percentiles_beyond_the_histogram_read_the_max_not_its_range():
    counters, hist = new_counters()
    # 990 callbacks of 100 us, 10 of 601,787 us (far beyond the 10 ms histogram)
    hist[100_000 // HIST_BIN_NS - 1] = 990
    hist[HIST_BINS - 1] = 10
    counters[C_CALLBACKS] = 1000
    counters[C_MAX_NS] = 601_787_000
    cb = summary(counters, hist, 48000, 128)["callback_us"]
    assert cb["p50"] == 100.0 and cb["p99"] == 100.0
    assert cb["p99.9"] == 601_787.0 == cb["max"]  # was capped at 10,000 us
    assert cb["over_range"] == 10


def test_percentiles_within_the_histogram_are_bin_edges():
    counters, hist = new_counters()
    hist[3] = 500
    hist[7] = 500
    counters[C_CALLBACKS] = 1000
    counters[C_MAX_NS] = 8 * HIST_BIN_NS - 10
    cb = summary(counters, hist, 48000, 128)["callback_us"]
    assert cb["p50"] == 4 * HIST_BIN_NS / 1000 and cb["p99.9"] == 8 * HIST_BIN_NS / 1000 and cb["over_range"] == 0
