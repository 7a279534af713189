"""The chain: every channel's key, gain stage, lookahead and dry/wet, run one block at a time.

A list of :class:`ChannelSpec` (user units) compiles to flat arrays: an int table ``itab``
(modes, routing, sample counts), a float table ``ptab`` (dB values and coefficients) and a
state table. :func:`run_block` runs one block over them. The JACK cfunc engine, the Python
engine and the offline renderer all call :func:`run_block`, so output at block size N is the
same, bit for bit, wherever it runs.

Signal flow per channel and sample (see the module docs of :mod:`~debleed.dsp.keys`,
:mod:`~debleed.dsp.gain` and :mod:`~debleed.dsp.envelope` for each step)::

    key source -> (HPF, LPF) -> peak or RMS detector -> level dB -> [link: max over group]
      -> hysteresis -> static curve (gate or duck) -> [MIDI velocity depth]
      -> hold, attack, release (in dB) -> gain
    input -> lookahead delay -> out = delayed * ((1 - dry_wet) + dry_wet * gain)

Attack is the time to *act* (open a gate, duck a ducker); release is the time to return;
both use the RC convention of :mod:`debleed.dsp.units` on the gain in dB. Hold keeps the
action at its peak for ``hold_ms`` after the key lets go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass, replace

import numpy as np
from numba import njit

from debleed.dsp._common import check_choice, check_events, check_int, check_notes
from debleed.dsp.params import ALL_KEYS, PARAMS, RAMP_MS, SPEC_PARAMS
from debleed.dsp.delay import _delay_step
from debleed.dsp.envelope import SNAP, _ahr_step, _detect
from debleed.dsp.gain import _gain_db, _hysteresis
from debleed.dsp.processor import ProcessSpec, Processor, check_channels
from debleed.dsp.keys import (EV_DATA1, EV_DATA2, EV_FRAME, EV_STATUS, IDENTITY, MAX_MIDI_EVENTS,
                              _biquad_step, _is_note_on, _trigger_step, biquad_coefs)
from debleed.dsp.units import FLOOR_DB, ms_to_coef, ms_to_samples
from debleed.errors import DebleedError, ParameterError

# the integer codes of the tables, in the order of the parameter table's lists
MODES, KEY_KINDS = PARAMS["mode"].choices, ALL_KEYS
MODE_GATE, MODE_DUCK, MODE_BYPASS = (MODES.index(m) for m in ("gate", "duck", "bypass"))
KEY_SELF, KEY_INPUT, KEY_TRIGGER, KEY_MIDI = (KEY_KINDS.index(k) for k in ("self", "input", "trigger", "midi"))

# int table columns
(I_MODE, I_INPUT, I_KEYKIND, I_KEYIDX, I_RMS, I_LINK, I_MIDICH, I_VELDEPTH, I_LOOKAHEAD,
 I_HOLD, I_RETRIG, I_BYPASS) = range(12)
NI = 12
# float table columns (P_RAMP_LIN, P_RAMP_DB: largest change per sample of a ramped value,
# linear and dB; set from RAMP_MS and the sample rate)
(P_THR, P_RATIO, P_KNEE, P_RANGE, P_HYST, P_ATT, P_REL, P_DRYWET, P_RMS, P_TRIGTHR,
 P_RAMP_LIN, P_RAMP_DB) = range(12)
P_HP, P_LP = 12, 17  # 5 biquad coefficients each
NP = 22
# state columns (S_RNG, S_DW, S_BYP: the ramped range, dry/wet and bypass mix now; S_GMODE: the
# gain mode, gate or duck, the gain state is in; S_XF, S_XG: crossfade position (1 = none) and
# the linear gain it started from, after a gate <-> duck switch)
(S_MS, S_OPEN, S_HELD, S_HOLDLEFT, S_Y, S_HZ1, S_HZ2, S_LZ1, S_LZ2, S_MASK, S_VEL, S_W,
 S_RNG, S_DW, S_BYP, S_GMODE, S_XF, S_XG) = range(18)
NS = 18
# meter columns: min gain dB since the reader last reset it, max key level dB likewise,
# count of non-finite input samples, gain dB at the end of the last block, min gain dB since
# the last Chain.reset (never reset by the reader, so a block written between a reader's copy
# and its reset is still in it)
M_GR, M_KEY, M_BAD, M_GAIN, M_GR_RUN = range(5)
NM = 5
# table-swap control (int64): the bank run_block reads, the bank to switch to, the serial
# number of the last request and of the last swap done, frames run since reset, the frame
# count at the last swap, the engine's clock for this block (JACK frame time; 0 offline) and
# that clock at the last swap
K_ACTIVE, K_PENDING, K_REQ, K_DONE, K_FRAMES, K_DONE_FRAME, K_CLOCK, K_DONE_CLOCK = range(8)
NK = 8

_RAMP_DB_SPAN = 120.0

_LN10_20 = math.log(10.0) / 20.0
_FLOOR_LIN = 10.0 ** (FLOOR_DB / 20.0)

#: Lookahead limit, ms.
MAX_LOOKAHEAD_MS = PARAMS["lookahead_ms"].hi


def _spec_post_init(self):
    where = f"channel {self.name!r}: "
    try:
        if not isinstance(self.name, str):
            raise ParameterError(f"name must be a str, got {self.name!r}")
        check_int("input", self.input, 0)
        check_int("key_input", self.key_input, -1)
        check_choice("key", self.key, KEY_KINDS)
        for name in SPEC_PARAMS:
            object.__setattr__(self, name, PARAMS[name].check(getattr(self, name)))
        if self.link is not None and not isinstance(self.link, str):
            raise ParameterError(f"link must be a str or None, got {self.link!r}")
        object.__setattr__(self, "notes", check_notes(self.notes))
        if self.key in ("input", "trigger") and self.key_input < 0:
            raise ParameterError(f"key '{self.key}' needs key_input >= 0, got {self.key_input!r}")
        if self.key == "midi" and not self.notes:
            raise ParameterError(f"key 'midi' needs notes in [0, 127], got {list(self.notes)!r}")
    except ParameterError as e:
        raise ParameterError(where + str(e)) from None


_PYTYPE = {"float": float, "int": int, "bool": bool, "choice": str}


def _spec_doc() -> str:
    lines = ["One output channel of the chain, in user units.", "",
             "Its processing fields are the chain parameters of :data:`debleed.dsp.params.PARAMS`",
             "(same names, units, ranges and defaults); the routing fields are its own.", "",
             "Parameters", "----------",
             "name : str", "    Channel name (JACK port ``out_<name>``).",
             "input : int", "    Index of the audio input this channel processes, >= 0 (and below the chain's",
             "    ``n_inputs``).",
             "key : {\"self\", \"input\", \"trigger\", \"midi\"}", "    Key kind; default \"self\".",
             "key_input : int", "    Input index of an ``input`` or ``trigger`` key, >= 0; -1 (default) otherwise.",
             "notes : tuple of int", "    MIDI notes of a ``midi`` key, each in [0, 127].",
             "link : str or None", "    Channels with the same link name share one gain (max of their key levels)."]
    for name in SPEC_PARAMS:
        p = PARAMS[name]
        unit = f", {p.unit}" if p.unit else ""
        rng = f", {p.range_text()}" if p.range_text() else ""
        lines += [f"{name} : {p.kind}", f"    {p.doc}{unit}{rng}; default {p.default!r}."]
    lines += ["", "Raises", "------", "ParameterError",
              "    If a value is out of range or of the wrong type; the message names the channel, the",
              "    field, the value and what is allowed, e.g. ``channel 'snare': midi_channel must be an",
              "    integer in [0, 16], got 1.7``."]
    return "\n".join(lines)


#: One output channel of the chain, in user units (fields generated from the parameter table).
ChannelSpec = make_dataclass(
    "ChannelSpec",
    [("name", str), ("input", int),
     ("key", str, field(default="self", kw_only=True)),
     ("key_input", int, field(default=-1, kw_only=True)),
     ("notes", tuple, field(default_factory=tuple, kw_only=True))]
    + [(n, _PYTYPE[PARAMS[n].kind], field(default=PARAMS[n].default, kw_only=True)) for n in SPEC_PARAMS]
    + [("link", "str | None", field(default=None, kw_only=True))],
    frozen=True, namespace={"__post_init__": _spec_post_init, "__doc__": _spec_doc(), "__module__": __name__})


@njit(cache=True, inline="always")
def _ramp(v, target, step):
    """Move ``v`` toward ``target`` by at most ``step`` (a linear ramp)."""
    if v < target:
        return min(v + step, target)
    if v > target:
        return max(v - step, target)
    return v


@njit(cache=True, error_model="numpy")
def run_block(n, inputs, outputs, events, n_events, itabs, ptabs, notes, ctl, state, delay, meters, scratch):
    """Run one block of the chain; swap to new parameter tables first if a change is pending.

    Parameters
    ----------
    n : int
        Frames in this block, 0 <= n <= scratch.shape[1].
    inputs : float32 (n_inputs, max_block)
    outputs : float32 (n_channels, max_block); rows ``[:, :n]`` are written. Must not share
        memory with ``inputs`` (channels read their inputs after earlier channels wrote).
    events : int32 (max_events, 4) MIDI events ``(frame, status, data1, data2)`` of this block,
        sorted by frame, frames in [0, n). A note-on is used only if its note (data1) is in
        0..127 and its velocity (data2) in 1..127; other events are ignored.
    n_events : int
        Number of valid rows of ``events``, ``0 <= n_events <= events.shape[0]`` (not checked
        here: the caller guarantees it, as :meth:`Chain.process` does).
    itabs, ptabs, notes, ctl, state, delay, meters, scratch :
        The chain's arrays, in this order (:attr:`ChainArrays.FIELDS`; ``Chain.arrays.args()``):
        int64 (2, n_channels, NI) and float64 (2, n_channels, NP) parameter tables and uint8
        (2, n_channels, 128) MIDI note masks, two banks each; int64 (NK,) swap control (``K_*``);
        float64 (n_channels, NS) state; float32 (n_channels, max_lookahead + 1) lookahead rings;
        float64 (n_channels, NM) meters (``M_*``); float64 (3 * n_channels, max_block) scratch.

    Notes
    -----
    Real-time safe: allocates nothing, takes no lock, touches no Python object.

    Table swap (double buffer, single producer): the control thread writes a whole new bank
    into the bank not in use, then raises ``ctl[K_REQ]``; the bank of request ``s`` is
    ``s & 1``. At the start of a block, a raised request makes this function read that bank
    from now on and record the frame count (``K_DONE_FRAME``) and the engine's clock
    (``K_DONE_CLOCK``) before acknowledging it in ``K_DONE``. No set of coefficients is ever
    read half-written, and no lock is taken. The protocol relies on stores becoming visible in
    program order, as x86-64 guarantees; a weakly ordered CPU (ARM) would need release/acquire
    fences around ``K_REQ`` and ``K_DONE``.
    """
    req = ctl[K_REQ]
    if req != ctl[K_DONE]:
        ctl[K_ACTIVE] = req & 1
        ctl[K_DONE_FRAME] = ctl[K_FRAMES]
        ctl[K_DONE_CLOCK] = ctl[K_CLOCK]
        ctl[K_DONE] = req
    b = ctl[K_ACTIVE]
    _run(n, inputs, outputs, itabs[b], ptabs[b], notes[b], state, delay, events, n_events, meters, scratch)
    ctl[K_FRAMES] += n


@njit(cache=True, error_model="numpy")
def _run(n, inputs, outputs, itab, ptab, notes, state, delay, events, n_events, meters, scratch):
    """One block over one bank of tables (see :func:`run_block`)."""
    n_ch = itab.shape[0]
    # pass 1: key level in dB per channel (rows 0..n_ch-1), velocity (rows 2n_ch..)
    for c in range(n_ch):
        kind = itab[c, I_KEYKIND]
        src = itab[c, I_INPUT] if kind == KEY_SELF else itab[c, I_KEYIDX]
        rms = itab[c, I_RMS] != 0
        a_rms = ptab[c, P_RMS]
        ms = state[c, S_MS]
        hz1, hz2, lz1, lz2 = state[c, S_HZ1], state[c, S_HZ2], state[c, S_LZ1], state[c, S_LZ2]
        mask_left = int(state[c, S_MASK])
        mask_n = itab[c, I_RETRIG]
        thr_trig = ptab[c, P_TRIGTHR]
        vel = state[c, S_VEL]
        midich = itab[c, I_MIDICH]
        e = 0
        key_max = FLOOR_DB
        for i in range(n):
            if kind == KEY_MIDI:
                level = 0.0
                while e < n_events and events[e, EV_FRAME] <= i:
                    if (events[e, EV_FRAME] == i
                            and _is_note_on(events[e, EV_STATUS], events[e, EV_DATA1], events[e, EV_DATA2], midich)
                            and notes[c, events[e, EV_DATA1]] != 0):
                        level = 1.0
                        vel = events[e, EV_DATA2] / 127.0
                    e += 1
            else:
                k = inputs[src, i]
                if not math.isfinite(k):
                    k = 0.0
                if kind == KEY_TRIGGER:
                    level, mask_left = _trigger_step(abs(k), thr_trig, mask_left, mask_n)
                else:
                    k, hz1, hz2 = _biquad_step(k, ptab[c, P_HP], ptab[c, P_HP + 1], ptab[c, P_HP + 2],
                                               ptab[c, P_HP + 3], ptab[c, P_HP + 4], hz1, hz2)
                    k, lz1, lz2 = _biquad_step(k, ptab[c, P_LP], ptab[c, P_LP + 1], ptab[c, P_LP + 2],
                                               ptab[c, P_LP + 3], ptab[c, P_LP + 4], lz1, lz2)
                    level, ms = _detect(k, rms, ms, a_rms)
            if level < _FLOOR_LIN:
                ldb = FLOOR_DB
            else:
                ldb = 20.0 * math.log10(level)
            if ldb > key_max:
                key_max = ldb
            scratch[c, i] = ldb
            scratch[2 * n_ch + c, i] = vel
        state[c, S_MS] = ms
        state[c, S_HZ1], state[c, S_HZ2], state[c, S_LZ1], state[c, S_LZ2] = hz1, hz2, lz1, lz2
        state[c, S_MASK] = mask_left
        state[c, S_VEL] = vel
        if key_max > meters[c, M_KEY]:
            meters[c, M_KEY] = key_max
    # pass 2: linked channels share the max key level of their group (rows n_ch + group)
    for c in range(n_ch):
        g = itab[c, I_LINK]
        if g >= 0:
            for i in range(n):
                scratch[n_ch + g, i] = FLOOR_DB
    for c in range(n_ch):
        g = itab[c, I_LINK]
        if g >= 0:
            for i in range(n):
                if scratch[c, i] > scratch[n_ch + g, i]:
                    scratch[n_ch + g, i] = scratch[c, i]
    # pass 3: gain and audio
    for c in range(n_ch):
        mode = itab[c, I_MODE]
        gmode = int(state[c, S_GMODE])
        if mode != MODE_BYPASS and mode != gmode:
            # gate <-> duck: the gain state changes meaning (gate: y is the gain in dB; duck: y is
            # minus the gain); negate it so the gain goes on from where it was, then the new
            # mode's attack and release move it
            # the gain crossfades over RAMP_MS from where it was, so even attack 0 cannot click
            state[c, S_XG] = math.exp(meters[c, M_GAIN] * _LN10_20)
            state[c, S_XF] = 0.0
            state[c, S_Y] = -state[c, S_Y]
            state[c, S_HELD] = -state[c, S_HELD]
            gmode = mode
            state[c, S_GMODE] = mode
        duck = gmode == MODE_DUCK
        byp_t = 1.0 if (mode == MODE_BYPASS or itab[c, I_BYPASS] != 0) else 0.0
        inp = itab[c, I_INPUT]
        row = c if itab[c, I_LINK] < 0 else n_ch + itab[c, I_LINK]
        veldepth = itab[c, I_VELDEPTH] != 0
        la = itab[c, I_LOOKAHEAD]
        hold_n = itab[c, I_HOLD]
        thr, ratio, knee = ptab[c, P_THR], ptab[c, P_RATIO], ptab[c, P_KNEE]
        rng_t, hyst = ptab[c, P_RANGE], ptab[c, P_HYST]
        a_att, a_rel, dw_t = ptab[c, P_ATT], ptab[c, P_REL], ptab[c, P_DRYWET]
        step_lin, step_db = ptab[c, P_RAMP_LIN], ptab[c, P_RAMP_DB]
        rng, dw, byp = state[c, S_RNG], state[c, S_DW], state[c, S_BYP]
        ramping = rng != rng_t or dw != dw_t or byp != byp_t
        xf, xg = state[c, S_XF], state[c, S_XG]
        is_open = state[c, S_OPEN] != 0.0
        held, hold_left, y = state[c, S_HELD], int(state[c, S_HOLDLEFT]), state[c, S_Y]
        w = int(state[c, S_W])
        ring = delay[c]
        gmin = 0.0
        gdb = meters[c, M_GAIN]
        bad = 0
        for i in range(n):
            x = inputs[inp, i]
            if not math.isfinite(x):
                x = 0.0
                bad += 1
            if ramping:
                rng = _ramp(rng, rng_t, step_db)
                dw = _ramp(dw, dw_t, step_lin)
                byp = _ramp(byp, byp_t, step_lin)
                ramping = rng != rng_t or dw != dw_t or byp != byp_t
            if byp >= 1.0 and byp_t >= 1.0:
                # fully bypassed: the gain stage rests where it was
                glin = 1.0
                gdb = 0.0
            else:
                lv = scratch[row, i]
                is_open, t = _hysteresis(lv, is_open, thr, hyst)
                g = _gain_db(lv, t, ratio, knee, rng, duck)
                if veldepth:
                    v = scratch[2 * n_ch + c, i]
                    g = g * v if duck else rng + (g - rng) * v
                act = -g if duck else g
                held, hold_left, y = _ahr_step(act, held, hold_left, y, a_att, a_rel, hold_n)
                if abs(y - held) < SNAP:
                    y = held
                gdb = -y if duck else y
                glin = math.exp(gdb * _LN10_20)
                if xf < 1.0:
                    xf = min(xf + step_lin, 1.0)
                    glin = xg + (glin - xg) * xf
                    gdb = 20.0 * math.log10(max(glin, _FLOOR_LIN))
                if byp > 0.0:
                    gdb = gdb * (1.0 - byp)
            xd, w = _delay_step(x, ring, w, la)
            wet = (1.0 - dw) + dw * glin
            outputs[c, i] = xd * (byp + (1.0 - byp) * wet)
            if gdb < gmin:
                gmin = gdb
        state[c, S_OPEN] = 1.0 if is_open else 0.0
        state[c, S_HELD] = held
        state[c, S_HOLDLEFT] = hold_left
        state[c, S_Y] = y
        state[c, S_W] = w
        state[c, S_RNG], state[c, S_DW], state[c, S_BYP] = rng, dw, byp
        state[c, S_XF], state[c, S_XG] = xf, xg
        if gmin < meters[c, M_GR]:
            meters[c, M_GR] = gmin
        if gmin < meters[c, M_GR_RUN]:
            meters[c, M_GR_RUN] = gmin
        meters[c, M_BAD] += bad
        meters[c, M_GAIN] = gdb


@dataclass(frozen=True)
class KeyRoute:
    """Where a channel's key comes from: ``kind`` (``self``, ``input``, ``trigger``, ``midi``),
    ``key_input`` (input index of an input or trigger key, else -1) and ``notes`` (MIDI notes).
    The value of a live ``key`` change (:meth:`Chain.set_params`)."""

    kind: str
    key_input: int = -1
    notes: tuple = ()


class ChainArrays:
    """The arrays :func:`run_block` reads and writes after ``events, n_events``, in order.

    :attr:`FIELDS` is the one definition of that argument list: the engines call
    ``run_block(n, inputs, outputs, events, n_events, *arrays.args())`` and the JACK cfunc's
    header layout (:mod:`debleed.rt.jack_cfunc`) is generated from it.
    """

    #: ``(name, dtype, ndim)`` in ``run_block``'s argument order.
    FIELDS = (("itabs", np.int64, 3), ("ptabs", np.float64, 3), ("notes", np.uint8, 3), ("ctl", np.int64, 1),
              ("state", np.float64, 2), ("delay", np.float32, 2), ("meters", np.float64, 2),
              ("scratch", np.float64, 2))

    def __init__(self, **arrays):
        for name, dtype, ndim in self.FIELDS:
            a = arrays.pop(name)
            if a.dtype != dtype or a.ndim != ndim or not a.flags.c_contiguous:
                raise DebleedError(f"ChainArrays.{name} must be C-contiguous {np.dtype(dtype)} with {ndim} "
                                   f"dimensions, got {a.dtype} {a.shape}")
            setattr(self, name, a)
        if arrays:
            raise DebleedError(f"ChainArrays: unknown arrays {sorted(arrays)}")
        self._args = tuple(getattr(self, name) for name, _, _ in self.FIELDS)

    def args(self) -> tuple:
        """The arrays in :func:`run_block`'s order (the same tuple every call)."""
        return self._args


class Chain(Processor):
    """All channels of a gig, compiled to flat arrays and run block by block.

    Parameters
    ----------
    channels : sequence of ChannelSpec
        One per output, in output order.
    n_inputs : int
        Number of audio inputs (rows of the ``inputs`` array), >= 1.

    Raises
    ------
    ParameterError
        If ``n_inputs`` is not an integer >= 1, there are no channels, or a channel refers to an
        input index outside ``[0, n_inputs)``.

    Notes
    -----
    Lifecycle: ``prepare(ProcessSpec(sample_rate, max_block, n_channels))`` (``n_channels``: the
    number of channels) allocates everything; ``process`` allocates
    nothing and accepts 0..max_block frames; ``reset()`` restores the state of a fresh chain.
    ``latency_samples`` is the largest lookahead; ``channel_latency_samples`` gives each
    output's own.

    Live changes: :meth:`set_params` writes new tables into the bank not in use and asks the
    next :func:`run_block` call to swap to it (see there); :meth:`applied` says when it has.

    Examples
    --------
    >>> import numpy as np
    >>> ch = Chain([ChannelSpec(name="snare", input=0, mode="gate", key="self")], n_inputs=1)
    >>> ch.prepare(ProcessSpec(48000, 128, n_channels=1))
    >>> x = np.zeros((1, 128), np.float32); y = np.zeros((1, 128), np.float32)
    >>> ch.process(x, y)
    >>> serial = ch.set_params([("snare", "threshold_db", -24.0)])
    >>> ch.process(x, y); ch.applied(serial)
    True
    """

    def __init__(self, channels, n_inputs):
        self.channels = tuple(channels)
        self.n_inputs = check_int("n_inputs", n_inputs, 1)
        if not self.channels:
            raise ParameterError("a chain needs at least one channel, got none")
        for ch in self.channels:
            for label, idx in (("input", ch.input), ("key_input", ch.key_input)):
                if (label == "input" or ch.key in ("input", "trigger")) and not 0 <= idx < self.n_inputs:
                    raise ParameterError(
                        f"channel {ch.name!r}: {label} index {idx} is outside [0, {self.n_inputs})")

    @property
    def n_channels(self) -> int:
        """Number of output channels."""
        return len(self.channels)

    @property
    def latency_samples(self) -> int:
        """Largest per-channel latency (lookahead), samples; valid after prepare."""
        return max(self.channel_latency_samples) if self.sample_rate else 0

    @property
    def channel_latency_samples(self) -> list[int]:
        """Latency of each output, samples (its lookahead rounded to samples)."""
        sr = self.sample_rate or 48000.0
        return [ms_to_samples(ch.lookahead_ms, sr) for ch in self.channels]

    # the bank run_block reads now (for readers on the control plane)
    @property
    def itab(self) -> np.ndarray:
        return self.itabs[self.ctl[K_ACTIVE]]

    @property
    def ptab(self) -> np.ndarray:
        return self.ptabs[self.ctl[K_ACTIVE]]

    def channel_index(self, channel) -> int:
        """Index of ``channel`` (a name or an index).

        Raises
        ------
        ParameterError
            If there is no such channel; the message lists the channels.
        """
        if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
            if 0 <= channel < self.n_channels:
                return int(channel)
        else:
            for c, ch in enumerate(self.channels):
                if ch.name == channel:
                    return c
        raise ParameterError(f"unknown channel {channel!r} (channels: {', '.join(ch.name for ch in self.channels)})")

    def _compile_row(self, it, pt, nt, ch, links: dict) -> None:
        """Write one channel's table rows ``it``, ``pt``, ``nt`` from ``ch`` (user units to
        coefficients)."""
        sr = self.sample_rate
        it[I_MODE] = MODES.index(ch.mode)
        it[I_INPUT] = ch.input
        it[I_KEYKIND] = KEY_KINDS.index(ch.key)
        it[I_KEYIDX] = ch.key_input
        it[I_RMS] = int(ch.detector == "rms" and ch.key in ("self", "input"))
        it[I_LINK] = links[ch.link] if ch.link else -1
        it[I_MIDICH] = ch.midi_channel
        it[I_VELDEPTH] = int(ch.velocity_depth)
        it[I_LOOKAHEAD] = ms_to_samples(ch.lookahead_ms, sr)
        it[I_HOLD] = ms_to_samples(ch.hold_ms, sr)
        it[I_RETRIG] = ms_to_samples(ch.retrigger_ms, sr)
        it[I_BYPASS] = int(ch.bypass)
        pt[P_THR], pt[P_RATIO], pt[P_KNEE] = ch.threshold_db, ch.ratio, ch.knee_db
        pt[P_RANGE], pt[P_HYST] = ch.range_db, ch.hysteresis_db
        pt[P_ATT], pt[P_REL] = ms_to_coef(ch.attack_ms, sr), ms_to_coef(ch.release_ms, sr)
        pt[P_DRYWET] = ch.dry_wet
        pt[P_RMS] = ms_to_coef(ch.rms_ms, sr)
        pt[P_TRIGTHR] = 10.0 ** (ch.trigger_threshold_db / 20.0)
        ramp_n = max(RAMP_MS * 1e-3 * sr, 1.0)
        pt[P_RAMP_LIN], pt[P_RAMP_DB] = 1.0 / ramp_n, _RAMP_DB_SPAN / ramp_n
        for name, kind, col in (("key_hpf_hz", "highpass", P_HP), ("key_lpf_hz", "lowpass", P_LP)):
            hz = getattr(ch, name)
            try:
                pt[col:col + 5] = biquad_coefs(kind, hz, sr) if hz else IDENTITY
            except ParameterError as e:
                raise ParameterError(f"channel {ch.name!r}: {name}: {e} (0 turns the filter off)") from None
        nt[:] = 0
        for note in ch.notes:
            nt[note] = 1

    def _links(self, channels) -> dict:
        links = {}
        for ch in channels:
            if ch.link:
                links.setdefault(ch.link, len(links))
        return links

    def _allocate(self, spec: ProcessSpec) -> None:
        """Compile the tables for ``spec.sample_rate`` and allocate for ``spec.max_block`` frames.

        ``spec.n_channels`` must be the chain's number of outputs (its channels); a key filter
        cutoff at or above Nyquist is a :class:`ParameterError` naming the channel.
        """
        check_channels(self, spec, self.n_channels, "its channels: " + ", ".join(ch.name for ch in self.channels))
        n_ch = self.n_channels
        self.itabs = np.zeros((2, n_ch, NI), np.int64)
        self.ptabs = np.zeros((2, n_ch, NP), np.float64)
        self.notes = np.zeros((2, n_ch, 128), np.uint8)
        self.ctl = np.zeros(NK, np.int64)
        links = self._links(self.channels)
        for c, ch in enumerate(self.channels):
            self._compile_row(self.itabs[0, c], self.ptabs[0, c], self.notes[0, c], ch, links)
        self.itabs[1], self.ptabs[1], self.notes[1] = self.itabs[0], self.ptabs[0], self.notes[0]
        self.state = np.zeros((n_ch, NS), np.float64)
        self.delay = np.zeros((n_ch, int(self.itabs[0, :, I_LOOKAHEAD].max()) + 1), np.float32)
        self.meters = np.zeros((n_ch, NM), np.float64)
        self.scratch = np.zeros((3 * n_ch, self.max_block), np.float64)
        self.events = np.zeros((MAX_MIDI_EVENTS, 4), np.int32)
        self.arrays = ChainArrays(itabs=self.itabs, ptabs=self.ptabs, notes=self.notes, ctl=self.ctl,
                                  state=self.state, delay=self.delay, meters=self.meters, scratch=self.scratch)

    def state_arrays(self) -> tuple:
        """The running state: gain and detector state per channel, and the lookahead delay lines."""
        return (self.state, self.delay)

    def _clear(self) -> None:
        """The state of a freshly prepared chain (gates closed, nothing ducked), with the
        parameters in use now; the frame count restarts at 0."""
        it, pt = self.itab, self.ptab
        self.state[:] = 0.0
        mode = it[:, I_MODE]
        gate = mode != MODE_DUCK  # a bypassed channel's gain stage rests as a closed gate
        self.state[gate, S_Y] = pt[gate, P_RANGE]
        self.state[gate, S_HELD] = pt[gate, P_RANGE]
        self.state[:, S_GMODE] = np.where(gate, MODE_GATE, MODE_DUCK)
        self.state[:, S_VEL] = 1.0
        self.state[:, S_RNG] = pt[:, P_RANGE]
        self.state[:, S_DW] = pt[:, P_DRYWET]
        self.state[:, S_BYP] = ((mode == MODE_BYPASS) | (it[:, I_BYPASS] != 0)).astype(np.float64)
        self.state[:, S_XF] = 1.0
        self.delay[:] = 0.0
        self.reset_meters()
        self.meters[:, M_GR_RUN] = 0.0
        self.meters[:, M_BAD] = 0.0
        self.meters[:, M_GAIN] = np.where(mode == MODE_GATE, pt[:, P_RANGE], 0.0)
        self.ctl[K_FRAMES] = 0

    def reset_meters(self) -> None:
        """Start a new metering interval (gain-reduction minimum and key maximum)."""
        self.meters[:, M_GR] = 0.0
        self.meters[:, M_KEY] = FLOOR_DB

    # --- live changes (control plane) -----------------------------------------------------
    @property
    def pending(self) -> bool:
        """True while a change waits for the next block."""
        return bool(self.ctl[K_REQ] != self.ctl[K_DONE])

    def check_param(self, channel, name: str, value):
        """Validate one live change; return ``(channel index, value)`` converted.

        Raises
        ------
        ParameterError
            On an unknown channel or parameter, a parameter that cannot change live (the
            message says why) or one the chain does not own, or a value that is not allowed.
        """
        from debleed.dsp.params import get

        c = self.channel_index(channel)
        p = get(name)
        if not p.live:
            raise ParameterError(f"{name} cannot change while running: {p.restart_reason}")
        if p.target != "chain":
            raise ParameterError(f"{name} is a {p.target} setting, not one of the chain's")
        if p.kind == "key":
            if not isinstance(value, KeyRoute):
                raise ParameterError(f"key must be given to the chain as a KeyRoute, got {value!r}")
            if value.kind in ("input", "trigger") and not 0 <= value.key_input < self.n_inputs:
                raise ParameterError(f"channel {self.channels[c].name!r}: key_input index {value.key_input} "
                                     f"is outside [0, {self.n_inputs})")
            replace(self.channels[c], key=value.kind, key_input=value.key_input, notes=value.notes)  # validates
            return c, value
        try:
            value = p.check(value)
        except ParameterError as e:
            raise ParameterError(f"channel {self.channels[c].name!r}: {e}") from None
        return c, value

    def set_params(self, changes) -> int:
        """Change parameters of the prepared chain; the next block uses them all at once.

        Parameters
        ----------
        changes : iterable of (channel, name, value)
            ``channel`` is a name or an index; ``name`` a live chain parameter of
            :data:`~debleed.dsp.params.PARAMS`; ``value`` in its unit and range (for ``key``,
            a :class:`KeyRoute`).

        Returns
        -------
        int
            The request's serial number (see :meth:`applied`).

        Raises
        ------
        ParameterError
            On a bad change (see :meth:`check_param`, and key filters at or above Nyquist);
            nothing is changed then.
        DebleedError
            Before :meth:`prepare`, or while an earlier change is still pending (the audio
            thread has not run a block since): wait for :meth:`applied` first.

        Notes
        -----
        Control plane only (allocates). Writes the bank the audio thread is not reading, then
        publishes it by raising ``ctl[K_REQ]`` (:func:`run_block`).
        """
        self.check_prepared("set_params")
        if self.pending:
            raise DebleedError("an earlier parameter change is still pending (no block has run since)")
        specs = list(self.channels)
        touched = set()
        for channel, name, value in changes:
            c, value = self.check_param(channel, name, value)
            if isinstance(value, KeyRoute):
                specs[c] = replace(specs[c], key=value.kind, key_input=value.key_input, notes=value.notes)
            else:
                specs[c] = replace(specs[c], **{name: value})
            touched.add(c)
        active = int(self.ctl[K_REQ] & 1)
        bank = 1 - active
        it, pt, nt = self.itabs[active].copy(), self.ptabs[active].copy(), self.notes[active].copy()
        links = self._links(specs)
        for c in sorted(touched):
            self._compile_row(it[c], pt[c], nt[c], specs[c], links)  # may raise: nothing written yet
        self.itabs[bank], self.ptabs[bank], self.notes[bank] = it, pt, nt
        self.channels = tuple(specs)
        self.ctl[K_REQ] += 1
        return int(self.ctl[K_REQ])

    def applied(self, serial: int) -> bool:
        """True once the audio side has swapped to request ``serial`` (or a later one)."""
        return bool(self.ctl[K_DONE] >= serial)

    def process(self, inputs, outputs, events=None, n_events=0) -> None:
        """Process one block from ``inputs`` into ``outputs``.

        Parameters
        ----------
        inputs : ndarray, float32, shape (n_inputs, n_frames)
            Audio inputs (mics, triggers), ``0 <= n_frames <= max_block``.
        outputs : ndarray, float32, shape (n_channels, n_frames)
            Written by the chain. Pass the array: ``process(x, out)``, not ``out = ...``. It
            must not share memory with ``inputs``: a channel reads its input and key after
            earlier channels wrote their outputs, so ``process(x, x)`` is refused.
        events : ndarray, int32, shape (k, 4), optional
            MIDI events ``(frame, status, data1, data2)``; the first ``n_events`` rows are read.
            Their frames must be non-decreasing (sorted) and in [0, n_frames). A note-on with a
            note or velocity byte outside 0..127 is ignored.
        n_events : int
            Number of valid rows in ``events``, ``0 <= n_events <= k``; 0 without ``events``.

        Raises
        ------
        ParameterError
            On a wrong dtype, shape or block length, ``outputs`` sharing memory with ``inputs``,
            ``n_events`` out of range, or an event frame out of range or out of order (the
            message names it).
        DebleedError
            If called before :meth:`prepare`.
        """
        self.check_prepared("process")
        for label, a, rows in (("inputs", inputs, self.n_inputs), ("outputs", outputs, self.n_channels)):
            if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2 or a.shape[0] != rows:
                raise ParameterError(
                    f"{label} must be float32 of shape ({rows}, n_frames), got "
                    f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', None)}")
        n = inputs.shape[1]
        if outputs.shape[1] != n or n > self.max_block:
            raise ParameterError(
                f"inputs and outputs must have the same n_frames <= max_block={self.max_block}, "
                f"got {n} and {outputs.shape[1]}")
        if np.shares_memory(inputs, outputs):
            raise ParameterError("outputs shares memory with inputs: the chain cannot run in place, "
                                 "pass a separate outputs array")
        if events is None:
            if n_events != 0:
                raise ParameterError(f"n_events must be 0 when no events are given, got {n_events!r}")
            events, n_events = self.events, 0
        else:
            n_events = check_events(events, n_events, n)
        run_block(n, inputs, outputs, events, n_events, *self.arrays.args())

    def render(self, inputs, events=None, *, block: int = 128, before_block=None) -> np.ndarray:
        """Run the prepared chain over whole signals, ``block`` frames per call, as an engine does.

        The one offline loop: ``debleed render``, the soundcheck's fits, ``debleed eval``'s
        gates and the benchmarks call it, so an offline result at block size N is what a live
        run at period N gives.

        Parameters
        ----------
        inputs : ndarray, float32, shape (n_inputs, n_frames)
        events : ndarray, int, shape (k, 4), optional
            MIDI rows ``(frame, status, data1, data2)``, frames in [0, n_frames), sorted by frame.
            More than :data:`~debleed.dsp.keys.MAX_MIDI_EVENTS` in one block are dropped, as live
            (counted in :attr:`last_midi_dropped`).
        block : int
            Frames per call, 1 to ``max_block``; default 128.
        before_block : callable, optional
            ``before_block(start, x, events, n_events)`` is called before each block with its
            first frame, a float32 ``(n_inputs, m)`` copy of its inputs (a view of a scratch
            array), which it may change in place (a denoiser stage filling virtual rows; parameter
            changes at that frame), and the block's MIDI events as :func:`run_block` gets them.

        Returns
        -------
        ndarray, float32, shape (n_channels, n_frames)

        Raises
        ------
        ParameterError
            ``block`` outside 1 to ``max_block``, inputs of the wrong shape, events out of range
            or order.
        DebleedError
            Before :meth:`prepare`.
        """
        self.check_prepared("render")
        if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 1 <= block <= self.max_block:
            raise ParameterError(f"block must be an integer from 1 to max_block={self.max_block} frames, got {block!r}")
        x = np.asarray(inputs, np.float32)
        if x.ndim != 2 or x.shape[0] != self.n_inputs:
            raise ParameterError(f"inputs must be float32 of shape ({self.n_inputs}, n_frames), got {x.shape}")
        n = x.shape[1]
        ev = np.zeros((0, 4), np.int64) if events is None else np.asarray(events, np.int64).reshape(-1, 4)
        if ev.shape[0] and (ev[0, 0] < 0 or ev[-1, 0] >= n or np.any(np.diff(ev[:, 0]) < 0)):
            raise ParameterError(f"event frames must be sorted and in [0, {n}), got {ev[0, 0]}..{ev[-1, 0]}")
        starts = np.searchsorted(ev[:, 0], np.arange(0, n + block, block))
        y = np.zeros((self.n_channels, n), np.float32)
        xb = np.zeros((self.n_inputs, block), np.float32)
        yb = np.zeros((self.n_channels, block), np.float32)
        buf = self.events
        dropped = 0
        for b, s in enumerate(range(0, n, block)):
            m = min(block, n - s)
            xb[:, :m] = x[:, s:s + m]
            xv, yv = xb[:, :m], yb[:, :m]
            e0, e1 = starts[b], starts[b + 1]
            k = min(e1 - e0, MAX_MIDI_EVENTS)
            dropped += (e1 - e0) - k
            buf[:k] = ev[e0:e0 + k]
            buf[:k, 0] -= s
            if before_block is not None:
                before_block(s, xv, buf, k)
            run_block(m, xv, yv, buf, k, *self.arrays.args())
            y[:, s:s + m] = yv
        self.last_midi_dropped = int(dropped)
        return y
