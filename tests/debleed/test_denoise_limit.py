"""`debleed denoise --limit-db --mix`: the attenuation limit and mix of the live channels, offline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile as sf

from debleed.models.denoiser import denoise_signal, limit_mix_gain


def test_limit_gain_formula():
    assert limit_mix_gain(-100.0, 1.0) == 1.0  # no limit: the denoised signal bit for bit
    assert limit_mix_gain(-20.0, 1.0) == 0.9
    assert limit_mix_gain(0.0, 1.0) == 0.0
    assert limit_mix_gain(-100.0, 0.25) == 0.25


def test_denoise_command_honours_limit_and_mix(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(48000) * 0.1).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "denoise", "-i", str(tmp_path / "in.wav"), "-o",
                        str(tmp_path / "out.wav"), "--limit-db", "-12", "--mix", "0.7", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert np.array_equal(y, denoise_signal(x, 48000, limit_db=-12.0, mix=0.7))
    full = denoise_signal(x, 48000)
    # the output sits between the dry input and the full denoiser output
    g = limit_mix_gain(-12.0, 0.7)
    np.testing.assert_allclose(y, x + g * (full - x), rtol=0, atol=1e-5)
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "denoise", "-i", str(tmp_path / "in.wav"), "-o",
                        str(tmp_path / "o2.wav"), "--mix", "1.5"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--mix must be 0 to 1, got 1.5" in r.stderr
