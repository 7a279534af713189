"""The denoiser's matrix and activation kernels on their own: products in the panel layout equal a
float64 reference, every output element is the same bits whatever the number of frames a call
batches (the property that makes the stage's output independent of the block size), and the
rational activations and the vector logarithm are accurate and keep NaN and Inf."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from debleed.models._simd import LANES, vload, vstore
from debleed.models.streaming import PANEL, _gemm, _logpow, _sigmoid, _tanh, _vlogpow, _vsigmoid, _vtanh, pack_panels

SHAPES = [(576, 192), (256, 64), (64, 256), (288, 96), (72, 24), (24, 153), (7, 5), (PANEL, 1)]


def _problem(rows, cols, nj, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal(rows).astype(np.float32)
    x = rng.standard_normal((max(nj, 1), cols)).astype(np.float32)
    return m, b, x


def _run(wp, rows, cols, x, nj, b, bo=0):
    y = np.full((max(nj, 1), rows), np.nan, np.float32)
    _gemm(wp, 0, rows, cols, x.ravel(), 0, cols, nj, b, bo, y.ravel(), 0, rows, -1)
    return y


@pytest.mark.parametrize("rows,cols", SHAPES)
def test_gemm_equals_a_float64_product_and_each_frame_is_the_same_whatever_nj(rows, cols):
    m, b, x = _problem(rows, cols, 13)
    wp = pack_panels(m)
    assert wp.size == m.size
    ref = x.astype(np.float64) @ m.T.astype(np.float64) + b
    full = _run(wp, rows, cols, x, 13, b)
    assert np.max(np.abs(full - ref)) <= 1e-5 * cols
    # every tiling of the frames (six, four, three, two, one at a time) gives the same bits
    for nj in range(1, 13):
        assert np.array_equal(_run(wp, rows, cols, x, nj, b)[:nj], full[:nj]), nj
    # one frame at a time (the recurrence's matrix-vector product)
    for j in range(13):
        assert np.array_equal(_run(wp, rows, cols, x[j:j + 1], 1, b)[0], full[j])
    no_bias = _run(wp, rows, cols, x, 13, b, bo=-1)
    assert np.max(np.abs(no_bias - (ref - b))) <= 1e-5 * cols


def test_gemm_with_first_columns_skips_only_zero_columns():
    """The constant-Q rows are zero before their window: a panel starts at its rows' first
    non-zero column (``so``), and the result is the full product."""
    rows, cols, nj = 3 * PANEL + 5, 100, 7
    m, _, x = _problem(rows, cols, nj, seed=1)
    first = np.random.default_rng(2).integers(0, cols, rows)
    for r in range(rows):
        m[r, :first[r]] = 0.0
    starts = np.array([first[r // PANEL * PANEL:(r // PANEL + 1) * PANEL].min() for r in range(rows)], np.float32)
    wp = pack_panels(m)
    w = np.concatenate([wp, starts])
    y = np.zeros((nj, rows), np.float32)
    _gemm(w, 0, rows, cols, x.ravel(), 0, cols, nj, w, -1, y.ravel(), 0, rows, wp.size)
    assert np.array_equal(y, _run(wp, rows, cols, x, nj, np.zeros(rows, np.float32), bo=-1))


@njit
def _apply(x, y_vec, y_one, which):
    for i in range(0, x.size - x.size % LANES, LANES):
        v = vload(x, i)
        vstore(y_vec, i, _vsigmoid(v) if which == 0 else _vtanh(v) if which == 1 else _vlogpow(v))
    for i in range(x.size):
        y_one[i] = _sigmoid(x[i]) if which == 0 else _tanh(x[i]) if which == 1 else _logpow(x[i])


def test_activations_are_accurate_and_keep_nan_and_inf():
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 1e-30, 8.9, 9.1, 17.9, 18.1, 50.0, np.inf, -np.inf, np.nan, 3e38]
    x = np.concatenate([rng.uniform(-25, 25, 4096), special, -np.array(special[2:8])]).astype(np.float32)
    x = x[:x.size // LANES * LANES]
    x64 = x.astype(np.float64)
    for which, ref in ((0, 1.0 / (1.0 + np.exp(-np.clip(x64, -700, 700)))), (1, np.tanh(x64))):
        y, y1 = np.zeros_like(x), np.zeros_like(x)
        _apply(x, y, y1, which)
        fin = np.isfinite(x)
        assert np.max(np.abs(y[fin] - ref[fin])) <= 1e-6, which
        assert np.array_equal(y, y1, equal_nan=True), which  # a scalar computes a lane exactly
        assert np.isnan(y[np.isnan(x)]).all()
        assert np.array_equal(y[np.isinf(x)], np.sign(x[np.isinf(x)]) if which else (x[np.isinf(x)] > 0) * 1.0)
    p = np.concatenate([10.0 ** rng.uniform(-20, 30, 4096), [0.0, 1.0, 3e38, np.inf, np.nan, 1e-38, 0.5, 2.0]])
    p = p.astype(np.float32)[:p.size // LANES * LANES]
    y, y1 = np.zeros_like(p), np.zeros_like(p)
    _apply(p, y, y1, 2)
    ref = 0.1 * np.log(p.astype(np.float64) + 1e-9)
    fin = np.isfinite(p)
    assert np.max(np.abs(y[fin] - ref[fin])) <= 1e-6
    assert np.max(np.abs(y[fin] - y1[fin])) <= 1e-6  # libm's float32 log
    assert np.isnan(y[np.isnan(p)]).all() and np.all(y[np.isposinf(p)] == np.inf)
