"""The PortAudio backend, run on PortAudio's JACK host API against the private dummy server."""

from __future__ import annotations

import numpy as np
import pytest

from debleed.rt.config import load_config
from debleed.testing import start_live, stop_live
from debleed.rt.player import play_record
from debleed.dsp.processor import ProcessSpec

pytestmark = pytest.mark.jack

GIG = """
[inputs]
snare = []
hat = []
[[channel]]
name = "snare"
input = "snare"
key = "self"
threshold_db = -20.0
ratio = inf
hold_ms = 5.0
release_ms = 10.0
[[channel]]
name = "hat"
input = "hat"
mode = "bypass"
"""


def test_portaudio_backend_runs_the_same_chain(jack_server, tmp_path):
    cfg_path = tmp_path / "pa.toml"
    cfg_path.write_text(GIG)
    proc = start_live(cfg_path, jack_server.env, engine="python", stats_json=tmp_path / "s.json",
                      extra_args=["--backend", "portaudio", "--period", "128"])
    try:
        rng = np.random.default_rng(0)
        n = 48000
        snare = np.zeros(n, np.float32)
        for h in range(2000, n - 4000, 9000):
            snare[h:h + 2000] = rng.standard_normal(2000).astype(np.float32) * 0.5
        snare += rng.standard_normal(n).astype(np.float32) * 0.003
        hat = rng.standard_normal(n).astype(np.float32) * 0.1
        rec = play_record({"PortAudio:in_0": snare, "PortAudio:in_1": hat},
                          ["PortAudio:out_0", "PortAudio:out_1"], server_name=jack_server.name,
                          tail_frames=2048, name="pat")
    finally:
        log = stop_live(proc)
    assert proc.returncode == 0, log
    # PortAudio's JACK host API may buffer: find its delay on the bypass channel
    lag = next(d for d in range(0, 2048) if np.array_equal(rec[1, d:d + n], hat))
    chain = load_config(cfg_path).chain()
    chain.prepare(ProcessSpec(48000, n, chain.n_channels))
    x = np.vstack([snare, hat])
    y = np.zeros_like(x)
    chain.process(x, y)
    assert np.array_equal(rec[0, lag:lag + n], y[0])


def test_portaudio_backend_refuses_a_device_with_too_few_channels(jack_server, tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "wide.toml"
    cfg.write_text("[inputs]\n" + "".join(f"i{k} = []\n" for k in range(5)) +
                   '[[channel]]\nname = "a"\ninput = "i0"\n')
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "live", "--backend", "portaudio",
                        "--config", str(cfg)], capture_output=True, text=True, env=jack_server.env, timeout=60)
    assert r.returncode == 2
    assert "the config needs 5 inputs and 1 outputs" in r.stderr


def test_cfunc_engine_is_refused_on_portaudio(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "g.toml"
    cfg.write_text(GIG)
    r = subprocess.run([sys.executable, "-m", "debleed.cli", "live", "--backend", "portaudio",
                        "--engine", "cfunc", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--engine cfunc needs --backend jack" in r.stderr
