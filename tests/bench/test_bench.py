"""`debleed bench --smoke` (the smallest grid): it runs and writes a valid, sane report.

Benchmarks are not tests: nothing here asserts a time. The checks are structure (every
section, the machine, every block size), ordering that holds by construction (p50 <= p99 <=
p99.9 <= max, min <= median <= max), the deadline arithmetic, and latency truth in freewheel,
which is deterministic: the impulse comes out exactly where debleed says it does.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from debleed.bench.common import SECTIONS, parse_jackd_log, stat
from debleed.bench.peer import lsp_available

pytestmark = pytest.mark.jack

ARGS = ["--smoke"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "bench", "--out", str(out), *ARGS],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    # no onnxruntime loader errors where CUDA is absent: a provider that cannot start is not tried
    assert "[E:onnxruntime" not in r.stderr and "Failed to load library" not in r.stderr, r.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    return out, data


def _ordered(s):
    assert s["n"] >= 1 and s["min"] <= s["median"] <= s["max"]


def test_report_files_and_machine(report):
    out, data = report
    assert set(data["sections"]) == set(SECTIONS)
    for name, sec in data["sections"].items():
        assert "error" not in sec, (name, sec.get("traceback"))
        assert sec["machine"]["cpu"] and sec["machine"]["cores"] >= 1 and sec["machine"]["python"]
    assert data["options"]["repeats"] == 2 and data["options"]["smoke"] is True
    md = (out / "report.md").read_text()
    assert "## 2. Process callback against the deadline" in md and "## 4. Latency truth" in md
    assert data["plots"], "no plot written"
    for png in data["plots"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kernels(report):
    k = report[1]["sections"]["kernels"]
    for table in (k["chain"], k["processors"]):
        for name, row in table.items():
            assert set(row) == {"64", "128"}, name
            for s in row.values():
                assert s["n"] == 2 and s["median"] > 0
                _ordered(s)
    assert set(k["chain"]) >= {"self", "input (hpf+lpf key)", "trigger", "midi", "self + lookahead 2 ms"}
    _ordered(k["offline_rtf"]["rtf"])
    assert k["offline_rtf"]["audio_s"] == pytest.approx(1.0, abs=128 / 48000)


def test_callback(report):
    c = report[1]["sections"]["callback"]
    # smoke: the Python engine only (the cfunc compiles in every process; its callback is
    # measured by the full and --quick grids, and tested in tests/rt)
    assert {(r["engine"], r["period"], r["channels"]) for r in c["runs"]} == {("python", 64, 1)}
    for r in c["runs"]:
        assert r["deadline_us"] == pytest.approx(1e6 * 64 / 48000)
        cb = r["callback_us"]
        for p in ("p50", "p99", "p99.9", "max"):
            _ordered(cb[p])
        assert 0 < cb["p50"]["median"] <= cb["p99"]["median"] <= cb["p99.9"]["median"]
        # percentiles are bin upper edges (250 ns), the max is exact: allow one bin
        assert cb["p99.9"]["median"] <= cb["max"]["median"] + 0.25
        assert r["callbacks"]["min"] > 0 and r["xruns_total"] >= 0 and r["blamed_debleed_total"] >= 0
        _ordered(r["dsp_load_percent"])


def test_peer(report):
    p = report[1]["sections"]["peer"]
    if not lsp_available():
        assert "not installed" in p["skipped"]
        return
    (row,) = p["runs"]
    assert (row["period"], row["channels"]) == (128, 1)
    for key in ("baseline_load_percent", "debleed_load_percent", "lsp_load_percent"):
        _ordered(row[key])
        assert row[key]["n"] == 2


def test_latency_truth(report):
    lt = report[1]["sections"]["latency"]
    chains = lt["impulse"]["chains"]
    expect = {"gate": 0, "gate + lookahead 2 ms": 96, "lookahead 2 ms (bypass)": 96}
    for name, frames in expect.items():
        r = chains[name]
        assert r["reported_frames"] == {"min": frames, "max": frames}, name
        assert r["measured_frames"]["values"] == [frames, frames], name
        assert r["match"] and r["peak_out"]["median"] == pytest.approx(1.0, abs=1e-3)
    # a denoised channel: the model's 63 samples (smoke: one run, 48 kHz at 128 frames)
    assert [(r["sample_rate"], r["period"]) for r in lt["denoiser"]] == [(48000, 128)]
    for r in lt["denoiser"]:
        assert r["reported_frames"] == {"min": 63, "max": 63} and r["measured_frames"]["values"] == [63, 63]
        assert r["match"]
    assert [r["period"] for r in lt["round_trip"]] == [128]
    for r in lt["round_trip"]:
        assert r["theory_frames"] == r["period"] + r["reported_debleed_frames"]
        assert r["measured_frames"]["n"] >= 3
        # real time on a shared machine: a late cycle can delay one impulse; the median is the truth
        assert r["measured_frames"]["median"] == r["theory_frames"]


def test_denoiser_and_soak(report):
    s = report[1]["sections"]
    d = s["denoiser"]
    # the shipped models are part of the package: the section must measure both, not skip
    assert {"snare_denoiser_48k.onnx", "snare_denoiser_48k_informed.onnx"} <= set(d["models"])  # smoke: 48 kHz
    for name, m in d["models"].items():
        assert "error" not in m, (name, m["error"])
        assert m["latency_samples"] == 63 and m["sample_rate"] in (44100, 48000)
        for table in ("kernels", "wrapper"):  # the data-plane kernels and onnxruntime, side by side
            assert sorted(int(b) for b in m[table]) == [64]
            for block, r in m[table].items():
                assert 0 < r["us"]["p50"]["median"] <= r["us"]["max"]["median"]
                assert r["deadline_us"] == pytest.approx(1e6 * int(block) / m["sample_rate"])
                assert r["percent_of_period_p50"] == pytest.approx(100 * r["us"]["p50"]["median"] / r["deadline_us"])
        for label, v in m["deadline"].items():
            assert "skipped" in v or 0 <= v["over_deadline"]["min"] <= v["over_deadline"]["max"] <= v["blocks"], label
    assert "error" not in d["live"], d["live"]
    assert set(d["live"]) == {"period_frames", "deadline_us", "no_hog"}
    assert d["live"]["no_hog"]["xruns"]["n"] == 2
    _ordered(d["live"]["no_hog"]["callback_p99.9_us"])
    soak = s["soak"]
    assert soak["seconds"] == 1 and soak["period"] == 128 and soak["channels"] == 8
    assert soak["denoised_channels"] == [1, 5] and soak["config"].count("denoise = true") == 2
    runs = soak["runs"]
    assert set(runs) == {"nort"}
    assert "callbacks" in runs["nort"], runs["nort"]
    for mode, r in runs.items():
        if "skipped" in r:  # jackd -R without real-time scheduling here
            continue
        assert "error" not in r, (mode, r)
        assert r["callbacks"] > 0 and r["rss_kib"]["start"] > 0 and r["rss_kib"]["end"] > 0
        assert sum(r["denoiser"]["hops"]) > 0 and r["denoiser"]["latency_samples"] == [63, 63]
        assert r["blamed_debleed"] >= 0 and r["blamed_lsp"] >= 0
        assert r["lsp_clients"] == 0  # --smoke runs the soak without the peer gates


def test_parse_jackd_log():
    log = ("JackEngine::XRun: client = debleed was not finished, state = Triggered\n"
           "JackTimedDriver::Process XRun = 6 usec\n"
           "JackEngine::XRun: client = sc_gate_mono-01 was not finished, state = Running\n"
           "JackEngine::XRun: client = debleed was not finished, state = Triggered\n")
    assert parse_jackd_log(log) == {"blamed": {"debleed": 2, "sc_gate_mono-01": 1},
                                    "blamed_state": {"debleed": {"Triggered": 2}, "sc_gate_mono-01": {"Running": 1}},
                                    "server_xruns": 1}


def test_stat_and_bad_options(tmp_path):
    assert stat([3, 1, None, 2]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "values": [3.0, 1.0, 2.0]}
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "bench", "--out", str(tmp_path), "--repeats", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--repeats must be >= 2" in r.stderr
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "bench", "--out", str(tmp_path), "--sections", "kernel"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown section(s) kernel" in r.stderr


def test_quick_and_smoke_grids_and_explicit_flags_win():
    from debleed.bench.cli import options_from_args
    from debleed.cli import build_parser

    def opt(*argv):
        return options_from_args(build_parser().parse_args(["bench", *argv]))

    q = opt("--quick")
    assert (q.repeats, q.periods, q.channels, q.control_periods, q.live_hogs) == (2, (128,), (8,), (128,),
                                                                                ("hog",))
    assert q.soak_modes == ("nort",) and q.denoiser_rates == (48000,)
    s = opt("--smoke", "--periods", "32,64")
    assert (s.repeats, s.periods, s.channels, s.kernel_blocks, s.soak_modes) == (2, (32, 64), (1,), (64, 128),
                                                                                  ("nort",))
    full = opt()
    assert full.kernel_blocks == (16, 32, 64, 128, 256, 512, 1024) and full.soak_s == 600.0
    with pytest.raises(Exception, match="exclusive"):
        opt("--quick", "--smoke")
    with pytest.raises(Exception, match="--soak-s and --run-s must be > 0"):
        opt("--run-s", "nan")
