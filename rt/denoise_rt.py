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
"""

from __future__ import annotations

import os
import threading

import numpy as np
from numba import njit

from debleed.errors import DebleedError

# control array columns
CTL_SEQ, CTL_DONE, CTL_LATE, CTL_DELAY, CTL_OVERRUN, CTL_EPOCH = range(6)
N_CTL = 6


@njit(cache=True)
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
        block of the current period: older blocks are not substituted, the dry fallback is).
    dry : float32 (k, dry_len) dry delay rings; dry_w : int64 (k,) write indices.
    dry_delay : int
        Samples the dry fallback is delayed (``D * period + denoiser latency``).

    Returns
    -------
    int
        1 (the caller posts the eventfd).

    Notes
    -----
    Real-time safe: no allocation, no lock, no Python.
    """
    seq = ctl[CTL_SEQ]
    n_slots = tags.shape[0]
    slot = seq % n_slots
    want = seq - ctl[CTL_DELAY]
    due = want >= ctl[CTL_EPOCH]
    wslot = want % n_slots if want >= 0 else 0
    ok = due and tags[wslot] == want
    size = dry.shape[1]
    for k in range(src.shape[0]):
        s, r = src[k], row[k]
        w = dry_w[k]
        for i in range(n):
            x = inputs[s, i]
            ring_in[k, slot, i] = x
            dry[k, w] = x
            rd = w - dry_delay
            if rd < 0:
                rd += size
            if ok:
                inputs[r, i] = ring_out[k, wslot, i]
            else:
                inputs[r, i] = dry[k, rd]
            w += 1
            if w == size:
                w = 0
        dry_w[k] = w
    slot_n[slot] = n
    if due and not ok:
        ctl[CTL_LATE] += 1
    ctl[CTL_SEQ] = seq + 1
    return 1


class DenoiseStage:
    """Rings, eventfd and worker thread for the denoised channels of an engine.

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
    """

    def __init__(self, denoisers, src_rows, dst_rows, *, max_block, period, delay_blocks, slots=None):
        if not 1 <= int(delay_blocks) <= 16:
            raise DebleedError(f"denoise_delay_blocks must be in 1-16, got {delay_blocks!r}")
        self.denoisers = list(denoisers)
        k = len(self.denoisers)
        r = int(slots or max(8, 2 * delay_blocks))
        self.src = np.asarray(src_rows, np.int64)
        self.row = np.asarray(dst_rows, np.int64)
        self.ring_in = np.zeros((k, r, max_block), np.float32)
        self.ring_out = np.zeros((k, r, max_block), np.float32)
        self.slot_n = np.zeros(r, np.int64)
        self.tags = np.full(r, -1, np.int64)
        self.ctl = np.zeros(N_CTL, np.int64)
        self.ctl[CTL_DELAY] = int(delay_blocks)
        lat = max((d.latency_samples for d in self.denoisers), default=0)
        self.denoiser_latency = int(lat)
        self.max_block = int(max_block)
        self.dry_delay = 0
        self.set_period(period)
        # room for the longest delay any period up to max_block can ask for
        self.dry = np.zeros((k, int(delay_blocks) * self.max_block + self.denoiser_latency + self.max_block + 1),
                            np.float32)
        self.dry_w = np.zeros(k, np.int64)
        self.fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._stop = False
        self._thread = None
        self.error: str | None = None

    def set_period(self, period: int) -> int:
        """Follow a period change: the delay becomes ``D * period`` plus the denoiser's latency.

        Blocks published before the change are not substituted: for the next ``D`` blocks the
        channel plays the dry signal at the new delay (not counted as late), then the denoised
        blocks of the new size, at the same delay. Call it while the audio thread is not running
        (JACK's buffer-size callback: the graph is suspended); the cfunc engine must also copy
        :attr:`dry_delay` into its header. Returns the new :attr:`dry_delay`, samples.

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

    def process_pending(self) -> int:
        """Denoise every published block not yet done (the worker's step); returns how many."""
        done = 0
        n_slots = self.tags.shape[0]
        while self.ctl[CTL_DONE] < self.ctl[CTL_SEQ]:
            seq = int(self.ctl[CTL_DONE])
            if self.ctl[CTL_SEQ] - seq >= n_slots - 1:
                # the ring wrapped under us: jump to the newest block and restart the model
                self.ctl[CTL_OVERRUN] += 1
                seq = int(self.ctl[CTL_SEQ]) - 1
                for d in self.denoisers:
                    d.reset()
            slot = seq % n_slots
            n = int(self.slot_n[slot])
            for k, d in enumerate(self.denoisers):
                d.process(self.ring_in[k, slot, :n], self.ring_out[k, slot, :n])
            self.tags[slot] = seq
            self.ctl[CTL_DONE] = seq + 1
            done += 1
        return done

    def _run(self):
        while not self._stop:
            try:
                os.eventfd_read(self.fd)
            except BlockingIOError:
                continue
            if self._stop:
                break
            try:
                self.process_pending()
            except Exception as e:  # keep the audio running on the dry fallback
                self.error = f"denoiser worker stopped: {e}"
                return

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="debleed-denoiser", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the worker thread; close the eventfd once the worker has ended.

        A worker still inside a model call after 5 s keeps its eventfd open (it ends at its next
        wake-up; closing the descriptor under it could hand its number to another file).
        """
        self._stop = True
        if self._thread is not None:
            os.eventfd_write(self.fd, 1)
            self._thread.join(5.0)
            if self._thread.is_alive():
                return
            self._thread = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
