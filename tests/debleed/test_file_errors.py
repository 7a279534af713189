"""File errors and Ctrl-C in the offline commands: one line naming the path and the cause, no
traceback; Ctrl-C ends with status 130."""

from __future__ import annotations

import errno
import textwrap

import numpy as np
import pytest
import soundfile as sf

from debleed.cli import main
from tests.debleed.test_render import CONFIG, HITS_TICKS, SR, scene, tick_to_frame, write_midi, write_takes


@pytest.fixture()
def gig(tmp_path):
    cfg = tmp_path / "gig.toml"
    cfg.write_text(textwrap.dedent(CONFIG))
    n = tick_to_frame(HITS_TICKS[-1]) + SR // 4
    write_takes(tmp_path / "takes", scene(n))
    write_midi(tmp_path / "takes" / "notes.mid")
    return tmp_path


def _render(d, out):
    return main(["render", "--config", str(d / "gig.toml"), "--input-dir", str(d / "takes"), "--output-dir", str(out),
                 "--midi", str(d / "takes" / "notes.mid"), "--no-plots"])


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _disk_full_after(monkeypatch, n_ok: int):
    """libsndfile writes through ``sf_write_float``: make every file after ``n_ok`` writes short,
    and report the disk as full (what a real ENOSPC looks like through soundfile)."""
    import shutil

    calls = {"n": 0}
    real_write = sf.SoundFile.write

    def write(self, data):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", write)
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=0))


def test_render_into_a_full_disk_names_the_file_and_the_cause(gig, capsys, monkeypatch):
    _disk_full_after(monkeypatch, 2)
    assert _render(gig, gig / "out") == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("debleed: error: cannot write ") and str(gig / "out") in line
    assert line.endswith("No space left on device")
    assert not list((gig / "out").glob(".*debleed-tmp*"))


def test_output_folder_that_is_a_file_is_one_line(gig, capsys):
    (gig / "afile").write_text("x")
    assert _render(gig, gig / "afile") == 1
    line = _one_line(capsys.readouterr().err)
    assert str(gig / "afile") in line and "File exists" in line and "a file is where a folder is needed" in line


def test_denoise_into_a_full_disk_or_under_a_file(tmp_path, capsys, monkeypatch):
    x = (0.1 * np.random.default_rng(0).standard_normal(4800)).astype(np.float32)
    sf.write(str(tmp_path / "snare.wav"), x, 48000, subtype="FLOAT")
    (tmp_path / "afile").write_text("x")
    assert main(["denoise", "-i", str(tmp_path / "snare.wav"), "-o", str(tmp_path / "afile" / "out.wav")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(tmp_path / "afile" / "out.wav") in line and "a file where a folder is needed" in line
    _disk_full_after(monkeypatch, 0)
    assert main(["denoise", "-i", str(tmp_path / "snare.wav"), "-o", str(tmp_path / "o.wav")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(tmp_path / "o.wav") in line and line.endswith("No space left on device")
    assert not (tmp_path / "o.wav").exists()


def test_clean_stems_on_a_full_disk_goes_on_with_the_batch_and_reports(tmp_path, capsys, monkeypatch):
    from tests.debleed.test_clean_stems import make_track

    for t in ("a", "b"):
        make_track(tmp_path / "in", t, seconds=0.5, stems=("kick", "snare"))
    _disk_full_after(monkeypatch, 0)
    assert main(["clean-stems", "-q", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-j", "1"]) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    for t in ("a", "b"):
        assert f"cannot write {tmp_path / 'out' / t / (t + '-kick.wav')}: No space left on device" in cap.err
    assert "No space left on device" in cap.err and "2 track(s) failed" in cap.err


@pytest.mark.parametrize("command", ["render", "denoise", "soundcheck"])
def test_ctrl_c_is_a_message_and_status_130(gig, capsys, monkeypatch, command):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    if command == "render":
        monkeypatch.setattr("debleed.offline.render.render_gig", interrupted)
        argv = ["render", "--config", str(gig / "gig.toml"), "--input-dir", str(gig / "takes"),
                "--output-dir", str(gig / "out")]
    elif command == "denoise":
        monkeypatch.setattr("debleed.cli.denoise.denoise_file", interrupted)
        argv = ["denoise", "-i", str(gig / "takes" / "snare.wav"), "-o", str(gig / "o.wav")]
    else:
        monkeypatch.setattr("debleed.soundcheck.run_soundcheck", interrupted)
        argv = ["soundcheck", "--config", str(gig / "gig.toml"), "--takes", str(gig / "takes"), "--out",
                str(gig / "sc"), "--quiet"]
    assert main(argv) == 130
    assert _one_line(capsys.readouterr().err) == (f"debleed: {command}: interrupted; outputs written completely are "
                                                  "kept, none is half written")


def test_zero_length_soundcheck_takes_are_a_clear_error(tmp_path, capsys):
    from tests.debleed.test_soundcheck import GIG

    (tmp_path / "gig.toml").write_text(GIG)
    takes = tmp_path / "takes"
    takes.mkdir()
    from debleed.rt.config import load_config

    for name in load_config(tmp_path / "gig.toml").input_names:
        sf.write(str(takes / f"{name}.wav"), np.zeros(0, np.float32), 48000, subtype="FLOAT")
    assert main(["soundcheck", "--config", str(tmp_path / "gig.toml"), "--takes", str(takes), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "hold 0 frames" in line and str(takes) in line


def test_silently_accepted_inputs_are_refused(tmp_path, capsys):
    from tests.debleed.test_clean_stems import make_track

    make_track(tmp_path / "in", "t", seconds=0.5, stems=("kick", "snare"))
    # --pair naming a stem no track has
    assert main(["clean-stems", "-q", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--pair", "snare:bass"]) == 2
    err = capsys.readouterr().err
    assert "--pair names stem(s) bass that no track has (stems found: kick, snare" in err
    assert not (tmp_path / "out").exists()
    # a truncated WAV: the header says more frames than the file holds
    kick = tmp_path / "in" / "t" / "t-kick.wav"
    kick.write_bytes(kick.read_bytes()[:1044])  # 44-byte header + 500 frames of PCM_16
    assert main(["clean-stems", "-q", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{kick}: truncated WAV: its header says 24000 frames but the file holds 500 (23500 frames missing)" in err
    # debleed denoise reads its input through the same check
    assert main(["denoise", "--quiet", "-i", str(kick), "-o", str(tmp_path / "dn.wav")]) == 2
    err = capsys.readouterr().err
    assert "truncated WAV" in err and "23500 frames missing" in err and not (tmp_path / "dn.wav").exists()
    # --duration nan, before anything starts
    (tmp_path / "g.toml").write_text('[inputs]\nmic = []\n[[channel]]\nname = "c"\ninput = "mic"\n')
    assert main(["live", "--config", str(tmp_path / "g.toml"), "--duration", "nan", "--no-osc"]) == 2
    assert "--duration must be a finite number of seconds >= 0" in capsys.readouterr().err


def test_a_negative_frame_in_a_change_log_is_refused(tmp_path):
    from debleed.errors import DebleedError
    from debleed.rt.control import load_changes

    log = tmp_path / "c.jsonl"
    log.write_text('{"debleed_changes": 1}\n{"frame": -128, "channel": "c", "param": "threshold_db", "value": -20}\n')
    with pytest.raises(DebleedError, match=r"line 2: frame must be an integer >= 0, got -128"):
        load_changes(log)
