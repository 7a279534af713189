"""The soundcheck's alignment step: where each gated channel's key lies against its hits, and the
lookahead that covers it.

For a ``trigger:`` key, :func:`trigger_onsets` finds the trigger's hits as the chain's trigger
key does; for a ``midi:`` key, its note-ons are the key. :func:`match_delays` gives key time
minus each own hit's first sample; ``lookahead_ms`` (:func:`key_alignment`) covers the latest
key plus the time the attack needs to open fully (:func:`attack_allowance_ms`), less the delay
the channel's audio already has: a denoised channel's audio reaches the gate the denoiser
stage's ``latency_samples`` late (``window - 1`` samples of its model, 63 for the shipped ones,
whatever the JACK period; :func:`denoiser_delay_ms`). An audio key (``self``, ``input:``) sees
a hit when it crosses the threshold: the lookahead covers that crossing.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from debleed.models.denoiser import model_latency_samples
from debleed.models.kit import MultiMicKit
from debleed.soundcheck.common import clamp

def trigger_onsets(x: np.ndarray, sample_rate: int, threshold_db: float, retrigger_ms: float) -> np.ndarray:
    """Frames where a piezo trigger fires, as the chain's trigger key does: ``|x|`` reaches the
    threshold, then nothing fires for ``retrigger_ms``."""
    thr = 10.0 ** (threshold_db / 20.0)
    above = np.flatnonzero(np.abs(np.asarray(x, np.float64)) >= thr)
    mask = int(round(retrigger_ms * sample_rate / 1000.0))
    out, last = [], None
    for i in above:
        if last is None or i - last >= max(mask, 1):
            out.append(int(i))
            last = i
    return np.asarray(out, np.int64)


def match_delays(key_frames, hit_frames, sample_rate: int, within_ms: float = 25.0) -> np.ndarray:
    """Key time minus hit time (ms) for each hit with a key event within ``within_ms``."""
    key_frames = np.sort(np.asarray(key_frames, np.int64))
    out = []
    if key_frames.size == 0:
        return np.zeros(0)
    for f in hit_frames:
        i = int(np.searchsorted(key_frames, f))
        cands = [key_frames[j] for j in (i - 1, i) if 0 <= j < key_frames.size]
        k = min(cands, key=lambda c: abs(c - f))
        if abs(k - f) <= within_ms * sample_rate / 1000.0:
            out.append(1000.0 * (k - f) / sample_rate)
    return np.asarray(out)


def attack_allowance_ms(attack_ms: float, range_db: float, residual_db: float = 0.01) -> float:
    """How long before a hit the gate must start opening so that it is within ``residual_db`` of
    open at the hit: the attack is a one-pole on the gain in dB (RC convention), so from
    ``range_db`` it takes ``attack_ms * ln(|range_db| / residual_db)``."""
    if attack_ms <= 0 or range_db >= -residual_db:
        return 0.0
    return float(attack_ms * math.log(abs(range_db) / residual_db))


def key_alignment(delays_ms: np.ndarray, attack_ms: float, range_db: float, audio_delay_ms: float = 0.0) -> dict:
    """Lookahead for a key that comes ``delays_ms`` after each hit (negative: before).

    ``audio_delay_ms`` is how late the channel's audio already reaches the gate relative to its
    key (a denoised channel: the denoiser stage's delay). The lookahead is the latest key plus
    the attack allowance minus that delay, at least 0 and at most the parameter's maximum.
    """
    d = np.asarray(delays_ms, np.float64)
    latest = float(d.max()) if d.size else 0.0
    need = latest + attack_allowance_ms(attack_ms, range_db) - audio_delay_ms + 0.05
    return {"n": int(d.size), "median_ms": float(np.median(d)) if d.size else float("nan"),
            "min_ms": float(d.min()) if d.size else float("nan"), "max_ms": latest,
            "attack_allowance_ms": attack_allowance_ms(attack_ms, range_db), "audio_delay_ms": audio_delay_ms,
            "lookahead_ms": clamp("lookahead_ms", max(need, 0.0))}



def denoiser_delay_ms(model_path, sample_rate: int, keyed: bool = False) -> float:
    """How late a denoised channel's audio reaches its gate, ms: the denoiser stage's
    ``latency_samples`` for the model file ``model_path`` (63 samples for the shipped models,
    whatever the JACK period, plus an informed model's key lead when the channel's key reaches
    it: ``keyed``); 0 for no model (None).

    Raises
    ------
    DebleedError
        ``model_path`` missing or not a loadable model.
    """
    return 1000.0 * model_latency_samples(model_path, keyed) / sample_rate if model_path else 0.0


@dataclasses.dataclass
class KeyAlignment:
    """A gated channel's key against its hits (:func:`align_key`).

    Attributes
    ----------
    kind : str
        ``trigger``, ``midi``, ``self`` or ``input``.
    key_delays_ms : ndarray
        Trigger or MIDI key time minus each matched own hit's first sample, ms (empty for an
        audio key): what the fit's mixtures rebuild the key with.
    delays_ms : ndarray
        What the lookahead covers, ms: ``key_delays_ms``, or for an audio key the time from each
        own hit's first sample to the threshold crossing.
    alignment : dict
        :func:`key_alignment`'s figures (``n``, ``median_ms``, ``min_ms``, ``max_ms``,
        ``attack_allowance_ms``, ``audio_delay_ms``, ``lookahead_ms``).
    lookahead_ms : float
        The lookahead to use, ms (the config's own when no key event matched a hit).
    why : str
        Where ``lookahead_ms`` came from, for the gig's comment.
    audio_delay_ms : float
        How late the audio already is (the denoiser stage's latency), ms.
    """

    kind: str
    key_delays_ms: np.ndarray
    delays_ms: np.ndarray
    alignment: dict
    lookahead_ms: float
    why: str
    audio_delay_ms: float = 0.0

    @property
    def measured(self) -> bool:
        """True when some hit was measured (the alignment plot shows it)."""
        return bool(self.alignment["n"]) or self.kind in ("self", "input")


def align_key(ch, piece: str, values: dict, kit: MultiMicKit, own_frames, inputs: dict, events: np.ndarray,
              sample_rate: int, audio_delay_ms: float = 0.0) -> KeyAlignment:
    """The alignment of one gated channel: its key's delays and the lookahead that covers them.

    Parameters
    ----------
    ch : ChannelConfig
        The channel (its ``key``, ``attack_ms``, ``lookahead_ms``, trigger and MIDI settings).
    piece : str
        The piece it gates (its hits are the ones aligned).
    values : dict
        Its first settings (:func:`debleed.soundcheck.fit.initial_settings`): ``range_db``, and
        for an audio key ``threshold_db``.
    kit : MultiMicKit
        The line check's hits (for an audio key's threshold crossings).
    own_frames : sequence of int
        The first sample of each of the piece's hits in the takes, frames.
    inputs : dict
        ``{input: float (n,)}``, every ``[inputs]`` entry's take (triggers included).
    events : int (k, 4)
        The line check's MIDI ``(frame, status, data1, data2)``.
    sample_rate : int
        Hz.
    audio_delay_ms : float
        How late the channel's audio reaches the gate against its key, ms (a denoised channel:
        :func:`denoiser_delay_ms`); 0 for a ``self`` key (the key is the delayed audio itself).

    Returns
    -------
    KeyAlignment
    """
    sr = int(sample_rate)
    kind, _, ref = ch.key.partition(":")
    delays = np.zeros(0)
    if kind == "trigger":
        tf = trigger_onsets(inputs[ref], sr, ch.trigger_threshold_db, ch.retrigger_ms)
        delays = match_delays(tf, own_frames, sr)
    elif kind == "midi":
        notes = {int(v) for v in ref.split(",")}
        on = events[((events[:, 1] & 0xF0) == 0x90) & (events[:, 3] > 0) & np.isin(events[:, 2], list(notes))]
        if ch.midi_channel:
            on = on[(on[:, 1] & 0x0F) == ch.midi_channel - 1]
        delays = match_delays(on[:, 0], own_frames, sr)
    if kind in ("trigger", "midi"):
        align = key_alignment(delays, ch.attack_ms, values["range_db"], audio_delay_ms)
        if align["n"] == 0:
            align["lookahead_ms"] = ch.lookahead_ms
            why = f"no {kind} event matched a hit of {piece}: kept the config's value"
        else:
            why = (f"latest {kind} key {align['max_ms']:+.2f} ms after the hit's first sample "
                   f"(median {align['median_ms']:+.2f} ms, {align['n']} hits) + "
                   f"{align['attack_allowance_ms']:.2f} ms for the {ch.attack_ms:g} ms attack to open"
                   + (f" - {audio_delay_ms:.2f} ms the denoiser already delays the audio" if audio_delay_ms else ""))
        return KeyAlignment(kind, delays, delays, align, align["lookahead_ms"], why, audio_delay_ms)
    # a mic key sees the hit when it crosses the threshold: look ahead over that
    krow = kit.mics.index(ch.input if kind == "self" else ref)
    thr = 10.0 ** (values["threshold_db"] / 20.0)
    late = []
    for h in kit.hits:
        if h.piece == piece:
            above = np.flatnonzero(np.abs(h.audio[krow, h.onset:h.onset + int(0.02 * sr)]) >= thr)
            if above.size:
                late.append(1000.0 * above[0] / sr)
    d = np.asarray(late)
    delay = audio_delay_ms if kind == "input" else 0.0
    align = key_alignment(d, ch.attack_ms, values["range_db"], delay)
    why = (f"the key crosses the threshold up to {align['max_ms']:.2f} ms after the hit's first "
           f"sample + {align['attack_allowance_ms']:.2f} ms attack allowance")
    return KeyAlignment(kind, delays, d, align, align["lookahead_ms"], why, delay)


def align_keys(starts: list, kit: MultiMicKit, hits: list, inputs: dict, events: np.ndarray, models: dict) -> dict:
    """The alignment step: :func:`align_key` for every gated channel.

    Parameters
    ----------
    starts : list of GateStart
        The gated channels and their first settings
        (:func:`debleed.soundcheck.fit.initial_channel_settings`).
    kit : MultiMicKit
    hits : list of DetectedHit
        The line check's hits (their first samples in the takes).
    inputs : dict
        ``{input: float (n,)}``, every take (triggers included).
    events : int (k, 4)
        The line check's MIDI.
    models : dict
        ``{channel: model path}`` of the denoised channels: their audio is late by the model's
        latency (:func:`denoiser_delay_ms`).

    Returns
    -------
    dict
        ``{channel: KeyAlignment}``, in the order of ``starts``.
    """
    out = {}
    for st in starts:
        ch = st.channel
        own_frames = [h.frame for h in hits if h.piece == st.piece]
        keyed = ch.key.partition(":")[0] in ("midi", "trigger")  # such a key reaches an informed model
        delay = denoiser_delay_ms(models.get(ch.name), kit.sample_rate, keyed) if ch.denoise else 0.0
        out[ch.name] = align_key(ch, st.piece, st.values, kit, own_frames, inputs, events, kit.sample_rate, delay)
    return out
