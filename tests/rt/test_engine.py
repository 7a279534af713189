"""The cfunc data plane (no allocation, no Python), the private JACK-Client access, the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import jack
import numpy as np
import pytest

from debleed.rt import _jackptr, jack_cfunc
from debleed.rt.jack_cfunc import fingerprint, fingerprint_files, process_cfunc
from debleed.testing import DummyServer
from tests.conftest import live

FORBIDDEN = re.compile(r"^(NRT_Allocate|NRT_MemInfo_alloc\w*|NRT_Free|Py\w+|numba_gil_ensure|numba_do_raise"
                       r"|numba_unpickle|malloc|free|pthread_mutex\w*)$")
MINIMAL = """
[inputs]
a = []
[[channel]]
name = "a"
input = "a"
lookahead_ms = 2.0
"""


def _functions(ir):
    for body in ir.split("\ndefine ")[1:]:
        name = re.match(r'[^@]*@"?([\w.$]+)', body).group(1)
        calls = set(re.findall(r'(?:call|invoke)[^@\n]*@"?([\w.$]+)', body))
        yield name, body, calls


def test_cfunc_audio_path_allocates_nothing_and_calls_no_python():
    ir = process_cfunc(cache=False).inspect_llvm()  # a cache hit keeps no IR; the same source
    funcs = list(_functions(ir))
    body = [f for f in funcs if "jack_cfunc8_process" in f[0] and not f[0].startswith("cfunc.")]
    chain = [f for f in funcs if "run_block" in f[0] or "_run_chain" in f[0] or "chain4_run" in f[0]]
    # the denoiser stage's kernels: the generated runner, denoise_block and the network's layers
    denoise = {k for k in ("_run_denoise", "denoise_block", "_network", "_gemm")
               if any(k.replace("_", "") in f[0].replace("_", "") for f in funcs)}
    assert body and len(chain) == 3, [f[0][:60] for f in funcs]  # runner, run_block, the kernel
    assert denoise == {"_run_denoise", "denoise_block", "_network", "_gemm"}, denoise
    # every function compiled into the callback, not only the ones named above (the C wrapper's
    # error path, which takes the GIL, is excluded: the body never raises, below)
    audio = [f for f in funcs if not f[0].startswith("cfunc.")]
    for name, _, calls in audio:
        bad = sorted(c for c in calls if FORBIDDEN.match(c))
        assert not bad, f"{name[:50]} calls {bad}"
    # the process body never raises, so the wrapper's error path (which takes the GIL) is dead
    # code: no function compiled into it calls numba_do_raise or stores an exception (a float
    # division compiled with the "python" error model would raise ZeroDivisionError)
    assert not any("numba_do_raise" in calls for _, _, calls in audio)
    raising = [name[:60] for name, body, _ in audio if "numba_exception_output" in body]
    assert not raising, raising


def test_cfunc_is_cached_on_disk_and_keyed_on_every_source_it_holds():
    files = {f"{f.parent.name}/{f.name}" for f in fingerprint_files()}
    assert {"dsp/chain.py", "dsp/envelope.py", "models/streaming.py", "models/_simd.py", "rt/jack_cfunc.py",
            "rt/stats.py"} <= files
    assert not any("__pycache__" in f for f in files)
    probe = ("from debleed.rt.jack_cfunc import process_cfunc\n"
             "f = process_cfunc()\nprint(f.cache_hits, f.address != 0)\n")
    # the first process compiles unless an earlier one stored it; the next one loads it
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["1", "True"], r.stdout
    src = Path(jack_cfunc.__file__).parent / "__pycache__" / "jack_process.py"  # the tree is writable here
    assert src.read_text().splitlines()[0].endswith(f"fingerprint {fingerprint()}")


def test_jack_client_private_pointers_are_reachable(jack_server):
    c = jack.Client("ptrtest", servername=jack_server.name)
    try:
        p = c.outports.register("out")
        assert _jackptr.address(c) != 0 and _jackptr.address(p) != 0
        assert _jackptr.address(p) != _jackptr.address(c)
    finally:
        c.close()


def test_latency_ranges_round_trip_through_the_latency_callback(jack_server):
    c = jack.Client("lattest", servername=jack_server.name)
    p = c.outports.register("out")
    seen = []

    def cb(mode):
        seen.append(mode)
        _jackptr.set_latency_range(p, _jackptr.CAPTURE_LATENCY, 17, 23)

    keep = _jackptr.set_latency_callback(c, cb)
    c.set_process_callback(lambda frames: None)  # jackd2 sends latency callbacks to processing clients
    try:
        c.activate()
        _jackptr.recompute_total_latencies(c)
        for _ in range(50):
            if _jackptr.get_latency_range(p, _jackptr.CAPTURE_LATENCY) == (17, 23):
                break
            time.sleep(0.02)
        assert _jackptr.get_latency_range(p, _jackptr.CAPTURE_LATENCY) == (17, 23)
        assert _jackptr.CAPTURE_LATENCY in seen
    finally:
        c.deactivate()
        c.close()
        del keep


def debleed(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "debleed.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_cli_bad_config_exits_2_with_the_reason(tmp_path):
    r = debleed("live", "--config", str(tmp_path / "none.toml"))
    assert r.returncode == 2
    assert "none.toml: config file not found" in r.stderr


def test_cli_without_a_server_says_how_to_start_one(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(MINIMAL)
    r = debleed("live", "--config", str(cfg), "--server", "no-such-server-xyz")
    assert r.returncode == 2
    assert "cannot connect to a JACK server (server name: no-such-server-xyz)" in r.stderr
    assert "jackd" in r.stderr


def test_cli_ports_lists_debleed_ports(jack_server, tmp_path):
    with live(jack_server, MINIMAL.replace("[inputs]", '[client]\nname = "portlist"\n[inputs]'), tmp_path):
        r = debleed("ports", env=jack_server.env)
    assert r.returncode == 0
    assert re.search(r"portlist:in_a\s+audio in", r.stdout)
    assert re.search(r"portlist:out_a\s+audio out", r.stdout)


def test_server_going_away_ends_live_cleanly_with_a_message(tmp_path):
    with DummyServer() as srv:
        cfg = tmp_path / "g.toml"
        cfg.write_text(MINIMAL)
        from debleed.testing import start_live

        proc = start_live(cfg, srv.env, stats_json=tmp_path / "s.json")
        time.sleep(0.3)
        srv.stop()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "JACK server went away" in err
    assert (tmp_path / "s.json").is_file()


def test_python_engine_warms_up_before_activation(jack_server, tmp_path):
    """No multi-millisecond compile stall in the first callbacks of the Python engine."""
    with live(jack_server, MINIMAL.replace("[inputs]", '[client]\nname = "warm"\n[inputs]'), tmp_path,
              engine="python") as info:
        time.sleep(0.5)
    import json

    s = json.loads(info["stats"].read_text())
    assert s["callbacks"] > 10
    assert s["callback_us"]["max"] < 50_000


def test_live_shows_a_status_line_on_a_terminal(jack_server, tmp_path):
    import os
    import pty
    import select

    cfg = tmp_path / "g.toml"
    cfg.write_text(MINIMAL.replace("[inputs]", '[client]\nname = "tty"\n[inputs]'))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "debleed.cli", "live", "--config", str(cfg),
                             "--duration", "2"], stdout=slave, stderr=slave, env=jack_server.env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
    finally:
        proc.wait(30)
        os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert re.search(r"DSP\s+[\d.]+% \| xruns \d+ \| cb p99.9 [\d.]+us max \d+us / 2667us \| GR a\s+-?[\d.]+dB", text), text


def test_period_change_while_running_keeps_processing(jack_server, tmp_path):
    gig = MINIMAL.replace("[inputs]", '[client]\nname = "per"\n[inputs]').replace("lookahead_ms = 2.0", 'mode = "bypass"')
    with live(jack_server, gig, tmp_path) as info:
        from debleed.rt.player import play_record

        x = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
        ctl = jack.Client("perctl", servername=jack_server.name)
        try:
            ctl.blocksize = 256
            rec = play_record({"per:in_a": x}, ["per:out_a"], server_name=jack_server.name, name="pert")
        finally:
            ctl.blocksize = 128
            ctl.close()
    assert np.array_equal(rec[0], x)
    assert info["rc"] == 0
    import json

    assert json.loads(info["stats"].read_text())["oversize_blocks"] == 0


def _thread_nices() -> dict:
    """nice value of each thread of this process, by thread id (/proc/self/task/*/stat field 19)."""
    out = {}
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(stat.parent.name)] = int(fields[16])
    return out


def test_process_thread_gets_its_nice_value_without_realtime_scheduling(jack_server, tmp_path):
    """On a server without -R the process thread runs at ``[client] process_nice`` (we are root
    here, so it is allowed), and no thread that was there before changes; with 0 nothing does."""
    import os

    from debleed.rt.config import parse_config
    from debleed.rt.engine import JackEngine

    if os.geteuid() != 0:
        pytest.skip("lowering a nice value needs root or CAP_SYS_NICE")
    for nice, name in ((-7, "nicetest"), (0, "nicetest0")):
        cfg = parse_config(tomllib.loads(f'[client]\nname = "{name}"\nprocess_nice = {nice}\n' + MINIMAL))
        before = _thread_nices()
        eng = JackEngine(cfg, server_name=jack_server.name)
        eng.start()
        try:
            deadline = time.monotonic() + 5.0
            while eng.stats()["callbacks"] < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            new = {t: v for t, v in _thread_nices().items() if t not in before}
            assert eng.stats()["process_nice"] == (nice or None)
            # the process thread (and the helper threads libjack starts from it) run at the value;
            # the threads that were there before are untouched
            assert {v for v in new.values() if v != 0} == ({nice} if nice else set())
            assert all(v == before[t] for t, v in _thread_nices().items() if t in before)
        finally:
            eng.stop()
    with pytest.raises(Exception, match="process_nice"):
        parse_config(tomllib.loads('[client]\nprocess_nice = 5\n' + MINIMAL))


def test_python_engine_survives_a_raising_callback(jack_server):
    """A Python process callback that raises would make libjack drop the client for good; the
    engine silences that block, counts it and keeps processing the next ones."""
    from debleed.rt.config import parse_config
    from debleed.rt.engine import JackEngine
    from debleed.rt.player import play_record

    cfg = parse_config(tomllib.loads(MINIMAL.replace("[inputs]", '[client]\nname = "raiser"\n[inputs]')
                                     .replace("lookahead_ms = 2.0", 'mode = "bypass"')))
    eng = JackEngine(cfg, engine="python", server_name=jack_server.name)
    eng.start()
    real, calls = eng._run_python_block, {"n": 0}

    def flaky(frames, midi):
        calls["n"] += 1
        if calls["n"] in (3, 4):
            raise RuntimeError("boom")
        real(frames, midi)

    try:
        eng._run_python_block = flaky
        x = np.random.default_rng(1).standard_normal(128 * 64).astype(np.float32)
        rec = play_record({"raiser:in_a": x}, ["raiser:out_a"], server_name=jack_server.name, name="raisert")
        s, line = eng.stats(), eng.status_line()
    finally:
        eng.stop()
    assert s["callback_errors"] == 2 and s["callback_error"] == "RuntimeError: boom"
    assert "| callback errors 2 |" in line
    # the client kept running: every block played came through, bar none
    assert np.array_equal(rec[0], x)


def test_play_record_runs_its_clients_at_the_nice_value_asked(jack_server):
    from debleed.rt.player import play_record

    x = np.arange(1024, dtype=np.float32)
    info = {}
    sink = jack.Client("nicesink", servername=jack_server.name)
    p_in, p_out = sink.inports.register("in"), sink.outports.register("out")
    sink.set_process_callback(lambda frames: p_out.get_array().__setitem__(slice(None), p_in.get_array()))
    with sink:
        rec = play_record({"nicesink:in": x}, ["nicesink:out"], server_name=jack_server.name, name="nicet",
                          info=info, nice=-4)
    assert np.array_equal(rec[0, :x.size], x)
    # the threads that activating the two clients started (their process threads among them)
    assert info["reniced_threads"] and set(info["reniced_threads"].values()) == {-4}
