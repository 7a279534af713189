"""End to end: `debleed live` on a private dummy jackd, both engines, every key kind.

A test client plays a snare mic with bleed, a piezo trigger, a second mic and MIDI notes into
debleed's ports in freewheel mode and records its outputs. Each output must equal the offline
chain at the same block size bit for bit, and must actually gate: bleed between hits down,
hits through.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from debleed.models.metrics import bleed_reduction_db, hit_loss_db
from debleed.rt import _jackptr
from debleed.rt.config import load_config
from debleed.testing import bounce_live
from debleed.dsp.processor import ProcessSpec
from tests.conftest import live

pytestmark = pytest.mark.jack

SR = 48000
PERIOD = 128
CONFIG = """
[client]
name = "dbl{engine}"
[inputs]
snare = []
snare_trig = []
other = []
[midi]
connect = []
[[channel]]
name = "self"
input = "snare"
key = "self"
threshold_db = -20.0
ratio = inf
hysteresis_db = -10.0
attack_ms = 0.2
hold_ms = 30.0
release_ms = 20.0
lookahead_ms = 1.0
[[channel]]
name = "input"
input = "snare"
key = "input:other"
key_hpf_hz = 100.0
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
trigger_threshold_db = -20.0
retrigger_ms = 30.0
ratio = inf
attack_ms = 0.2
hold_ms = 60.0
release_ms = 20.0
lookahead_ms = 1.0
[[channel]]
name = "midi"
input = "snare"
key = "midi:38"
ratio = inf
attack_ms = 0.2
hold_ms = 60.0
release_ms = 20.0
lookahead_ms = 1.0
[[channel]]
name = "duck"
input = "snare"
mode = "duck"
key = "input:other"
threshold_db = -30.0
range_db = -20.0
"""
KINDS = ["self", "input", "trigger", "midi"]


def scene(seconds=2.0, seed=0):
    """A snare mic (decaying noise hits + bleed), its piezo, a key mic and MIDI note-ons."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    hits = np.arange(int(0.1 * SR), n - int(0.2 * SR), int(0.25 * SR)) + rng.integers(0, PERIOD, 1)
    t = np.arange(int(0.08 * SR)) / SR
    direct = np.zeros(n, np.float32)
    trig = np.zeros(n, np.float32)
    for h in hits:
        direct[h:h + t.size] += (0.6 * rng.standard_normal(t.size) * np.exp(-t / 0.015)).astype(np.float32)
        trig[h:h + t.size] += (0.9 * np.sin(2 * np.pi * 180 * t) * np.exp(-t / 0.008)).astype(np.float32)
    bleed = (0.01 * rng.standard_normal(n)).astype(np.float32)  # -40 dBFS hat wash
    mic = direct + bleed
    other = direct.copy()
    midi = [(int(h), bytes([0x99, 38, 100])) for h in hits]
    return {"snare": mic, "snare_trig": trig, "other": other}, direct, hits, midi


def offline(cfg, inputs, midi, n):
    chain = cfg.chain()
    chain.prepare(ProcessSpec(SR, PERIOD, chain.n_channels))
    x = np.zeros((len(inputs), n), np.float32)
    for i, name in enumerate(cfg.input_names):
        x[i, :inputs[name].size] = inputs[name]
    y = np.zeros((chain.n_channels, n), np.float32)
    ev = np.zeros((64, 4), np.int32)
    for s in range(0, n, PERIOD):
        k = 0
        for f, msg in midi:
            if s <= f < s + PERIOD:
                ev[k] = (f - s, msg[0], msg[1], msg[2])
                k += 1
        chain.process(x[:, s:s + PERIOD], y[:, s:s + PERIOD], ev, k)
    return y


@pytest.fixture(scope="module", params=["cfunc", "python"])
def run(request, jack_server, tmp_path_factory):
    engine = request.param
    tmp = tmp_path_factory.mktemp(engine)
    config = tmp / f"gig-{engine}.toml"
    config.write_text(textwrap.dedent(CONFIG.format(engine=engine)))
    cfg = load_config(config)
    client = cfg.client.name
    inputs, direct, hits, midi = scene()

    def port_latencies(_proc):
        import jack

        probe = jack.Client(f"probe-{engine}", servername=jack_server.name)
        try:
            return {ch.name: _jackptr.get_latency_range(probe.get_port_by_name(f"{client}:out_{ch.name}"),
                                                        _jackptr.CAPTURE_LATENCY) for ch in cfg.channel}
        finally:
            probe.close()

    b = bounce_live(config, jack_server.env, {f"{client}:in_{k}": v for k, v in inputs.items()},
                    [f"{client}:out_{ch.name}" for ch in cfg.channel], stats_json=tmp / f"stats-{engine}.json",
                    engine=engine, on_start=port_latencies, midi=midi, midi_dest=[f"{client}:midi_in"],
                    tail_frames=4 * PERIOD, name=f"t{engine}")
    assert b["complete"], f"debleed ran {b['stats']['frames']} frames in {b['tries']} bounces; its log:\n{b['log']}"
    return dict(engine=engine, cfg=cfg, inputs=inputs, direct=direct, hits=hits, midi=midi, rec=b["rec"],
                stats=b["stats"], latency=b["on_start"], info={"log": b["log"], "rc": b["rc"], "config": config})


def test_live_output_is_bit_identical_to_offline_at_the_same_block_size(run):
    want = offline(run["cfg"], run["inputs"], run["midi"], run["rec"].shape[1])
    for c, ch in enumerate(run["cfg"].channel):
        assert np.array_equal(run["rec"][c], want[c]), f"{run['engine']}: channel {ch.name} differs"


@pytest.mark.parametrize("kind", KINDS)
def test_each_key_kind_gates_bleed_and_keeps_hits(run, kind):
    c = [ch.name for ch in run["cfg"].channel].index(kind)
    mic = run["inputs"]["snare"]
    out = run["rec"][c]
    lat = 48
    red = bleed_reduction_db(mic, out, run["direct"], SR, latency=lat)
    loss = hit_loss_db(mic, out, run["hits"], SR, latency=lat)
    assert red > 20.0, f"{kind}: bleed reduced by only {red:.1f} dB between hits"
    assert np.max(loss) < 0.5, f"{kind}: hit loss up to {np.max(loss):.2f} dB"
    # well after hold and release, the gate is closed to its range (-60 dB)
    for h, nxt in zip(run["hits"][:-1], run["hits"][1:]):
        seg = slice(h + int(0.15 * SR), nxt - int(0.005 * SR))
        closed = 10 * np.log10(np.sum(out[seg.start + lat:seg.stop + lat] ** 2) / np.sum(mic[seg] ** 2))
        assert closed == pytest.approx(-60.0, abs=1.0), f"{kind}: {closed:.1f} dB between hits at {h}"


def test_duck_channel_ducks_under_the_key(run):
    c = [ch.name for ch in run["cfg"].channel].index("duck")
    mic, out = run["inputs"]["snare"], run["rec"][c]
    h = run["hits"][0]
    seg = slice(h + 100, h + 600)
    assert 10 * np.log10(np.sum(mic[seg] ** 2) / np.sum(out[seg] ** 2)) > 10.0
    quiet = slice(h - 2000, h - 100)
    assert np.allclose(out[quiet], mic[quiet])


def test_lookahead_is_reported_to_jack_as_port_latency(run):
    assert run["latency"]["self"] == (48, 48)
    assert run["latency"]["duck"] == (0, 0)
    assert run["stats"]["latency_samples"]["midi"] == 48


def test_stats_json_has_counters_and_callback_times(run):
    s = run["stats"]
    assert s["engine"] == run["engine"]
    assert s["callbacks"] >= run["rec"].shape[1] // PERIOD
    assert s["oversize_blocks"] == 0 and s["midi_dropped"] == 0
    cb = s["callback_us"]
    assert 0 < cb["p50"] <= cb["p99"] <= cb["p99.9"] and cb["max"] > 0
    assert s["channels"]["self"]["max_gain_reduction_db"] < -50.0
    assert run["info"]["rc"] == 0, run["info"].get("log")


def test_sigterm_stops_cleanly_with_a_message(run):
    assert "stopped after" in run["info"]["log"]


def test_a_second_instance_under_a_name_in_use_refuses_to_start(jack_server, tmp_path):
    import subprocess
    import sys

    text = "[client]\nname = \"dbl-twice\"\n[inputs]\nmic = []\n[[channel]]\nname = \"c\"\ninput = \"mic\"\n"
    with live(jack_server, text, tmp_path, engine="python") as info:
        first = info["proc"].pid
        r = subprocess.run([sys.executable, "-m", "debleed.cli", "live", "--config", str(info["config"]),
                            "--engine", "python", "--no-osc", "--quiet", "--duration", "0.5"],
                           env=jack_server.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stdout + r.stderr
        err = r.stderr
        assert "JACK client name 'dbl-twice' is already in use" in err and f"pid {first}" in err, err
        assert "--name NAME" in err and "Traceback" not in err and "engine running" not in r.stdout
        r = subprocess.run([sys.executable, "-m", "debleed.cli", "live", "--config", str(info["config"]),
                            "--engine", "python", "--no-osc", "--quiet", "--duration", "0.2", "--name", "dbl-second"],
                           env=jack_server.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "as 'dbl-second'" in r.stdout, r.stdout + r.stderr
