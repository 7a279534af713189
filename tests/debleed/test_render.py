"""`debleed render`: a gig config over recorded takes; bit-identical to `debleed live` in JACK."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from debleed.cli import main
from debleed.rt.config import parse_config
from debleed.offline.render import midi_file_events, render_arrays
from debleed.testing import bounce_live

SR = 48000
CONFIG = """
[client]
name = "dblrender"
[inputs]
snare = []
snare_trig = []
oh_l = []
oh_r = []
[midi]
connect = []
[[channel]]
name = "self"
input = "snare"
threshold_db = -20.0
ratio = inf
attack_ms = 0.2
hold_ms = 30.0
release_ms = 20.0
lookahead_ms = 1.0
[[channel]]
name = "trigger"
input = "snare"
key = "trigger:snare_trig"
hold_ms = 60.0
lookahead_ms = 0.5
[[channel]]
name = "midi"
input = "snare"
key = "midi:38"
hold_ms = 60.0
velocity_depth = true
[[channel]]
name = "oh_l"
input = "oh_l"
mode = "duck"
key = "input:snare"
key_hpf_hz = 150.0
range_db = -12.0
link = "oh"
[[channel]]
name = "oh_r"
input = "oh_r"
mode = "duck"
key = "input:snare"
range_db = -12.0
link = "oh"
"""
TPB = 480
# 120 bpm: one tick = 500000 / 480 us = 50 frames at 48 kHz; from tick 960 on, 240 bpm: 25 frames
HITS_TICKS = [100, 500, 900, 1100, 1500, 1900, 2300]
TEMPO_TICK = 960


def tick_to_frame(tick: int) -> int:
    return 50 * tick if tick <= TEMPO_TICK else 50 * TEMPO_TICK + 25 * (tick - TEMPO_TICK)


def write_midi(path: Path, notes=38, velocity=100):
    mf = mido.MidiFile(type=1, ticks_per_beat=TPB)
    tempo, track = mido.MidiTrack(), mido.MidiTrack()
    mf.tracks += [tempo, track]
    tempo.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    tempo.append(mido.MetaMessage("set_tempo", tempo=250000, time=TEMPO_TICK))
    last = 0
    for i, t in enumerate(HITS_TICKS):
        track.append(mido.Message("note_on", channel=9, note=notes, velocity=velocity - 10 * (i % 3), time=t - last))
        track.append(mido.Message("note_off", channel=9, note=notes, velocity=0, time=20))
        last = t + 20
    mf.save(str(path))
    return mf


def scene(n_frames, seed=0):
    rng = np.random.default_rng(seed)
    hits = [tick_to_frame(t) + 7 for t in HITS_TICKS]
    t = np.arange(int(0.06 * SR)) / SR
    snare = (0.01 * rng.standard_normal(n_frames)).astype(np.float32)
    trig = np.zeros(n_frames, np.float32)
    for h in hits:
        m = min(t.size, n_frames - h)
        snare[h:h + m] += (0.6 * rng.standard_normal(m) * np.exp(-t[:m] / 0.015)).astype(np.float32)
        trig[h:h + m] += (0.9 * np.sin(2 * np.pi * 180 * t[:m]) * np.exp(-t[:m] / 0.008)).astype(np.float32)
    oh_l = (0.2 * rng.standard_normal(n_frames)).astype(np.float32)
    oh_r = (0.2 * rng.standard_normal(n_frames)).astype(np.float32)
    return {"snare": snare, "snare_trig": trig, "oh_l": oh_l, "oh_r": oh_r}


def write_takes(folder: Path, takes: dict, sr=SR, subtype="FLOAT"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in takes.items():
        sf.write(str(folder / f"{name}.wav"), x, sr, subtype=subtype)


@pytest.fixture()
def gig(tmp_path):
    cfg = tmp_path / "gig.toml"
    cfg.write_text(textwrap.dedent(CONFIG))
    n = tick_to_frame(HITS_TICKS[-1]) + SR // 4
    takes = scene(n)
    write_takes(tmp_path / "takes", takes)
    write_midi(tmp_path / "takes" / "notes.mid")
    return {"config": cfg, "takes": takes, "dir": tmp_path, "n": n}


def test_midi_file_ticks_with_a_tempo_change_become_exact_frames(tmp_path):
    write_midi(tmp_path / "n.mid")
    ev = midi_file_events(tmp_path / "n.mid", SR)
    ons = ev[ev[:, 1] == 0x99]
    offs = ev[ev[:, 1] == 0x89]
    assert ons[:, 0].tolist() == [tick_to_frame(t) for t in HITS_TICKS]
    assert offs[:, 0].tolist() == [tick_to_frame(t + 20) for t in HITS_TICKS]
    assert set(ons[:, 2]) == {38} and ons[:, 3].tolist()[:3] == [100, 90, 80]
    assert np.all(np.diff(ev[:, 0]) >= 0)
    # 44.1 kHz: 1041.666.. us per tick before the change, frames rounded from exact times
    ev44 = midi_file_events(tmp_path / "n.mid", 44100)
    want = [round(t * 500000 * 44100 / (TPB * 1e6)) if t <= TEMPO_TICK else
            round((TEMPO_TICK * 500000 + (t - TEMPO_TICK) * 250000) * 44100 / (TPB * 1e6)) for t in HITS_TICKS]
    assert ev44[ev44[:, 1] == 0x99][:, 0].tolist() == want


def test_render_writes_outputs_report_and_plots(gig, capsys):
    out = gig["dir"] / "out"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (gig["dir"] / "takes").iterdir()}
    assert main(["render", "--config", str(gig["config"]), "--input-dir", str(gig["dir"] / "takes"),
                 "--output-dir", str(out), "--midi", str(gig["dir"] / "takes" / "notes.mid")]) == 0
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (gig["dir"] / "takes").iterdir()}
    rep = json.loads((out / "report.json").read_text())
    assert rep["block"] == 128 and rep["sample_rate"] == SR and rep["frames"] == gig["n"]
    assert rep["midi"]["events"] == 2 * len(HITS_TICKS) and rep["midi"]["dropped"] == 0
    names = ["self", "trigger", "midi", "oh_l", "oh_r"]
    assert list(rep["channels"]) == names
    for name in names:
        info = sf.info(str(out / f"{name}.wav"))
        assert (info.frames, info.samplerate, info.subtype, info.channels) == (gig["n"], SR, "FLOAT", 1)
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
        c = rep["channels"][name]
        assert c["block"] == 128 and "parameters" in c
    ch = rep["channels"]
    assert ch["self"]["latency_samples"] == 48 and ch["trigger"]["latency_samples"] == 24
    assert ch["midi"]["latency_samples"] == 0 and ch["self"]["parameters"]["ratio"] == "inf"
    assert ch["self"]["gain_reduction_db"]["max_db"] == pytest.approx(60.0, abs=0.01)
    # linked overheads: one gain, ducked at most by the range
    assert ch["oh_l"]["gain_reduction_db"] == ch["oh_r"]["gain_reduction_db"]
    assert 6.0 < ch["oh_l"]["gain_reduction_db"]["max_db"] <= 12.0 + 1e-6
    assert "GR max" in capsys.readouterr().out


def test_render_gain_is_what_the_output_got(gig):
    cfg = parse_config(__import__("tomllib").loads(gig["config"].read_text()))
    x = np.stack([gig["takes"][k] for k in cfg.input_names])
    ev = midi_file_events(gig["dir"] / "takes" / "notes.mid", SR)
    r = render_arrays(cfg, x, SR, 128, ev)
    lat = r["latency_samples"]
    for c, ch in enumerate(cfg.channel):
        xin = x[cfg.input_names.index(ch.input)]
        L = lat[c]
        delayed = np.concatenate([np.zeros(L, np.float32), xin[:xin.size - L]])
        want = delayed * 10 ** (r["gain_db"][c].astype(np.float64) / 20)
        assert np.allclose(r["outputs"][c], want, rtol=1e-4, atol=1e-7), ch.name
    # chunking changes nothing (the chain is block-size independent)
    r2 = render_arrays(cfg, x, SR, 1000, ev)
    assert np.array_equal(r2["outputs"], r["outputs"])


def _render(gig, *extra, takes=None):
    return main(["render", "--config", str(gig["config"]), "--input-dir", str(takes or gig["dir"] / "takes"),
                 "--output-dir", str(gig["dir"] / "out"), "--no-plots", *map(str, extra)])


def test_render_errors_are_clear(gig, capsys):
    d = gig["dir"]
    midi = ["--midi", d / "takes" / "notes.mid"]
    assert _render(gig) == 2
    assert "'midi' have a MIDI key" in capsys.readouterr().err
    (d / "bad.mid").write_bytes(b"MThd not a midi file")
    assert _render(gig, "--midi", d / "bad.mid") == 2
    assert "bad.mid: not a readable standard MIDI file" in capsys.readouterr().err
    assert _render(gig, "--midi", d / "none.mid") == 2
    assert "none.mid not found" in capsys.readouterr().err
    assert _render(gig, *midi, "--block", 0) == 2
    assert "--block must be in [1, 16384]" in capsys.readouterr().err

    t = gig["takes"]
    for case, change, msg in [
        ("missing", lambda p: (p / "oh_r.wav").unlink(), "no file for input 'oh_r'"),
        ("rate", lambda p: sf.write(str(p / "oh_r.wav"), t["oh_r"], 44100, subtype="FLOAT"), "oh_r.wav 44100 Hz"),
        ("length", lambda p: sf.write(str(p / "oh_r.wav"), t["oh_r"][:-5], SR, subtype="FLOAT"),
         f"oh_r.wav {gig['n'] - 5} frames"),
        ("stereo", lambda p: sf.write(str(p / "oh_r.wav"), np.stack([t["oh_r"]] * 2, 1), SR), "oh_r.wav has 2"),
        ("garbage", lambda p: (p / "oh_r.wav").write_bytes(b"RIFF...."), "oh_r.wav: cannot read"),
    ]:
        p = d / f"takes-{case}"
        write_takes(p, t)
        change(p)
        assert _render(gig, *midi, takes=p) == 2, case
        assert msg in capsys.readouterr().err, case
    assert not (d / "out").exists()
    # output inside the takes folder
    assert main(["render", "--config", str(gig["config"]), "--input-dir", str(d / "takes"),
                 "--output-dir", str(d / "takes" / "out"), *map(str, midi)]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    bad_cfg = d / "bad.toml"
    bad_cfg.write_text(gig["config"].read_text().replace("hold_ms = 60.0", "hold_mss = 60.0", 1))
    assert main(["render", "--config", str(bad_cfg), "--input-dir", str(d / "takes"),
                 "--output-dir", str(d / "out")]) == 2
    assert "hold_mss: unknown key" in capsys.readouterr().err


@pytest.mark.jack
def test_render_is_bit_identical_to_debleed_live_in_jack(gig, jack_server):
    """Render at --block 128 equals a freewheel JACK run at 128 frames (the dummy server's period)."""
    d = gig["dir"]
    assert main(["render", "--config", str(gig["config"]), "--input-dir", str(d / "takes"),
                 "--output-dir", str(d / "out"), "--block", "128", "--no-plots",
                 "--midi", str(d / "takes" / "notes.mid")]) == 0
    mf = mido.MidiFile(str(d / "takes" / "notes.mid"))
    msgs = [m for m in mido.merge_tracks(mf.tracks) if m.type in ("note_on", "note_off")]
    frames = [tick_to_frame(t) for t in HITS_TICKS for t in (t, t + 20)]
    midi = [(f, bytes(m.bytes())) for f, m in zip(sorted(frames), msgs)]
    cfg_names = ["self", "trigger", "midi", "oh_l", "oh_r"]
    (d / "live").mkdir()
    b = bounce_live(gig["config"], jack_server.env, {f"dblrender:in_{k}": v for k, v in gig["takes"].items()},
                    [f"dblrender:out_{c}" for c in cfg_names], stats_json=d / "live" / "stats.json", midi=midi,
                    midi_dest=["dblrender:midi_in"], tail_frames=256, name="trender")
    assert b["complete"], f"debleed ran {b['stats']['frames']} frames in {b['tries']} bounces; its log:\n{b['log']}"
    rec = b["rec"]
    for c, name in enumerate(cfg_names):
        y = sf.read(str(d / "out" / f"{name}.wav"), dtype="float32")[0]
        assert y.size == gig["n"]
        assert np.array_equal(rec[c, :gig["n"]], y), f"{name}: render differs from the live JACK run"
    assert np.max(np.abs(rec[2, :gig["n"]])) > 0.1   # the MIDI-keyed gate opened


@pytest.mark.parametrize("sr", [44100, 96000])
def test_render_at_other_sample_rates(tmp_path, sr):
    cfg = tmp_path / "gig.toml"
    cfg.write_text(textwrap.dedent(CONFIG))
    n = sr
    rng = np.random.default_rng(3)
    takes = {k: (0.05 * rng.standard_normal(n)).astype(np.float32) for k in ("snare", "snare_trig", "oh_l", "oh_r")}
    write_takes(tmp_path / "takes", takes, sr=sr, subtype="PCM_24")
    write_midi(tmp_path / "takes" / "notes.mid")
    assert main(["render", "--config", str(cfg), "--input-dir", str(tmp_path / "takes"), "--output-dir",
                 str(tmp_path / "out"), "--no-plots", "--midi", str(tmp_path / "takes" / "notes.mid")]) == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["sample_rate"] == sr and rep["channels"]["self"]["latency_samples"] == round(sr / 1000)
    # note-on/off pairs inside the 1 s take (hits after 1 s are reported as after the end)
    inside = [f for t in HITS_TICKS for f in (t, t + 20) if tick_to_frame(f) * sr / SR < n - 0.5]
    assert rep["midi"]["events"] == len(inside) and rep["midi"]["after_end"] == 2 * len(HITS_TICKS) - len(inside)
    info = sf.info(str(tmp_path / "out" / "midi.wav"))
    assert (info.samplerate, info.frames, info.subtype) == (sr, n, "FLOAT")


def test_a_rerun_stopped_midway_leaves_no_old_output_beside_new_ones(gig, monkeypatch):
    """A render re-run into a folder with an earlier run's outputs, stopped while writing: each
    output is the new run's, complete, or absent; none is the old run's."""
    from debleed.offline import render as render_mod

    args = ["render", "--config", str(gig["config"]), "--input-dir", str(gig["dir"] / "takes"),
            "--output-dir", str(gig["dir"] / "out"), "--midi", str(gig["dir"] / "takes" / "notes.mid"),
            "--no-plots"]
    assert main(args) == 0
    out = gig["dir"] / "out"
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "report.json" in old and "trigger.wav" in old
    cfg_text = gig["config"].read_text()
    assert "threshold_db = -20.0" in cfg_text
    gig["config"].write_text(cfg_text.replace("threshold_db = -20.0", "threshold_db = -26.0"))
    real = render_mod.write_audio
    written = []

    def stop_after_two(path, *a, **k):
        if len(written) == 2:
            raise KeyboardInterrupt
        real(path, *a, **k)
        written.append(path.name)

    monkeypatch.setattr(render_mod, "write_audio", stop_after_two)
    assert main(args) == 130
    left = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert left == set(written)  # the two written by the new run; the rest (and the report) absent
    assert any(old[name] != (out / name).read_bytes() for name in written)
