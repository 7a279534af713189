"""A private ``jackd --no-realtime -d dummy`` server for the demo, the tests and the benchmarks.

JACK keeps a registry of servers in shared memory (``/dev/shm/jack-shm-registry``) with room
for 8 (``MAX_SERVERS`` in JACK2's ``shm.h``; the ninth start fails with "Too many servers
already active"). A jackd that exits normally removes its entry; one killed with SIGKILL leaves
it behind, and a dead entry is only reclaimed by a new server *of the same name*. So here:

- jackd is started with a parent-death signal (``PR_SET_PDEATHSIG`` = SIGTERM): if the Python
  process that started it dies in any way, SIGKILL included, jackd still gets a SIGTERM and
  unregisters itself;
- :meth:`DummyServer.stop` sends SIGTERM and, should jackd need a SIGKILL after 5 s, reclaims
  the dead entry by starting and cleanly stopping a server of the same name;
- :func:`reap_stale_servers` does the same for any dead entry (run before every start);
- :func:`sigterm_raises` turns SIGTERM into ``KeyboardInterrupt`` in the main thread, so that the
  ``finally`` blocks of a demo, bench or test run stop their servers and clients as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import uuid

import jack

from debleed.errors import EngineError

#: JACK2's server registry (POSIX shared memory) and its layout (``jack_shm_header_t``):
#: 24 header bytes (``hdr_len`` 2136 = 24 + 8 x 264), then ``MAX_SERVERS`` entries of 264 bytes,
#: ``{pid_t pid; char name[...];}`` (measured on jackd2 1.9.21).
REGISTRY_PATH = "/dev/shm/jack-shm-registry"
MAX_SERVERS = 8
_SERVERS_OFFSET, _ENTRY_LEN, _NAME_LEN = 24, 264, 260
_PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec: no Python objects made
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def popen_dies_with_parent(cmd, **kw) -> subprocess.Popen:
    """``subprocess.Popen`` whose child gets SIGTERM when this process dies (``PR_SET_PDEATHSIG``).

    Linux ties the signal to the thread that forks: call it from a thread that lives as long as
    the child should (the main thread).
    """
    return subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)


def client_name_in_use(name: str, server_name: str | None) -> bool:
    """Whether a client called ``name`` runs on the server (False when none is reachable).

    jackd2 answers an exact name in use with ``failure, server_error`` rather than
    ``name_not_unique``: a probe client looks the name up.
    """
    try:
        probe = jack.Client(f"debleed-probe-{os.getpid()}", no_start_server=True, servername=server_name)
    except jack.JackError:
        return False
    try:
        try:
            return bool(probe.get_uuid_for_client_name(name))
        except jack.JackError:
            return False
    finally:
        probe.close()


def client_name_taken_message(name: str, server_name: str | None) -> str:
    """The error for a JACK client name already in use: names the server, the ``debleed live``
    processes of this user that may hold it (pid and command line, read from ``/proc``) and
    ``--name``."""
    server = server_name or os.environ.get("JACK_DEFAULT_SERVER") or "default"
    holders = []
    with contextlib.suppress(OSError):
        for d in os.scandir("/proc"):
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if os.stat(d.path).st_uid != os.getuid():
                    continue
                argv = [a.decode(errors="replace") for a in open(f"{d.path}/cmdline", "rb").read().split(b"\0") if a]
                if "live" in argv and any(a.endswith("debleed") or a == "debleed.rt.cli" for a in argv):
                    cmd = " ".join(argv[argv.index("live"):])
                    holders.append(f"pid {d.name}: debleed {cmd[:160]}")
    running = f" (running: {'; '.join(holders[:3])})" if holders else ""
    return (f"JACK client name {name!r} is already in use on server {server!r}{running}: a second instance "
            f"would take the same inputs and double the outputs. Stop that one, or start this one under "
            f"another name with --name NAME (or [client] name in the gig file)")


class ServerGoneError(EngineError):
    """The JACK server went away (``debleed live`` exits with status 1, as when it goes away
    while running)."""

    exit_status = 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def registered_servers() -> list[tuple[int, str, bool]]:
    """The JACK server registry: ``(pid, name, alive)`` per used entry (empty when none exists).

    ``name`` is the server name as given to ``jackd -n`` (JACK stores ``jack-<uid>:<name>:``).
    """
    try:
        with open(REGISTRY_PATH, "rb") as f:
            data = f.read(_SERVERS_OFFSET + MAX_SERVERS * _ENTRY_LEN)
    except OSError:
        return []
    out = []
    if len(data) < _SERVERS_OFFSET:
        return out
    (hdr_len,) = struct.unpack_from("<i", data, 16)
    stride = (hdr_len - _SERVERS_OFFSET) // MAX_SERVERS if hdr_len > _SERVERS_OFFSET else _ENTRY_LEN
    for i in range(MAX_SERVERS):
        o = _SERVERS_OFFSET + i * stride
        if o + 4 + _NAME_LEN > len(data) or stride < 4 + 16:
            break
        (pid,) = struct.unpack_from("<i", data, o)
        if pid <= 0:
            continue
        raw = data[o + 4:o + stride].split(b"\0", 1)[0].decode(errors="replace")
        parts = raw.split(":")  # "jack-<uid>:<name>:"
        name = parts[1] if raw.startswith("jack-") and len(parts) >= 2 else raw
        out.append((pid, name, _alive(pid)))
    return out


def _reclaim(name: str, timeout_s: float = 10.0) -> bool:
    """Start and cleanly stop a dummy jackd named ``name``: JACK reclaims a dead entry of the same
    name, and the clean exit removes it and its shared memory. Returns True when it went."""
    jackd = shutil.which("jackd")
    if jackd is None:
        return False
    proc = popen_dies_with_parent([jackd, "-n", name, "--no-realtime", "-d", "dummy"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"})
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if any(n == name and pid == proc.pid for pid, n, _ in registered_servers()):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return not any(n == name for _, n, _ in registered_servers())


def reap_stale_servers() -> list[str]:
    """Remove the registry entries of JACK servers whose process is gone; returns their names."""
    gone = [name for pid, name, alive in registered_servers() if not alive and name]
    return [name for name in gone if _reclaim(name)]


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread (as Ctrl-C does),
    so ``finally`` blocks and context managers stop servers and clients. Elsewhere (another
    thread, or not the main interpreter) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def server_running(name: str | None = None) -> bool:
    """True if a JACK server (``name`` or the default) accepts clients."""
    jack.set_error_function(lambda msg: None)  # "cannot connect" is the expected answer here
    jack.set_info_function(lambda msg: None)
    try:
        c = jack.Client(f"probe{os.getpid()}", no_start_server=True, servername=name)
    except jack.JackOpenError:
        return False
    finally:
        jack.set_error_function(None)
        jack.set_info_function(None)
    c.close()
    return True


class DummyServer:
    """Start ``jackd -n NAME --no-realtime -d dummy -r RATE -p PERIOD``; stop it on exit.

    With ``realtime=True`` the server runs ``jackd -R -P PRIORITY`` instead (SCHED_FIFO; needs
    root or an rtprio limit): used by the benchmarks' real-time soak.

    Parameters
    ----------
    sample_rate : int
        Hz; default 48000.
    period : int
        Frames per period; default 128.
    name : str, optional
        Server name; default a fresh ``debleed-<random>``. Set ``JACK_DEFAULT_SERVER`` to it (or
        pass ``servername``) for clients to find it; :attr:`env` is a ready environment.

    Raises
    ------
    EngineError
        If ``jackd`` is not installed or the server does not come up within ``timeout_s``.

    Examples
    --------
    >>> with DummyServer(period=64) as srv:          # doctest: +SKIP
    ...     client = jack.Client("x", servername=srv.name)
    """

    def __init__(self, *, sample_rate: int = 48000, period: int = 128, name: str | None = None,
                 timeout_s: float = 10.0, realtime: bool = False, realtime_priority: int = 70):
        self.sample_rate, self.period = int(sample_rate), int(period)
        self.name = name or f"debleed-{uuid.uuid4().hex[:8]}"
        self.timeout_s = timeout_s
        self.realtime, self.realtime_priority = bool(realtime), int(realtime_priority)
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._last_log = ""

    @property
    def env(self) -> dict:
        """``os.environ`` with ``JACK_DEFAULT_SERVER`` set to this server."""
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}

    def start(self) -> "DummyServer":
        jackd = shutil.which("jackd")
        if jackd is None:
            raise EngineError("jackd not found: install Debian's jackd2 (`apt-get install jackd2`)")
        if any(not alive for _, _, alive in registered_servers()):
            reap_stale_servers()  # a dead entry (a SIGKILLed jackd) would hold one of the 8 places
        self._log = tempfile.TemporaryFile()
        cmd = [jackd, "-n", self.name]
        if not self.realtime:
            cmd.append("--no-realtime")
        else:
            cmd += ["-R", "-P", str(self.realtime_priority)]
        cmd += ["-d", "dummy", "-r", str(self.sample_rate), "-p", str(self.period)]
        self.proc = popen_dies_with_parent(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                           stderr=subprocess.STDOUT, env=self.env)
        try:
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise EngineError(f"jackd exited with code {self.proc.returncode}: {self.log()[-800:]}")
                if server_running(self.name):
                    return self
                time.sleep(0.05)
            raise EngineError(f"jackd did not accept clients within {self.timeout_s} s: {self.log()[-800:]}")
        except BaseException:  # Ctrl-C or SIGTERM while waiting: the server goes too
            log = self.log() if self._log is not None else ""
            self.stop()
            self._last_log = log
            raise

    def log(self) -> str:
        """What jackd printed so far."""
        if self._log is None:
            return self._last_log
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        """Terminate jackd (SIGTERM, then SIGKILL after 5 s) and make sure its name is no longer
        registered (a SIGKILLed jackd's entry is reclaimed, see the module's notes). Safe to call
        twice, and from a ``finally`` after Ctrl-C."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        killed = False
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed = True
        if killed or proc.returncode == -signal.SIGKILL:
            _reclaim(self.name)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
