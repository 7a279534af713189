"""Time the denoiser per block: ``python -m debleed.models.timing [--rate 48000 --block 128] [--runtime kernels]``.

Runs the data-plane kernels (``--runtime kernels``, the default: what the audio callback runs,
:class:`debleed.models.streaming.StreamingDenoiser`) or the onnxruntime wrapper
(``--runtime onnxruntime``: :class:`debleed.models.denoiser.Denoiser`, CPU, one intra-op
thread) over real snare-mic audio block by block and prints p50, p99, p99.9 and max per block
and the share of one core (p50 and p99 time over the block's duration). A measurement, not a
test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from debleed.dsp.processor import ProcessSpec


RUNTIMES = ("kernels", "onnxruntime")


def measure(rate: int = 48000, block: int = 128, seconds: float = 20.0, threads: int = 1, model=None,
            runtime: str = "kernels") -> dict:
    from debleed.models.denoiser import Denoiser
    from debleed.models.multitrack import render_multitrack
    from debleed.models.streaming import StreamingDenoiser

    x = render_multitrack(seconds=min(seconds, 10.0), sample_rate=rate, seed=11).mics["snare"]
    x = np.tile(x, int(np.ceil(seconds * rate / x.size)))[:int(seconds * rate)]
    d = StreamingDenoiser(model) if runtime == "kernels" else Denoiser(model, intra_op_threads=threads)
    d.prepare(ProcessSpec(rate, block))
    y = np.empty(block, np.float32)
    for i in range(0, 50 * block, block):  # warm-up
        d.process(x[i:i + block], y)
    d.reset()
    times = []
    for i in range(0, x.size - block + 1, block):
        t = time.perf_counter()
        d.process(x[i:i + block], y)
        times.append(time.perf_counter() - t)
    us = np.asarray(times) * 1e6
    deadline_us = block / rate * 1e6
    p = {q: float(np.percentile(us, q)) for q in (50, 99, 99.9)}
    return {"runtime": runtime, "rate_hz": rate, "block": block, "threads": threads, "blocks": len(times),
            "latency_samples": d.latency_samples, "latency_ms": 1000.0 * d.latency_samples / rate,
            "p50_us": p[50], "p99_us": p[99], "p99.9_us": p[99.9], "max_us": float(us.max()),
            "mean_us": float(us.mean()), "deadline_us": deadline_us,
            "core_percent_p50": 100.0 * p[50] / deadline_us, "core_percent_mean": 100.0 * float(us.mean()) / deadline_us,
            "core_percent_p99": 100.0 * p[99] / deadline_us}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=int, default=48000, choices=(44100, 48000))
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None)
    ap.add_argument("--runtime", default="kernels", choices=RUNTIMES)
    a = ap.parse_args()
    print(json.dumps(measure(a.rate, a.block, a.seconds, a.threads, a.model, a.runtime), indent=2))
