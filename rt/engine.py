"""The JACK insert: ports, callbacks, latency reporting, counters.

Two engines run the same :func:`debleed.dsp.chain.run_block` over the same preallocated arrays:

- ``cfunc`` (default): a numba ``@cfunc`` registered with libjack's
  ``jack_set_process_callback`` (:mod:`debleed.rt.jack_cfunc`). The audio thread never takes
  the GIL, allocates nothing, locks nothing.
- ``python``: a JACK-Client Python process callback. The fallback, and the baseline the
  benchmarks compare with. It takes the GIL, so it can stall when other Python threads run.

The control plane (this module's ordinary methods) talks to the data plane only through
preallocated arrays: ``counters`` and ``hist`` (:mod:`debleed.rt.stats`) and the chain's
``meters``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import jack
import numpy as np

from debleed.dsp.processor import ProcessSpec
from debleed.dsp.chain import K_CLOCK, M_BAD, M_GR, M_GR_RUN, run_block
from debleed.dsp.keys import MAX_MIDI_EVENTS
from debleed.errors import DebleedError, EngineError
from debleed.fileio import atomic_write_text
from debleed.rt import _jackptr
from debleed.rt.config import GigConfig
from debleed.rt.stats import (C_CALLBACKS, C_FRAMES, C_LAST_NS, C_MAX_NS, C_MIDI_DROPPED,
                              C_OVERSIZE, C_SUM_NS, C_XRUNS, HIST_BIN_NS, HIST_BINS, new_counters,
                              summary)

ENGINES = ("cfunc", "python")
#: Frames allocated per block at least; JACK periods above this are refused at run time.
MIN_MAX_BLOCK = 4096




class EngineBase:
    """What every engine shares: the chain, the denoiser stage, counters, meters and stats.

    Subclasses open the audio device in ``start()``, set ``sample_rate``, ``period_frames`` (the JACK period) and
    ``max_block``, then call :meth:`_prepare_buffers`.
    """

    backend = "none"

    def __init__(self, config: GigConfig, *, engine: str):
        self.config = config
        self.engine = engine
        self.chain = config.chain()
        self.stage = None
        self.counters, self.hist = new_counters()
        #: Python engine: blocks whose callback raised (their outputs silenced), and the first error.
        self.callback_errors = 0
        self.callback_error: str | None = None
        self.shutdown_reason: str | None = None
        self.stopped = threading.Event()
        self.started_at = None
        self.closed = False
        self.client_name = config.client.name
        self.sample_rate, self.period_frames, self.max_block = 0, 0, 0

    def _prepare_buffers(self) -> None:
        """Prepare the chain, the input/output arrays and the denoisers; warm the kernel up."""
        self.chain.prepare(ProcessSpec(self.sample_rate, self.max_block, self.chain.n_channels))
        self.inputs = np.zeros((self.chain.n_inputs, self.max_block), np.float32)
        self.outputs = np.zeros((self.chain.n_channels, self.max_block), np.float32)
        self.events = self.chain.events
        self._prepare_denoisers()
        # load the compiled kernel now, not in the first callback
        run_block(0, self.inputs, self.outputs, self.events, 0, *self.chain.arrays.args())

    def _run_python_block(self, frames: int, midi) -> None:
        """Python data plane: MIDI ``(offset, bytes)`` pairs into events, the denoiser stage, the chain."""
        n_ev = 0
        for offset, data in midi:
            if n_ev >= MAX_MIDI_EVENTS:
                self.counters[C_MIDI_DROPPED] += 1
                continue
            data = bytes(data)
            if len(data) >= 2:
                self.events[n_ev] = (offset, data[0], data[1], data[2] if len(data) > 2 else 0)
                n_ev += 1
        if self.stage is not None:
            self.stage.process(frames, self.inputs, self.events, n_ev)
        run_block(frames, self.inputs, self.outputs, self.events, n_ev, *self.chain.arrays.args())

    def _count_callback(self, frames: int, dt_ns: int) -> None:
        """Counters and the callback-time histogram, as the cfunc keeps them."""
        cn = self.counters
        cn[C_CALLBACKS] += 1
        cn[C_FRAMES] += frames
        cn[C_LAST_NS] = dt_ns
        cn[C_SUM_NS] += dt_ns
        cn[C_MAX_NS] = max(cn[C_MAX_NS], dt_ns)
        self.hist[min(dt_ns // HIST_BIN_NS, HIST_BINS - 1)] += 1

    def _prepare_denoisers(self) -> None:
        """Load the denoised channels' weights and allocate their state (the denoiser stage runs
        inside the audio callback, before the chain: :func:`debleed.models.streaming.denoise_block`)."""
        from debleed.models.streaming import StreamingStage

        try:
            self.stage = StreamingStage.from_gig(self.config, self.sample_rate, self.max_block)
        except DebleedError as e:
            raise EngineError(f"cannot set up the denoiser: {e}") from None

    def channel_latency_samples(self) -> list[int]:
        """Latency of each output, samples: its lookahead, plus the denoiser model's latency
        (``window - 1``, 63 samples for the shipped models) for a denoised channel."""
        lat = list(self.chain.channel_latency_samples)
        if self.stage is not None:
            for c, _, _ in self.config.denoised():
                lat[c] += self.stage.channel_latency(c)
        return lat

    def read_meters(self) -> np.ndarray:
        """Gain reduction per channel since the last call, dB (<= 0), and start a new interval.

        For the status line: the audio thread keeps writing while this copies and resets, so a
        block that lands in between counts in neither interval. The run's maximum
        (``max_gain_reduction_db`` in :meth:`stats`) comes from a meter that is never reset while
        running, so it misses nothing.
        """
        gr = self.chain.meters[:, M_GR].copy()
        self.chain.reset_meters()
        return gr

    #: Channels the status line names (the deepest gain reductions); the rest are counted.
    STATUS_CHANNELS = 6

    def status_line(self, gr=None) -> str:
        """One line: DSP load, xruns, callback times (and the Python engine's blocks silenced by a
        raising callback, when there are any), the deepest gain reductions.

        ``gr``: gain reduction per channel, dB (default: :meth:`read_meters`). With more than
        :attr:`STATUS_CHANNELS` channels only the deepest are named, and the others counted.
        """
        s = summary(self.counters, self.hist, self.sample_rate, self.period_frames)
        gr = self.read_meters() if gr is None else gr
        names = [ch.name for ch in self.config.channel]
        order = sorted(range(len(names)), key=lambda c: gr[c])[:self.STATUS_CHANNELS]
        if len(names) <= self.STATUS_CHANNELS:
            order = range(len(names))
        chans = " ".join(f"{names[c]} {gr[c]:6.1f}dB" for c in order)
        if len(names) > self.STATUS_CHANNELS:
            active = int(sum(1 for g in gr if g < -0.1))
            chans += f" (+{len(names) - self.STATUS_CHANNELS} more, {active} reducing)"
        cb = s["callback_us"]
        errors = f" | callback errors {self.callback_errors}" if self.callback_errors else ""
        return (f"DSP {self.dsp_load():5.1f}% | xruns {s['xruns']} | cb p99.9 {cb['p99.9']:.1f}us "
                f"max {cb['max']:.0f}us / {s['deadline_us']:.0f}us{errors} | GR {chans}")

    def stats(self) -> dict:
        """Everything the counters and meters say, JSON-ready."""
        s = summary(self.counters, self.hist, self.sample_rate, self.period_frames)
        s.update({
            "backend": self.backend,
            "engine": self.engine,
            "client": self.client_name,
            "sample_rate": self.sample_rate,
            "period_frames": self.period_frames,
            "dsp_load_percent": self.dsp_load(),
            "latency_samples": {ch.name: lat for ch, lat in zip(self.config.channel, self.channel_latency_samples())},
            "denoiser": None if self.stage is None else self.stage.stats(),
            "process_nice": getattr(self, "process_nice", None),
            "callback_errors": self.callback_errors,
            "callback_error": self.callback_error,
            "shutdown_reason": self.shutdown_reason,
            "run_s": time.monotonic() - self.started_at if self.started_at else 0.0,
            "channels": {
                ch.name: {"max_gain_reduction_db": float(self.chain.meters[c, M_GR_RUN]),
                          "nonfinite_input_samples": int(self.chain.meters[c, M_BAD])}
                for c, ch in enumerate(self.config.channel)
            },
        })
        return s

    def write_stats(self, path, stats: dict | None = None) -> None:
        """Write ``stats`` (default :meth:`stats`) as JSON to ``path`` atomically."""
        from debleed.fileio import jsonable

        atomic_write_text(Path(path), json.dumps(jsonable(self.stats() if stats is None else stats), indent=2) + "\n")



class JackEngine(EngineBase):
    """Run a gig config as a JACK client.

    Parameters
    ----------
    config : GigConfig
        The validated gig.
    engine : {"cfunc", "python"}
        Process-callback implementation; default "cfunc".
    server_name : str, optional
        JACK server name; default ``$JACK_DEFAULT_SERVER`` or the default server.

    Raises
    ------
    EngineError
        From :meth:`start` when no JACK server runs or ports cannot be registered.

    Notes
    -----
    Ports: ``<client>:in_<input>`` per input, ``<client>:out_<channel>`` per channel, and
    ``<client>:midi_in`` when a channel has a MIDI key. Each output port reports its
    channel's lookahead as latency through JACK's latency API, so hosts can compensate.
    """

    backend = "jack"

    def __init__(self, config: GigConfig, *, engine: str = "cfunc", server_name: str | None = None):
        if engine not in ENGINES:
            raise EngineError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        super().__init__(config, engine=engine)
        self.server_name = server_name or os.environ.get("JACK_DEFAULT_SERVER") or None
        self.client: jack.Client | None = None
        self._keepalive: list = []
        #: The process thread's nice value once set (server without real-time scheduling), and
        #: why it could not be set.
        self.process_nice: int | None = None
        self.process_nice_error: str | None = None
        self._header = None
        self.server_gone = False

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Open the client, register ports, install callbacks, activate and connect."""
        try:
            # the exact name: JACK would otherwise rename a second instance (debleed-01) and
            # both would connect to the same ports, doubling the audio
            self.client = jack.Client(self.config.client.name, use_exact_name=True, no_start_server=True,
                                      servername=self.server_name)
        except jack.JackOpenError as e:
            from debleed.rt.server import client_name_in_use, client_name_taken_message

            if e.status.name_not_unique or client_name_in_use(self.config.client.name, self.server_name):
                raise EngineError(client_name_taken_message(self.config.client.name, self.server_name)) from None
            server = self.server_name or "default"
            raise EngineError(
                f"cannot connect to a JACK server (server name: {server}): {e}. Start one first, "
                "e.g. `jackd -d alsa -r 48000 -p 128`, or run `debleed demo` which starts a dummy server"
            ) from None
        client = self.client
        self.client_name = client.name
        self.sample_rate = client.samplerate
        self.period_frames = client.blocksize
        self.max_block = max(MIN_MAX_BLOCK, self.period_frames)
        try:
            self._prepare_buffers()
        except BaseException:
            client.close()  # nothing was activated; leave the server as it was
            self.client = None
            raise
        try:
            self._register_and_activate()
        except (jack.JackError, EngineError) as e:
            self._start_failed(e)

    def _start_failed(self, error) -> None:
        """Clean up a start that failed after the client opened; a server that died meanwhile
        becomes :class:`~debleed.rt.server.ServerGoneError` (``debleed live`` exits 1)."""
        from debleed.rt.server import ServerGoneError, server_running

        gone = self.server_gone or not server_running(self.server_name)
        client, self.client = self.client, None
        with contextlib.suppress(jack.JackError):
            client.close()  # now, while the callbacks it holds are still alive
        if not gone:
            raise error if isinstance(error, EngineError) else EngineError(f"cannot start the JACK client: {error}")
        self.server_gone = True
        self.shutdown_reason = self.shutdown_reason or f"server gone while starting: {error}"
        raise ServerGoneError(f"the JACK server ({self.server_name or 'default'}) went away while debleed was "
                              f"starting, before its client was active ({error}); nothing was left running. "
                              "Start the server again, then debleed")

    def _register_and_activate(self) -> None:
        client = self.client
        cfg = self.config
        try:
            self.inports = [client.inports.register(f"in_{name}") for name in cfg.input_names]
            self.outports = [client.outports.register(f"out_{ch.name}") for ch in cfg.channel]
            self.midiport = client.midi_inports.register("midi_in") if cfg.uses_midi else None
        except jack.JackError as e:
            raise EngineError(f"cannot register ports on client {client.name!r}: {e}") from None
        client.set_shutdown_callback(self._on_shutdown)
        client.set_xrun_callback(self._on_xrun)
        if self.stage is not None:  # a bounce starts the denoisers fresh, as an offline render does
            client.set_freewheel_callback(self._on_freewheel)
        client.set_blocksize_callback(self._on_blocksize)
        client.set_samplerate_callback(self._on_samplerate)
        self._keepalive.append(_jackptr.set_latency_callback(client, self._on_latency))
        if not client.realtime and self.config.client.process_nice != 0:
            self._keepalive.append(_jackptr.set_thread_init_callback(client, self._on_thread_init))
        if self.engine == "cfunc":
            self._install_cfunc()
        else:
            client.set_process_callback(self._py_process)
        client.activate()
        self.started_at = time.monotonic()
        self._connect()
        _jackptr.recompute_total_latencies(client)

    def _on_thread_init(self) -> None:
        """In the process thread as JACK starts it (a server without real-time scheduling): lower
        its nice value to ``[client] process_nice``. Runs once, before the first callback."""
        nice = self.config.client.process_nice
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            self.process_nice = nice
        except OSError as e:
            self.process_nice_error = (f"could not set the process thread's nice value to {nice} ({e.strerror}); "
                                       "it runs at 0 (run as root, or give debleed CAP_SYS_NICE, or start jackd "
                                       "with -R)")

    def _install_cfunc(self) -> None:
        from debleed.rt import jack_cfunc as jc

        ch = self.chain
        addr = lambda a: a.ctypes.data  # noqa: E731
        self._inport_addrs = np.array([_jackptr.address(p) for p in self.inports], np.int64)
        self._outport_addrs = np.array([_jackptr.address(p) for p in self.outports], np.int64)
        self._evbuf = np.zeros(3, np.uint64)
        self._ts = np.zeros(2, np.int64)
        h = np.zeros(jc.H_LEN, np.int64)
        h[jc.H_NIN], h[jc.H_NCH], h[jc.H_MAXBLOCK] = len(self.inports), len(self.outports), self.max_block
        h[jc.H_HASMIDI] = int(self.midiport is not None)
        h[jc.H_MAXEV], h[jc.H_HISTBINS] = self.events.shape[0], self.hist.shape[0]
        h[jc.H_NCOUNTERS] = self.counters.size
        for idx, arr in ((jc.A_INPUTS, self.inputs), (jc.A_OUTPUTS, self.outputs), (jc.A_EVENTS, self.events),
                         (jc.A_COUNTERS, self.counters), (jc.A_HIST, self.hist),
                         (jc.A_EVBUF, self._evbuf), (jc.A_TS, self._ts), (jc.A_INPORTS, self._inport_addrs),
                         (jc.A_OUTPORTS, self._outport_addrs)):
            assert arr.flags.c_contiguous
            h[idx] = addr(arr)
        jc.fill_header(h, jc.H_CHAIN, ch.arrays.FIELDS, ch.arrays)
        h[jc.A_MIDIPORT] = _jackptr.address(self.midiport) if self.midiport is not None else 0
        h[jc.A_CLIENT] = _jackptr.address(self.client)
        h[jc.H_NROWS] = self.inputs.shape[0]
        if self.stage is not None:
            h[jc.H_NDN] = self.stage.n_channels
            jc.fill_header(h, jc.H_DN, self.stage.FIELDS, self.stage)
        self._header = h
        fn = jc.process_cfunc()
        self._keepalive.append(fn)
        _jackptr.set_process_callback(self.client, fn.address, addr(h))

    def _connect(self) -> None:
        cfg, client = self.config, self.client
        pairs = []
        for port, name in zip(self.inports, cfg.input_names):
            pairs += [(src, port.name) for src in cfg.inputs[name]]
        if self.midiport is not None:
            pairs += [(src, self.midiport.name) for src in cfg.midi.connect]
        for port, ch in zip(self.outports, cfg.channel):
            pairs += [(port.name, dst) for dst in ch.connect]
        self.connect_warnings = []
        for src, dst in pairs:
            try:
                client.connect(src, dst)
            except jack.JackError as e:
                msg = f"cannot connect {src} -> {dst}: {e}"
                self.connect_warnings.append(msg)
                print(f"debleed: warning: {msg}", file=sys.stderr)

    def stop(self) -> None:
        """Deactivate and close the client (skipped if the server already went away)."""
        if self.client is not None and not self.server_gone:
            try:
                self.client.deactivate()
                self.client.close()
            except jack.JackError:
                pass
        self.closed = True
        self.stopped.set()

    # --- callbacks (JACK's notification thread, never the audio thread) -------------------
    def _on_freewheel(self, starting: bool) -> None:
        if starting:
            self.stage.request_reset()

    def _on_shutdown(self, status, reason):
        self.server_gone = True
        self.shutdown_reason = reason or str(status)
        self.stopped.set()

    def _on_xrun(self, delayed_usecs):
        self.counters[C_XRUNS] += 1

    def _on_blocksize(self, blocksize):
        self.period_frames = blocksize
        if blocksize > self.max_block:
            print(f"debleed: warning: JACK period {blocksize} frames exceeds the {self.max_block} "
                  "allocated; outputs are silent until debleed restarts", file=sys.stderr)

    def _on_samplerate(self, samplerate):
        if samplerate != self.sample_rate:
            print(f"debleed: JACK sample rate changed from {self.sample_rate} to {samplerate} Hz; "
                  "restart debleed to recompute its coefficients", file=sys.stderr)
            self.shutdown_reason = f"sample rate changed to {samplerate} Hz"
            self.stopped.set()

    def _on_latency(self, mode) -> None:
        try:
            lat = self.channel_latency_samples()
            inputs = [self.config.input_names.index(ch.input) for ch in self.config.channel]
            if mode == _jackptr.CAPTURE_LATENCY:
                for c, port in enumerate(self.outports):
                    lo, hi = _jackptr.get_latency_range(self.inports[inputs[c]], mode)
                    _jackptr.set_latency_range(port, mode, lo + lat[c], hi + lat[c])
            else:
                for j, port in enumerate(self.inports):
                    fed = [c for c in range(len(self.outports)) if inputs[c] == j] or range(len(self.outports))
                    ranges = [_jackptr.get_latency_range(self.outports[c], mode) for c in fed]
                    lo = min(r[0] + lat[c] for r, c in zip(ranges, fed))
                    hi = max(r[1] + lat[c] for r, c in zip(ranges, fed))
                    _jackptr.set_latency_range(port, mode, lo, hi)
        except Exception as e:  # a ctypes callback must not raise into libjack
            print(f"debleed: latency callback failed: {e}", file=sys.stderr)

    # --- the Python engine's process callback ---------------------------------------------
    def _py_process(self, frames):
        t0 = time.perf_counter_ns()
        try:
            if frames > self.max_block:
                for p in self.outports:
                    p.get_array().fill(0.0)
                self.counters[C_OVERSIZE] += 1
            else:
                for j, p in enumerate(self.inports):
                    self.inputs[j, :frames] = p.get_array()
                midi = self.midiport.incoming_midi_events() if self.midiport is not None else ()
                self.chain.ctl[K_CLOCK] = self.client.last_frame_time
                self._run_python_block(frames, midi)
                for c, p in enumerate(self.outports):
                    p.get_array()[:] = self.outputs[c, :frames]
        except Exception as e:  # noqa: BLE001
            # a callback that raises returns failure to libjack, which then stops calling this
            # client for good (its outputs silent until it is restarted): silence this block,
            # count it, keep the first error for the stats and the exit line
            with contextlib.suppress(Exception):
                for p in self.outports:
                    p.get_array().fill(0.0)
            self.callback_errors += 1
            if self.callback_error is None:
                self.callback_error = f"{type(e).__name__}: {e}"
        self._count_callback(frames, time.perf_counter_ns() - t0)

    # --- control plane ------------------------------------------------------------------
    def dsp_load(self) -> float:
        """JACK's DSP load, percent (0 when the client is gone)."""
        if self.client is None or self.closed or self.shutdown_reason is not None:
            return 0.0
        return float(self.client.cpu_load())
