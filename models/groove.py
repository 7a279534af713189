"""The drum groove and its hits: pieces, General MIDI roles, the groove generator, piezo triggers.

One groove generator (:func:`groove`, the rock groove of the demo, the training scenes and the
soundcheck's show mixtures) and one piezo model (:func:`piezo_trigger`). The kit mixer
(:mod:`debleed.models.kit`) and the multitrack renderer (:mod:`debleed.models.multitrack`)
both play these hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from debleed.errors import DebleedError

PIECES = ("kick", "snare", "hihat", "toms", "cymbals")
#: General MIDI drum notes used for the groove's MIDI.
GM = {"kick": 36, "snare": 38, "hihat_closed": 42, "hihat_open": 46, "tom_low": 41, "tom_mid": 45,
      "tom_high": 48, "crash": 49, "ride": 51}
#: The roles a kit can fill (the SF2 and Sonic Pi kits fill all of them).
ROLES = tuple(GM)


@dataclass
class Hit:
    """A drum hit: frame, role (e.g. ``tom_low``), velocity in (0, 1]."""

    frame: int
    role: str
    velocity: float


def role_piece(role: str) -> str:
    """Which close-mic piece a role belongs to (``tom_low`` -> ``toms``, ``ride`` -> ``cymbals``)."""
    if role.startswith("hihat"):
        return "hihat"
    if role.startswith("tom"):
        return "toms"
    if role in ("crash", "ride"):
        return "cymbals"
    return role


def groove(seconds: float, sample_rate: int, *, bpm: float = 100.0, seed: int = 0,
           ghost_prob: float = 0.4, flam_prob: float = 0.15, fill_every: int = 2,
           swell_prob: float = 0.0, ride_prob: float = 0.0) -> list[Hit]:
    """A rock groove with ghost notes, open hats, flams, tom fills and crashes.

    Bars of 16ths: kick on 1 and 3 (plus random pushes), snare backbeat on 2 and 4 with ghost
    notes 20-35 dB below the accents, 8th-note hats with accents and an occasional open hat,
    a crash on each 4th bar's downbeat, a tom fill in the last beat of every 2nd bar.

    Parameters
    ----------
    seconds, sample_rate, bpm, seed :
        Length (s), rate (Hz), tempo (beats per minute) and random seed.
    ghost_prob : float
        Probability of a ghost note on each of the off-beat 16ths (3, 7, 9, 14, 15); default 0.4.
    flam_prob : float
        Probability that a backbeat gets a flam grace note 25 ms before it; default 0.15.
    fill_every : int
        A tom fill in the last beat of every ``fill_every``-th bar (>= 1); default 2.
    swell_prob : float
        Probability per 4-bar phrase of a cymbal swell (a crash rolled in 32nds over the phrase's
        last bar, velocity rising from 0.05 to 0.8); default 0 (none).
    ride_prob : float
        Probability per bar that the bar's 8ths are played on the ride instead of the hi-hat;
        default 0.

    The defaults reproduce the demo's groove exactly; swells and ride bars draw from their
    own random stream, so turning them on leaves the rest of the groove unchanged.
    """
    if int(fill_every) < 1:
        raise DebleedError(f"fill_every must be >= 1, got {fill_every!r}")
    rng2 = np.random.default_rng([seed, 7])
    ride_bars = set()
    swell_bars = set()
    rng = np.random.default_rng(seed)
    step = 60.0 / bpm / 4.0
    hits = []
    n_steps = int(seconds / step)
    n_bars = n_steps // 16 + 1
    if ride_prob > 0.0:
        ride_bars = {b for b in range(n_bars) if rng2.random() < ride_prob}
    if swell_prob > 0.0:
        swell_bars = {b for b in range(3, n_bars, 4) if rng2.random() < swell_prob}
    for s in range(n_steps):
        bar, pos = divmod(s, 16)
        t = s * step
        f = int(round(t * sample_rate))
        fill = bar % fill_every == fill_every - 1 and pos >= 12
        if pos in (0, 8) or (pos in (10, 14) and rng.random() < 0.3):
            hits.append(Hit(f, "kick", rng.uniform(0.75, 1.0)))
        if pos in (4, 12) and not fill:
            hits.append(Hit(f, "snare", rng.uniform(0.85, 1.0)))
            if rng.random() < flam_prob:  # flam: a grace note just before
                hits.append(Hit(max(f - int(0.025 * sample_rate), 0), "snare", rng.uniform(0.3, 0.5)))
        elif pos in (3, 7, 9, 14, 15) and not fill and rng.random() < ghost_prob:
            hits.append(Hit(f, "snare", 10.0 ** (-rng.uniform(20.0, 35.0) / 20.0)))
        if pos % 2 == 0 and not fill:
            role = "hihat_open" if pos == 14 and rng.random() < 0.4 else "hihat_closed"
            if bar in ride_bars:
                role = "ride"
            hits.append(Hit(f, role, rng.uniform(0.7, 0.95) if pos % 4 == 0 else rng.uniform(0.4, 0.6)))
        if fill:
            hits.append(Hit(f, ("tom_high", "tom_high", "tom_mid", "tom_low")[pos - 12], rng.uniform(0.7, 1.0)))
        if pos == 0 and bar % 4 == 0:
            hits.append(Hit(f, "crash", rng.uniform(0.8, 1.0)))
        if bar in swell_bars:
            for half in (0, 1):  # 32nd notes, rising
                v = 0.05 + 0.75 * (pos * 2 + half) / 32.0
                hits.append(Hit(int(round((t + half * step / 2.0) * sample_rate)), "crash", v))
    return sorted(hits, key=lambda h: h.frame)


def piezo_trigger(hits: list[Hit], n_frames: int, sample_rate: int, *, piece: str = "kick", lag_s: float = 0.0,
                  jitter_s: float = 0.0, crosstalk_db: dict | None = None, seed: int = 0) -> np.ndarray:
    """A piezo trigger signal for ``piece``: a 180 Hz burst with an 8 ms decay per hit, float32 (n,).

    Parameters
    ----------
    lag_s, jitter_s : float
        The burst starts ``lag_s`` (plus a uniform ``+-jitter_s``) after the hit's frame, s.
    crosstalk_db : dict, optional
        ``{piece: dB}``: other pieces' hits leak into the trigger this far down (default
        ``{"snare": -30}`` for the kick, none otherwise).
    """
    rng = np.random.default_rng([seed, 5])
    trig = np.zeros(int(n_frames), np.float32)
    t = np.arange(int(0.04 * sample_rate)) / sample_rate
    burst = (np.sin(2 * np.pi * 180.0 * t) * np.exp(-t / 0.008)).astype(np.float32)
    xt = crosstalk_db if crosstalk_db is not None else ({"snare": -30.0} if piece == "kick" else {})
    for h in hits:
        p = role_piece(h.role)
        if p != piece and p not in xt:
            continue
        amp = 0.9 * h.velocity * (1.0 if p == piece else 10.0 ** (xt[p] / 20.0))
        f = h.frame + int(round((lag_s + rng.uniform(-jitter_s, jitter_s)) * sample_rate))
        if f < 0 or f >= trig.size:
            continue
        m = min(burst.size, trig.size - f)
        trig[f:f + m] += amp * burst[:m]
    return trig
