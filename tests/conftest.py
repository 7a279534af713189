"""Shared fixtures: a private dummy JACK server and a running `debleed live`."""

from __future__ import annotations

import contextlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from debleed.testing import start_live, stop_live
from debleed.testing import DummyServer


@pytest.fixture(scope="session")
def jack_server():
    """One private `jackd --no-realtime -d dummy` (48 kHz, 128 frames) for the session."""
    if shutil.which("jackd") is None:
        pytest.fail("jackd is not installed: `make test` installs jackd2; run it instead of bare pytest")
    with DummyServer(sample_rate=48000, period=128) as srv:
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
