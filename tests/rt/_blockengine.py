"""A stand-in engine for control-plane tests: runs the chain block by block in a thread."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

from debleed.rt.engine import EngineBase
from debleed.dsp.processor import ProcessSpec


class BlockEngine(EngineBase):
    """Runs ``cfg``'s chain over noise, one block every ``interval_s``, like an audio callback."""

    backend = "none"
    engine = "test"

    def __init__(self, cfg, sample_rate=48000, block=64, interval_s=0.0005, level=0.1):
        super().__init__(cfg, engine="test")
        self.chain.prepare(ProcessSpec(sample_rate, block, self.chain.n_channels))
        self.sample_rate, self.period_frames, self.max_block = sample_rate, block, block
        rng = np.random.default_rng(0)
        self.x = (level * rng.standard_normal((self.chain.n_inputs, block))).astype(np.float32)
        self.y = np.zeros((self.chain.n_channels, block), np.float32)
        self.interval_s = interval_s
        self.chain.process(self.x[:, :0], self.y[:, :0])  # compile/load the kernel first, as engines do
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def _loop(self):
        while not self.stopped.is_set():
            self.chain.process(self.x, self.y)
            time.sleep(self.interval_s)

    def stop(self):
        self.stopped.set()
        self._thread.join(timeout=2.0)
        self.closed = True

    def dsp_load(self) -> float:
        return 0.0


@contextlib.contextmanager
def running_control(gig_path, *, meters: bool = False, **engine_kw):
    """A :class:`~debleed.rt.control.LiveControl` over a started :class:`BlockEngine` of ``gig_path``."""
    from debleed.rt.config import load_config
    from debleed.rt.control import LiveControl

    eng = BlockEngine(load_config(gig_path), **engine_kw).start()
    ctl = LiveControl(eng, gig_path)
    if meters:
        ctl.start_metering()
    try:
        yield ctl
    finally:
        eng.stop()
        ctl.close()
