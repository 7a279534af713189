"""The denoiser in real time: rings between the audio thread and a worker thread.

onnxruntime cannot run inside the JACK cfunc, so (DESIGN.md, "The denoiser in real time"):

1. Every callback, :func:`exchange` (njit, called by both engines before ``run_block``) copies
   the raw input of each denoised channel into slot ``seq % R`` of an input ring, publishes
   ``seq`` and the engine posts an eventfd.
2. A worker thread (GIL released while it waits on the eventfd) runs the streaming denoiser
   on every published block, in order, and writes the result into the same slot of an output
   ring, tagging the slot with the block's sequence number.
3. The callback reads the output of block ``seq - D`` (D = ``denoise_delay_blocks``). If that
   slot carries the right tag, the denoised block feeds the channel's gate; if not, the worker is
   late: the block falls back to the dry input delayed by the same amount (so the timing does
   not jump), and ``late_blocks`` rises. A late denoiser never causes an xrun.

The denoised audio becomes an extra row of the chain's ``inputs`` array (a virtual input), so
the channel's own gate and a ``self`` key see the denoised signal. Latency of such a channel:
``D * period + denoiser latency + lookahead``.

Never a click: a switch between the denoised and the dry signal (a late block, the worker
catching up, a period change) is a crossfade over :data:`FADE_MS` (3 ms). Going late, the late
block's denoised samples do not exist, so what fades out is the last known difference between
the denoised and the dry signal (held, faded linearly to 0): the output stays continuous. Coming
back, dry and denoised are crossfaded linearly. Per channel the fade state lives in the last
:data:`N_FADE` columns of the ``dry`` array (so the cfunc's header needs nothing new).

Freewheel is not real time: while ``ctl[CTL_FREEWHEEL]`` is set (JACK's freewheel callback sets
it, :meth:`DenoiseStage.set_freewheel`), :func:`exchange` waits for the worker to finish the
block it is about to read (a spin on the output tag with an atomic load, bounded by
:data:`WAIT_CYCLES` CPU cycles, a few seconds), so a bounce equals ``debleed render`` bit for bit.
The Python engine calls it without the GIL (``nogil``), so the worker can run meanwhile.

Bounded harm: per channel ``denoise_limit_db`` and ``denoise_mix`` (float arrays the control
plane writes with :meth:`DenoiseStage.set_param`) are applied by the worker thread after the
model, :class:`debleed.models.denoiser.LimitMix`.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from debleed.errors import DebleedError, ParameterError

# control array columns
(CTL_SEQ, CTL_DONE, CTL_LATE, CTL_DELAY, CTL_OVERRUN, CTL_EPOCH, CTL_FREEWHEEL, CTL_FADE, CTL_WAITED,
 CTL_WAIT_TIMEOUTS, CTL_NOWAIT) = range(11)
N_CTL = 11
#: Extra columns at the end of each row of the ``dry`` array: the crossfade state.
#: ``FD_A`` weight of the denoised signal (0..fade samples), ``FD_W`` weight of the held
#: difference, ``FD_H`` the held difference, ``FD_LAST`` the last output minus the dry sample.
FD_A, FD_W, FD_H, FD_LAST = range(4)
N_FADE = 4
#: Crossfade between the denoised and the dry signal, ms.
FADE_MS = 3.0
#: The freewheel wait gives up after this many CPU cycles (``llvm.readcyclecounter``: seconds).
WAIT_CYCLES = 1 << 33


@intrinsic
def _load_acquire(typingctx, arr, idx):
    """``arr[idx]`` of an int64 array as an atomic acquire load (re-read on every call; the
    loads after it see what the writer stored before it)."""
    sig = types.int64(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def _cycles(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``), for a bounded wait without a clock call."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@njit(cache=True, nogil=True)
def exchange(n, inputs, src, row, ring_in, ring_out, slot_n, tags, ctl, dry, dry_w, dry_delay):
    """Publish this block to the worker and substitute the denoised block of ``D`` blocks ago.

    Parameters
    ----------
    n : int
        Frames in this block.
    inputs : float32 (n_rows, max_block)
        The chain's inputs; rows ``row[k]`` receive denoised channel k's audio.
    src : int64 (k,)
        Input row each denoised channel reads.
    row : int64 (k,)
        Virtual input row each denoised channel writes.
    ring_in, ring_out : float32 (k, R, max_block)
    slot_n : int64 (R,) frames per slot.
    tags : int64 (R,) sequence number of the block in each output slot (-1: none).
    ctl : int64 (N_CTL,) sequence, worker progress, late count, D, overruns, epoch (the first
        block of the current period: older blocks are not substituted, the dry fallback is),
        freewheel flag, crossfade length (samples, >= 1), freewheel waits, waits that gave up,
        no-wait flag (the worker has stopped).
    dry : float32 (k, dry_len + N_FADE) dry delay rings, then each channel's crossfade state.
    dry_w : int64 (k,) write indices.
    dry_delay : int
        Samples the dry fallback is delayed (``D * period + denoiser latency``).

    Returns
    -------
    int
        1 (the caller posts the eventfd).

    Notes
    -----
    Real-time safe: no allocation, no lock, no Python. The one wait is the freewheel wait
    (``ctl[CTL_FREEWHEEL]`` set): a spin on the output tag, at most :data:`WAIT_CYCLES` cycles.
    """
    seq = ctl[CTL_SEQ]
    n_slots = tags.shape[0]
    slot = seq % n_slots
    want = seq - ctl[CTL_DELAY]
    due = want >= ctl[CTL_EPOCH]
    wslot = want % n_slots if want >= 0 else 0
    if due and ctl[CTL_FREEWHEEL] != 0 and ctl[CTL_NOWAIT] == 0 and _load_acquire(tags, wslot) != want:
        t0 = _cycles()
        while _load_acquire(tags, wslot) != want:
            if _cycles() - t0 > WAIT_CYCLES:
                ctl[CTL_WAIT_TIMEOUTS] += 1
                break
        ctl[CTL_WAITED] += 1
    ok = due and _load_acquire(tags, wslot) == want
    size = dry.shape[1] - N_FADE
    fade = max(ctl[CTL_FADE], 1)
    inv = 1.0 / fade
    for k in range(src.shape[0]):
        s, r = src[k], row[k]
        w = dry_w[k]
        a = np.int64(dry[k, size + FD_A])
        hw = np.int64(dry[k, size + FD_W])
        held = np.float64(dry[k, size + FD_H])
        last = np.float64(dry[k, size + FD_LAST])
        if not ok and want >= 0 and a > 0:
            # leaving the denoised signal: hold its last difference from the dry one, fade it out
            held = last
            hw = fade
            a = 0
        for i in range(n):
            x = inputs[s, i]
            ring_in[k, slot, i] = x
            dry[k, w] = x
            rd = w - dry_delay
            if rd < 0:
                rd += size
            d = np.float64(dry[k, rd])
            if ok:
                den = ring_out[k, wslot, i]
                if a < fade:
                    a += 1
                if hw > 0:
                    hw -= 1
                if a >= fade and hw == 0:
                    y = np.float64(den)
                else:
                    y = d + (a * inv) * (np.float64(den) - d) + (hw * inv) * held
            elif hw > 0:
                hw -= 1
                y = d + (hw * inv) * held
            else:
                y = d
            y32 = np.float32(y)
            inputs[r, i] = y32
            last = np.float64(y32) - d
            if not np.isfinite(last):
                last = 0.0
            w += 1
            if w == size:
                w = 0
        dry_w[k] = w
        dry[k, size + FD_A] = a
        dry[k, size + FD_W] = hw
        dry[k, size + FD_H] = held
        dry[k, size + FD_LAST] = last
    slot_n[slot] = n
    if due and not ok:
        ctl[CTL_LATE] += 1
    ctl[CTL_SEQ] = seq + 1
    return 1


def stage_options(config, rows, sample_rate: int) -> dict:
    """Keyword arguments of :class:`DenoiseStage` from a gig config: channel indices, their
    ``denoise_limit_db`` / ``denoise_mix``, the rate and the worker mode (:data:`DEFAULT_WORKERS`,
    or ``$DEBLEED_DENOISE_WORKERS`` for the benchmarks)."""
    chans = [c for c, _, _ in rows]
    params = [{n: float(getattr(config.channel[c], n)) for n in STAGE_PARAMS if hasattr(config.channel[c], n)}
              for c in chans]
    return {"channels": chans, "params": params, "sample_rate": int(sample_rate),
            "workers": os.environ.get("DEBLEED_DENOISE_WORKERS", DEFAULT_WORKERS)}


def worker_rt_priority(client) -> int | None:
    """Priority for the denoiser workers: one below the JACK client thread's SCHED_FIFO priority,
    or None when the server does not run real time."""
    from debleed.rt import _jackptr

    if not client.realtime:
        return None
    prio = _jackptr.client_real_time_priority(client)
    return None if prio is None else max(1, prio - 1)


#: Per-channel parameters the worker applies (``dsp/params.py``, target "denoiser").
STAGE_PARAMS = ("denoise_limit_db", "denoise_mix")
WORKER_MODES = ("shared", "per-channel")
#: One worker thread for all denoised channels, or one each (bench: ``soak``).
DEFAULT_WORKERS = "shared"


class DenoiseStage:
    """Rings, eventfd and worker thread(s) for the denoised channels of an engine.

    Parameters
    ----------
    denoisers : list
        One prepared denoiser per denoised channel (``process(x, out)``, ``reset()``,
        ``latency_samples``; see :class:`debleed.models.denoiser.Denoiser`).
    src_rows, dst_rows : list of int
        Input row read and virtual input row written by each.
    max_block : int
        Largest block, frames.
    period : int
        JACK period, frames, 1 to ``max_block`` (for the dry fallback's delay); see
        :meth:`set_period` for a period change while running.
    delay_blocks : int
        D, 1 to 16.
    slots : int
        Ring slots R, > D; default ``max(8, 2 * D)``.
    channels : list of int, optional
        Index in the gig config's channel list of each denoised channel (what
        :meth:`set_param` takes); default ``0 .. k-1``.
    params : list of dict, optional
        Per denoised channel, initial ``denoise_limit_db`` (dB, -100 to 0; -100: no limit) and
        ``denoise_mix`` (0 to 1); default -100 dB and 1.
    sample_rate : int, optional
        Hz, for the crossfade length (:data:`FADE_MS`); default the first denoiser's
        ``sample_rate`` attribute, else 48000.
    workers : {"shared", "per-channel"}
        One worker thread for all channels (default), or one per channel (woken in turn by
        the first).
    """

    def __init__(self, denoisers, src_rows, dst_rows, *, max_block, period, delay_blocks, slots=None,
                 channels=None, params=None, sample_rate=None, workers="shared"):
        from debleed.models.denoiser import LimitMix, limit_mix_gain

        from debleed.dsp.params import PARAMS

        try:
            PARAMS["denoise_delay_blocks"].check(int(delay_blocks))
        except (TypeError, ValueError):
            raise DebleedError(f"denoise_delay_blocks must be an integer, got {delay_blocks!r}") from None
        except ParameterError as e:
            raise DebleedError(str(e)) from None
        if workers not in WORKER_MODES:
            raise ParameterError(f"workers must be one of {', '.join(WORKER_MODES)}, got {workers!r}")
        self.denoisers = list(denoisers)
        k = len(self.denoisers)
        r = int(slots or max(8, 2 * delay_blocks))
        self.src = np.asarray(src_rows, np.int64)
        self.row = np.asarray(dst_rows, np.int64)
        self.channels = list(range(k)) if channels is None else [int(c) for c in channels]
        if len(self.channels) != k:
            raise ParameterError(f"channels must name one channel per denoiser ({k}), got {channels!r}")
        self.ring_in = np.zeros((k, r, max_block), np.float32)
        self.ring_out = np.zeros((k, r, max_block), np.float32)
        self.slot_n = np.zeros(r, np.int64)
        self.tags = np.full(r, -1, np.int64)
        self.ctl = np.zeros(N_CTL, np.int64)
        self.ctl[CTL_DELAY] = int(delay_blocks)
        lat = max((d.latency_samples for d in self.denoisers), default=0)
        self.denoiser_latency = int(lat)
        self.max_block = int(max_block)
        rate = sample_rate or next((getattr(d, "sample_rate", None) for d in self.denoisers
                                    if getattr(d, "sample_rate", None)), None) or 48000
        self.fade_samples = max(1, round(FADE_MS * 1e-3 * int(rate)))
        self.ctl[CTL_FADE] = self.fade_samples
        self.dry_delay = 0
        self.set_period(period)
        # room for the longest delay any period up to max_block can ask for, then the fade state
        self.dry_len = int(delay_blocks) * self.max_block + self.denoiser_latency + self.max_block + 1
        self.dry = np.zeros((k, self.dry_len + N_FADE), np.float32)
        self.dry[:, self.dry_len + FD_A] = self.fade_samples  # as if denoised: the start is exact
        self.dry_w = np.zeros(k, np.int64)
        # bounded harm: read by the worker before every block, written by set_param
        self.limit_db = np.full(k, PARAMS["denoise_limit_db"].lo)  # no limit until set
        self.mix = np.ones(k)
        for j, p in enumerate(params or []):
            for name, v in p.items():
                self._set(j, name, v)
        for j in range(k):
            limit_mix_gain(self.limit_db[j], self.mix[j])
        self._limit_mix = [LimitMix(d.latency_samples) for d in self.denoisers]
        warm = np.zeros(8, np.float32)  # load the compiled blend now, not in the worker's first block
        LimitMix(1).process(warm, warm.copy(), -30.0, 0.5)
        self._lock = threading.Lock()
        self._progress = np.zeros(k, np.int64)  # per channel: next block to denoise
        self._reset_req = np.zeros(k, bool)  # per channel: restart before the next block
        self._count = np.zeros((r, 2), np.int64)  # per slot: (sequence, channels finished)
        self.workers = workers
        self.fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._fds = [self.fd] + ([os.eventfd(0, os.EFD_CLOEXEC) for _ in range(k - 1)]
                                 if workers == "per-channel" else [])
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._thread = None
        self.rt_priority: int | None = None
        self.rt_message: str | None = None
        self.native_ids: list[int] = []
        self.error: str | None = None

    # --- parameters ------------------------------------------------------------------------
    def _set(self, j: int, name: str, value: float) -> None:
        from debleed.dsp.params import PARAMS  # the ranges' one definition

        if name == "denoise_limit_db":
            self.limit_db[j] = PARAMS[name].check(value)
        elif name == "denoise_mix":
            self.mix[j] = PARAMS[name].check(value)
        else:
            raise ParameterError(f"{name!r} is not a denoiser parameter (allowed: {', '.join(STAGE_PARAMS)})")

    def set_param(self, channel_index: int, name: str, value: float) -> None:
        """Change ``denoise_limit_db`` (dB, -100 to 0) or ``denoise_mix`` (0 to 1) of a channel.

        ``channel_index`` is the channel's index in the gig config's channel list. The worker
        picks the value up at its next block and ramps to it over that block. Safe to call from
        any control thread while running (one float store).

        Raises
        ------
        ParameterError
            A channel that is not denoised, an unknown name or a value out of range.
        """
        if channel_index not in self.channels:
            raise ParameterError(f"channel {channel_index!r} is not denoised (denoised channels: "
                                 f"{', '.join(map(str, self.channels)) or 'none'})")
        self._set(self.channels.index(channel_index), name, value)

    def get_param(self, channel_index: int, name: str) -> float:
        """The current value of a denoiser parameter (see :meth:`set_param`)."""
        j = self.channels.index(channel_index)
        return float(self.limit_db[j] if name == "denoise_limit_db" else self.mix[j])

    def stats(self) -> dict:
        """Worker mode and scheduling, freewheel waits (JSON-ready, for ``debleed live --stats-json``)."""
        return {"workers": self.workers, "worker_scheduling": self.rt_message,
                "freewheel_waits": int(self.ctl[CTL_WAITED]), "freewheel_wait_timeouts": int(self.ctl[CTL_WAIT_TIMEOUTS]),
                "fade_samples": self.fade_samples}

    def set_freewheel(self, on: bool) -> None:
        """Freewheel on: :func:`exchange` waits for the worker, and the worker restarts the
        denoisers before its next block, so a bounce equals the render of the same take (JACK's
        freewheel callback; the audio already published plays out first)."""
        if on and not self.ctl[CTL_FREEWHEEL]:
            self._reset_req[:] = True
        self.ctl[CTL_FREEWHEEL] = 1 if on else 0

    def set_period(self, period: int) -> int:
        """Follow a period change: the delay becomes ``D * period`` plus the denoiser's latency.

        Blocks published before the change are not substituted: for the next ``D`` blocks the
        channel plays the dry signal at the new delay (not counted as late; crossfaded like a
        late block), then the denoised blocks of the new size, at the same delay. Call it while
        the audio thread is not running (JACK's buffer-size callback: the graph is suspended);
        the cfunc engine must also copy :attr:`dry_delay` into its header. Returns the new
        :attr:`dry_delay`, samples.

        Raises
        ------
        DebleedError
            ``period`` outside 1 to ``max_block``.
        """
        if not 1 <= int(period) <= self.max_block:
            raise DebleedError(f"period must be 1 to max_block={self.max_block} frames, got {period!r}")
        self.dry_delay = int(self.ctl[CTL_DELAY]) * int(period) + self.denoiser_latency
        self.ctl[CTL_EPOCH] = self.ctl[CTL_SEQ]
        return self.dry_delay

    @property
    def latency_samples(self) -> int:
        """Samples a denoised channel's audio is delayed: D periods plus the denoiser's latency."""
        return self.dry_delay

    # --- data plane (Python engine, offline) ------------------------------------------------
    def exchange(self, n, inputs) -> None:
        """The data-plane step for the Python engine (the cfunc calls :func:`exchange` itself)."""
        exchange(n, inputs, self.src, self.row, self.ring_in, self.ring_out, self.slot_n, self.tags,
                 self.ctl, self.dry, self.dry_w, self.dry_delay)
        os.eventfd_write(self.fd, 1)

    def exchange_offline(self, n, inputs) -> None:
        """Offline step: exchange, then let the worker catch up at once (never late)."""
        exchange(n, inputs, self.src, self.row, self.ring_in, self.ring_out, self.slot_n, self.tags,
                 self.ctl, self.dry, self.dry_w, self.dry_delay)
        self.process_pending()

    # --- the worker ----------------------------------------------------------------------------
    def _denoise(self, k: int, slot: int, n: int) -> None:
        x = self.ring_in[k, slot, :n]
        y = self.ring_out[k, slot, :n]
        self.denoisers[k].process(x, y)
        self._limit_mix[k].process(x, y, self.limit_db[k], self.mix[k])

    def _reset_channel(self, k: int) -> None:
        self.denoisers[k].reset()
        self._limit_mix[k].reset()

    def process_pending(self, channels=None) -> int:
        """Denoise every published block not yet done (the worker's step); returns how many.

        ``channels``: the denoised channels (0 .. k-1) to run, default all; a slot's tag is
        published when every channel has finished it.
        """
        ks = range(len(self.denoisers)) if channels is None else channels
        done = 0
        n_slots = self.tags.shape[0]
        k0 = ks[0] if len(ks) else 0
        while len(ks) and self._progress[k0] < self.ctl[CTL_SEQ]:
            seq = int(self._progress[k0])
            if self.ctl[CTL_SEQ] - seq >= n_slots - 1:
                # the ring wrapped under us: jump to the newest block and restart the model
                self.ctl[CTL_OVERRUN] += 1
                seq = int(self.ctl[CTL_SEQ]) - 1
                for k in ks:
                    self._reset_channel(k)
            slot = seq % n_slots
            n = int(self.slot_n[slot])
            for k in ks:
                if self._reset_req[k]:
                    self._reset_req[k] = False
                    self._reset_channel(k)
                self._denoise(k, slot, n)
                self._progress[k] = seq + 1
            self._finish(slot, seq, len(ks))
            done += 1
        return done

    def _finish(self, slot: int, seq: int, n_channels: int) -> None:
        """Count ``n_channels`` channels done with block ``seq``; publish it when all are."""
        k = len(self.denoisers)
        if n_channels == k:
            self.tags[slot] = seq
            self.ctl[CTL_DONE] = max(int(self.ctl[CTL_DONE]), seq + 1)
            return
        with self._lock:
            c = self._count[slot]
            if c[0] != seq:
                c[0], c[1] = seq, 0
            c[1] += n_channels
            if c[1] == k:
                self.tags[slot] = seq
                self.ctl[CTL_DONE] = max(int(self.ctl[CTL_DONE]), seq + 1)

    def _run(self, index: int, fd: int, channels, forward) -> None:
        self.native_ids.append(threading.get_native_id())
        if self.rt_priority is not None:
            self._go_realtime()
        while not self._stop:
            try:
                os.eventfd_read(fd)
            except BlockingIOError:
                continue
            for f in forward:  # per-channel workers: wake the others first
                os.eventfd_write(f, 1)
            if self._stop:
                break
            try:
                self.process_pending(channels)
            except Exception as e:  # keep the audio running on the dry fallback
                self.error = f"denoiser worker stopped: {e}"
                self.ctl[CTL_NOWAIT] = 1  # a freewheel bounce must not wait for it any more
                return

    def _go_realtime(self) -> None:
        prio = self.rt_priority
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
        except (PermissionError, OSError) as e:
            msg = (f"denoiser worker: cannot run at real-time priority {prio} (SCHED_FIFO): {e}; it runs at "
                   "normal priority, so late blocks are more likely (allow real-time scheduling: the audio "
                   "group's rtprio limit, or run as root)")
            if self.rt_message is None:
                self.rt_message = msg
                print(f"debleed: warning: {msg}", file=sys.stderr)
            return
        if self.rt_message is None:
            self.rt_message = f"denoiser worker(s) at SCHED_FIFO priority {prio}"

    def start(self, rt_priority: int | None = None) -> None:
        """Start the worker thread(s); with ``rt_priority`` (1-99) they switch themselves to
        SCHED_FIFO at that priority (a warning when not permitted; they then run as before)."""
        self.rt_priority = None if rt_priority is None else max(1, min(99, int(rt_priority)))
        k = len(self.denoisers)
        if self.workers == "per-channel" and k > 1:
            plan = [(0, self._fds[0], [0], self._fds[1:])] + [(j, self._fds[j], [j], []) for j in range(1, k)]
        else:
            plan = [(0, self.fd, list(range(k)), [])]
        for j, fd, chans, fwd in plan:
            t = threading.Thread(target=self._run, args=(j, fd, chans, fwd), name=f"debleed-denoiser-{j}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        self._thread = self._threads[0] if self._threads else None

    def stop(self) -> None:
        """Stop and join the worker thread(s); close the eventfds once the workers have ended.

        A worker still inside a model call after 5 s keeps its eventfd open (it ends at its next
        wake-up; closing the descriptor under it could hand its number to another file).
        """
        self._stop = True
        self.ctl[CTL_NOWAIT] = 1
        if self._threads:
            for f in self._fds:
                if f >= 0:
                    os.eventfd_write(f, 1)
            for t in self._threads:
                t.join(5.0)
            if any(t.is_alive() for t in self._threads):
                return
            self._threads = []
            self._thread = None
        for f in self._fds:
            if f >= 0:
                os.close(f)
        self._fds = []
        self.fd = -1
