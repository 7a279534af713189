"""The denoiser's data-plane kernels: weights from the shipped ONNX file, against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from numba import njit
from onnx import helper, numpy_helper

from debleed.dsp.processor import ProcessSpec
from debleed.errors import DebleedError, ParameterError
from debleed.models.denoiser import SHIPPED, Denoiser, limit_mix_gain
from debleed.models.streaming import (I_RESETS, L_LAT, StreamingDenoiser, StreamingStage, denoise_block,
                                      load_weights)

RATE = 48000


@njit  # not cached: a cached caller keeps a stale copy of the kernels it calls
def _run_blocks(x, y, block, lay, w, s, ist, par, ctl):
    """The stage over a whole signal at a fixed block size, as an engine calls it (no Python
    between blocks, so a minute at block size 1 takes seconds)."""
    io = np.zeros((2, block), np.float32)
    events = np.zeros((1, 4), np.int32)
    n = x.size
    for i in range(0, n, block):
        m = min(block, n - i)
        io[0, :m] = x[i:i + m]
        denoise_block(m, io, events, 0, lay, w, s, ist, par, ctl)
        y[i:i + m] = io[1, :m]


@pytest.fixture(scope="module")
def minute():
    """A minute of a snare mic with bleed: a real kit, several grooves, leading silence."""
    from debleed.models.multitrack import render_multitrack

    parts = [np.zeros(1000, np.float32)]
    for seed in range(4):
        mt = render_multitrack(seconds=15.0, sample_rate=RATE, bpm=90.0 + 20 * seed, seed=seed)
        parts.append(np.asarray(mt.mics["snare"], np.float32))
    return np.concatenate(parts)[:60 * RATE]


@pytest.fixture(scope="module")
def onnxruntime_minute(minute):
    d = Denoiser()
    d.prepare(ProcessSpec(RATE, 1024))
    y = np.zeros_like(minute)
    for i in range(0, minute.size, 1024):
        d.process(minute[i:i + 1024], y[i:i + 1024])
    return y


def _kernels(x, block, stage=None):
    st = stage or StreamingStage([(0, 1)], RATE, max_block=block)
    st.reset()
    y = np.zeros_like(x)
    _run_blocks(x, y, block, *st.arrays())
    return y


@pytest.mark.parametrize("block", [1, 63, 64, 65, 128, 1024])
def test_kernels_equal_onnxruntime_on_a_minute(minute, onnxruntime_minute, block):
    y = _kernels(minute, block)
    assert np.max(np.abs(y - onnxruntime_minute)) <= 1e-4
    assert np.sqrt(np.mean(y ** 2)) > 1e-3  # real output, not silence
    first = int(np.flatnonzero(minute)[0])
    assert first >= 1000 and np.all(y[:first] == 0.0)  # leading silence stays silent


def test_kernels_are_the_same_at_every_block_size(minute):
    """The per-sample logic does not depend on the block size: bit for bit."""
    x = minute[:RATE * 3]
    ref = _kernels(x, 128)
    for block in (1, 7, 63, 64, 95, 100, 4096):
        assert np.array_equal(_kernels(x, block), ref), block


def test_latency_is_the_models_own_and_causal():
    st = StreamingStage([(0, 1)], RATE)
    assert st.latency_samples == 63 and st.channel_latency(0) == 63 and int(st.lay[0, L_LAT]) == 63
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(4096) * 0.1).astype(np.float32)
    y = _kernels(x, 64, st)
    x2 = x.copy()
    x2[2000:] = rng.standard_normal(2096) * 0.1
    y2 = _kernels(x2, 64, st)
    assert np.array_equal(y[:2000], y2[:2000])  # nothing after a sample changes what came before
    assert not np.array_equal(y[2000:], y2[2000:])
    # the dry path (mix 0) is the input delayed by exactly the latency
    st0 = StreamingStage([(0, 1)], RATE, params=[{"denoise_mix": 0.0}])
    y0 = _kernels(x, 64, st0)
    assert np.array_equal(y0[63:], x[:-63]) and np.all(y0[:63] == 0.0)


def test_fresh_through_leading_silence_and_reset():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(4096) * 0.1).astype(np.float32)
    st = StreamingStage([(0, 1)], RATE)
    ref = _kernels(x, 128, st)
    for pad in (1, 31, 32, 1000):
        y = _kernels(np.concatenate([np.zeros(pad, np.float32), x]), 128, st)
        assert np.all(y[:pad] == 0.0) and np.array_equal(y[pad:], ref), pad
    # a reset request (freewheel start) restarts every channel before the next block
    io = np.zeros((2, 256), np.float32)
    io[0] = x[:256]
    st.reset()
    st.process(256, io)
    st.request_reset()
    y = np.zeros_like(x)
    _run_blocks(x, y, 128, *st.arrays())
    assert np.array_equal(y, ref)


def test_nan_and_inf_do_not_poison_later_blocks():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(RATE) * 0.1).astype(np.float32)
    st = StreamingStage([(0, 1)], RATE)
    bad = x.copy()
    bad[1000:1010] = np.nan
    bad[2000] = np.inf
    y = _kernels(bad, 128, st)
    assert np.all(np.isfinite(y))
    # a non-finite hop (huge input overflowing the filterbank) resets the channel, which goes on
    huge = x.copy()
    huge[5000:5032] = 3e38
    y = _kernels(huge, 128, st)
    assert np.all(np.isfinite(y)) and st.ist[0, I_RESETS] >= 1
    clean = _kernels(x, 128)
    rms = lambda v: float(np.sqrt(np.mean(v[-RATE // 4:] ** 2)))  # noqa: E731
    assert 0.5 < rms(y) / rms(clean) < 2.0  # denoising as before, not silenced or stuck


def test_limit_and_mix_ramp_and_are_checked():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(RATE // 2) * 0.1).astype(np.float32)
    full = _kernels(x, 128)
    st = StreamingStage([(0, 1)], RATE, channels=[3], params=[{"denoise_limit_db": -6.0, "denoise_mix": 1.0}])
    g = limit_mix_gain(-6.0, 1.0)
    y = _kernels(x, 128, st)
    dry = np.concatenate([np.zeros(63, np.float32), x[:-63]])
    np.testing.assert_allclose(y, dry + g * (full - dry), rtol=0, atol=1e-6)
    st.set_param(3, "denoise_mix", 0.5)
    assert st.get_param(3, "denoise_mix") == 0.5
    y2 = np.zeros_like(x)
    st.reset()
    st.par[0, 1] = g  # the weight in force before the change: it ramps from there
    _run_blocks(x, y2, 128, *st.arrays())
    g2 = limit_mix_gain(-6.0, 0.5)
    ramp = int(round(5e-3 * RATE))
    np.testing.assert_allclose(y2[ramp + 1:], (dry + g2 * (full - dry))[ramp + 1:], rtol=0, atol=1e-6)
    steps = np.abs(np.diff((y2 - dry)[:ramp] / np.where(np.abs(full - dry)[:ramp] > 1e-3, (full - dry)[:ramp], np.nan)))
    assert np.nanmax(steps) < 2.0 / ramp  # the weight moves by one ramp step per sample, no jump
    with pytest.raises(ParameterError, match="channel 0 is not denoised"):
        st.set_param(0, "denoise_mix", 0.5)
    with pytest.raises(ParameterError, match=r"denoise_mix must be in \[0, 1\], got 1.5"):
        st.set_param(3, "denoise_mix", 1.5)
    with pytest.raises(ParameterError, match="'threshold_db' is not a denoiser parameter"):
        st.set_param(3, "threshold_db", -3)


def test_two_channels_share_weights_and_keep_their_own_state():
    rng = np.random.default_rng(8)
    a = (rng.standard_normal(8192) * 0.1).astype(np.float32)
    b = (rng.standard_normal(8192) * 0.05).astype(np.float32)
    st = StreamingStage([(0, 2), (1, 3)], RATE)
    assert st.w.size == load_weights(SHIPPED[RATE])[1].size  # one copy of the shared model
    io = np.zeros((4, 8192), np.float32)
    io[0], io[1] = a, b
    for i in range(0, 8192, 100):
        m = min(100, 8192 - i)
        blk = np.ascontiguousarray(io[:, i:i + m])
        st.process(m, blk)
        io[2:, i:i + m] = blk[2:]
    assert np.array_equal(io[2], _kernels(a, 64)) and np.array_equal(io[3], _kernels(b, 64))


def test_streaming_denoiser_wrapper_and_errors(tmp_path):
    d = StreamingDenoiser()
    with pytest.raises(DebleedError, match="before prepare"):
        d.process(np.zeros(4, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ParameterError, match="44100 or 48000 Hz, got sample_rate=32000"):
        d.prepare(ProcessSpec(32000, 128))
    d.prepare(ProcessSpec(44100, 128))
    assert d.latency_samples == 63
    with pytest.raises(ParameterError, match="at most max_block=128"):
        d.process(np.zeros(129, np.float32), np.zeros(129, np.float32))
    with pytest.raises(ParameterError, match="trained at 48000 Hz, got sample_rate=44100"):
        StreamingStage([(0, 1)], 44100, models=[SHIPPED[48000]])


def _edited_model(tmp_path, edit):
    m = onnx.load(str(SHIPPED[RATE]))
    edit(m)
    path = tmp_path / "edited.onnx"
    onnx.save(m, str(path))
    return path


def test_weights_load_by_name_and_refuse_what_the_kernels_do_not_implement(tmp_path):
    dims, w = load_weights(SHIPPED[RATE])
    assert (dims["hop"], dims["win"], dims["n"], dims["h"], dims["layers"], dims["ctx"], dims["k"]) == \
        (32, 64, 256, 192, 2, 1024, 64)
    assert w.dtype == np.float32 and np.all(np.isfinite(w))
    with pytest.raises(DebleedError, match="does not exist"):
        load_weights(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(DebleedError, match="cannot load denoiser model .*junk.onnx"):
        load_weights(tmp_path / "junk.onnx")

    def add_op(m):
        out = m.graph.output[0]
        node = helper.make_node("Tanh", [out.name], ["extra"])
        m.graph.node.append(node)
    with pytest.raises(DebleedError, match="operator\\(s\\) Tanh that the streaming kernels do not implement"):
        load_weights(_edited_model(tmp_path, add_op))

    def drop_bias(m):
        keep = [t for t in m.graph.initializer if t.name != "inp.bias"]
        del m.graph.initializer[:]
        m.graph.initializer.extend(keep)
    with pytest.raises(DebleedError, match="has no tensor 'inp.bias'"):
        load_weights(_edited_model(tmp_path, drop_bias))

    def shrink_encoder(m):
        for i, t in enumerate(m.graph.initializer):
            if t.name == "encoder.weight":
                a = numpy_helper.to_array(t)[:128]
                m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, "encoder.weight"))
    with pytest.raises(DebleedError, match=r"tensor encoder.weight has shape \(128, 1, 64\), the kernels need "
                                           r"\(256, 1, 64\)"):
        load_weights(_edited_model(tmp_path, shrink_encoder))
