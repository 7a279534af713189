"""The test harness: a private dummy JACK server and ``debleed live`` as a subprocess.

For the tests, the benchmarks and ``debleed demo`` (nothing else imports it): :class:`DummyServer`
starts ``jackd --no-realtime -d dummy`` under a private name and always stops it (JACK allows 8
registered servers; see :mod:`debleed.rt.server` for the registry and the parent-death signal);
:func:`start_live` / :func:`stop_live` run ``debleed live`` against it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from debleed.errors import EngineError
from debleed.rt.server import _reclaim, popen_dies_with_parent, reap_stale_servers, registered_servers, server_running


#: ``jackd -t``: how long a non-real-time dummy server waits for a client, ms (the tests and the
#: demo; the benchmarks keep JACK's default, :data:`JACK_CLIENT_TIMEOUT_MS`, as a gig would: a
#: long timeout also makes the server slow to drop a client that was killed).
CLIENT_TIMEOUT_MS = 10000
JACK_CLIENT_TIMEOUT_MS = 500


def _nice_range() -> tuple[int, int]:
    """``[client] process_nice``'s range, as rt/config.py defines it (one definition)."""
    from annotated_types import Ge, Le

    from debleed.rt.config import ClientConfig

    meta = ClientConfig.model_fields["process_nice"].metadata
    return (next(m.ge for m in meta if isinstance(m, Ge)), next(m.le for m in meta if isinstance(m, Le)))


class DummyServer:
    """Start ``jackd -n NAME --no-realtime -t 10000 -d dummy -r RATE -p PERIOD``; stop it on exit.

    With ``realtime=True`` the server runs ``jackd -R -P PRIORITY`` instead (SCHED_FIFO; needs
    root or an rtprio limit): used by the benchmarks' real-time soak.

    Parameters
    ----------
    sample_rate : int
        Hz; default 48000.
    period_frames : int
        Frames per period; default 128.
    name : str, optional
        Server name; default a fresh ``debleed-<random>``. Set ``JACK_DEFAULT_SERVER`` to it (or
        pass ``servername``) for clients to find it; :attr:`env` is a ready environment.
    nice : int
        Without ``realtime``: run jackd (its driver thread included) at this nice value, -20 to
        0 (``nice -n``; without the permission it runs at 0, with a warning in its log). Default
        0; the demo passes its gig's ``[client] process_nice``.

    Raises
    ------
    EngineError
        If ``jackd`` is not installed or the server does not come up within ``timeout_s``.

    Examples
    --------
    >>> with DummyServer(period_frames=64) as srv:          # doctest: +SKIP
    ...     client = jack.Client("x", servername=srv.name)
    """

    def __init__(self, *, sample_rate: int = 48000, period_frames: int = 128, name: str | None = None,
                 timeout_s: float = 10.0, realtime: bool = False, realtime_priority: int = 70,
                 client_timeout_ms: int = CLIENT_TIMEOUT_MS, nice: int = 0):
        lo, hi = _nice_range()
        if isinstance(nice, bool) or not isinstance(nice, int) or not lo <= nice <= hi:
            raise EngineError(f"nice must be an integer from {lo} to {hi}, got {nice!r}")
        self.nice = nice
        self.sample_rate, self.period_frames = int(sample_rate), int(period_frames)
        self.name = name or f"debleed-{uuid.uuid4().hex[:8]}"
        self.timeout_s = timeout_s
        self.realtime, self.realtime_priority = bool(realtime), int(realtime_priority)
        self.client_timeout_ms = int(client_timeout_ms)
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
            # a client that a loaded machine does not schedule for a while is waited for, not
            # timed out and dropped from the graph (JACK's default is 500 ms; a freewheel run,
            # a bounce, must not lose a client for being slow)
            cmd += ["--no-realtime", "-t", str(self.client_timeout_ms)]
        else:
            cmd += ["-R", "-P", str(self.realtime_priority)]
        cmd += ["-d", "dummy", "-r", str(self.sample_rate), "-p", str(self.period_frames)]
        if self.nice and not self.realtime and shutil.which("nice"):
            cmd = ["nice", "-n", str(self.nice), *cmd]  # exec: the pid stays jackd's
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
        self._remove_stale_semaphores()

    def _remove_stale_semaphores(self) -> None:
        """Remove this server's client semaphores that jackd left in /dev/shm.

        jackd 1.9 names them ``jack_sem.<uid>_<server>_<client>`` and removes a client's when the
        client closes; one killed (the tests kill some on purpose) leaves its file for good. The
        server is stopped here and the names are its own, so nothing else's is touched."""
        shm = Path("/dev/shm")
        if shm.is_dir():
            for f in shm.glob(f"jack_sem.*_{self.name}_*"):
                f.unlink(missing_ok=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def start_live(config: Path, env: dict, *, engine: str = "cfunc", stats_json: Path | None = None,
               timeout_s: float = 120.0, extra_args=()) -> subprocess.Popen:
    """Start ``debleed live`` and wait until it reports it is running (ports connected).

    Raises
    ------
    EngineError
        If it exits or does not come up within ``timeout_s``.
    """
    cmd = [sys.executable, "-m", "debleed.cli", "live", "--config", str(config), "--engine", engine, "--quiet"]
    if stats_json:
        cmd += ["--stats-json", str(stats_json)]
    cmd += list(extra_args)
    if "--osc-port" not in cmd:
        cmd.append("--no-osc")
    # dies with this process (a demo or bench killed even by SIGKILL leaves no client behind)
    proc = popen_dies_with_parent(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "engine running" in line:
            return proc
        if not line and proc.poll() is not None:
            raise EngineError(f"debleed live exited with code {proc.returncode}: {proc.stderr.read()[-1500:]}")
    proc.kill()
    raise EngineError(f"debleed live did not start within {timeout_s} s")


#: Freewheel bounces :func:`bounce_live` tries before it returns one debleed did not run through.
BOUNCE_TRIES = 3


def bounce_live(config: Path, env: dict, sources: dict, capture: list[str], *, stats_json: Path,
                engine: str = "cfunc", freewheel: bool = True, tries: int = BOUNCE_TRIES, on_start=None,
                warn=None, **play_kw) -> dict:
    """Start ``debleed live``, play ``sources`` and record ``capture`` (:func:`~debleed.rt.player.play_record`),
    stop it; in freewheel, again when debleed ran fewer frames than were played.

    Now and then jackd (1.9.21, dummy driver) runs a freewheel bounce without one client's
    callback after the switch to freewheel, and that client's outputs record silence. Its stats
    then count fewer frames than the player played; the bounce is run again, up to ``tries``
    times. Real-time runs are taken as they come (a lost cycle there is part of what they measure).

    Parameters
    ----------
    config, env, engine
        As :func:`start_live`.
    sources, capture, **play_kw
        As :func:`~debleed.rt.player.play_record` (``server_name`` defaults to ``env``'s server).
    stats_json : Path
        Where ``debleed live --stats-json`` writes at exit (read back here).
    freewheel : bool
        Bounce in freewheel (default) or play in real time.
    tries : int
        Bounces at most, >= 1.
    on_start : callable, optional
        Called with the running ``debleed live`` process before each bounce (e.g. to read its
        port latencies); its last result is returned as ``"on_start"``.
    warn : callable, optional
        Called with a message before a bounce is run again (default: print to stderr).

    Returns
    -------
    dict
        ``"rec"`` (float32, shape (len(capture), frames played + tail)), ``"stats"`` (the stats
        JSON), ``"log"`` (what ``debleed live`` printed), ``"rc"`` (its exit code), ``"tries"``,
        ``"complete"`` (debleed ran every frame played), ``"on_start"``.

    Raises
    ------
    ValueError
        If ``tries`` < 1.
    EngineError
        As :func:`start_live` and ``play_record``.
    """
    from debleed.rt.player import play_record

    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    n = max((int(getattr(v, "size", len(v))) for v in sources.values()), default=0)
    played = n + int(play_kw.get("tail_frames", 0))
    play_kw.setdefault("server_name", env.get("JACK_DEFAULT_SERVER"))
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    for attempt in range(1, tries + 1):
        proc = start_live(config, env, engine=engine, stats_json=stats_json)
        hook = None
        try:
            hook = on_start(proc) if on_start is not None else None
            rec = play_record(sources, capture, freewheel=freewheel, **play_kw)
        finally:
            log = stop_live(proc)
        stats = json.loads(Path(stats_json).read_text())
        complete = stats["frames"] >= played
        if not freewheel or complete or attempt == tries:
            break
        warn(f"warning: debleed ran {stats['frames']} of the {played} frames played (the server left its "
             f"callback out of the freewheel bounce); bouncing again ({attempt + 1} of {tries})")
    return {"rec": rec, "stats": stats, "log": log, "rc": proc.returncode, "tries": attempt, "complete": complete,
            "on_start": hook}


def stop_live(proc: subprocess.Popen, timeout_s: float = 20.0) -> str:
    """SIGTERM ``debleed live``, wait, return what it printed last."""
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return (out or "") + (err or "")
