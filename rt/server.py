"""A private ``jackd --no-realtime -d dummy`` server for the demo, the tests and the benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import jack

from debleed.errors import EngineError


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
                 timeout_s: float = 10.0):
        self.sample_rate, self.period = int(sample_rate), int(period)
        self.name = name or f"debleed-{uuid.uuid4().hex[:8]}"
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        """``os.environ`` with ``JACK_DEFAULT_SERVER`` set to this server."""
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}

    def start(self) -> "DummyServer":
        jackd = shutil.which("jackd")
        if jackd is None:
            raise EngineError("jackd not found: install Debian's jackd2 (`apt-get install jackd2`)")
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [jackd, "-n", self.name, "--no-realtime", "-d", "dummy", "-r", str(self.sample_rate),
             "-p", str(self.period)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"jackd exited with code {self.proc.returncode}: {self.log()[-800:]}")
            if server_running(self.name):
                return self
            time.sleep(0.05)
        self.stop()
        raise EngineError(f"jackd did not accept clients within {self.timeout_s} s: {self.log()[-800:]}")

    def log(self) -> str:
        """What jackd printed so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        """Terminate jackd (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
