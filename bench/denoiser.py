"""Section 5, denoiser: what the denoiser costs inside the audio callback, against onnxruntime.

The live engines run the denoiser's data-plane kernels (:mod:`debleed.models.streaming`) inside
the audio callback; onnxruntime runs the same ``.onnx`` files for the batch ``debleed denoise``.
For each model shipped in ``models/`` (the defaults and the informed ``*_informed.onnx``, whose
reference mics are silent here: the same cost):

- ``kernels``: :meth:`StreamingStage.process` per block (one channel; the call the Python engine
  makes, the cfunc calls the same kernel without the dispatch) for 64, 128, 256 and 1024 frames
  over the snare mic of a real-kit groove, the process pinned to one core: per-block time
  p50/p99/max in us (median/min/max over repeats), percent of the period, real-time factor;
- ``wrapper``: the onnxruntime wrapper ``Denoiser.process`` (one intra-op thread) on the same
  blocks, side by side;
- ``raw``: onnxruntime ``session.run`` against ``run_with_iobinding`` with preallocated inputs
  and outputs, on the CPU provider and on CUDA where a GPU is present;
- ``deadline``: kernel blocks that took longer than the block lasts (``n_frames / sample_rate``),
  without and with a busy-looping process pinned to another core than the one timed. There is
  no fallback any more: such a block would be an xrun of the whole client.

``live``: ``debleed live`` with 2 denoised channels (of 2) at 64 frames, without and with an
unpinned busy-looping process: callback p99.9 and max against the deadline, xruns.

Skipped, with a note, when the module or the ``.onnx`` files are missing.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from debleed.bench.common import SAMPLE_RATE, Context, Processes, cpu_hog, stat
from debleed.dsp.processor import ProcessSpec

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def find_denoiser():
    """``(Denoiser class, [onnx paths], note)``: the models shipped next to the package."""
    import debleed.models
    from debleed.models.denoiser import Denoiser

    # every model shipped next to the package: the defaults and the informed ones
    paths = sorted(Path(debleed.models.__file__).parent.glob("*.onnx"))
    if not paths:
        return Denoiser, [], f"no .onnx file in {Path(debleed.models.__file__).parent}"
    return Denoiser, paths, ""


@contextlib.contextmanager
def one_core():
    """Pin this process to its first usable core (restored afterwards).

    Yields ``(core, other)``: the pinned core and another core this process could use (for a
    hog beside it), ``None`` where there is none or affinity is not supported. ``other`` is read
    before pinning: once pinned, the process's own affinity holds only ``core``.
    """
    if not hasattr(os, "sched_getaffinity"):
        yield None, None
        return
    before = os.sched_getaffinity(0)
    core = min(before)
    rest = sorted(before - {core})
    os.sched_setaffinity(0, {core})
    try:
        yield core, (rest[0] if rest else None)
    finally:
        os.sched_setaffinity(0, before)


def model_rate(path) -> int:
    """The sample rate a model was trained at (its ``sample_rate`` metadata), else the bench rate."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    return int(meta.custom_metadata_map.get("sample_rate", SAMPLE_RATE))


def time_wrapper(Denoiser, path, block: int, audio: np.ndarray, n_blocks: int, providers=None,
                 rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-block ``process`` times, ns (int64, (n_blocks,)), the model prepared at ``rate`` Hz."""
    d = Denoiser(path, providers=providers, intra_op_threads=1)
    d.prepare(ProcessSpec(rate, block))
    out = np.zeros(block, np.float32)
    for i in range(4):  # warm up (session, first-run allocations)
        d.process(audio[i * block:(i + 1) * block], out)
    d.reset()
    times = np.zeros(n_blocks, np.int64)
    n_avail = audio.size // block
    for i in range(n_blocks):
        x = audio[(i % n_avail) * block:(i % n_avail + 1) * block]
        t0 = time.perf_counter_ns()
        d.process(x, out)
        times[i] = time.perf_counter_ns() - t0
    return times


def time_kernels(path, block: int, audio: np.ndarray, n_blocks: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-block times of the data-plane kernels (one channel), ns (int64, (n_blocks,))."""
    from debleed.models.streaming import StreamingStage

    st = StreamingStage([(0, 1)], rate, models=[path], max_block=block)
    io = np.zeros((2, block), np.float32)
    n_avail = audio.size // block
    for i in range(4):  # warm up
        io[0] = audio[i * block:(i + 1) * block]
        st.process(block, io)
    st.reset()
    times = np.zeros(n_blocks, np.int64)
    for i in range(n_blocks):
        io[0] = audio[(i % n_avail) * block:(i % n_avail + 1) * block]
        t0 = time.perf_counter_ns()
        st.process(block, io)
        times[i] = time.perf_counter_ns() - t0
    return times


def _feeds(sess, block: int) -> dict:
    feeds = {}
    for k, inp in enumerate(sess.get_inputs()):
        dims = list(inp.shape)
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        if dims and not (isinstance(dims[-1], int) and dims[-1] > 0):
            shape[-1] = block  # the audio (and an informed model's refs and key): one block
        dtype = _DTYPES.get(inp.type, np.float32)
        feeds[inp.name] = (np.random.default_rng(k).standard_normal(shape) * 0.1).astype(dtype)
    return feeds


def time_raw(path, provider: str, block: int, n_runs: int) -> dict:
    """Per-run times (us percentiles) of ``run`` and ``run_with_iobinding`` on one provider."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=[provider])
    if sess.get_providers()[0] != provider:
        return {"skipped": f"{provider} not usable (session fell back to {sess.get_providers()[0]})"}
    feeds = _feeds(sess, block)
    outs = sess.run(None, feeds)
    device = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
    io = sess.io_binding()
    keep = []
    for name, arr in feeds.items():
        ov = ort.OrtValue.ortvalue_from_numpy(arr, device, 0)
        keep.append(ov)
        io.bind_ortvalue_input(name, ov)
    for o, arr in zip(sess.get_outputs(), outs):
        ov = ort.OrtValue.ortvalue_from_shape_and_type(arr.shape, arr.dtype, device, 0)
        keep.append(ov)
        io.bind_ortvalue_output(o.name, ov)
    res = {}
    for label, call in (("run", lambda: sess.run(None, feeds)), ("iobinding", lambda: sess.run_with_iobinding(io))):
        for _ in range(5):
            call()
        t = np.zeros(n_runs, np.int64)
        for i in range(n_runs):
            t0 = time.perf_counter_ns()
            call()
            t[i] = time.perf_counter_ns() - t0
        res[label] = _pcts(t)
    res["inputs"] = {k: list(v.shape) for k, v in feeds.items()}
    return res


def _pcts(times_ns: np.ndarray) -> dict:
    us = times_ns / 1000.0
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)), "max": float(us.max())}


def _agg(per_repeat: list[dict]) -> dict:
    keys = per_repeat[0].keys() if per_repeat else ()
    return {k: stat([r[k] for r in per_repeat]) for k in keys}


def steps(ctx: Context) -> int:
    return len(ctx.options.denoiser_blocks) + 2


def run(ctx: Context, progress) -> dict:
    Denoiser, paths, note = find_denoiser()
    if not paths:
        return {"skipped": f"denoiser not available: {note}"}
    import onnxruntime as ort

    from debleed.models.denoiser import usable_providers

    opt = ctx.options
    n_blocks = opt.denoiser_n_blocks
    blocks = opt.denoiser_blocks
    audio = ctx.multitrack().mics["snare"].astype(np.float32)
    models = {}
    for path in paths:
        if model_rate(path) not in opt.denoiser_rates:
            continue
        m = {"file": path.name, "kernels": {}, "wrapper": {}, "raw": {}, "deadline": {}}
        try:
            rate = model_rate(path)
            m["sample_rate"] = rate
            lat = Denoiser(path, intra_op_threads=1)
            lat.prepare(ProcessSpec(rate, max(blocks)))
            m["latency_samples"] = int(lat.latency_samples)
        except Exception as e:  # noqa: BLE001 - reported, the bench goes on
            m["error"] = f"{type(e).__name__}: {e}"
            models[path.name] = m
            continue
        with one_core() as (core, other):
            for block in blocks:
                period_us = 1e6 * block / rate
                for label, timer in (("kernels", lambda: time_kernels(path, block, audio, n_blocks, rate)),
                                     ("wrapper", lambda: time_wrapper(Denoiser, path, block, audio, n_blocks,
                                                                      providers=["CPUExecutionProvider"], rate=rate))):
                    reps, rtf = [], []
                    for _ in range(opt.repeats):
                        t = timer()
                        reps.append(_pcts(t))
                        rtf.append(t.size * block / rate / (t.sum() / 1e9))
                    us = _agg(reps)
                    m[label][str(block)] = {"us": us, "rtf_one_core": stat(rtf), "deadline_us": period_us,
                                            "percent_of_period_p50": 100.0 * us["p50"]["median"] / period_us}
                progress(f"denoiser: {path.name} block {block}")
            providers = ["CPUExecutionProvider"]
            if "CUDAExecutionProvider" in usable_providers():  # no session (and no loader errors) without CUDA
                providers.append("CUDAExecutionProvider")
            for prov in providers:
                for block in blocks:
                    try:
                        reps = [time_raw(path, prov, block, n_blocks) for _ in range(opt.repeats)]
                        if "skipped" in reps[0]:
                            m["raw"].setdefault(prov, {})["skipped"] = reps[0]["skipped"]
                            break
                        m["raw"].setdefault(prov, {})[str(block)] = {
                            "run_us": _agg([r["run"] for r in reps]), "iobinding_us": _agg([r["iobinding"] for r in reps]),
                            "inputs": reps[0]["inputs"]}
                    except Exception as e:  # noqa: BLE001 - e.g. a fixed-size model refuses this block
                        m["raw"].setdefault(prov, {})[str(block)] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            progress(f"denoiser: {path.name} raw sessions")
            for label, hog in (("no_hog", False), ("hog_other_core", True)):
                if hog and other is None:
                    m["deadline"][label] = {"skipped": "no other usable core for the hog"}
                    continue
                over = []
                for _ in range(opt.repeats):
                    with (cpu_hog(other) if hog else contextlib.nullcontext()):
                        t = time_kernels(path, 64, audio, n_blocks, rate)
                    over.append(int(np.sum(t > 1e9 * 64 / rate)))
                m["deadline"][label] = {"blocks": n_blocks, "block": 64, "over_deadline": stat(over)}
        models[path.name] = m
    live = live_denoised(ctx)
    progress("denoiser: live")
    return {"models": models, "blocks_per_repeat": n_blocks, "live": live,
            "available_providers": ort.get_available_providers(), "usable_providers": usable_providers()}


def live_denoised(ctx: Context) -> dict:
    """``debleed live`` with 2 denoised channels at 64 frames, without and with a hog: callback
    p99.9 and max (us) against the deadline, xruns."""
    from debleed.bench.common import LoopPlayer, gig_config, run_live_window
    from debleed.testing import JACK_CLIENT_TIMEOUT_MS, DummyServer

    opt = ctx.options
    out = {"period_frames": 64, "deadline_us": 1e6 * 64 / SAMPLE_RATE}
    procs = Processes()
    try:
        with DummyServer(client_timeout_ms=JACK_CLIENT_TIMEOUT_MS, sample_rate=SAMPLE_RATE, period_frames=64) as srv:
            player = LoopPlayer(srv.name, ctx.tracks(), ctx.multitrack().midi)
            try:
                for label, hog in (("no_hog", False), ("hog", True)):
                    if label not in opt.live_hogs:
                        continue
                    xr, p999, mx = [], [], []
                    for r in range(opt.repeats):
                        with (cpu_hog(None) if hog else contextlib.nullcontext()):
                            res = run_live_window(srv, player, gig_config(2, extra="denoise = true"), ctx.workdir(),
                                                  engine=opt.live_engine, seconds=opt.run_s, tag=f"dn-{label}-{r}", procs=procs)
                        xr.append(res["stats"].get("xruns"))
                        p999.append(res["stats"]["callback_us"]["p99.9"])
                        mx.append(res["stats"]["callback_us"]["max"])
                    out[label] = {"xruns": stat(xr), "callback_p99.9_us": stat(p999), "callback_max_us": stat(mx)}
            finally:
                player.close()
    except Exception as e:  # noqa: BLE001 - reported, the bench goes on
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        procs.kill_all()
    return out
