"""Metrics: the bleed reduction's exclusion mask and the stream-cut detector."""

from __future__ import annotations

import numpy as np
import pytest

from debleed.models.metrics import bleed_reduction_db, stream_cuts

SR = 48000
B = 128


def _take(seed=0):
    rng = np.random.default_rng(seed)
    n = SR
    direct = np.zeros(n)
    t = np.arange(2400) / SR
    for h in (4800, 24000, 40000):
        direct[h:h + t.size] += rng.standard_normal(t.size) * np.exp(-t / 0.01)
    bleed = 0.01 * rng.standard_normal(n)
    return direct + bleed, direct


def test_stream_cuts_marks_the_cut_block_and_its_settle_time():
    x = np.random.default_rng(1).standard_normal(40 * B).astype(np.float32)
    ok = x.copy()
    dropped = x.copy()
    dropped[7 * B:8 * B] = 0.0                    # a block the recorder never wrote
    repeated = x.copy()
    repeated[20 * B:21 * B] = x[19 * B:20 * B]    # a block heard twice
    assert not stream_cuts([x], [ok], x.size, B, 300).any()
    cut = stream_cuts([x, x], [dropped, repeated], x.size, B, 300)
    want = np.zeros(x.size, bool)
    want[7 * B:8 * B + 300] = True
    want[20 * B:21 * B + 300] = True
    assert np.array_equal(cut, want)
    # only the first n samples are checked
    assert not stream_cuts([x], [dropped], 7 * B, B, 300).any()


def test_stream_cuts_refuses_bad_arguments():
    x = np.zeros(10 * B, np.float32)
    with pytest.raises(ValueError, match="block must be > 0"):
        stream_cuts([x], [x], x.size, 0, 10)
    with pytest.raises(ValueError, match="settle >= 0"):
        stream_cuts([x], [x], x.size, B, -1)
    with pytest.raises(ValueError, match="needs 1280 samples, got 1280 played and 100 recorded"):
        stream_cuts([x], [x[:100]], x.size, B, 0)


def test_bleed_reduction_leaves_out_the_excluded_samples():
    mic, direct = _take()
    out = 0.1 * mic                                # 20 dB under the mic everywhere
    assert bleed_reduction_db(mic, out, direct, SR) == pytest.approx(20.0, abs=1e-6)
    glitch = out.copy()
    glitch[12000:12256] = 1.0                      # a burst between hits
    assert bleed_reduction_db(mic, glitch, direct, SR) < 10.0
    ex = np.zeros(mic.size, bool)
    ex[12000:12256] = True
    assert bleed_reduction_db(mic, glitch, direct, SR, exclude=ex) == pytest.approx(20.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"exclude has shape \(10,\)"):
        bleed_reduction_db(mic, out, direct, SR, exclude=np.zeros(10, bool))
