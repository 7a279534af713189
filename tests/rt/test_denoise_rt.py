"""The real-time denoiser stage: rings, worker, D-block delay and the late-block fallback.

A small stateful stand-in denoiser (y = 0.5 x[n] + 0.25 x[n-1]) checks the plumbing: order,
state carried across blocks, the delay of D periods, and that a late worker falls back to the
equally delayed dry signal while counting the block.
"""

from __future__ import annotations

import json
import textwrap
import threading

import numpy as np
import pytest

from debleed.errors import DebleedError
from debleed.rt.config import parse_config
from debleed.rt.denoise_rt import CTL_LATE, DenoiseStage
from debleed.rt.engine import JackEngine
from debleed.rt.player import play_record

PERIOD = 128


class HalfAndEcho:
    latency_samples = 0

    def prepare(self, sample_rate, max_block):
        self.prev = np.float32(0.0)

    def reset(self):
        self.prev = np.float32(0.0)

    def process(self, x, out):
        y = np.empty_like(x)
        y[:] = 0.5 * x
        if x.size:
            y[0] += 0.25 * self.prev
            y[1:] += 0.25 * x[:-1]
            self.prev = x[-1]
        out[:] = y


def reference(x):
    y = 0.5 * x
    y[1:] += 0.25 * x[:-1]
    return y.astype(np.float32)


def make_stage(delay_blocks=2):
    d = HalfAndEcho()
    d.prepare(48000, PERIOD)
    return DenoiseStage([d], [0], [1], max_block=PERIOD, period=PERIOD, delay_blocks=delay_blocks)


@pytest.mark.parametrize("delay_blocks", [1, 2, 3])
def test_denoised_blocks_arrive_exactly_d_periods_later(delay_blocks):
    st = make_stage(delay_blocks)
    try:
        x = np.random.default_rng(0).standard_normal(PERIOD * 20).astype(np.float32)
        got = np.zeros_like(x)
        inputs = np.zeros((2, PERIOD), np.float32)
        for b in range(20):
            inputs[0] = x[b * PERIOD:(b + 1) * PERIOD]
            st.exchange(PERIOD, inputs)
            got[b * PERIOD:(b + 1) * PERIOD] = inputs[1]
            st.process_pending()  # the worker keeps up
        d = delay_blocks * PERIOD
        assert st.latency_samples == d
        assert np.array_equal(got[d:], reference(x)[:-d])
        assert np.all(got[:d] == 0.0)
        assert st.ctl[CTL_LATE] == 0
    finally:
        st.stop()


def test_a_late_worker_falls_back_to_the_delayed_dry_signal_and_counts_it():
    st = make_stage(2)
    f = st.fade_samples
    try:
        x = np.random.default_rng(1).standard_normal(PERIOD * 12).astype(np.float32)
        got = np.zeros_like(x)
        inputs = np.zeros((2, PERIOD), np.float32)
        for b in range(12):
            inputs[0] = x[b * PERIOD:(b + 1) * PERIOD]
            st.exchange(PERIOD, inputs)
            got[b * PERIOD:(b + 1) * PERIOD] = inputs[1]
            if b not in (5, 6, 7):  # the worker stalls: blocks 5 and 6 are not ready when due
                st.process_pending()
        d = 2 * PERIOD
        ref = np.concatenate([np.zeros(d, np.float32), reference(x)[:-d]])
        dry = np.concatenate([np.zeros(d, np.float32), x[:-d]])
        # denoised up to the late blocks 7 and 8, dry once the fade is over, denoised again
        # once the fade back (from block 9 on) is over
        assert np.array_equal(got[:7 * PERIOD], ref[:7 * PERIOD])
        assert np.array_equal(got[7 * PERIOD + f:9 * PERIOD], dry[7 * PERIOD + f:9 * PERIOD])
        assert np.array_equal(got[9 * PERIOD + f:], ref[9 * PERIOD + f:])
        # inside the fades: between the two signals' ranges, and different from both
        fade_out = slice(7 * PERIOD, 7 * PERIOD + f)
        assert not np.array_equal(got[fade_out], dry[fade_out]) and not np.array_equal(got[fade_out], ref[fade_out])
        assert st.ctl[CTL_LATE] == 2
        assert d == st.latency_samples
    finally:
        st.stop()


class Negate:
    """A stand-in whose output differs from its input as much as it can: a hard switch between
    them jumps by twice the signal."""

    latency_samples = 0

    def reset(self):
        pass

    def process(self, x, out):
        out[:x.size] = -x


@pytest.mark.parametrize("stalls", [(5, 6), (5, 6, 7), (5, 6, 7, 8, 9), (5, 6, 8, 9), (5, 6, 9, 10)])
def test_every_switch_is_a_crossfade_with_a_bounded_step(stalls):
    """Sine in, its negative as the "denoised" signal: a hard switch steps by up to 1.0, a
    crossfade over F samples by at most the sine's own step plus 1/F."""
    st = DenoiseStage([Negate()], [0], [1], max_block=PERIOD, period=PERIOD, delay_blocks=2)
    f = st.fade_samples
    assert f == round(0.003 * 48000)
    try:
        nb = 20
        t = np.arange(PERIOD * nb)
        x = (0.5 * np.sin(2 * np.pi * 50 * t / 48000)).astype(np.float32)
        got = np.zeros_like(x)
        inputs = np.zeros((2, PERIOD), np.float32)
        for b in range(nb):
            inputs[0] = x[b * PERIOD:(b + 1) * PERIOD]
            st.exchange(PERIOD, inputs)
            got[b * PERIOD:(b + 1) * PERIOD] = inputs[1]
            if b not in stalls:
                st.process_pending()
        late = int(st.ctl[CTL_LATE])
        assert late >= 1
        natural = np.abs(np.diff(x)).max()
        steps = np.abs(np.diff(got.astype(np.float64)))
        bound = 2 * natural + 2 * 0.5 / f + 1e-6  # both signals' own step, plus the fade's
        assert steps.max() <= bound, f"step {steps.max():.4f} > {bound:.4f} at sample {steps.argmax()}"
        # and without the fade the same run would have jumped: the dry and denoised signals
        # differ by up to 1.0 where the output switched
        d = 2 * PERIOD
        dry = np.concatenate([np.zeros(d, np.float32), x[:-d]])
        assert np.abs(got - dry).max() > 0.9  # denoised (negated) somewhere
        assert np.isclose(got, dry, atol=1e-7).sum() >= PERIOD - f  # dry somewhere
    finally:
        st.stop()


def test_set_period_keeps_the_stream_whole_at_d_new_periods():
    st = make_stage(2)
    f = st.fade_samples
    try:
        half = PERIOD // 2
        x = np.random.default_rng(4).standard_normal(PERIOD * 10 + half * 10).astype(np.float32)
        got = np.zeros_like(x)
        inputs = np.zeros((2, PERIOD), np.float32)
        pos = 0
        for b in range(20):
            if b == 10:
                assert st.set_period(half) == 2 * half == st.latency_samples
            n = PERIOD if b < 10 else half
            inputs[0, :n] = x[pos:pos + n]
            st.exchange(n, inputs)
            got[pos:pos + n] = inputs[1, :n]
            st.process_pending()
            pos += n
        sw = 10 * PERIOD
        ref = reference(x)
        assert np.array_equal(got[2 * PERIOD:sw], ref[:sw - 2 * PERIOD])
        # D blocks of the dry signal at the new delay (faded in from the denoised one), then
        # the denoised ones at the same delay (faded in over f samples)
        assert not np.array_equal(got[sw:sw + 2 * half], x[sw - 2 * half:sw])
        assert np.array_equal(got[sw + 2 * half + f:], ref[sw + f:-2 * half])
        assert st.ctl[CTL_LATE] == 0
        for bad in (0, PERIOD + 1):
            with pytest.raises(DebleedError, match=f"period must be 1 to max_block={PERIOD} frames, got {bad}"):
                st.set_period(bad)
    finally:
        st.stop()


def test_worker_thread_processes_in_the_background():
    st = make_stage(2)
    st.start()
    try:
        x = np.arange(PERIOD * 4, dtype=np.float32)
        inputs = np.zeros((2, PERIOD), np.float32)
        for b in range(4):
            inputs[0] = x[b * PERIOD:(b + 1) * PERIOD]
            st.exchange(PERIOD, inputs)
        for _ in range(200):
            if st.ctl[1] == 4:
                break
            threading.Event().wait(0.01)
        assert st.ctl[1] == 4 and st.error is None
    finally:
        st.stop()


GIG = """
[client]
name = "dn{engine}"
[inputs]
snare = []
[[channel]]
name = "snare"
input = "snare"
mode = "bypass"
denoise = true
denoise_delay_blocks = 2
denoise_limit_db = -100.0
[[channel]]
name = "raw"
input = "snare"
mode = "bypass"
"""


@pytest.mark.jack
@pytest.mark.parametrize("engine", ["cfunc", "python"])
def test_live_denoised_channel_is_denoised_or_dry_block_by_block(jack_server, engine, tmp_path):
    cfg = parse_config(__import__("tomllib").loads(textwrap.dedent(GIG.format(engine=engine))))
    eng = JackEngine(cfg, engine=engine, server_name=jack_server.name, denoiser_factory=lambda ch: HalfAndEcho())
    eng.start()
    try:
        x, rec = _play(jack_server, f"dn{engine}", PERIOD)
        stats = eng.stats()
    finally:
        eng.stop()
    assert stats["latency_samples"] == {"snare": 2 * PERIOD, "raw": 0}
    _check_denoised_or_dry(x, rec, PERIOD, stats, engine)


def _play(jack_server, client, period):
    n = period * 200
    x = np.random.default_rng(2).standard_normal(n).astype(np.float32) * 0.3
    rec = play_record({f"{client}:in_snare": x}, [f"{client}:out_snare", f"{client}:out_raw"],
                      server_name=jack_server.name, freewheel=False, tail_frames=4 * period,
                      timeout_s=60, name=f"{client}t")
    return x, rec


def _check_denoised_or_dry(x, rec, period, stats, engine):
    """Every checkable block of the denoised channel is the stand-in's output or the dry input,
    ``2 * period`` samples late."""
    PERIOD = period
    d = 2 * PERIOD
    # In real time on a shared machine a Python client can miss a cycle (an xrun): JACK then
    # drops that cycle's data. Such blocks show on the bypassed raw channel and are left out.
    ref = reference(x)
    nb = x.size // PERIOD
    clean = [np.array_equal(rec[1, b * PERIOD:(b + 1) * PERIOD], x[b * PERIOD:(b + 1) * PERIOD]) for b in range(nb)]
    assert sum(clean) >= 0.8 * nb, f"{engine}: only {sum(clean)} of {nb} clean cycles ({stats['xruns']} xruns)"
    denoised = fallback = fading = checked = 0
    for b in range(1, nb - 2):
        # block b in, block b + 2 out; the stand-in's state is the sample before block b. A cycle
        # the engine missed anywhere from b - 1 to b + 2 shifts its ring against the player's
        # timeline (it never pushed that block), so all four cycles must be clean.
        if not all(clean[b - 1:b + 3]):
            continue
        checked += 1
        blk = rec[0, d + b * PERIOD:d + (b + 1) * PERIOD]
        src = slice(b * PERIOD, (b + 1) * PERIOD)
        if np.array_equal(blk, ref[src]):
            denoised += 1
        elif np.array_equal(blk, x[src]):
            fallback += 1
        else:  # a crossfade next to a late block (3 ms: at most 2 blocks each way at 128 frames)
            fading += 1
    assert denoised > 0
    assert fallback <= stats["late_blocks"]
    assert fading <= 4 * stats["late_blocks"], f"{engine}: {fading} blocks neither denoised nor dry"
    assert stats["denoiser"]["worker_error"] is None
    json.dumps(stats)


@pytest.mark.jack
def test_a_period_change_moves_the_denoised_channel_to_d_new_periods(jack_server, tmp_path):
    import time

    import jack

    from debleed.rt import _jackptr
    from debleed.rt import jack_cfunc as jc

    cfg = parse_config(__import__("tomllib").loads(textwrap.dedent(GIG.format(engine="per"))))
    eng = JackEngine(cfg, engine="cfunc", server_name=jack_server.name, denoiser_factory=lambda ch: HalfAndEcho())
    eng.start()
    ctl = jack.Client("dnperctl", servername=jack_server.name)
    try:
        ctl.blocksize = PERIOD // 2
        for _ in range(100):  # the latency update runs on its own thread
            lo, hi = _jackptr.get_latency_range(eng.outports[0], _jackptr.CAPTURE_LATENCY)
            if (lo, hi) == (PERIOD, PERIOD):
                break
            time.sleep(0.02)
        assert eng.stage.latency_samples == PERIOD and eng._header[jc.H_DRYDELAY] == PERIOD
        assert eng.stats()["latency_samples"] == {"snare": PERIOD, "raw": 0}
        assert (lo, hi) == (PERIOD, PERIOD)
        x, rec = _play(jack_server, "dnper", PERIOD // 2)
        stats = eng.stats()
    finally:
        ctl.blocksize = PERIOD
        ctl.close()
        eng.stop()
    _check_denoised_or_dry(x, rec, PERIOD // 2, stats, "cfunc")


def test_offline_render_runs_the_denoiser_stage_as_a_live_run_that_keeps_up():
    from debleed.rt.render import render_arrays

    cfg = parse_config(__import__("tomllib").loads(textwrap.dedent(GIG.format(engine="off"))))
    x = np.random.default_rng(3).standard_normal(PERIOD * 50).astype(np.float32)
    res = render_arrays(cfg, x[None], 48000, PERIOD, denoiser_factory=lambda ch: HalfAndEcho())
    d = 2 * PERIOD
    assert res["latency_samples"] == [d, 0]
    assert np.array_equal(res["outputs"][0, d:], reference(x)[:-d])
    assert np.array_equal(res["outputs"][1], x)


def test_a_fresh_denoiser_stays_fresh_through_leading_silence():
    """Whole hops of silence before the first sound do not move the model's state: a take
    after any silence (block size aside) is denoised as the take alone."""
    from debleed.models.denoiser import Denoiser

    rng = np.random.default_rng(5)
    x = (rng.standard_normal(4096) * 0.1).astype(np.float32)
    x[:40] = 0.0  # the take itself starts with a partial hop of silence

    def run(sig, block):
        d = Denoiser()
        d.prepare(48000, 1024)
        y = np.zeros_like(sig)
        for i in range(0, sig.size, block):
            d.process(sig[i:i + block], y[i:i + block])
        return y

    ref = run(x, 128)
    for pad, block in ((32, 32), (128 * 7, 128), (128 * 40, 64), (96, 1000), (64, 1)):
        y = run(np.concatenate([np.zeros(pad, np.float32), x]), block)
        assert np.all(y[:pad] == 0.0)
        if pad % block == 0:  # the same onnxruntime calls: bit for bit
            assert np.array_equal(y[pad:], run(x, block)), (pad, block)
        np.testing.assert_allclose(y[pad:], ref, rtol=0, atol=1e-6)  # other chunking: rounding only
    # without the rule the recurrent state drifts on silence: the same take after 40 periods
    # of zeros, run with the state advanced, differs
    d = Denoiser()
    d.prepare(48000, 1024)
    d._fresh = False
    y = np.zeros(128 * 40 + x.size, np.float32)
    sig = np.concatenate([np.zeros(128 * 40, np.float32), x])
    for i in range(0, sig.size, 128):
        d.process(sig[i:i + 128], y[i:i + 128])
    assert not np.array_equal(y[128 * 40:], ref)


def test_freewheel_start_restarts_the_denoisers_before_their_next_block():
    st = make_stage(2)
    try:
        inputs = np.zeros((2, PERIOD), np.float32)
        rng = np.random.default_rng(6)
        for _ in range(3):  # real-time audio leaves state behind
            inputs[0] = rng.standard_normal(PERIOD)
            st.exchange(PERIOD, inputs)
            st.process_pending()
        assert st.denoisers[0].prev != 0.0
        st.set_freewheel(True)
        assert st.ctl[6] == 1  # CTL_FREEWHEEL
        inputs[0] = 1.0
        st.exchange(PERIOD, inputs)
        st.process_pending()
        # the block published after freewheel started ran on a restarted denoiser
        assert st.ring_out[0, 3, 0] == 0.5
        st.set_freewheel(False)
        assert st.ctl[6] == 0
    finally:
        st.stop()


def test_limit_and_mix_are_applied_by_the_worker_and_set_while_running():
    from debleed.errors import ParameterError
    from debleed.models.denoiser import limit_mix_gain

    d = HalfAndEcho()
    d.prepare(48000, PERIOD)
    st = DenoiseStage([d], [0], [1], max_block=PERIOD, period=PERIOD, delay_blocks=1, channels=[3],
                      params=[{"denoise_limit_db": -6.0, "denoise_mix": 1.0}])
    try:
        x = np.random.default_rng(7).standard_normal(PERIOD * 6).astype(np.float32)
        got = np.zeros_like(x)
        inputs = np.zeros((2, PERIOD), np.float32)
        for b in range(6):
            if b == 3:
                st.set_param(3, "denoise_mix", 0.5)
                st.set_param(3, "denoise_limit_db", -100.0)
            inputs[0] = x[b * PERIOD:(b + 1) * PERIOD]
            st.exchange(PERIOD, inputs)
            got[b * PERIOD:(b + 1) * PERIOD] = inputs[1]
            st.process_pending()
        ref, p = reference(x), PERIOD
        g = limit_mix_gain(-6.0, 1.0)
        assert g == pytest.approx(1 - 10 ** (-6 / 20))
        want = (x + g * (ref - x)).astype(np.float32)
        np.testing.assert_allclose(got[p:3 * p], want[:2 * p], rtol=0, atol=1e-6)
        # block 3 ramps from g to 0.5 over its 128 samples, then 0.5
        want2 = (x + 0.5 * (ref - x)).astype(np.float32)
        np.testing.assert_allclose(got[5 * p:], want2[4 * p:5 * p], rtol=0, atol=1e-6)
        ramp = got[4 * p:5 * p] - x[3 * p:4 * p]
        assert np.all(np.abs(ramp) <= np.abs(ref[3 * p:4 * p] - x[3 * p:4 * p]) + 1e-6)
        assert st.get_param(3, "denoise_mix") == 0.5
        with pytest.raises(ParameterError, match="channel 0 is not denoised"):
            st.set_param(0, "denoise_mix", 0.5)
        with pytest.raises(ParameterError, match=r"denoise_mix must be in \[0, 1\], got 1.5"):
            st.set_param(3, "denoise_mix", 1.5)
        with pytest.raises(ParameterError, match=r"denoise_limit_db must be in \[-100, 0\] dB, got 3"):
            st.set_param(3, "denoise_limit_db", 3)
        with pytest.raises(ParameterError, match="'threshold_db' is not a denoiser parameter"):
            st.set_param(3, "threshold_db", -3)
    finally:
        st.stop()


@pytest.mark.parametrize("workers", ["shared", "per-channel"])
def test_worker_threads_denoise_every_channel_in_order(workers):
    ds = [HalfAndEcho(), HalfAndEcho()]
    for d in ds:
        d.prepare(48000, PERIOD)
    st = DenoiseStage(ds, [0, 0], [1, 2], max_block=PERIOD, period=PERIOD, delay_blocks=2, workers=workers,
                      params=[{"denoise_limit_db": -100.0}, {"denoise_limit_db": -100.0, "denoise_mix": 0.0}])
    st.start()
    try:
        x = np.random.default_rng(8).standard_normal(PERIOD * 12).astype(np.float32)
        got = np.zeros((2, x.size), np.float32)
        inputs = np.zeros((3, PERIOD), np.float32)
        for b in range(12):
            inputs[0] = x[b * PERIOD:(b + 1) * PERIOD]
            # freewheel-style: wait for the worker(s) before each block, so nothing is late
            for _ in range(500):
                if st.ctl[1] >= b - 1:  # CTL_DONE
                    break
                threading.Event().wait(0.002)
            st.exchange(PERIOD, inputs)
            got[:, b * PERIOD:(b + 1) * PERIOD] = inputs[1:3]
        assert st.ctl[CTL_LATE] == 0 and st.error is None
        assert len(st._threads) == (2 if workers == "per-channel" else 1)
        d = 2 * PERIOD
        assert np.array_equal(got[0, d:], reference(x)[:-d])
        assert np.array_equal(got[1, d:], x[:-d])  # mix 0: the dry input, delayed
    finally:
        st.stop()
    assert st.fd == -1
