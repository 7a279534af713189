"""Shared fixtures: a private dummy JACK server, a running `debleed live`, the CPU torch."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from debleed.testing import DummyServer, start_live, stop_live


@pytest.fixture(scope="session")
def jack_server():
    """One private `jackd --no-realtime -d dummy` (48 kHz, 128 frames) for the session."""
    if shutil.which("jackd") is None:
        pytest.fail("jackd is not installed: `make test` installs jackd2; run it instead of bare pytest")
    with DummyServer(sample_rate=48000, period_frames=128) as srv:
        yield srv


@contextlib.contextmanager
def live(server: DummyServer, config_text: str, tmp_path: Path, *, engine: str = "cfunc"):
    """Run `debleed live` on ``config_text``; yields (process, stats path). Stopped with SIGTERM."""
    cfg = tmp_path / f"gig-{engine}.toml"
    cfg.write_text(textwrap.dedent(config_text))
    stats = tmp_path / f"stats-{engine}.json"
    proc = start_live(cfg, server.env, engine=engine, stats_json=stats)
    info = {"proc": proc, "stats": stats, "config": cfg}
    try:
        yield info
    finally:
        if proc.poll() is None:
            info["log"] = stop_live(proc)
            info["rc"] = proc.returncode


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())

TRAIN_PACKAGES = ("torch==2.13.0", "auraloss>=0.4", "onnx>=1.15", "pyroomacoustics>=0.7")


@pytest.fixture(scope="session")
def torch_installed():
    """Make sure the CPU torch and the rest of the train extra are importable.

    Installs them into the running venv with pip when missing (``torch==2.13.0`` is the CPU
    build; never a bare ``torch``, which pulls a multi-GB CUDA build).
    """
    missing = [p for p, m in zip(TRAIN_PACKAGES, ("torch", "auraloss", "onnx", "pyroomacoustics"))
               if importlib.util.find_spec(m) is None]
    if missing:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.fail(f"could not install {missing} into {sys.prefix}: {r.stderr[-2000:]}")
        importlib.invalidate_caches()
    import torch

    torch.set_num_threads(1)
    return torch
