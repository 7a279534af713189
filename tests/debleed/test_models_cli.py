"""``debleed denoise`` on files and folders, and the ``train`` message without torch."""

import importlib.util

import numpy as np
import pytest
import soundfile as sf

from debleed.models.multitrack import render_multitrack
from debleed.cli import main


@pytest.fixture(scope="module")
def mic():
    return render_multitrack(seconds=0.6, sample_rate=48000, seed=5).mics["snare"]


def _write(path, x, sr, subtype):
    sf.write(str(path), x, sr, subtype=subtype)
    return path.read_bytes()


def test_denoise_file_keeps_rate_length_channels_and_input(tmp_path, mic):
    import soxr

    x = soxr.resample(mic, 48000, 44100).astype(np.float32)
    st = np.stack([x, 0.7 * x], axis=1)
    src = tmp_path / "snare.wav"
    before = _write(src, st, 44100, "PCM_24")
    dst = tmp_path / "out" / "clean.wav"
    assert main(["denoise", "-i", str(src), "-o", str(dst), "--quiet"]) == 0
    assert src.read_bytes() == before
    info = sf.info(str(dst))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (44100, st.shape[0], 2, "PCM_24")
    y, _ = sf.read(str(dst), dtype="float32")
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) > 1e-3
    assert not [p for p in dst.parent.iterdir() if p.name != "clean.wav"]  # no temp files left


def test_denoise_folder_any_rate(tmp_path, mic):
    import soxr

    src = tmp_path / "in"
    src.mkdir()
    _write(src / "a.wav", mic, 48000, "FLOAT")
    _write(src / "b.flac", soxr.resample(mic, 48000, 22050).astype(np.float32), 22050, "PCM_16")
    (src / "notes.txt").write_text("not audio")
    dst = tmp_path / "out"
    assert main(["denoise", "-i", str(src), "-o", str(dst), "--quiet"]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["a.wav", "b.flac"]
    for name in ("a.wav", "b.flac"):
        a, b = sf.info(str(src / name)), sf.info(str(dst / name))
        assert (a.samplerate, a.frames, a.channels, a.subtype) == (b.samplerate, b.frames, b.channels, b.subtype)


def test_denoise_refuses_to_overwrite_input_and_reports_bad_input(tmp_path, mic, capsys):
    src = tmp_path / "s.wav"
    before = _write(src, mic, 48000, "PCM_16")
    assert main(["denoise", "-i", str(src), "-o", str(src), "--quiet"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert main(["denoise", "-i", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o.wav")]) == 2
    assert "missing.wav does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    assert main(["denoise", "-i", str(bad), "-o", str(tmp_path / "o.wav"), "--quiet"]) == 2
    assert "bad.wav" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_train_without_torch_names_the_install(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a))
    assert main(["train", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "torch" in err and "pip install -e '.[train]'" in err and "make train" in err


def test_denoise_output_suffix_picks_the_container(tmp_path, mic, capsys):
    src = tmp_path / "s.wav"
    _write(src, mic, 48000, "PCM_24")
    dst = tmp_path / "s.flac"
    assert main(["denoise", "-i", str(src), "-o", str(dst), "--quiet"]) == 0
    info = sf.info(str(dst))
    assert (info.format, info.subtype, info.frames) == ("FLAC", "PCM_24", mic.size)
    # float samples do not fit FLAC: refused before anything is written
    fsrc = tmp_path / "f.wav"
    _write(fsrc, mic, 48000, "FLOAT")
    assert main(["denoise", "-i", str(fsrc), "-o", str(tmp_path / "f.flac"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "f.flac" in err and "FLOAT" in err
    assert not (tmp_path / "f.flac").exists()
    assert main(["denoise", "-i", str(fsrc), "-o", str(tmp_path / "f.mp4"), "--quiet"]) == 2
    assert "'.mp4'" in capsys.readouterr().err


def test_denoise_single_file_into_a_new_folder(tmp_path, mic):
    src = tmp_path / "s.wav"
    _write(src, mic, 48000, "PCM_16")
    for arg, folder in ((str(tmp_path / "new") + "/", tmp_path / "new"), (str(tmp_path / "plain"), tmp_path / "plain")):
        assert main(["denoise", "-i", str(src), "-o", arg, "--quiet"]) == 0
        assert folder.is_dir() and sf.info(str(folder / "s.wav")).frames == mic.size


def test_denoise_with_a_given_model_resamples_to_its_rate(tmp_path, mic):
    from debleed.models.denoiser import SHIPPED

    src = tmp_path / "s.wav"
    _write(src, mic, 48000, "FLOAT")
    dst = tmp_path / "o.wav"
    assert main(["denoise", "-i", str(src), "-o", str(dst), "--model", str(SHIPPED[44100]), "--quiet"]) == 0
    y, sr = sf.read(str(dst), dtype="float32")
    assert sr == 48000 and y.size == mic.size and np.all(np.isfinite(y)) and np.max(np.abs(y)) > 1e-3
