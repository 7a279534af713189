"""No JACK server stays registered and no jackd keeps running after a run, even an interrupted one.

JACK's registry holds 8 servers; a jackd killed with SIGKILL leaves its entry (and 100 MB of
shared memory) behind. These tests kill things the hard way and check what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from debleed.rt.server import registered_servers, server_running
from debleed.testing import DummyServer

pytestmark = pytest.mark.jack


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie child of ours would still answer; jackd here is a grandchild, reaped by init
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split()[2] == "Z":
                return True
        time.sleep(0.05)
    return False


def _names() -> set[str]:
    return {name for _, name, _ in registered_servers()}


CHILD = textwrap.dedent("""
    import signal, sys, time
    # Ctrl-C as in a terminal, even when the test runs where SIGINT is ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from debleed.rt.server import sigterm_raises
    from debleed.testing import DummyServer
    with sigterm_raises():
        with DummyServer(period_frames=256) as srv:
            print(srv.name, srv.proc.pid, flush=True)
            time.sleep(120)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_killed_run_leaves_no_jackd_and_no_registered_server(sig):
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().split()
        assert len(line) == 2, "the child did not start its server"
        name, pid = line[0], int(line[1])
        assert name in _names() and server_running(name)
        child.send_signal(sig)
        child.wait(20)
        assert _gone(pid), f"jackd {pid} still runs after the run got {sig.name}"
        assert name not in _names()
        assert not server_running(name)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_sigkilled_jackd_is_unregistered_by_stop():
    srv = DummyServer(period_frames=256).start()
    try:
        assert srv.name in _names()
        srv.proc.kill()
        srv.proc.wait()
        assert srv.name in _names(), "JACK would have removed the entry itself: nothing to test"
    finally:
        srv.stop()
    assert srv.name not in _names()
    assert not [n for pid, n, alive in registered_servers() if not alive and n == srv.name]


def test_a_dead_entry_is_reclaimed_before_the_next_start():
    srv = DummyServer(period_frames=256).start()
    name = srv.name
    srv.proc.kill()
    srv.proc.wait()
    srv.proc = None  # as if the process that started it had died before stopping it
    assert any(n == name and not alive for _, n, alive in registered_servers())
    with DummyServer(period_frames=256):
        assert name not in _names()


MINIMAL = """
[client]
name = "{name}"
[inputs]
a = []
[[channel]]
name = "a"
input = "a"
"""


@pytest.mark.parametrize("engine", ["cfunc", "python"])
def test_server_dying_while_live_starts_exits_1_with_a_message(engine, tmp_path, capsys, monkeypatch):
    """The server goes away after the ports are registered and before activation."""
    from debleed.rt import engine as eng_mod
    from debleed.cli import main

    srv = DummyServer(period_frames=256).start()
    try:
        cfg = tmp_path / "g.toml"
        cfg.write_text(MINIMAL.format(name=f"gone{engine}"))
        real = eng_mod.JackEngine._install_cfunc if engine == "cfunc" else None
        registered = []

        def kill_server_first(self, *a):
            registered.append([p.name for p in self.inports + self.outports])
            srv.stop()
            if real is not None:
                return real(self, *a)

        if engine == "cfunc":
            monkeypatch.setattr(eng_mod.JackEngine, "_install_cfunc", kill_server_first)
        else:
            orig_set = eng_mod.jack.Client.set_process_callback

            def set_cb(client, cb):
                kill_server_first(engine_ref[0])
                return orig_set(client, cb)

            engine_ref = []
            orig_init = eng_mod.JackEngine.__init__

            def init(self, *a, **kw):
                orig_init(self, *a, **kw)
                engine_ref.append(self)

            monkeypatch.setattr(eng_mod.JackEngine, "__init__", init)
            monkeypatch.setattr(eng_mod.jack.Client, "set_process_callback", set_cb)
        rc = main(["live", "--config", str(cfg), "--server", srv.name, "--engine", engine, "--quiet"])
    finally:
        srv.stop()
    err = capsys.readouterr().err
    assert registered == [[f"gone{engine}:in_a", f"gone{engine}:out_a"]]
    assert rc == 1
    assert "went away while debleed was starting" in err
    assert "Traceback" not in err


def test_a_niced_dummy_server_runs_jackd_at_that_nice_value_and_stops_cleanly():
    with pytest.raises(Exception, match="nice must be an integer from -20 to 0, got 3"):
        DummyServer(nice=3)
    want = -5 if os.geteuid() == 0 else 0  # raising priority needs root; else jackd stays at 0
    with DummyServer(nice=-5) as srv:
        pid = srv.proc.pid
        assert os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("jackd")
        tids = os.listdir(f"/proc/{pid}/task")
        assert len(tids) > 1  # the driver's threads started after the nice value was set
        assert {os.getpriority(os.PRIO_PROCESS, int(t)) for t in tids} == {want}
    assert not server_running(srv.name)


def test_a_killed_clients_semaphore_is_removed_with_its_server():
    """jackd may leave a SIGKILLed client's semaphore in /dev/shm for good (named
    ``jack_sem.<uid>_<server>_<client>``); stopping the server removes the ones under its own
    name and no other."""
    from pathlib import Path

    shm = Path("/dev/shm")
    other = shm / "jack_sem.0_debleed-notours_x"
    other.write_bytes(b"")
    try:
        with DummyServer() as srv:
            code = ("import jack, os, signal, time\n"
                    f"c = jack.Client('doomed', servername={srv.name!r}, no_start_server=True)\n"
                    "c.activate(); time.sleep(0.3); os.kill(os.getpid(), signal.SIGKILL)\n")
            subprocess.run([sys.executable, "-c", code], env=srv.env, timeout=60)
            # whether jackd cleaned up after the killed client depends on timing: leave one as it does
            stale = shm / f"jack_sem.{os.getuid()}_{srv.name}_doomed"
            stale.write_bytes(b"")
        assert not list(shm.glob(f"jack_sem.*_{srv.name}_*"))
        assert other.exists()
    finally:
        other.unlink(missing_ok=True)
