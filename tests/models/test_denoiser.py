"""The streaming onnxruntime wrapper with the shipped models (no torch needed)."""

import numpy as np
import onnxruntime as ort
import pytest

from debleed.errors import DebleedError, ParameterError
from debleed.models.denoiser import SHIPPED, Denoiser, denoise_signal, model_info
from debleed.models.multitrack import render_multitrack
from debleed.dsp.processor import ProcessSpec

RATES = (48000, 44100)


@pytest.fixture(scope="module")
def snare():
    """A second of a real snare mic with bleed (demo kit, demo bleed), float32."""
    mt = render_multitrack(seconds=1.0, sample_rate=48000, seed=3)
    return mt.mics["snare"]


def _stream(d, x, sizes):
    y = np.full(x.size, np.nan, np.float32)
    i = k = 0
    while i < x.size:
        n = min(int(sizes[k % len(sizes)]), x.size - i)
        d.process(x[i:i + n], y[i:i + n])
        i += n
        k += 1
    return y


def _one_shot(rate, x):
    d = Denoiser()
    d.prepare(ProcessSpec(rate, x.size))
    y = np.empty_like(x)
    d.process(x, y)
    return y


def test_shipped_models_exist_small_and_streaming():
    for rate, path in SHIPPED.items():
        assert path.is_file(), path
        assert path.stat().st_size <= 8 * 1024 * 1024
        m = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in m.get_inputs()] == ["audio", "enc_state", "gru_state", "ola_state"]
        assert [o.name for o in m.get_outputs()] == ["denoised", "enc_state_out", "gru_state_out", "ola_state_out"]
        meta = m.get_modelmeta().custom_metadata_map
        assert int(meta["sample_rate"]) == rate
        assert int(meta["window"]) - 1 <= 64


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("sizes", [[1], [16], [63], [64], [65], [128], [1000], [1024], [0, 7, 300, 1, 129, 33]])
def test_streaming_equals_one_shot(snare, rate, sizes):
    ref = _one_shot(rate, snare)
    d = Denoiser()
    d.prepare(ProcessSpec(rate, 1024))
    y = _stream(d, snare, sizes)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)
    assert np.max(np.abs(ref)) > 1e-3  # the model passes the snare through


def test_latency_and_causality(snare):
    d = Denoiser()
    d.prepare(ProcessSpec(48000, 128))
    assert d.latency_samples == 63
    ref = _stream(d, snare, [128])
    x2 = snare.copy()
    x2[20000:] = 0.0
    d.reset()
    y2 = _stream(d, x2, [128])
    assert np.array_equal(y2[:20000], ref[:20000])  # the past does not depend on the future
    assert not np.allclose(y2[20000 + 64:], ref[20000 + 64:])


def test_reset_restores_fresh_output(snare):
    d = Denoiser()
    d.prepare(ProcessSpec(48000, 256))
    fresh = _stream(d, snare, [256])
    _stream(d, np.random.default_rng(0).standard_normal(5000).astype(np.float32), [100])
    d.reset()
    again = _stream(d, snare, [256])
    assert np.array_equal(fresh, again)


def test_nan_input_does_not_poison_state(snare):
    d = Denoiser()
    d.prepare(ProcessSpec(48000, 128))
    bad = snare.copy()
    bad[1000:1100] = np.nan
    bad[5000] = np.inf
    y = _stream(d, bad, [128])
    assert np.all(np.isfinite(y))
    zeroed = np.nan_to_num(bad, nan=0.0, posinf=0.0)
    d.reset()
    np.testing.assert_array_equal(y, _stream(d, zeroed, [128]))


def test_wrong_rate_and_block_errors(snare):
    d = Denoiser()
    with pytest.raises(ParameterError, match=r"44100 or 48000.*96000"):
        d.prepare(ProcessSpec(96000, 128))
    with pytest.raises(ParameterError, match="max_block"):
        d.prepare(ProcessSpec(48000, 0))
    with pytest.raises(DebleedError, match="before prepare"):
        d.process(snare[:64], np.empty(64, np.float32))
    d.prepare(ProcessSpec(48000, 128))
    out = np.empty(256, np.float32)
    with pytest.raises(ParameterError, match="longer than max_block=128"):
        d.process(snare[:129], out)
    with pytest.raises(ParameterError, match="mono"):
        d.process(np.zeros((2, 64), np.float32), out)
    with pytest.raises(ParameterError, match="out must be"):
        d.process(snare[:64], np.empty(10, np.float32))
    with pytest.raises(ParameterError, match="out must be a 1-D float array.*int16"):
        d.process(snare[:64], np.empty(64, np.int16))
    with pytest.raises(ParameterError, match="intra_op_threads"):
        Denoiser(intra_op_threads=0)
    with pytest.raises(ParameterError, match="intra_op_threads.*None"):
        Denoiser(intra_op_threads=None)
    with pytest.raises(ParameterError, match=r"\['CPUExecutionProvider'\]"):
        Denoiser(providers="CPUExecutionProvider")


def test_explicit_model_rate_must_match():
    d = Denoiser(SHIPPED[44100])
    with pytest.raises(ParameterError, match="trained at 44100 Hz"):
        d.prepare(ProcessSpec(48000, 128))
    d.prepare(ProcessSpec(44100, 128))


def test_missing_and_corrupt_model_name_the_path(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(DebleedError, match=str(missing)):
        Denoiser(missing)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not a protobuf" * 50)
    with pytest.raises(DebleedError, match=str(corrupt)):
        Denoiser(corrupt)
    with pytest.raises(DebleedError, match=str(missing)):
        model_info(missing)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(SHIPPED[48000].read_bytes()[:5000])
    with pytest.raises(DebleedError, match=str(truncated)):
        Denoiser(truncated)


def test_providers():
    with pytest.raises(DebleedError, match="NoSuchExecutionProvider.*not available"):
        Denoiser(providers=["NoSuchExecutionProvider"]).prepare(ProcessSpec(48000, 128))
    try:  # CUDA: works where there is a GPU, otherwise a clear error
        d = Denoiser(providers=["CUDAExecutionProvider"])
        d.prepare(ProcessSpec(48000, 128))
    except DebleedError as e:
        assert "CUDAExecutionProvider" in str(e)


def test_denoise_signal_any_rate_keeps_shape(snare):
    import soxr

    x = soxr.resample(snare, 48000, 32000).astype(np.float32)
    st = np.stack([x, 0.5 * x], axis=1)
    y = denoise_signal(st, 32000)
    assert y.shape == st.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    # latency compensated: the output lines up with the input (peak within a few samples)
    lag = np.argmax(np.correlate(y[:, 0], st[:, 0], "full")) - (st.shape[0] - 1)
    assert abs(lag) <= 4


def test_gpu_providers_are_offered_only_when_their_libraries_load(monkeypatch, capfd):
    """onnxruntime-gpu lists CUDA without CUDA; a session on it would print loader errors."""
    import ctypes

    import onnxruntime as ort

    from debleed.models.denoiser import Denoiser, usable_providers

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])

    def cdll(path, *a, **k):
        raise OSError(f"{path}: libcublasLt.so.13: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert usable_providers() == ["CPUExecutionProvider"]
    with pytest.raises(DebleedError, match="'CUDAExecutionProvider' is not available here"):
        Denoiser(providers=["CUDAExecutionProvider"]).prepare(ProcessSpec(48000, 64))
    assert "[E:onnxruntime" not in capfd.readouterr().err
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: object())
    assert usable_providers() == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
