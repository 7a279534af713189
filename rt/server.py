"""JACK servers: the registry of running servers, whether one runs, processes that die with
their parent, SIGTERM as Ctrl-C. (The private dummy server of the demo, the tests and the
benchmarks, :class:`debleed.testing.DummyServer`, is built on these.)

JACK keeps a registry of servers in shared memory (``/dev/shm/jack-shm-registry``) with room
for 8 (``MAX_SERVERS`` in JACK2's ``shm.h``; the ninth start fails with "Too many servers
already active"). A jackd that exits normally removes its entry; one killed with SIGKILL leaves
it behind, and a dead entry is only reclaimed by a new server *of the same name*. So here:

- jackd is started with a parent-death signal (``PR_SET_PDEATHSIG`` = SIGTERM): if the Python
  process that started it dies in any way, SIGKILL included, jackd still gets a SIGTERM and
  unregisters itself;
- :meth:`debleed.testing.DummyServer.stop` sends SIGTERM and, should jackd need a SIGKILL after 5 s, reclaims
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
                if "live" in argv and any(a.endswith("debleed") or a == "debleed.cli" for a in argv):
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


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0; one we may not signal exists too)."""
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
        out.append((pid, name, pid_alive(pid)))
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
