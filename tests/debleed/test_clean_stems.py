"""`debleed clean-stems`: ducking through the chain, files, errors, resume after a kill.

Stems are synthetic and written to tmp folders: a target (steady noise, so the gain is
visible at every sample) and a key (decaying noise bursts).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from debleed.cli import main
from debleed.offline.stems import MANIFEST, GainStats, duck_arrays, duck_params
from debleed.dsp.processor import ProcessSpec

SR = 48000


def bursts(n, sr, hits, channels=1, amp=0.8, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((channels, n), np.float32)
    t = np.arange(int(0.05 * sr)) / sr
    for h in hits:
        m = min(t.size, n - h)
        x[:, h:h + m] += (amp * rng.standard_normal((channels, m)) * np.exp(-t[:m] / 0.01)).astype(np.float32)
    return np.clip(x, -1, 1)


def steady(n, channels=1, amp=0.1, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(amp * rng.standard_normal((channels, n)), -1, 1).astype(np.float32)


def write(path: Path, x: np.ndarray, sr: int, subtype: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.T, sr, subtype=subtype)


def make_track(root: Path, track: str, *, sr=SR, seconds=1.0, subtype="PCM_16", key_ch=1, target_ch=1,
               stems=("kick", "snare", "hihat", "toms", "cymbals"), seed=0):
    n = int(seconds * sr)
    hits = [int(f * sr) for f in np.arange(0.1, seconds - 0.1, 0.3)]
    data = {}
    for i, s in enumerate(stems):
        if s == "snare":
            x = bursts(n, sr, hits, key_ch, seed=seed)
        elif s == "kick":
            x = steady(n, target_ch, seed=seed + 1)
        else:
            x = steady(n, 1, amp=0.05, seed=seed + 10 + i)
        write(root / track / f"{track}-{s}.wav", x, sr, subtype)
        data[s] = x
    return data


def quantized(x: np.ndarray, sr: int, subtype: str) -> np.ndarray:
    """``x`` after a write/read round trip in ``subtype`` (what the output file must hold)."""
    buf = io.BytesIO()
    sf.write(buf, x.T, sr, subtype=subtype, format="WAV")
    buf.seek(0)
    return sf.read(buf, dtype="float32", always_2d=True)[0].T


def read(path) -> np.ndarray:
    return sf.read(str(path), dtype="float32", always_2d=True)[0].T


def hashes(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(*args) -> int:
    return main(["clean-stems", "-q", *map(str, args)])


# --- processing ------------------------------------------------------------------------------

@pytest.mark.parametrize("key_ch,target_ch", [(1, 1), (1, 2), (2, 2), (2, 1)])
def test_chunked_equals_one_shot_for_every_block_size(key_ch, target_ch):
    n = 12000
    key = bursts(n, SR, [1000, 5000, 9000], key_ch)
    target = steady(n, target_ch)
    p = duck_params(lookahead_ms=1.5, hold_ms=5.0, release_ms=30.0)
    one, g_one = duck_arrays(key, target, SR, p, block=n)
    assert one.shape == target.shape and g_one.shape == (n,)
    assert g_one.min() < -10.0
    for block in (1, 63, 64, 65, 128, 1024, 16384):
        out, g = duck_arrays(key, target, SR, p, block=block)
        assert np.array_equal(out, one), f"block {block}"
        assert np.array_equal(g, g_one), f"block {block}"


def test_stereo_target_gets_one_gain_from_the_louder_key_channel():
    n = 9600
    target = steady(n, 2)
    key = np.zeros((2, n), np.float32)
    key[1] = bursts(n, SR, [3000], 1)[0]          # hit only on the right side of the key
    p = duck_params(threshold_db=-30.0)
    out, g = duck_arrays(key, target, SR, p)
    ratio = out / target
    assert np.allclose(ratio[0], ratio[1], rtol=1e-5)
    assert np.allclose(ratio[0], 10 ** (g / 20), rtol=1e-4)
    assert g.min() < -10.0 and np.all(g[:3000] == 0.0)
    # a mono target ducks from the right channel of a stereo key too
    out_m, g_m = duck_arrays(key, target[:1], SR, p)
    assert np.array_equal(g_m, g)
    # a mono key ducks both sides of a stereo target with the same gain
    out_s, g_s = duck_arrays(key[1:], target, SR, p)
    assert np.array_equal(g_s, g) and np.allclose(out_s[0] / target[0], out_s[1] / target[1], rtol=1e-5)


def test_lookahead_is_compensated_output_aligned_and_same_length():
    n = 9600
    key = bursts(n, SR, [4000], 1)
    target = steady(n, 1)
    la = 96  # 2 ms at 48 kHz
    out0, g0 = duck_arrays(key, target, SR, duck_params(lookahead_ms=0.0))
    out2, g2 = duck_arrays(key, target, SR, duck_params(lookahead_ms=2.0))
    assert out2.shape == target.shape
    # the gain is the same curve, acting `la` samples earlier on the (undelayed) input
    assert np.array_equal(g2[:n - la], g0[la:])
    assert np.flatnonzero(g0 < 0)[0] == 4000 and np.flatnonzero(g2 < 0)[0] == 4000 - la
    assert np.allclose(out2[0], target[0] * 10 ** (g2 / 20), rtol=1e-4, atol=1e-9)


def test_dry_wet_zero_leaves_the_stem_untouched_and_gentle_mixes():
    n = 4800
    key, target = bursts(n, SR, [1000]), steady(n)
    out, g = duck_arrays(key, target, SR, duck_params(dry_wet=0.0, lookahead_ms=1.0))
    assert np.array_equal(out, target) and np.all(g == 0.0)
    out, g = duck_arrays(key, target, SR, duck_params(preset="gentle"))   # dry/wet 0.7
    assert g.min() > 20 * np.log10(0.3) - 1e-3 and g.min() < -3.0


def test_gain_stats_median_over_ducked_samples_and_max():
    s = GainStats()
    s.add(np.array([0.0, 0.0, -0.05, -1.0, -2.0, -3.0], np.float32))
    r = s.result()
    assert r["max_db"] == pytest.approx(3.0) and r["median_active_db"] == pytest.approx(2.0)
    assert r["active_percent"] == pytest.approx(50.0)


def test_preset_then_explicit_flags():
    p = duck_params("gentle", threshold_db=-20.0)
    assert p["threshold_db"] == -20.0 and p["ratio"] == 4.0 and p["release_ms"] == 150.0 and p["dry_wet"] == 0.7
    assert p["range_db"] == -40.0 and p["hold_ms"] == 0.0


# --- files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sr,subtype,key_ch,target_ch,jobs", [
    (44100, "PCM_16", 1, 1, 1),
    (48000, "PCM_24", 1, 2, 2),
    (96000, "FLOAT", 2, 2, 2),
    (48000, "FLOAT", 2, 1, 1),
])
def test_clean_stems_writes_ducked_target_and_copies_keeping_format(tmp_path, capsys, sr, subtype, key_ch,
                                                                    target_ch, jobs):
    src, dst = tmp_path / "stems", tmp_path / "clean"
    data = {t: make_track(src, t, sr=sr, subtype=subtype, key_ch=key_ch, target_ch=target_ch, seed=i)
            for i, t in enumerate(["a", "b"])}
    before = hashes(src)
    assert run_cli("-i", src, "-o", dst, "--lookahead", 1, "-j", jobs) == 0
    assert hashes(src) == before, "inputs were modified"
    out = capsys.readouterr().out
    assert "real time" in out and "a " in out and "snare>kick" in out
    p = duck_params(lookahead_ms=1.0)
    for t in data:
        ki, ti = sf.info(str(src / t / f"{t}-kick.wav")), sf.info(str(dst / t / f"{t}-kick.wav"))
        assert (ti.samplerate, ti.subtype, ti.channels, ti.frames) == (ki.samplerate, ki.subtype, ki.channels, ki.frames)
        key, target = read(src / t / f"{t}-snare.wav"), read(src / t / f"{t}-kick.wav")
        want, g = duck_arrays(key, target, sr, p)
        assert np.array_equal(read(dst / t / f"{t}-kick.wav"), quantized(want, sr, subtype))
        assert g.min() < -10.0
        for s in ("snare", "hihat", "toms", "cymbals"):
            assert (dst / t / f"{t}-{s}.wav").read_bytes() == (src / t / f"{t}-{s}.wav").read_bytes()
        man = json.loads((dst / t / MANIFEST).read_text())["outputs"]
        assert man[f"{t}-kick.wav"]["params"]["lookahead_ms"] == 1.0
        assert man[f"{t}-kick.wav"]["stats"]["max_db"] == pytest.approx(-float(g.min()), abs=1e-3)
    assert not list(dst.rglob("*.debleed-tmp"))


def test_several_pairs_and_preset_with_override(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_track(src, "song")
    assert run_cli("-i", src, "-o", dst, "--preset", "aggressive", "-r", 5, "--pair", "snare:kick",
                   "--pair", "kick:toms") == 0
    man = json.loads((dst / "song" / MANIFEST).read_text())["outputs"]
    assert man["song-kick.wav"]["kind"] == man["song-toms.wav"]["kind"] == "duck"
    assert man["song-hihat.wav"]["kind"] == "copy"
    prm = man["song-toms.wav"]["params"]
    assert prm["threshold_db"] == -40.0 and prm["ratio"] == 5.0 and prm["attack_ms"] == 0.5
    # keys read the original stems: toms are ducked by the unprocessed kick
    want, _ = duck_arrays(read(src / "song" / "song-kick.wav"), read(src / "song" / "song-toms.wav"), SR,
                          duck_params("aggressive", ratio=5.0))
    assert np.array_equal(read(dst / "song" / "song-toms.wav"), quantized(want, SR, "PCM_16"))
    assert "kick>toms" in capsys.readouterr().out


# --- errors ----------------------------------------------------------------------------------

def test_sample_rate_and_length_mismatch_name_both_files_and_other_tracks_go_on(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_track(src, "good")
    make_track(src, "rate")
    write(src / "rate" / "rate-snare.wav", bursts(44100, 44100, [1000]), 44100, "PCM_16")
    make_track(src, "len")
    write(src / "len" / "len-kick.wav", steady(SR - 100), SR, "PCM_16")
    before = hashes(src)
    assert run_cli("-i", src, "-o", dst) == 1
    err = capsys.readouterr().err
    assert "rate-snare.wav is 44100 Hz" in err and "rate-kick.wav is 48000 Hz" in err and "resample" in err
    assert "len-snare.wav has 48000 frames" in err and "len-kick.wav has 47900 frames" in err and "trim or pad" in err
    assert "2 track(s) failed" in err
    assert (dst / "good" / "good-kick.wav").exists()
    assert not (dst / "rate").exists() or not any((dst / "rate").iterdir())
    assert not (dst / "len").exists() or not any((dst / "len").iterdir())
    assert hashes(src) == before


def test_missing_key_stem_warns_and_skips_the_track(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_track(src, "full")
    make_track(src, "nosnare", stems=("kick", "hihat"))
    assert run_cli("-i", src, "-o", dst) == 0
    cap = capsys.readouterr()
    assert "warning" in cap.err and "nosnare-snare.wav" in cap.err and "skipped" in cap.err
    assert (dst / "full" / "full-kick.wav").exists()
    assert not (dst / "nosnare").exists()
    assert "skipped (missing stems): nosnare" in cap.out


def test_unreadable_file_is_named(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_track(src, "ok")
    make_track(src, "bad")
    (src / "bad" / "bad-snare.wav").write_bytes(b"RIFF\x00\x00garbage, not audio")
    assert run_cli("-i", src, "-o", dst) == 1
    err = capsys.readouterr().err
    assert "bad-snare.wav" in err and "cannot read" in err
    assert (dst / "ok" / "ok-kick.wav").exists() and not (dst / "bad" / "bad-kick.wav").exists()


@pytest.mark.parametrize("where,msg", [("inside", "inside the input folder"), ("same", "is the input folder")])
def test_output_folder_inside_or_equal_to_input_is_refused(tmp_path, capsys, where, msg):
    src = tmp_path / "in"
    make_track(src, "t")
    before = hashes(src)
    dst = src / "cleaned" if where == "inside" else src
    assert run_cli("-i", src, "-o", dst) == 2
    assert msg in capsys.readouterr().err
    assert hashes(src) == before


@pytest.mark.parametrize("args,msg", [
    (["--pair", "snare-kick"], "KEY:TARGET"),
    (["--pair", "kick:kick"], "different"),
    (["--pair", "snare:kick", "--pair", "hihat:kick"], "more than once"),
    (["-t", "5"], "error: --threshold (threshold_db) must be in [-120, 0] dBFS, got 5.0"),
    (["--lookahead", "200"], "--lookahead (lookahead_ms) must be in"),
    (["--attack", "-5"], "error: --attack (attack_ms) must be in [0, 1000] ms, got -5.0"),
    (["--block", "0"], "--block must be in"),
])
def test_bad_flags_are_clear_errors(tmp_path, capsys, args, msg):
    src = tmp_path / "in"
    make_track(src, "t")
    assert run_cli("-i", src, "-o", tmp_path / "out", *args) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_empty_or_missing_input_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_cli("-i", tmp_path / "empty", "-o", tmp_path / "o") == 2
    assert "no track folders" in capsys.readouterr().err
    assert run_cli("-i", tmp_path / "nope", "-o", tmp_path / "o") == 2
    assert "does not exist" in capsys.readouterr().err


# --- resume ----------------------------------------------------------------------------------

def test_interrupted_batch_resumes_and_changed_parameters_redo(tmp_path, capsys):
    src, dst, ref = tmp_path / "in", tmp_path / "out", tmp_path / "ref"
    tracks = [f"t{i:02d}" for i in range(12)]
    for i, t in enumerate(tracks):
        make_track(src, t, seconds=2.0, stems=("kick", "snare", "hihat"), seed=i)
    before = hashes(src)
    assert run_cli("-i", src, "-o", ref, "-j", 1) == 0
    # a slow run (8-frame blocks: the output does not depend on the block size), killed while it
    # writes the third track's ducked stem (two tracks complete by then)
    proc = subprocess.Popen([sys.executable, "-m", "debleed.cli", "clean-stems", "-q", "-i", str(src),
                             "-o", str(dst), "-j", "1", "--block", "8"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t2 = dst / tracks[2]
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if t2.is_dir() and any(t2.glob(f".{tracks[2]}-kick.wav.*.debleed-tmp")):
            break
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    # nothing half-written under a final name
    finals = [p for p in dst.rglob("*.wav")]
    for p in finals:
        assert p.read_bytes() == (ref / p.relative_to(dst)).read_bytes(), f"{p} incomplete or wrong"
    done = {}
    for t in tracks:
        m = dst / t / MANIFEST
        if m.exists():
            for name in json.loads(m.read_text())["outputs"]:
                done[dst / t / name] = (dst / t / name).stat().st_ino
    complete = [t for t in tracks if all(dst / t / f"{t}-{s}.wav" in done for s in ("kick", "snare", "hihat"))]
    assert complete == tracks[:2], f"kill landed at complete tracks {complete}"
    assert list(t2.glob("*.debleed-tmp")), "the kill should land while a stem is being written"
    assert not (t2 / f"{tracks[2]}-kick.wav").exists()
    # resume (with the pool, default block size)
    capsys.readouterr()
    assert run_cli("-i", src, "-o", dst, "-j", 2) == 0
    out = capsys.readouterr().out
    for p, ino in done.items():
        assert p.stat().st_ino == ino, f"{p} was redone although finished"
    n_ducked_done = sum(1 for p in done if p.name.endswith("-kick.wav"))
    assert f"{len(tracks) - n_ducked_done} stem(s) cleaned, {n_ducked_done} up to date" in out
    ref_wavs = sorted(p.relative_to(ref) for p in ref.rglob("*.wav"))
    assert sorted(p.relative_to(dst) for p in dst.rglob("*.wav")) == ref_wavs
    for rel in ref_wavs:
        assert (dst / rel).read_bytes() == (ref / rel).read_bytes(), rel
    assert not list(dst.rglob("*.debleed-tmp"))
    # other parameters: every ducked stem redone, copies kept
    inodes = {p: p.stat().st_ino for p in dst.rglob("*.wav")}
    assert run_cli("-i", src, "-o", dst, "-t", -20) == 0
    assert f"{len(tracks)} stem(s) cleaned, 0 up to date" in capsys.readouterr().out
    for p, ino in inodes.items():
        assert (p.stat().st_ino != ino) == p.name.endswith("-kick.wav"), p
    t = tracks[3]
    want, _ = duck_arrays(read(src / t / f"{t}-snare.wav"), read(src / t / f"{t}-kick.wav"), SR,
                          duck_params(threshold_db=-20.0))
    assert np.array_equal(read(dst / t / f"{t}-kick.wav"), quantized(want, SR, "PCM_16"))
    assert json.loads((dst / t / MANIFEST).read_text())["outputs"][f"{t}-kick.wav"]["params"]["threshold_db"] == -20.0
    assert hashes(src) == before


def test_nan_in_stems_is_read_as_silence_and_does_not_poison_later_samples():
    n = 9600
    key, target = bursts(n, SR, [2000, 7000]), steady(n)
    bad_key, bad_target = key.copy(), target.copy()
    bad_key[0, 2100:2110] = np.nan
    bad_target[0, 500:520] = np.inf
    out, g = duck_arrays(bad_key, bad_target, SR, duck_params())
    clean_key, clean_target = np.nan_to_num(bad_key, nan=0.0), bad_target.copy()
    clean_target[0, 500:520] = 0.0
    want, gw = duck_arrays(clean_key, clean_target, SR, duck_params())
    assert np.all(np.isfinite(out)) and np.array_equal(out, want) and np.array_equal(g, gw)


def test_stem_ducker_process_allocates_nothing():
    import tracemalloc

    from debleed.offline.stems import StemDucker

    d = StemDucker(params=duck_params(lookahead_ms=1.0), n_key_channels=2, n_target_channels=2)
    d.prepare(ProcessSpec(SR, 4096, 2))
    key, target = bursts(4096, SR, [100], 2), steady(4096, 2)
    out, g = np.zeros_like(target), np.zeros(4096, np.float32)
    d.process(key, target, out, g)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(20):
            d.process(key, target, out, g)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 4096 and current - base < 1024, f"process peaked {peak - base} bytes"


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path, sig):
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        make_track(src, f"t{i}", seconds=2.0, stems=("kick", "snare"), seed=i)
    # 8-frame blocks: slow enough that the workers are busy when the parent is killed
    proc = subprocess.Popen([sys.executable, "-m", "debleed.cli", "clean-stems", "-q", "-i", str(src),
                             "-o", str(dst), "-j", "2", "--block", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        workers = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [c for c in _children(proc.pid) if _alive(c)]
            time.sleep(0.05)
        assert len(workers) >= 2, "the pool did not start"
        time.sleep(1.0)  # initializers done, tracks under way
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        left = [w for w in workers if _alive(w)]
    finally:
        for w in [c for c in _children(proc.pid)] if proc.poll() is None else []:
            os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"worker(s) {left} outlived their parent (killed by {sig.name})"


def test_resume_redoes_an_output_that_was_truncated_or_reformatted(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_track(src, "t", seconds=1.0, stems=("kick", "snare", "hihat"))
    assert run_cli("-i", src, "-o", dst) == 0
    ref = hashes(dst)
    ducked, copy = dst / "t" / "t-kick.wav", dst / "t" / "t-hihat.wav"
    capsys.readouterr()
    assert run_cli("-i", src, "-o", dst) == 0
    assert "0 stem(s) cleaned, 1 up to date (skipped), 0 copied, 2 copies up to date" in capsys.readouterr().out
    for p in (ducked, copy):  # cut to 1,000 bytes: the header still claims every frame
        p.write_bytes(p.read_bytes()[:1000])
    assert run_cli("-i", src, "-o", dst) == 0
    assert "1 stem(s) cleaned, 0 up to date (skipped), 1 copied, 1 copies up to date" in capsys.readouterr().out
    assert hashes(dst) == ref
    # the same frames in another format (same size in bytes is not enough either)
    x, sr = sf.read(str(ducked), dtype="float32")
    sf.write(str(ducked), x, sr, subtype="PCM_24")
    assert run_cli("-i", src, "-o", dst) == 0
    assert "1 stem(s) cleaned" in capsys.readouterr().out and hashes(dst) == ref
