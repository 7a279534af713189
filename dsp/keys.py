"""Key (sidechain) sources: band-limited mic keys, piezo triggers and MIDI notes.

Every key source turns its input into a *key level* (linear amplitude) that the gain computer
compares with the threshold:

- ``self`` and ``input:<name>``: the audio itself, optionally through a 2nd-order high-pass and
  low-pass (RBJ Audio EQ Cookbook, R. Bristow-Johnson; Q = 1/sqrt(2), Butterworth).
- ``trigger:<name>``: a piezo trigger. A hit is detected when ``|x| >= trigger_threshold``
  while no mask runs; the hit gives a key level of 1.0 (0 dBFS) for that one sample and starts
  a retrigger mask of ``retrigger_ms`` during which the ringing piezo cannot trigger again, so
  one hit gives one opening. The channel's ``hold_ms`` sets how long the gate stays open.
- ``midi:<note>[,<note>...]``: a note-on of a listed note gives a key level of 1.0 at its exact
  frame offset inside the block; velocity 0 is a note-off and is ignored (the channel's
  ``hold_ms`` sets the opening). An event whose note or velocity byte is outside 0..127 is not
  valid MIDI (a corrupt or truncated message) and is ignored too, so velocity / 127 is always
  in (0, 1].

MIDI events reach the kernels as an int32 array of shape ``(max_events, 4)``: rows of
``(frame offset, status byte, data1, data2)``, sorted by frame offset; the first ``n_events``
rows are read, ``0 <= n_events <= max_events``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from debleed.dsp._common import check_block, check_events, check_notes
from debleed.dsp.params import PARAMS
from debleed.dsp.processor import ProcessSpec, Processor
from debleed.dsp.envelope import SNAP
from debleed.dsp.units import ms_to_samples
from debleed.errors import ParameterError

#: Columns of a MIDI event row.
EV_FRAME, EV_STATUS, EV_DATA1, EV_DATA2 = 0, 1, 2, 3
#: Largest number of MIDI events one block can carry; more are dropped and counted.
MAX_MIDI_EVENTS = 256


def biquad_coefs(kind: str, freq_hz: float, sample_rate: float, q: float = 1.0 / math.sqrt(2.0)):
    """Normalised ``(b0, b1, b2, a1, a2)`` of an RBJ cookbook high-pass or low-pass.

    Parameters
    ----------
    kind : {"highpass", "lowpass"}
    freq_hz : float
        Cutoff, Hz, in (0, sample_rate / 2).
    sample_rate : float
        Hz.
    q : float
        Quality factor; default 1/sqrt(2) (Butterworth).

    Raises
    ------
    ParameterError
        If ``freq_hz`` is not below Nyquist or ``kind`` is unknown.
    """
    if not 0.0 < freq_hz < sample_rate / 2.0:
        raise ParameterError(
            f"{kind} cutoff must be in (0, {sample_rate / 2.0:g}) Hz at {sample_rate:g} Hz, got {freq_hz!r}")
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cw = math.cos(w0)
    if kind == "highpass":
        b0, b1, b2 = (1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0
    elif kind == "lowpass":
        b0, b1, b2 = (1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0
    else:
        raise ParameterError(f"filter kind must be 'highpass' or 'lowpass', got {kind!r}")
    a0 = 1.0 + alpha
    return b0 / a0, b1 / a0, b2 / a0, (-2.0 * cw) / a0, (1.0 - alpha) / a0


#: Coefficients of a filter that passes the signal unchanged.
IDENTITY = (1.0, 0.0, 0.0, 0.0, 0.0)


@njit(cache=True, inline="always")
def _biquad_step(x, b0, b1, b2, a1, a2, z1, z2):
    """Transposed direct form II; returns ``(y, z1, z2)``.

    When both state values are below 1e-8 they snap to 0 together (snapping one alone can
    start a limit cycle).
    """
    y = b0 * x + z1
    z1 = b1 * x - a1 * y + z2
    z2 = b2 * x - a2 * y
    if abs(z1) < SNAP and abs(z2) < SNAP:
        return y, 0.0, 0.0
    return y, z1, z2


@njit(cache=True, inline="always")
def _trigger_step(x_abs, thr_lin, mask_left, mask_n):
    """Piezo hit detection; returns ``(key level, mask_left)``."""
    if mask_left > 0:
        return 0.0, mask_left - 1
    if x_abs >= thr_lin:
        return 1.0, mask_n
    return 0.0, 0


@njit(cache=True, inline="always")
def _is_note_on(status, note, velocity, midi_channel):
    """True for a note-on on ``midi_channel`` (1-16, or 0 for any) with ``note`` in 0..127 and
    ``velocity`` in 1..127.

    Velocity 0 is a note-off; a data byte outside 0..127 is not MIDI, so the event is ignored:
    ``note`` can then index a 128-entry mask and ``velocity / 127`` is in (0, 1].
    """
    if not (0x90 <= status <= 0x9F and 0 <= note <= 127 and 1 <= velocity <= 127):
        return False
    return midi_channel == 0 or status - 0x90 == midi_channel - 1


@njit(cache=True)
def _filter_kernel(x, out, state, n, hp, lp):
    for c in range(x.shape[0]):
        z1, z2, z3, z4 = state[c, 0], state[c, 1], state[c, 2], state[c, 3]
        for i in range(n):
            v = x[c, i]
            if not math.isfinite(v):
                v = 0.0
            v, z1, z2 = _biquad_step(v, hp[0], hp[1], hp[2], hp[3], hp[4], z1, z2)
            v, z3, z4 = _biquad_step(v, lp[0], lp[1], lp[2], lp[3], lp[4], z3, z4)
            out[c, i] = v
        state[c, 0], state[c, 1], state[c, 2], state[c, 3] = z1, z2, z3, z4


@njit(cache=True)
def _trigger_kernel(x, out, state, n, thr_lin, mask_n):
    for c in range(x.shape[0]):
        mask_left = int(state[c])
        for i in range(n):
            v = x[c, i]
            a = abs(v) if math.isfinite(v) else 0.0
            out[c, i], mask_left = _trigger_step(a, thr_lin, mask_left, mask_n)
        state[c] = mask_left


@njit(cache=True)
def _midi_kernel(events, n_events, notes, midi_channel, out, n):
    out[:, :n] = 0.0
    for e in range(n_events):
        f = events[e, EV_FRAME]
        note = events[e, EV_DATA1]
        if 0 <= f < n and _is_note_on(events[e, EV_STATUS], note, events[e, EV_DATA2], midi_channel) and notes[note]:
            for c in range(out.shape[0]):
                out[c, f] = 1.0


class KeyFilter(Processor):
    """High-pass and/or low-pass filter for a mic key (e.g. keep the snare band of a kick key).

    Parameters
    ----------
    hpf_hz : float
        High-pass cutoff, Hz, in [0, 96000]; 0 (default) turns it off. Must be below Nyquist at
        prepare.
    lpf_hz : float
        Low-pass cutoff, Hz, in [0, 96000]; 0 (default) turns it off. Same limit.

    Raises
    ------
    ParameterError
        From ``__init__`` if a cutoff is out of range; from ``prepare`` if a cutoff is not below
        Nyquist or ``sample_rate``, ``max_block`` or ``n_channels`` is invalid (see
        :meth:`prepare`).
    DebleedError
        From ``process`` or ``reset`` before ``prepare``.

    Notes
    -----
    2nd-order RBJ cookbook sections, Q = 0.707. Real-time safe; latency 0 samples (the
    filter's group delay only shifts the key, not the audio).
    """

    def __init__(self, *, hpf_hz=0.0, lpf_hz=0.0):
        self.hpf_hz = PARAMS["key_hpf_hz"].check(hpf_hz, "hpf_hz")
        self.lpf_hz = PARAMS["key_lpf_hz"].check(lpf_hz, "lpf_hz")

    def _allocate(self, spec: ProcessSpec) -> None:
        """Coefficients for ``spec.sample_rate`` (a cutoff at or above Nyquist is a
        :class:`ParameterError`); 4 state values per channel."""
        sr = spec.sample_rate
        self._hp = np.array(biquad_coefs("highpass", self.hpf_hz, sr) if self.hpf_hz else IDENTITY)
        self._lp = np.array(biquad_coefs("lowpass", self.lpf_hz, sr) if self.lpf_hz else IDENTITY)
        self._state = np.zeros((spec.n_channels, 4), np.float64)

    def state_arrays(self) -> tuple:
        return (self._state,)

    def process(self, x, out):
        """Filter ``x`` (float32, (n_channels, n_frames), ``n_frames <= max_block``) into ``out``.

        Raises
        ------
        ParameterError
            On a wrong dtype or shape, or more than ``max_block`` frames.
        DebleedError
            If called before :meth:`prepare`.
        """
        n = check_block(self, x, out)
        _filter_kernel(x, out, self._state, n, self._hp, self._lp)


class TriggerDetector(Processor):
    """Piezo trigger hit detector: one key pulse per hit.

    Parameters
    ----------
    trigger_threshold_db : float
        Hit threshold on ``|x|``, dBFS, in [-120, 0]; default -20.0.
    retrigger_ms : float
        Mask after a hit during which no new hit is detected, ms, in [0, 1000]; default 30.0.

    Raises
    ------
    ParameterError
        From ``__init__`` if a value is out of range; from ``prepare`` and ``process`` on an
        invalid argument (see those methods).
    DebleedError
        From ``process`` or ``reset`` before ``prepare``.

    Notes
    -----
    Output is 1.0 on the sample where a hit is detected, else 0.0. Real-time safe; latency 0.
    """

    def __init__(self, *, trigger_threshold_db=PARAMS["trigger_threshold_db"].default,
                 retrigger_ms=PARAMS["retrigger_ms"].default):
        self.trigger_threshold_db = PARAMS["trigger_threshold_db"].check(trigger_threshold_db)
        self.retrigger_ms = PARAMS["retrigger_ms"].check(retrigger_ms)

    def _allocate(self, spec: ProcessSpec) -> None:
        """The threshold as a linear level; one retrigger-mask counter per channel."""
        self._thr = 10.0 ** (self.trigger_threshold_db / 20.0)
        self._mask_n = ms_to_samples(self.retrigger_ms, spec.sample_rate)
        self._state = np.zeros(spec.n_channels, np.float64)

    def state_arrays(self) -> tuple:
        return (self._state,)

    def process(self, x, out):
        """Write hit pulses for the piezo signal ``x`` (float32, (n_channels, n_frames)) to ``out``.

        Raises
        ------
        ParameterError
            On a wrong dtype or shape, or more than ``max_block`` frames.
        DebleedError
            If called before :meth:`prepare`.
        """
        n = check_block(self, x, out)
        _trigger_kernel(x, out, self._state, n, self._thr, self._mask_n)


class MidiKey(Processor):
    """Key pulses from MIDI note-ons, at their exact frame offsets.

    Parameters
    ----------
    notes : sequence of int
        MIDI note numbers, each in [0, 127] (e.g. ``[38, 40]`` for snare and rimshot, GM).
    midi_channel : int
        1-16, or 0 (default) for any channel.

    Raises
    ------
    ParameterError
        On an empty note list or a note or channel that is not an integer in range.

    Notes
    -----
    A note-on with velocity 0 (a note-off) or with a data byte outside 0..127 gives no pulse.
    Real-time safe; latency 0 samples.
    """

    def __init__(self, *, notes, midi_channel=0):
        self.notes = list(check_notes(notes))
        if not self.notes:
            raise ParameterError(f"notes must be a non-empty list of MIDI notes in [0, 127], got {notes!r}")
        self.midi_channel = PARAMS["midi_channel"].check(midi_channel)

    def _allocate(self, spec: ProcessSpec) -> None:
        """The note mask (a MIDI key keeps no state between blocks)."""
        self._mask = np.zeros(128, np.bool_)
        self._mask[self.notes] = True

    def process(self, events, n_events, out):
        """Write a pulse (1.0) for each matching note-on into ``out``, zeros elsewhere.

        Parameters
        ----------
        events : ndarray, int32, shape (k, 4)
            MIDI rows ``(frame, status, data1, data2)``; the first ``n_events`` are read. Their
            frames must be non-decreasing and in [0, n_frames).
        n_events : int
            Number of valid rows, ``0 <= n_events <= k``.
        out : ndarray, float32, shape (n_channels, n_frames)
            ``0 <= n_frames <= max_block``; written.

        Raises
        ------
        ParameterError
            On a wrong dtype or shape of ``events`` or ``out``, ``n_events`` outside [0, k],
            a frame offset outside [0, n_frames) or out of order, or more than ``max_block`` frames.
        DebleedError
            If called before :meth:`prepare`.
        """
        n = check_block(self, out, out)
        n_events = check_events(events, n_events, n)
        _midi_kernel(events, n_events, self._mask, self.midi_channel, out, n)
