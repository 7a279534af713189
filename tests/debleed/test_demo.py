"""`debleed demo` end to end: real drum samples, a private server, a measured bleed reduction."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.jack


def test_demo_runs_on_real_drums_and_reports_a_measured_bleed_reduction(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JACK_DEFAULT_SERVER"}
    out = tmp_path / "demo"
    # freewheel: the measured numbers must not depend on how busy the machine is
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "demo", "--seconds", "5", "--out", str(out),
                        "--freewheel"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "started a private dummy JACK server" in r.stdout
    report = json.loads((out / "report.json").read_text())
    rows = {row["channel"]: row for row in report["channels"]}
    for name in ("kick", "snare", "toms"):
        assert rows[name]["bleed_reduction_db"] > 15.0, rows[name]
        assert rows[name]["hit_loss_db_loud"] < 1.0, rows[name]
        assert rows[name]["latency_samples"] == 48
    assert rows["hihat"]["bleed_reduction_db"] == pytest.approx(0.0, abs=1e-6)  # bypass reference
    # the denoiser on the snare mic, beside the gates, inside the audio callback: the model's
    # own 63 samples of latency
    assert rows["snare_dn"]["mode"] == "bypass+dn"
    assert rows["snare_dn"]["latency_samples"] == 63
    assert rows["snare_dn"]["bleed_reduction_db"] > 10.0, rows["snare_dn"]
    # live (the kernels in the callback) against `debleed denoise` (onnxruntime) on the same input
    dn = report["offline_denoise"]["snare_dn"]
    assert abs(dn["live_db"] - dn["offline_db"]) <= 0.5, dn
    # a freewheel bounce has no xruns: the bypassed channels show no cut in the stream
    assert report["stream_cuts"] == 0 and dn["uncut_fraction"] == 1.0
    assert dn["live_uncut_db"] == dn["live_db"] and dn["offline_uncut_db"] == dn["offline_db"]
    assert report["live"]["denoiser"]["nonfinite_resets"] == [0]
    assert "denoiser (+dn): in the audio callback" in r.stdout
    assert report["live"]["callbacks"] > 1000 and report["live"]["engine"] == "cfunc"
    assert "GPL" in report["kit_license"]  # ForzeeStereo
    for name in ("kick", "snare", "toms", "hihat", "cymbals"):
        assert (out / "outputs" / f"{name}.wav").is_file() and (out / "inputs" / f"{name}.wav").is_file()
    assert "bleed red." in r.stdout and "xruns" in r.stdout
