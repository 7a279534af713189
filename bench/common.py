"""What every benchmark section shares: options, the machine, statistics over repeats, gig
configs, a looping JACK player, DSP-load sampling, jackd log parsing, process clean-up.

Nothing here asserts a time: the sections measure and the report shows what they measured.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 48000
#: Wait after connecting before measuring (JACK reorders the graph and recomputes latencies).
SETTLE_S = 0.5
SECTIONS = ("kernels", "callback", "peer", "latency", "denoiser", "soak", "control")
BLOCK_SIZES = (16, 32, 64, 128, 256, 512, 1024)
PERIODS = (32, 64, 128, 256)
CHANNELS = (1, 8, 32)
ENGINES = ("cfunc", "python")
#: Name of the LSP peer binary (Debian ``lsp-plugins-jack``).
LSP_BINARY = "lsp-plugins-sc-gate-mono"


@dataclass
class Options:
    """What ``debleed bench`` was asked to do.

    Attributes
    ----------
    out : Path
        Report folder.
    quick : bool
        Fewer repeats and shorter runs (``--quick``).
    repeats : int
        Repeated runs per measurement, >= 2; the report gives their median, min and max.
    sections : tuple of str
        Sections to run, from :data:`SECTIONS`.
    soak_s : float
        Soak duration, s.
    run_s : float
        Length of one live callback run (audio played in real time), s.
    periods, channels, engines : tuple
        Grid of the callback section (frames, channel counts, engines).
    peer_periods, peer_channels : tuple
        Grid of the peer section.
    kernel_samples : int
        Samples per channel processed per repeat and block size in the kernel section.
    smoke : bool
        The smallest grid (``--smoke``): every section runs at its smallest size, so tests of
        the report's structure take seconds of work; its numbers are not worth reading.
    kernel_blocks : tuple of int
        Block sizes of the kernel section.
    offline_s : float
        Audio rendered per repeat for the kernel section's offline real-time factor, s.
    rt_periods : tuple of int
        Periods of the latency section's round trip, frames.
    denoiser_blocks : tuple of int
        Block sizes of the denoiser section.
    denoiser_n_blocks : int
        Blocks timed per repeat in the denoiser section.
    denoiser_rates : tuple of int
        The denoiser section measures the models of these sample rates (Hz).
    live_hogs : tuple of str
        Runs of ``debleed live`` with denoised channels: without and/or with a CPU hog
        (``no_hog``, ``hog``).
    control_periods : tuple of int
        Periods of the control section, frames.
    live_engine : {"cfunc", "python"}
        Engine of the ``debleed live`` runs of every section but the callback one (which runs
        each of ``engines``). ``--smoke`` takes ``python``: it starts in about 2 s where the
        cfunc engine compiles its callback for about 6 s in each new process.
    """

    out: Path
    quick: bool = False
    repeats: int = 5
    sections: tuple = SECTIONS
    soak_s: float = 600.0
    run_s: float = 5.0
    periods: tuple = PERIODS
    channels: tuple = CHANNELS
    engines: tuple = ENGINES
    peer_periods: tuple = (64, 128)
    peer_channels: tuple = (1, 8)
    kernel_samples: int = 1 << 18
    soak_modes: tuple = ("nort", "rt")
    smoke: bool = False
    kernel_blocks: tuple = BLOCK_SIZES
    offline_s: float = 60.0
    rt_periods: tuple = (64, 128)
    denoiser_blocks: tuple = (64, 128, 256, 1024)
    denoiser_n_blocks: int = 3000
    live_hogs: tuple = ("no_hog", "hog")
    denoiser_rates: tuple = (44100, 48000)
    control_periods: tuple = (64, 128)
    live_engine: str = "cfunc"


def machine_info() -> dict:
    """CPU model, cores, OS and the versions that matter for the numbers (JSON-ready)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "distro": _os_release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for mod in ("numba", "onnxruntime", "jack"):
        try:
            m = __import__(mod)
            info["JACK-Client" if mod == "jack" else mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - a missing module is reported, not raised
            info["JACK-Client" if mod == "jack" else mod] = None
    info["jackd"] = _jackd_version()
    info["lsp-plugins-jack"] = _dpkg_version("lsp-plugins-jack")
    return info


def _os_release() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return None


def _jackd_version() -> str | None:
    jackd = shutil.which("jackd")
    if jackd is None:
        return None
    try:
        out = subprocess.run([jackd, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version\s+(\S+)", out)
    return m.group(1) if m else out.strip()[:80] or None


def _dpkg_version(package: str) -> str | None:
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def stat(values) -> dict:
    """Median, min and max of repeated measurements (None entries are dropped).

    Returns
    -------
    dict
        ``{"median", "min", "max", "n", "values"}``; the first three are None when no value
        was measured.
    """
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {"median": float(np.median(vals)), "min": min(vals), "max": max(vals), "n": len(vals),
            "values": vals}


def bursts(n_channels: int, n_frames: int, *, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Test audio for kernels: decaying noise bursts (8 per second) over -50 dBFS noise.

    Returns
    -------
    ndarray, float32, shape (n_channels, n_frames)
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_channels, n_frames)).astype(np.float32) * 0.003
    period = sample_rate // 8
    env = np.exp(-np.arange(period) / (0.03 * sample_rate)).astype(np.float32)
    for c in range(n_channels):
        for start in range(int(rng.integers(0, period)), n_frames, period):
            m = min(period, n_frames - start)
            x[c, start:start + m] += 0.5 * env[:m] * rng.standard_normal(m).astype(np.float32)
    return x


# --- gig configs ------------------------------------------------------------------------------
#: Inputs of the generated gigs: the multitrack's five mics and the kick's piezo trigger.
GIG_INPUTS = ("kick", "snare", "hihat", "toms", "cymbals", "kick_trig")
#: Key kinds the generated channels cycle through: (input, key, extra TOML lines).
GIG_KINDS = (
    ("kick", "trigger:kick_trig", "trigger_threshold_db = -20.0\nretrigger_ms = 30.0\nlookahead_ms = 1.0"),
    ("snare", "midi:38,40", "lookahead_ms = 1.0"),
    ("toms", "self", "hysteresis_db = -20.0\nthreshold_db = -12.0"),
    ("snare", "input:kick", "mode = \"duck\"\nkey_hpf_hz = 40.0\nkey_lpf_hz = 120.0\nrange_db = -12.0"),
)


def gig_config(n_channels: int, *, client: str = "debleed", extra: str = "", denoise=()) -> str:
    """A gig of ``n_channels`` gated or ducked channels keyed by every kind in turn.

    Channel ``i`` uses ``GIG_KINDS[i % 4]``: the kick gated by its piezo trigger, the snare gated
    by MIDI notes 38/40, the toms by their own mic, the snare ducked by a band-passed kick key.
    ``extra`` is appended to every channel (e.g. ``"denoise = true"``); channels whose index is
    in ``denoise`` get ``denoise = true``.
    """
    lines = [f"[client]\nname = \"{client}\"\n[inputs]"]
    lines += [f"{name} = []" for name in GIG_INPUTS]
    lines.append("[midi]\nconnect = []")
    for i in range(n_channels):
        inp, key, more = GIG_KINDS[i % len(GIG_KINDS)]
        lines.append(f"[[channel]]\nname = \"ch{i:02d}_{key.split(':')[0]}\"\ninput = \"{inp}\"\nkey = \"{key}\"\n"
                     f"ratio = inf\nattack_ms = 0.3\nhold_ms = 60.0\nrelease_ms = 60.0\n{more}\n{extra}"
                     + ("\ndenoise = true" if i in denoise else ""))
    return "\n".join(lines) + "\n"


def live_denoise_supported() -> bool:
    """True when the shipped denoiser models are installed (the live engines run them)."""
    from debleed.models.denoiser import SHIPPED

    return all(p.is_file() for p in SHIPPED.values())


# --- report formatting -----------------------------------------------------------------------
def fmt(v, nd=1, unit=""):
    if v is None:
        return "-"
    return f"{v:.{nd}f}{unit}"


def fmt_mm(s, nd=1):
    """``median (min-max)`` of a :func:`~debleed.bench.common.stat` dict."""
    if not s or s.get("median") is None:
        return "-"
    return f"{s['median']:.{nd}f} ({s['min']:.{nd}f}-{s['max']:.{nd}f})"


# --- JACK helpers -----------------------------------------------------------------------------
class LoopPlayer:
    """A JACK client that loops multitrack audio (and its MIDI) into ports, in real time.

    Parameters
    ----------
    server_name : str
    tracks : dict
        Name -> float32 (n,) signal, all the same length; one output port ``out_<name>`` each.
    midi : list of (frame, bytes)
        MIDI messages of the loop (frames in ``[0, n)``), sent from port ``midi_out``.
    name : str
        Client name.

    Notes
    -----
    The process callback is Python (JACK-Client): it copies the loop into the port buffers.
    Its cost is part of JACK's DSP load in every measurement that uses it (the peer section
    measures it alone as the baseline). The client is also used to sample ``cpu_load()``.
    """

    def __init__(self, server_name: str, tracks: dict, midi: list, *, name: str = "bench-play"):
        import jack

        self.names = list(tracks)
        data = np.stack([np.asarray(v, np.float32) for v in tracks.values()])
        self.n = data.shape[1]
        self.data = np.concatenate([data, data[:, :8192]], axis=1)  # wrap-free slicing
        ev = sorted((int(f) % self.n, bytes(m)) for f, m in midi)
        self.ev_frames = np.array([f for f, _ in ev], np.int64)
        self.ev_msgs = [m for _, m in ev]
        self.pos = 0
        self.client = jack.Client(name, no_start_server=True, servername=server_name)
        self.outs = [self.client.outports.register(f"out_{k}") for k in self.names]
        self.mout = self.client.midi_outports.register("midi_out")
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames):
        pos = self.pos
        for i, p in enumerate(self.outs):
            p.get_array()[:] = self.data[i, pos:pos + frames]
        self.mout.clear_buffer()
        lo = np.searchsorted(self.ev_frames, pos)
        hi = np.searchsorted(self.ev_frames, pos + frames)
        for k in range(lo, hi):
            self.mout.write_midi_event(int(self.ev_frames[k] - pos), self.ev_msgs[k])
        end = pos + frames
        if end >= self.n:  # events past the wrap point, at the loop's start
            hi2 = np.searchsorted(self.ev_frames, end - self.n)
            for k in range(0, hi2):
                self.mout.write_midi_event(int(self.ev_frames[k] + self.n - pos), self.ev_msgs[k])
        self.pos = end % self.n

    def connect(self, client: str, inputs, *, midi: bool = True) -> None:
        """Connect ``out_<name>`` to ``<client>:in_<name>`` for each name in ``inputs``, and MIDI."""
        for name in inputs:
            self.client.connect(f"{self.client.name}:out_{name}", f"{client}:in_{name}")
        if midi:
            self.client.connect(self.mout, f"{client}:midi_in")

    def sample_load(self, seconds: float, interval_s: float = 0.1) -> list[float]:
        """JACK's DSP load (percent) sampled every ``interval_s`` for ``seconds``."""
        out = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(interval_s)
            out.append(float(self.client.cpu_load()))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.deactivate()
            self.client.close()


#: jackd names the client that was still running when a cycle ended (JACK2 1.9.x,
#: ``JackEngine::XRun``): ``JackEngine::XRun: client = debleed was not finished, state = Triggered``.
BLAME_RE = re.compile(r"JackEngine::XRun: client = (\S+) was not finished(?:, state = (\w+))?")
#: The driver's own xrun line (every late cycle, whoever caused it): ``JackTimedDriver::Process XRun = 6 usec``.
SERVER_XRUN_RE = re.compile(r"Process XRun = (\d+) usec")


def parse_jackd_log(text: str) -> dict:
    """Count xrun lines in a piece of jackd's log.

    Returns
    -------
    dict
        ``{"blamed": {client: count}, "blamed_state": {client: {state: count}}, "server_xruns":
        int}``: ``blamed`` counts the lines ``JackEngine::XRun: client = NAME was not finished``
        per client (the client JACK found unfinished at the end of a cycle); ``blamed_state`` the
        same by the state the line gives (``Triggered``: woken but not yet running, i.e. waiting
        for a CPU; ``Running``: inside its callback; ``?`` when the line has none);
        ``server_xruns`` the driver's ``Process XRun = N usec`` lines.
    """
    blamed: dict[str, int] = {}
    by_state: dict[str, dict[str, int]] = {}
    for m in BLAME_RE.finditer(text):
        blamed[m.group(1)] = blamed.get(m.group(1), 0) + 1
        st = by_state.setdefault(m.group(1), {})
        st[m.group(2) or "?"] = st.get(m.group(2) or "?", 0) + 1
    return {"blamed": blamed, "blamed_state": by_state, "server_xruns": len(SERVER_XRUN_RE.findall(text))}


def rss_kib(pid: int) -> int | None:
    """Resident set size of process ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Processes:
    """Every child process a section starts; :meth:`kill_all` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def add(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


@contextlib.contextmanager
def cpu_hog(cpu: int | None):
    """Busy-loop a child process (pinned to ``cpu`` when given) for the duration of the block."""
    import sys

    code = "import os,sys\ncpu=int(sys.argv[1])\nif cpu>=0: os.sched_setaffinity(0,{cpu})\nwhile True: pass\n"
    from debleed.rt.server import popen_dies_with_parent

    proc = popen_dies_with_parent([sys.executable, "-c", code, str(-1 if cpu is None else cpu)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        yield proc
    finally:
        proc.kill()
        proc.wait()


@dataclass
class Context:
    """Shared by the sections of one run: options, machine, notes, the test multitrack."""

    options: Options
    machine: dict = field(default_factory=machine_info)
    _multitrack: object = None

    def multitrack(self):
        """10 s of a groove on the ForzeeStereo kit with bleed (:mod:`debleed.models.multitrack`), cached."""
        if self._multitrack is None:
            from debleed.models.multitrack import render_multitrack

            self._multitrack = render_multitrack(kit="ForzeeStereo", seconds=10.0, sample_rate=SAMPLE_RATE,
                                                 bpm=120.0, seed=7)
        return self._multitrack

    def tracks(self) -> dict:
        """The gig inputs (:data:`GIG_INPUTS`) as name -> float32 signal."""
        mt = self.multitrack()
        return {**{k: mt.mics[k] for k in GIG_INPUTS if k in mt.mics}, "kick_trig": mt.kick_trigger}

    def workdir(self) -> Path:
        d = Path(self.options.out) / "work"
        d.mkdir(parents=True, exist_ok=True)
        return d


def live_stats(proc_log: str, stats_path: Path) -> dict:
    """Read ``debleed live``'s stats JSON (raising with its log when it is missing)."""
    import json

    from debleed.errors import EngineError

    if not Path(stats_path).exists():
        raise EngineError(f"debleed live wrote no stats ({stats_path}); its log:\n{proc_log[-1500:]}")
    return json.loads(Path(stats_path).read_text())


def run_live_window(server, player: LoopPlayer, config_text: str, workdir: Path, *, engine: str,
                    seconds: float, tag: str, procs: Processes, client: str = "debleed", env=None) -> dict:
    """Start ``debleed live`` on ``config_text``, feed it from ``player`` for ``seconds`` in real
    time while sampling JACK's DSP load, stop it, and return its stats plus the load samples and
    what jackd's log blamed during the run."""
    from debleed.testing import start_live, stop_live

    cfg = workdir / f"{tag}.toml"
    cfg.write_text(config_text)
    stats_path = workdir / f"{tag}.stats.json"
    with contextlib.suppress(FileNotFoundError):
        stats_path.unlink()
    log_off = len(server.log())
    proc = procs.add(start_live(cfg, {**server.env, **(env or {})}, engine=engine, stats_json=stats_path))
    try:
        player.connect(client, GIG_INPUTS, midi="midi:" in config_text)
        time.sleep(SETTLE_S)
        rss0 = rss_kib(proc.pid)
        load = player.sample_load(seconds)
        rss1 = rss_kib(proc.pid)
    finally:
        log = stop_live(proc)
    stats = live_stats(log, stats_path)
    jl = parse_jackd_log(server.log()[log_off:])
    return {"stats": stats, "dsp_load_samples": load, "blamed": jl["blamed"],
            "blamed_debleed": jl["blamed"].get(client, 0), "server_xruns": jl["server_xruns"],
            "rss_kib": [rss0, rss1]}
