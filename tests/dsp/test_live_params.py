"""The parameter table and live changes in the chain: swap at a block boundary, ramps, no clicks."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from debleed.dsp.chain import K_DONE, K_DONE_FRAME, K_REQ, RAMP_MS, Chain, ChannelSpec
from debleed.dsp.params import PARAMS, SPEC_PARAMS, markdown_table
from debleed.errors import DebleedError, ParameterError
from debleed.dsp.processor import ProcessSpec

SR = 48000
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("name", ["params", "osc"])
def test_readme_tables_are_the_generated_ones(name):
    from debleed.docs import generated, section

    assert section(README.read_text(), name) == generated()[name], \
        "README.md is stale: run `python -m debleed.docs README.md`"
    assert name != "params" or generated()[name] == markdown_table()


def test_every_spec_field_default_and_range_comes_from_the_table():
    spec = ChannelSpec(name="a", input=0)
    from debleed.rt.config import ChannelConfig

    fields = ChannelConfig.model_fields
    for name in SPEC_PARAMS:
        p = PARAMS[name]
        assert getattr(spec, name) == p.default
        assert fields[name].default == p.default
        if p.is_number:
            bad = p.hi * 2 + 1 if p.hi > 0 else p.hi + 1
            if not p.allow_inf:
                with pytest.raises(ParameterError, match=re.escape(p.range_text())):
                    ChannelSpec(name="a", input=0, **{name: bad})


def test_steps_move_by_the_unit_and_clamp():
    assert PARAMS["threshold_db"].stepped(-1.0, 3) == 0.0
    assert PARAMS["attack_ms"].stepped(0.0, 1) == pytest.approx(1.0)
    assert PARAMS["attack_ms"].stepped(4.0, -1) == pytest.approx(3.2)
    assert PARAMS["release_ms"].stepped(0.2, -1) == 0.0
    assert PARAMS["midi_channel"].stepped(16, 1) == 16
    assert PARAMS["detector"].stepped("rms", 1) == "peak"
    assert PARAMS["bypass"].stepped(False, 1) is True


def _signal(n, amp=0.25, f=200.0):
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / SR)).astype(np.float32)[None, :]


#: Frame of the switch: a block boundary where the test sine is far from a zero crossing (an
#: unramped gain jump there is a step of about the signal's amplitude).
AT = 4864


def _run(spec_kw, change, n=9600, at=AT, block=64):
    ch = Chain([ChannelSpec(name="a", input=0, **spec_kw)], n_inputs=1)
    ch.prepare(ProcessSpec(SR, block, ch.n_channels))
    x = _signal(n)
    y = np.zeros_like(x)
    for s in range(0, n, block):
        if s == at:
            ch.set_params([("a", *change)])
        ch.process(x[:, s:s + block], y[:, s:s + block])
    return x[0], y[0]


CLOSED = dict(threshold_db=0.0, range_db=-60.0)   # the -12 dBFS sine never opens it
OPEN = dict(threshold_db=-60.0, range_db=-60.0, ratio=math.inf)   # always open (ducks fully)
# (spec, change, what the output is after the ramp as a factor of the input)
SWITCHES = {
    "dry_wet 1 -> 0 on a closed gate": (CLOSED, ("dry_wet", 0.0), 1.0),
    "range -60 -> 0 on a closed gate, attack 0": ({**CLOSED, "attack_ms": 0.0}, ("range_db", 0.0), 1.0),
    "bypass on a closed gate": (CLOSED, ("bypass", True), 1.0),
    "mode gate -> bypass": (CLOSED, ("mode", "bypass"), 1.0),
    "mode bypass -> gate": ({**CLOSED, "mode": "bypass"}, ("mode", "gate"), 1e-3),
    "mode gate -> duck, release 5 ms": ({**CLOSED, "release_ms": 5.0}, ("mode", "duck"), 1.0),
    # the key 48 dB over the threshold, hard ratio: ducked by 48 dB
    "mode open gate -> duck, attack 0": ({**OPEN, "attack_ms": 0.0, "release_ms": 0.0}, ("mode", "duck"),
                                         10 ** (-48 / 20)),
    "mode duck -> gate, attack 0": ({**CLOSED, "mode": "duck", "attack_ms": 0.0, "release_ms": 0.0, "hold_ms": 0.0},
                                    ("mode", "gate"), 1e-3),
}


def _step_at_switch(x, y):
    """Largest output step from the switch to twice the ramp time after it (later, the gain stage
    does what its own attack, hold and release say), and the bound it must stay under."""
    slope = np.max(np.abs(np.diff(x)))  # the signal's own largest sample-to-sample step
    n = int(2 * RAMP_MS * 1e-3 * SR)
    return np.max(np.abs(np.diff(y[AT - 1:AT + n]))), slope + 0.06 * np.max(np.abs(x))


@pytest.mark.parametrize("name", SWITCHES)
def test_switches_are_ramped_and_never_click(name):
    spec, change, after = SWITCHES[name]
    x, y = _run(spec, change)
    step, bound = _step_at_switch(x, y)
    # a linear ramp over RAMP_MS moves the gain by at most 1/240 of the range per sample (0.5 dB)
    assert step <= bound, f"{name}: step {step:.4f} at the switch (bound {bound:.4f})"
    tail = slice(AT + 4096, AT + 4096 + 640)
    np.testing.assert_allclose(y[tail], after * x[tail], atol=2e-3 * np.max(np.abs(x)) + after * 1e-3)


@pytest.mark.parametrize("name", [k for k in SWITCHES if "release 5 ms" not in k and "bypass -> gate" not in k])
def test_without_the_ramp_the_same_switch_would_click(name, monkeypatch):
    """The bound above catches an unramped switch: with a ramp of one sample it fails."""
    import debleed.dsp.chain as chain

    monkeypatch.setattr(chain, "RAMP_MS", 1e-6)
    spec, change, _ = SWITCHES[name]
    step, bound = _step_at_switch(*_run(spec, change))
    assert step > bound, f"{name}: step {step:.4f}"


@pytest.mark.parametrize("block", [1, 16, 256, 1024])
@pytest.mark.parametrize("change", [("range_db", -12.0), ("mode", "duck"), ("bypass", True), ("dry_wet", 0.3)])
def test_changes_at_the_same_frame_give_the_same_output_at_any_block_size(block, change):
    _, plain = _run(CLOSED, change, n=8192, at=-1, block=64)
    _, ref = _run(CLOSED, change, n=8192, at=4096, block=64)
    _, y = _run(CLOSED, change, n=8192, at=4096, block=block)
    assert not np.array_equal(plain, ref)  # the change does change the output
    assert np.array_equal(ref, y)


def test_swap_happens_at_the_next_block_and_records_its_frame():
    ch = Chain([ChannelSpec(name="a", input=0)], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 128, ch.n_channels))
    x = np.zeros((1, 128), np.float32)
    y = np.zeros_like(x)
    ch.process(x, y)
    ch.process(x[:, :100], y[:, :100])
    serial = ch.set_params([("a", "threshold_db", -10.0)])
    assert not ch.applied(serial) and ch.pending
    with pytest.raises(DebleedError, match="still pending"):
        ch.set_params([("a", "threshold_db", -11.0)])
    ch.process(x, y)
    assert ch.applied(serial) and ch.ctl[K_DONE] == ch.ctl[K_REQ] == serial
    assert ch.ctl[K_DONE_FRAME] == 228
    assert ch.channels[0].threshold_db == -10.0


def test_a_bad_change_publishes_nothing():
    ch = Chain([ChannelSpec(name="a", input=0), ChannelSpec(name="b", input=0)], n_inputs=1)
    ch.prepare(ProcessSpec(SR, 64, ch.n_channels))
    before = ch.itabs.copy(), ch.ptabs.copy()
    with pytest.raises(ParameterError, match="key_hpf_hz"):
        ch.set_params([("a", "threshold_db", -3.0), ("b", "key_hpf_hz", 30000.0)])
    assert np.array_equal(before[0], ch.itabs) and np.array_equal(before[1], ch.ptabs)
    assert not ch.pending and ch.channels[0].threshold_db == -30.0


def test_ramp_time_is_the_documented_one():
    spec, change, _ = SWITCHES["bypass on a closed gate"]
    x, y = _run(spec, change)
    n_ramp = int(RAMP_MS * 1e-3 * SR)
    mid = AT + n_ramp // 2
    # halfway through the ramp, the output is half bypassed (the closed gate gives ~0)
    assert abs(y[mid] - 0.5 * x[mid]) < 0.01 * abs(x[mid]) + 1e-4
    assert math.isclose(y[AT + n_ramp + 10], x[AT + n_ramp + 10], rel_tol=1e-6)
