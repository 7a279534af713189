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
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from debleed.dsp._common import check_choice, check_events, check_int, check_notes, check_prepare, check_range
from debleed.dsp.delay import _delay_step
from debleed.dsp.envelope import SNAP, _ahr_step, _detect
from debleed.dsp.gain import _gain_db, _hysteresis
from debleed.dsp.keys import (EV_DATA1, EV_DATA2, EV_FRAME, EV_STATUS, IDENTITY, MAX_MIDI_EVENTS,
                              _biquad_step, _is_note_on, _trigger_step, biquad_coefs)
from debleed.dsp.units import FLOOR_DB, ms_to_coef, ms_to_samples
from debleed.errors import DebleedError, ParameterError

MODES = ("bypass", "gate", "duck")
KEY_KINDS = ("self", "input", "trigger", "midi")
DETECTORS = ("peak", "rms")
MODE_BYPASS, MODE_GATE, MODE_DUCK = 0, 1, 2
KEY_SELF, KEY_INPUT, KEY_TRIGGER, KEY_MIDI = 0, 1, 2, 3

# int table columns
(I_MODE, I_INPUT, I_KEYKIND, I_KEYIDX, I_RMS, I_LINK, I_MIDICH, I_VELDEPTH, I_LOOKAHEAD,
 I_HOLD, I_RETRIG) = range(11)
NI = 11
# float table columns
(P_THR, P_RATIO, P_KNEE, P_RANGE, P_HYST, P_ATT, P_REL, P_DRYWET, P_RMS, P_TRIGTHR) = range(10)
P_HP, P_LP = 10, 15  # 5 biquad coefficients each
NP = 20
# state columns
(S_MS, S_OPEN, S_HELD, S_HOLDLEFT, S_Y, S_HZ1, S_HZ2, S_LZ1, S_LZ2, S_MASK, S_VEL, S_W) = range(12)
NS = 12
# meter columns: min gain dB since the reader last reset it, max key level dB likewise,
# count of non-finite input samples, gain dB at the end of the last block, min gain dB since
# the last Chain.reset (never reset by the reader, so a block written between a reader's copy
# and its reset is still in it)
M_GR, M_KEY, M_BAD, M_GAIN, M_GR_RUN = range(5)
NM = 5

_LN10_20 = math.log(10.0) / 20.0
_FLOOR_LIN = 10.0 ** (FLOOR_DB / 20.0)

#: Lookahead limit, ms.
MAX_LOOKAHEAD_MS = 100.0


@dataclass(frozen=True)
class ChannelSpec:
    """One output channel of the chain, in user units.

    Parameters
    ----------
    name : str
        Channel name (JACK port ``out_<name>``).
    input : int
        Index of the audio input this channel processes, >= 0 (and below the chain's
        ``n_inputs``).
    mode : {"gate", "duck", "bypass"}
        Default "gate".
    key : {"self", "input", "trigger", "midi"}
        Key kind; default "self".
    key_input : int
        Input index of an ``input`` or ``trigger`` key, >= 0; -1 (default) otherwise.
    notes : tuple of int
        MIDI notes of a ``midi`` key, each an integer in [0, 127]; kept as a tuple of int.
    threshold_db, ratio, knee_db, range_db, hysteresis_db :
        See :class:`debleed.dsp.gain.GainComputer` (ranges: [-120, 0] dBFS, [1, inf], [0, 48] dB,
        [-120, 0] dB, [-48, 0] dB; defaults -30, 10, 6, -60, 0).
    attack_ms, hold_ms, release_ms : float
        Gain timing, ms: [0, 1000], [0, 5000], [0, 10000]; defaults 1, 20, 100.
    lookahead_ms : float
        Audio delay, ms, [0, 100]; default 0. Reported as latency.
    dry_wet : float
        Mix of the processed signal, [0, 1]; default 1 (fully processed).
    detector : {"peak", "rms"}
        Key detector for mic keys; default "peak". Trigger and MIDI keys always use peak.
    rms_ms : float
        RMS window time constant, ms, (0, 1000]; default 10.
    key_hpf_hz, key_lpf_hz : float
        Key filter cutoffs, Hz, 0 = off; defaults 0.
    trigger_threshold_db : float
        Piezo hit threshold, dBFS, [-120, 0]; default -20.
    retrigger_ms : float
        Piezo retrigger mask, ms, [0, 1000]; default 30.
    midi_channel : int
        0 = any, 1-16; default 0.
    velocity_depth : bool
        Scale the gate's opening or the ducker's depth by note velocity / 127; default False.
    link : str or None
        Channels with the same link name share one gain (stereo link: max of their key levels).

    Raises
    ------
    ParameterError
        If a value is out of range or of the wrong type (integer fields take ``int`` or numpy
        integers, not ``bool`` or ``float``); the message names the channel, the field, the value
        and what is allowed, e.g. ``channel 'snare': midi_channel must be an integer in [0, 16],
        got 1.7``.
    """

    name: str
    input: int
    mode: str = "gate"
    key: str = "self"
    key_input: int = -1
    notes: tuple = field(default_factory=tuple)
    threshold_db: float = -30.0
    ratio: float = 10.0
    knee_db: float = 6.0
    range_db: float = -60.0
    hysteresis_db: float = 0.0
    attack_ms: float = 1.0
    hold_ms: float = 20.0
    release_ms: float = 100.0
    lookahead_ms: float = 0.0
    dry_wet: float = 1.0
    detector: str = "peak"
    rms_ms: float = 10.0
    key_hpf_hz: float = 0.0
    key_lpf_hz: float = 0.0
    trigger_threshold_db: float = -20.0
    retrigger_ms: float = 30.0
    midi_channel: int = 0
    velocity_depth: bool = False
    link: str | None = None

    def __post_init__(self):
        where = f"channel {self.name!r}: "
        try:
            if not isinstance(self.name, str):
                raise ParameterError(f"name must be a str, got {self.name!r}")
            check_int("input", self.input, 0)
            check_int("key_input", self.key_input, -1)
            check_choice("mode", self.mode, MODES)
            check_choice("key", self.key, KEY_KINDS)
            check_choice("detector", self.detector, DETECTORS)
            check_range("threshold_db", self.threshold_db, -120.0, 0.0)
            check_range("ratio", self.ratio, 1.0, 1e6, allow_inf=True)
            check_range("knee_db", self.knee_db, 0.0, 48.0)
            check_range("range_db", self.range_db, -120.0, 0.0)
            check_range("hysteresis_db", self.hysteresis_db, -48.0, 0.0)
            check_range("attack_ms", self.attack_ms, 0.0, 1000.0)
            check_range("hold_ms", self.hold_ms, 0.0, 5000.0)
            check_range("release_ms", self.release_ms, 0.0, 10000.0)
            check_range("lookahead_ms", self.lookahead_ms, 0.0, MAX_LOOKAHEAD_MS)
            check_range("dry_wet", self.dry_wet, 0.0, 1.0)
            check_range("rms_ms", self.rms_ms, 0.0, 1000.0, low_open=True)
            check_range("key_hpf_hz", self.key_hpf_hz, 0.0, 96000.0)
            check_range("key_lpf_hz", self.key_lpf_hz, 0.0, 96000.0)
            check_range("trigger_threshold_db", self.trigger_threshold_db, -120.0, 0.0)
            check_range("retrigger_ms", self.retrigger_ms, 0.0, 1000.0)
            check_int("midi_channel", self.midi_channel, 0, 16)
            if not isinstance(self.velocity_depth, (bool, np.bool_)):
                raise ParameterError(f"velocity_depth must be True or False, got {self.velocity_depth!r}")
            if self.link is not None and not isinstance(self.link, str):
                raise ParameterError(f"link must be a str or None, got {self.link!r}")
            object.__setattr__(self, "notes", check_notes(self.notes))
            if self.key in ("input", "trigger") and self.key_input < 0:
                raise ParameterError(f"key '{self.key}' needs key_input >= 0, got {self.key_input!r}")
            if self.key == "midi" and not self.notes:
                raise ParameterError(f"key 'midi' needs notes in [0, 127], got {list(self.notes)!r}")
        except ParameterError as e:
            raise ParameterError(where + str(e)) from None


@njit(cache=True)
def run_block(n, inputs, outputs, itab, ptab, state, delay, notes, events, n_events, meters, scratch):
    """Run one block of the chain.

    Parameters
    ----------
    n : int
        Frames in this block, 0 <= n <= scratch.shape[1].
    inputs : float32 (n_inputs, max_block)
    outputs : float32 (n_channels, max_block); rows ``[:, :n]`` are written. Must not share
        memory with ``inputs`` (channels read their inputs after earlier channels wrote).
    itab, ptab, state : the compiled tables (see :class:`Chain`).
    delay : float32 (n_channels, max_lookahead + 1) lookahead rings.
    notes : uint8 (n_channels, 128) MIDI note masks (index = note number, 0..127).
    events : int32 (max_events, 4) MIDI events ``(frame, status, data1, data2)`` of this block,
        sorted by frame, frames in [0, n). A note-on is used only if its note (data1) is in
        0..127 and its velocity (data2) in 1..127; other events are ignored.
    n_events : int
        Number of valid rows of ``events``, ``0 <= n_events <= events.shape[0]`` (not checked
        here: the caller guarantees it, as :meth:`Chain.process` does).
    meters : float64 (n_channels, NM), updated (see ``M_*``).
    scratch : float64 (3 * n_channels, max_block) work space.

    Notes
    -----
    Real-time safe: allocates nothing, takes no lock, touches no Python object.
    """
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
        duck = mode == MODE_DUCK
        inp = itab[c, I_INPUT]
        row = c if itab[c, I_LINK] < 0 else n_ch + itab[c, I_LINK]
        veldepth = itab[c, I_VELDEPTH] != 0
        la = itab[c, I_LOOKAHEAD]
        hold_n = itab[c, I_HOLD]
        thr, ratio, knee = ptab[c, P_THR], ptab[c, P_RATIO], ptab[c, P_KNEE]
        rng, hyst = ptab[c, P_RANGE], ptab[c, P_HYST]
        a_att, a_rel, dw = ptab[c, P_ATT], ptab[c, P_REL], ptab[c, P_DRYWET]
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
            if mode == MODE_BYPASS:
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
            xd, w = _delay_step(x, ring, w, la)
            outputs[c, i] = xd * ((1.0 - dw) + dw * glin)
            if gdb < gmin:
                gmin = gdb
        state[c, S_OPEN] = 1.0 if is_open else 0.0
        state[c, S_HELD] = held
        state[c, S_HOLDLEFT] = hold_left
        state[c, S_Y] = y
        state[c, S_W] = w
        if gmin < meters[c, M_GR]:
            meters[c, M_GR] = gmin
        if gmin < meters[c, M_GR_RUN]:
            meters[c, M_GR_RUN] = gmin
        meters[c, M_BAD] += bad
        meters[c, M_GAIN] = gdb


class Chain:
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
    Lifecycle: ``prepare(sample_rate, max_block)`` allocates everything; ``process`` allocates
    nothing and accepts 0..max_block frames; ``reset()`` restores the state of a fresh chain.
    ``latency_samples`` is the largest lookahead; ``channel_latency_samples`` gives each
    output's own.

    Examples
    --------
    >>> import numpy as np
    >>> ch = Chain([ChannelSpec(name="snare", input=0, mode="gate", key="self")], n_inputs=1)
    >>> ch.prepare(48000, 128)
    >>> x = np.zeros((1, 128), np.float32); y = np.zeros((1, 128), np.float32)
    >>> ch.process(x, y)
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
        self.sample_rate = None
        self.max_block = 0

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

    def prepare(self, sample_rate: float, max_block: int) -> None:
        """Compile the tables for ``sample_rate`` (Hz) and allocate for ``max_block`` frames.

        Raises
        ------
        ParameterError
            If ``sample_rate`` is not in [8000, 384000] Hz, ``max_block`` not an integer in
            [1, 1048576], or a key filter cutoff is not below Nyquist.
        """
        sr, max_block, _ = check_prepare(sample_rate, max_block, self.n_channels)
        self.sample_rate, self.max_block = sr, max_block
        n_ch = self.n_channels
        links = {}
        self.itab = np.zeros((n_ch, NI), np.int64)
        self.ptab = np.zeros((n_ch, NP), np.float64)
        self.notes = np.zeros((n_ch, 128), np.uint8)
        for c, ch in enumerate(self.channels):
            it, pt = self.itab[c], self.ptab[c]
            it[I_MODE] = MODES.index(ch.mode)
            it[I_INPUT] = ch.input
            it[I_KEYKIND] = KEY_KINDS.index(ch.key)
            it[I_KEYIDX] = ch.key_input
            it[I_RMS] = int(ch.detector == "rms" and ch.key in ("self", "input"))
            it[I_LINK] = links.setdefault(ch.link, len(links)) if ch.link else -1
            it[I_MIDICH] = ch.midi_channel
            it[I_VELDEPTH] = int(ch.velocity_depth)
            it[I_LOOKAHEAD] = ms_to_samples(ch.lookahead_ms, sr)
            it[I_HOLD] = ms_to_samples(ch.hold_ms, sr)
            it[I_RETRIG] = ms_to_samples(ch.retrigger_ms, sr)
            pt[P_THR], pt[P_RATIO], pt[P_KNEE] = ch.threshold_db, ch.ratio, ch.knee_db
            pt[P_RANGE], pt[P_HYST] = ch.range_db, ch.hysteresis_db
            pt[P_ATT], pt[P_REL] = ms_to_coef(ch.attack_ms, sr), ms_to_coef(ch.release_ms, sr)
            pt[P_DRYWET] = ch.dry_wet
            pt[P_RMS] = ms_to_coef(ch.rms_ms, sr)
            pt[P_TRIGTHR] = 10.0 ** (ch.trigger_threshold_db / 20.0)
            for name, kind, col in (("key_hpf_hz", "highpass", P_HP), ("key_lpf_hz", "lowpass", P_LP)):
                hz = getattr(ch, name)
                try:
                    pt[col:col + 5] = biquad_coefs(kind, hz, sr) if hz else IDENTITY
                except ParameterError as e:
                    raise ParameterError(f"channel {ch.name!r}: {name}: {e} (0 turns the filter off)") from None
            for note in ch.notes:
                self.notes[c, note] = 1
        self.state = np.zeros((n_ch, NS), np.float64)
        self.delay = np.zeros((n_ch, int(self.itab[:, I_LOOKAHEAD].max()) + 1), np.float32)
        self.meters = np.zeros((n_ch, NM), np.float64)
        self.scratch = np.zeros((3 * n_ch, self.max_block), np.float64)
        self.events = np.zeros((MAX_MIDI_EVENTS, 4), np.int32)
        self.reset()

    def reset(self) -> None:
        """Restore the state of a freshly prepared chain (gates closed, nothing ducked).

        Raises
        ------
        DebleedError
            If called before :meth:`prepare`.
        """
        if self.sample_rate is None:
            raise DebleedError("Chain.reset called before prepare()")
        self.state[:] = 0.0
        gate = self.itab[:, I_MODE] == MODE_GATE
        self.state[gate, S_Y] = self.ptab[gate, P_RANGE]
        self.state[gate, S_HELD] = self.ptab[gate, P_RANGE]
        self.state[:, S_VEL] = 1.0
        self.delay[:] = 0.0
        self.reset_meters()
        self.meters[:, M_GR_RUN] = 0.0
        self.meters[:, M_BAD] = 0.0
        self.meters[:, M_GAIN] = np.where(gate, self.ptab[:, P_RANGE], 0.0)

    def reset_meters(self) -> None:
        """Start a new metering interval (gain-reduction minimum and key maximum)."""
        self.meters[:, M_GR] = 0.0
        self.meters[:, M_KEY] = FLOOR_DB

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
        if self.sample_rate is None:
            raise DebleedError("Chain.process called before prepare()")
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
        run_block(n, inputs, outputs, self.itab, self.ptab, self.state, self.delay, self.notes,
                  events, n_events, self.meters, self.scratch)
