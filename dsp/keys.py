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
  ``hold_ms`` sets the opening).

MIDI events reach the kernels as an int32 array of shape ``(max_events, 4)``: rows of
``(frame offset, status byte, data1, data2)``, sorted by frame offset.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from debleed.dsp._common import check_block, check_range
from debleed.dsp.envelope import SNAP
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
def _is_note_on(status, velocity, midi_channel):
    """True for a note-on with velocity > 0 on ``midi_channel`` (1-16, or 0 for any channel)."""
    if (status & 0xF0) != 0x90 or velocity == 0:
        return False
    return midi_channel == 0 or (status & 0x0F) == midi_channel - 1


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
        if 0 <= f < n and _is_note_on(events[e, EV_STATUS], events[e, EV_DATA2], midi_channel):
            note = events[e, EV_DATA1]
            for c in range(out.shape[0]):
                if notes[note]:
                    out[c, f] = 1.0


class KeyFilter:
    """High-pass and/or low-pass filter for a mic key (e.g. keep the snare band of a kick key).

    Parameters
    ----------
    hpf_hz : float
        High-pass cutoff, Hz; 0 (default) turns it off. Must be below Nyquist at prepare.
    lpf_hz : float
        Low-pass cutoff, Hz; 0 (default) turns it off.

    Notes
    -----
    2nd-order RBJ cookbook sections, Q = 0.707. Real-time safe; latency 0 samples (the
    filter's group delay only shifts the key, not the audio).
    """

    def __init__(self, *, hpf_hz=0.0, lpf_hz=0.0):
        self.hpf_hz = check_range("hpf_hz", hpf_hz, 0.0, 96000.0)
        self.lpf_hz = check_range("lpf_hz", lpf_hz, 0.0, 96000.0)
        self._state = None

    latency_samples = property(lambda self: 0, doc="Latency added, in samples: always 0.")

    def prepare(self, sample_rate, max_block, n_channels):
        """Compute coefficients for ``sample_rate``; allocate 4 state values per channel."""
        self.sample_rate, self.max_block, self.n_channels = float(sample_rate), int(max_block), int(n_channels)
        self._hp = np.array(biquad_coefs("highpass", self.hpf_hz, sample_rate) if self.hpf_hz else IDENTITY)
        self._lp = np.array(biquad_coefs("lowpass", self.lpf_hz, sample_rate) if self.lpf_hz else IDENTITY)
        self._state = np.zeros((self.n_channels, 4), np.float64)

    def reset(self):
        """Clear the filter state."""
        self._state[:] = 0.0

    def process(self, x, out):
        """Filter ``x`` (float32, (n_channels, n_frames)) into ``out``."""
        n = check_block(self, x, out)
        _filter_kernel(x, out, self._state, n, self._hp, self._lp)


class TriggerDetector:
    """Piezo trigger hit detector: one key pulse per hit.

    Parameters
    ----------
    trigger_threshold_db : float
        Hit threshold on ``|x|``, dBFS, in [-120, 0]; default -20.0.
    retrigger_ms : float
        Mask after a hit during which no new hit is detected, ms, in [0, 1000]; default 30.0.

    Notes
    -----
    Output is 1.0 on the sample where a hit is detected, else 0.0. Real-time safe; latency 0.
    """

    def __init__(self, *, trigger_threshold_db=-20.0, retrigger_ms=30.0):
        self.trigger_threshold_db = check_range("trigger_threshold_db", trigger_threshold_db, -120.0, 0.0)
        self.retrigger_ms = check_range("retrigger_ms", retrigger_ms, 0.0, 1000.0)
        self._state = None

    latency_samples = property(lambda self: 0, doc="Latency added, in samples: always 0.")

    def prepare(self, sample_rate, max_block, n_channels):
        """Allocate the mask counters."""
        self.sample_rate, self.max_block, self.n_channels = float(sample_rate), int(max_block), int(n_channels)
        self._thr = 10.0 ** (self.trigger_threshold_db / 20.0)
        self._mask_n = int(round(self.retrigger_ms * sample_rate / 1000.0))
        self._state = np.zeros(self.n_channels, np.float64)

    def reset(self):
        """Clear running masks."""
        self._state[:] = 0.0

    def process(self, x, out):
        """Write hit pulses for the piezo signal ``x`` (float32, (n_channels, n_frames)) to ``out``."""
        n = check_block(self, x, out)
        _trigger_kernel(x, out, self._state, n, self._thr, self._mask_n)


class MidiKey:
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
        On an empty note list or a note or channel out of range.
    """

    def __init__(self, *, notes, midi_channel=0):
        notes = list(notes)
        if not notes or any(not isinstance(v, (int, np.integer)) or not 0 <= v <= 127 for v in notes):
            raise ParameterError(f"notes must be a non-empty list of MIDI notes in [0, 127], got {notes!r}")
        if not isinstance(midi_channel, (int, np.integer)) or not 0 <= midi_channel <= 16:
            raise ParameterError(f"midi_channel must be 0 (any) or 1-16, got {midi_channel!r}")
        self.notes, self.midi_channel = notes, int(midi_channel)
        self._state = None

    latency_samples = property(lambda self: 0, doc="Latency added, in samples: always 0.")

    def prepare(self, sample_rate, max_block, n_channels):
        """Build the note mask."""
        self.sample_rate, self.max_block, self.n_channels = float(sample_rate), int(max_block), int(n_channels)
        self._mask = np.zeros(128, np.bool_)
        self._mask[self.notes] = True
        self._state = np.zeros(0)

    def reset(self):
        """Nothing to clear: a MIDI key keeps no state between blocks."""

    def process(self, events, n_events, out):
        """Write pulses for ``events[:n_events]`` (int32, (max_events, 4)) into ``out`` (float32, (n_channels, n_frames))."""
        n = check_block(self, out, out)
        _midi_kernel(events, int(n_events), self._mask, self.midi_channel, out, n)
