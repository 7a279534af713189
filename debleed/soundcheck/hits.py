"""The soundcheck: learn a kit, its room and its mics from takes of each piece played alone.

``debleed soundcheck`` (:mod:`debleed.cli.soundcheck`) runs :func:`run_soundcheck`:

1. **Hits** (:func:`detect_hits`, :func:`kit_from_takes`): onsets on every mic, each attributed
   to the piece whose close mic hears it loudest (a piece's close mic is the input of the
   channel it feeds; pieces are named after their inputs, see :func:`pieces_of_config`; a hit
   no close mic claims by :data:`CLAIM_MARGIN_DB` is a cymbal), then a majority vote per
   passage (hits with less than :data:`PASSAGE_GAP_S` between them: one piece played alone).
   Each hit is cut across all mics into a :class:`~debleed.models.kit.MultiMicKit`.
2. **Bleed matrix** (:func:`bleed_matrix`): per mic, the median level of every piece relative
   to the mic's own piece, dB.
3. **Alignment** (:func:`key_alignment`): per trigger or MIDI keyed channel, key time minus the
   first sample of each hit at the mic; ``lookahead_ms`` covers the latest key plus the time
   the attack needs to open fully (:func:`attack_allowance_ms`).
4. **Gate settings** (:func:`initial_settings`, :func:`fit_channel`): threshold, hysteresis,
   hold and release from the measured levels and decay times, range from the bleed matrix
   (after Terrell, Reiss and Sandler, "Automatic noise gate settings for drum recordings
   containing bleed from secondary sources", EURASIP JASP 2010), refined by a grid search
   through :class:`~debleed.dsp.chain.Chain` on grooves mixed from the soundcheck's hits.
5. **Denoiser** (:func:`adapt_denoiser`): the shipped snare denoiser fine-tuned on mixtures of
   the soundcheck's hits, kept only if it beats the shipped one on held-out hits.
6. **Report**: ``report.md`` and PNGs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
from numba import njit

from debleed.errors import DebleedError
from debleed.fileio import atomic_path, atomic_write_text
from debleed.models.kit import PIECE_ROLE, KitHit, MultiMicKit, _dg_role, groove, kit_scene, mix, role_piece
from debleed.models.metrics import bleed_reduction_db, hit_loss_db, si_sdr_db
from debleed.models.multitrack import PIECES

#: A hit is a cymbal when its loudest close mic hears it less than this much above the next one.
CLAIM_MARGIN_DB = 6.0
#: Hits closer than this belong to one passage (one piece played alone), s.
PASSAGE_GAP_S = 1.0
#: Onset detection: the fast envelope must rise this much within ``RISE_MS`` ...
RISE_DB = 12.0
RISE_MS = 10.0
#: ... and stand this far above the mic's noise floor (its 10th percentile), dB.
ABOVE_FLOOR_DB = 20.0
#: ... and be within this much of the mic's loudest moment, dB.
RANGE_DB = 50.0
#: Onsets closer than this are one hit, ms.
MIN_GAP_MS = 30.0
#: A hit's first sample: where it first reaches this far under its peak, dB.
FIRST_SAMPLE_DB = -30.0
#: Cut hits start this long before their first sample and last at most ``MAX_HIT_S``.
PRE_MS = 5.0
MAX_HIT_S = 1.5
#: Loud hits and ghost notes for the fit and the denoiser's before/after table (velocity).
LOUD_VELOCITY, GHOST_VELOCITY = 0.6, 0.2
#: Hit-loss targets (dB, first 30 ms, against the mic): loud hits, ghost notes (the fit measures
#: ghost notes against the clean own piece, see :func:`fit_score`).
MAX_LOUD_LOSS_DB, MAX_GHOST_LOSS_DB = 0.5, 1.0
#: The loud-hit bound the gate fit keeps on its mixtures: the target less a margin for the show,
#: which plays other hits (0.5 dB on the fit mixtures became 0.3-0.8 dB on The Black Pearl's show).
FIT_LOUD_LOSS_DB = 0.3
#: The gate fit asks for at least this much bleed reduction between hits on its mixtures, dB:
#: the 30 dB target plus a margin for the show, which plays other hits than the soundcheck.
MIN_BLEED_REDUCTION_DB = 36.0
#: Weight of the ghost-note loss (against the clean own piece, per dB over 1 dB) in the fit
#: score: a tie-breaker. A ghost note on a loud stage sits under the bleed, and removing that
#: bleed removes it (models/README.md), so a heavier weight would turn the denoiser off for
#: ghost notes that carry almost none of the snare's energy.
GHOST_WEIGHT = 0.1
#: Bleed-level augmentation of the denoiser's fine-tuning mixtures, dB around the measured bleed.
AUGMENT_BLEED_DB = (-10.0, 20.0)


def _param(name: str):
    from debleed.dsp.params import PARAMS

    return PARAMS[name]


def clamp(name: str, value: float) -> float:
    """``value`` clamped to the range of parameter ``name`` (:data:`debleed.dsp.params.PARAMS`)."""
    p = _param(name)
    lo = p.lo if not getattr(p, "lo_open", False) else p.lo + 1e-6
    return float(min(max(float(value), lo), p.hi))


# ---------------------------------------------------------------------------------------------
# 1. hits

def pieces_of_config(cfg) -> tuple[dict, list, list]:
    """The pieces of a gig, their close mics, the mics and the trigger inputs.

    Inputs used as ``trigger:`` keys are triggers; every other input is a mic of the kit, whether
    or not a channel processes it (a hi-hat or overhead mic listed in ``[inputs]`` only, so the
    soundcheck can hear it, counts like the others). Each mic is the close mic of one piece,
    named after the input: ``kick``, ``snare``, ``hihat``, ``toms`` and ``cymbals`` (or names that
    say so, e.g. ``snare_top``, ``floor_tom``, ``oh``) are those pieces; any other name is a piece
    of its own. Channel inputs come first, so a processed mic keeps the piece's name.

    Returns
    -------
    close : dict
        ``{piece: mic input}``.
    mics : list of str
        Mic inputs, in ``[inputs]`` order.
    triggers : list of str
        Trigger inputs.
    """
    triggers = sorted({ch.key.partition(":")[2] for ch in cfg.channel if cfg.key_kind(ch) == "trigger"})
    mics = [n for n in cfg.input_names if n not in triggers]
    close = {}
    for ch in cfg.channel:
        if ch.input in triggers:
            raise DebleedError(f"channel {ch.name!r}: input {ch.input!r} is also a trigger key; a soundcheck "
                               "needs the trigger on an input of its own")
    ordered = list(dict.fromkeys([ch.input for ch in cfg.channel] + mics))
    for m in ordered:
        if m in close.values():
            continue
        piece = canonical_piece(m)
        if piece in close:
            piece = m
        close[piece] = m
    return close, mics, triggers


#: General MIDI drum notes -> piece (a ``midi:`` line check names its pieces by note).
GM_PIECES = {**{n: "kick" for n in (35, 36)}, **{n: "snare" for n in (37, 38, 40)},
             **{n: "hihat" for n in (42, 44, 46)}, **{n: "toms" for n in (41, 43, 45, 47, 48, 50)},
             **{n: "cymbals" for n in (49, 51, 52, 53, 55, 57, 59)}}
#: A note belongs to a hit whose first sample lies this far around it, ms (a module sends
#: MIDI a few ms after the hit).
NOTE_WINDOW_MS = (-10.0, 20.0)


def canonical_piece(name: str) -> str:
    """``kick``, ``snare``, ``hihat``, ``toms`` or ``cymbals`` if ``name`` names one, else ``name``."""
    low = name.lower()
    if low in PIECES:
        return low
    if any(w in low for w in ("overhead", "oh", "cymbal", "crash", "ride")):
        return "cymbals"
    role = _dg_role(low.replace("_", " ").replace("-", " "))
    return role_piece(role) if role else name


@dataclasses.dataclass
class DetectedHit:
    """A hit found in the takes: ``frame`` (its first sample at its close mic), ``piece``,
    ``levels`` (peak dBFS per mic, first 50 ms), ``velocity`` (amplitude over the piece's
    loudest hit)."""

    frame: int
    piece: str
    levels: dict
    velocity: float = 1.0
    #: how the piece was found: "midi" (its note), "loudest mic", "passage" (the majority of
    #: its passage), "no note" (the loudest other mic: a piece with notes had none here)
    by: str = "loudest mic"


@njit(cache=True)
def _peak_follow(x, a):
    y = np.empty(x.size)
    e = 0.0
    for i in range(x.size):
        v = abs(x[i])
        e = v if v > e else e * a
        y[i] = e
    return y


def _fast_env_db(x: np.ndarray, sample_rate: int, release_ms: float = 20.0) -> np.ndarray:
    """Peak envelope, dBFS: instant attack, exponential release (``release_ms`` time constant),
    slow enough that a low tom's zero crossings do not look like new hits."""
    a = math.exp(-1000.0 / (release_ms * sample_rate))
    e = _peak_follow(np.asarray(x, np.float64), a)
    return 20.0 * np.log10(np.maximum(e, 1e-10))


def first_sample(x: np.ndarray, around: int, sample_rate: int, *, before_ms: float = 10.0,
                 after_ms: float = 20.0, under_db: float = FIRST_SAMPLE_DB) -> int:
    """The first sample of the hit near frame ``around`` of ``x``.

    The hit's peak is the largest ``|x|`` in ``[around - before_ms, around + after_ms]``; walking
    back from the peak, the first sample is the earliest one reaching ``under_db`` under the
    peak (and twice the level of the 20 ms before the window, so the ringing of a previous hit
    is not taken for this one's start) before 0.5 ms in a row stay under it.
    """
    sr = sample_rate
    w0 = max(0, around - int(before_ms * sr / 1000))
    w1 = min(x.size, around + int(after_ms * sr / 1000))
    if w1 <= w0:
        return int(around)
    seg = np.abs(np.asarray(x[w0:w1], np.float64))
    pk = int(np.argmax(seg))
    # above the peak's -30 dB and above what was ringing just before (a previous hit's decay)
    pre = np.abs(np.asarray(x[max(0, w0 - int(0.02 * sr)):w0], np.float64))
    thr = max(seg[pk] * 10.0 ** (under_db / 20.0), 2.0 * float(np.percentile(pre, 90)) if pre.size else 0.0)
    thr = min(thr, 0.5 * seg[pk])
    gap = max(1, int(0.0005 * sr))
    first, quiet = pk, 0
    for j in range(pk, -1, -1):
        if seg[j] >= thr:
            first, quiet = j, 0
        else:
            quiet += 1
            if quiet >= gap:
                break
    return w0 + first


def detect_hits(takes: dict, sample_rate: int, close: dict, *, claim_margin_db: float = CLAIM_MARGIN_DB,
                events=None) -> list:
    """Find every hit in soundcheck takes and say which piece played it.

    Parameters
    ----------
    takes : dict
        ``{mic: float (n,)}``, every mic of the kit (same length).
    sample_rate : int
    close : dict
        ``{piece: mic}``.
    claim_margin_db : float
        A hit goes to the close mic that hears it loudest if that mic hears it at least this
        much louder than the next close mic; otherwise it is a cymbal (``"cymbals"``) when no
        close mic is the cymbals' own, else it goes to the loudest.
    events : int (k, 4), optional
        The line check's MIDI ``(frame, status, data1, data2)``: a hit with a note-on of a
        General MIDI drum note (:data:`GM_PIECES`) within :data:`NOTE_WINDOW_MS` of its first
        sample is that piece; a hit without one is not a piece that has notes (often only the
        snare or the kick has a trigger): it goes to the loudest mic of another piece.

    Returns
    -------
    list of DetectedHit
        In time order; velocities relative to each piece's loudest hit.
    """
    sr = int(sample_rate)
    mics = list(takes)
    env = {m: _fast_env_db(takes[m], sr) for m in mics}
    lag = max(1, int(RISE_MS * sr / 1000))
    cands = []
    for m in mics:
        e = env[m]
        floor = max(float(np.percentile(e, 10)), -120.0)
        rise = np.zeros_like(e)
        rise[lag:] = e[lag:] - e[:-lag]
        on = (rise >= RISE_DB) & (e >= floor + ABOVE_FLOOR_DB) & (e >= float(e.max()) - RANGE_DB)
        cands.append(np.flatnonzero(on[1:] & ~on[:-1]) + 1)  # rising edges only
    idx = np.unique(np.concatenate(cands)) if cands else np.zeros(0, np.int64)
    onsets, gap = [], int(MIN_GAP_MS * sr / 1000)
    for i in idx:
        if not onsets or i - onsets[-1] >= gap:
            onsets.append(int(i))
    by_mic = {m: [p for p, mm in close.items() if mm == m] for m in mics}
    hits = []
    w = int(0.05 * sr)
    for t in onsets:
        t0 = max(0, t - int(0.005 * sr))
        levels = {m: float(np.max(env[m][t0:t0 + w])) for m in mics}
        ranked = sorted((m for m in mics if by_mic[m]), key=lambda m: -levels[m])
        if not ranked:
            raise DebleedError("no close mic: the config names no channel input that is a mic")
        top = ranked[0]
        margin = levels[top] - (levels[ranked[1]] if len(ranked) > 1 else -200.0)
        piece = by_mic[top][0]
        if margin < claim_margin_db and "cymbals" not in close:
            piece = "cymbals"
        hits.append(DetectedHit(frame=t, piece=piece, levels=levels))
    # one piece per passage (a majority of at least 60 %)
    passages, cur = [], []
    for h in hits:
        if cur and h.frame - cur[-1].frame > PASSAGE_GAP_S * sr:
            passages.append(cur)
            cur = []
        cur.append(h)
    if cur:
        passages.append(cur)
    for ps in passages:
        names = [h.piece for h in ps]
        best = max(set(names), key=names.count)
        if names.count(best) >= 0.6 * len(names):
            for h in ps:
                if h.piece != best:
                    h.by = "passage"
                h.piece = best
    for h in hits:
        mic = close.get(h.piece) or max(mics, key=lambda m: h.levels[m])
        h.frame = first_sample(takes[mic], h.frame, sr)
        h.levels = {m: float(np.max(env[m][max(0, h.frame):h.frame + w])) for m in mics}
    if events is not None and len(events):
        _identify_by_notes(hits, np.asarray(events, np.int64).reshape(-1, 4), sr, close, mics)
    for p in {h.piece for h in hits}:
        mic = close.get(p)
        own = [h for h in hits if h.piece == p]
        lv = np.array([h.levels[mic] if mic else max(h.levels.values()) for h in own])
        for h, v in zip(own, lv):
            h.velocity = float(max(10.0 ** ((v - lv.max()) / 20.0), 1e-3))
    return hits


def _identify_by_notes(hits, events, sr: int, close: dict, mics: list) -> None:
    """Name hits by their MIDI notes (see :func:`detect_hits`'s ``events``), in place."""
    ons = events[((events[:, 1] & 0xF0) == 0x90) & (events[:, 3] > 0)]
    noted = {GM_PIECES.get(int(n)) for n in ons[:, 2]} - {None}
    lo, hi = (int(v * sr / 1000.0) for v in NOTE_WINDOW_MS)
    for h in hits:
        near = ons[(ons[:, 0] >= h.frame + lo) & (ons[:, 0] <= h.frame + hi)]
        pieces = [GM_PIECES[int(n)] for n in near[:, 2] if int(n) in GM_PIECES and GM_PIECES[int(n)] in close]
        if pieces:
            h.piece, h.by = pieces[0], "midi"
        elif h.piece in noted:
            others = [p for p in close if p not in noted]
            if others:
                h.piece = max(others, key=lambda p: h.levels[close[p]])
                h.by = "no note"


def kit_from_takes(takes: dict, sample_rate: int, close: dict, hits: list | None = None, *,
                   name: str = "soundcheck", events=None) -> tuple[MultiMicKit, list]:
    """Cut every hit of soundcheck takes across all mics into a :class:`MultiMicKit`.

    Each hit starts :data:`PRE_MS` before its first sample and ends before the next hit starts
    (any piece) or after :data:`MAX_HIT_S`. Returns the kit and the detected hits.
    """
    sr = int(sample_rate)
    if hits is None:
        hits = detect_hits(takes, sr, close, events=events)
    mics = tuple(takes)
    x = np.stack([np.asarray(takes[m], np.float32) for m in mics])
    pre = int(PRE_MS * sr / 1000)
    kit = MultiMicKit(name=name, sample_rate=sr, mics=mics, close_mic=dict(close))
    frames = [h.frame for h in hits]
    for i, h in enumerate(hits):
        s = max(0, h.frame - pre)
        e = min(x.shape[1], h.frame + int(MAX_HIT_S * sr), frames[i + 1] - pre if i + 1 < len(hits) else x.shape[1])
        if e - s < int(0.02 * sr):
            continue
        kit.hits.append(KitHit(piece=h.piece, role=PIECE_ROLE.get(h.piece, h.piece), velocity=h.velocity,
                               audio=x[:, s:e].copy(), onset=h.frame - s, source=f"{name}@{h.frame}"))
    return kit, hits


# ---------------------------------------------------------------------------------------------
# 2. bleed matrix

def bleed_matrix(kit: MultiMicKit, window_s: float = 0.2) -> tuple[list, list, np.ndarray]:
    """Per mic (rows) and piece (columns): the piece's median level in the mic relative to the
    mic's own piece, dB (energy over ``window_s`` from each hit's first sample; a mic with no
    own piece is relative to its loudest piece).

    Returns ``(mics, pieces, matrix)``; NaN where a piece has no hit.
    """
    pieces = kit.pieces
    mics = list(kit.mics)
    level = np.full((len(mics), len(pieces)), np.nan)
    w = int(window_s * kit.sample_rate)
    for j, p in enumerate(pieces):
        e = np.array([np.sum(h.audio[:, h.onset:h.onset + w].astype(np.float64) ** 2, axis=1) for h in kit.of(piece=p)])
        if e.size:
            level[:, j] = np.median(10.0 * np.log10(np.maximum(e, 1e-20)), axis=0)
    out = np.full_like(level, np.nan)
    for i, m in enumerate(mics):
        own = [pieces.index(p) for p in kit.own_pieces(m) if p in pieces]
        ref = level[i, own[0]] if own else np.nanmax(level[i])
        out[i] = level[i] - ref
    return mics, pieces, out


def bleed_table(mics, pieces, mat) -> str:
    """The bleed matrix as a markdown table."""
    lines = ["| mic \\ piece | " + " | ".join(pieces) + " |", "|---|" + "---:|" * len(pieces)]
    for i, m in enumerate(mics):
        lines.append(f"| {m} | " + " | ".join("-" if np.isnan(v) else f"{v:+.1f}" for v in mat[i]) + " |")
    return "\n".join(lines)


def plot_bleed(path, mics, pieces, mat) -> None:
    """The bleed matrix as a heat map (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(pieces) + 2, 0.7 * len(mics) + 1.5))
    im = ax.imshow(np.where(np.isnan(mat), -60, mat), cmap="viridis", vmin=-40, vmax=10)
    ax.set_xticks(range(len(pieces)), pieces)
    ax.set_yticks(range(len(mics)), mics)
    ax.set_xlabel("piece")
    ax.set_ylabel("mic")
    for i in range(len(mics)):
        for j in range(len(pieces)):
            if not np.isnan(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:+.0f}", ha="center", va="center", color="w" if mat[i, j] < -15 else "k")
    fig.colorbar(im, label="dB relative to the mic's own piece")
    ax.set_title("bleed matrix")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def plot_hits(path, takes: dict, sample_rate: int, hits: list) -> None:
    """The takes' envelopes with every detected hit marked in its piece's colour (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mics = list(takes)
    fig, axes = plt.subplots(len(mics), 1, figsize=(12, 1.3 * len(mics) + 1), sharex=True, squeeze=False)
    colours = {p: f"C{i}" for i, p in enumerate(sorted({h.piece for h in hits}))}
    for ax, m in zip(axes[:, 0], mics):
        x = np.asarray(takes[m], np.float64)
        step = max(1, x.size // 4000)
        n = x.size // step * step
        env = np.abs(x[:n]).reshape(-1, step).max(axis=1)
        ax.plot(np.arange(env.size) * step / sample_rate, 20 * np.log10(np.maximum(env, 1e-6)), lw=0.6, color="0.3")
        for h in hits:
            ax.axvline(h.frame / sample_rate, color=colours[h.piece], lw=0.6, alpha=0.7)
        ax.set_ylabel(m, rotation=0, ha="right")
        ax.set_ylim(-90, 3)
    for p, c in colours.items():
        axes[0, 0].plot([], [], color=c, label=p)
    axes[0, 0].legend(loc="upper right", ncol=len(colours), fontsize=8)
    axes[-1, 0].set_xlabel("time, s")
    fig.suptitle("soundcheck takes (peak level, dBFS) and the hits found")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# 3. alignment

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


def plot_alignment(path, delays: dict, sample_rate: int) -> None:
    """Per keyed channel, every hit's key-minus-first-sample delay (dots) and what the gate needs:
    the chosen lookahead (line) less the attack allowance (dashed); PNG, written atomically.

    ``delays`` is ``{channel: (delays_ms, alignment dict of key_alignment)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(delays)
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(names) + 1.5))
    for i, name in enumerate(names):
        d, al = delays[name]
        ax.plot(d, np.full(len(d), i) + np.linspace(-0.15, 0.15, len(d)) if len(d) else [], "o", ms=4, color="C0")
        cover = al["lookahead_ms"] + al.get("audio_delay_ms", 0.0)
        ax.plot([cover, cover], [i - 0.35, i + 0.35], color="C3", lw=2)
        ax.plot([cover - al["attack_allowance_ms"]] * 2, [i - 0.35, i + 0.35], color="C3", lw=1, ls="--")
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("key time minus the hit's first sample, ms")
    ax.set_title("alignment: hits (dots), what the lookahead covers (red), less the attack (dashed)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# 4. gate settings

def decay_ms(h: KitHit, row: int, sample_rate: int, drop_db: float = 20.0) -> float:
    """Time from a hit's peak until its 10 ms RMS envelope at mic ``row`` falls ``drop_db`` under
    the peak (or the cut ends), ms."""
    from debleed.models.metrics import rms_envelope

    e = rms_envelope(h.audio[row, h.onset:], sample_rate, 5.0)
    if e.size == 0:
        return 0.0
    pk = int(np.argmax(e))
    under = np.flatnonzero(e[pk:] < e[pk] * 10.0 ** (-drop_db / 20.0))
    n = under[0] if under.size else e.size - pk
    return 1000.0 * (pk + n) / sample_rate


def initial_settings(kit: MultiMicKit, mic: str, key_mic: str | None, bleed_rel_db: float) -> dict:
    """First gate settings for the close mic ``mic`` from the soundcheck's hits.

    - ``threshold_db`` (audio keys only: ``key_mic`` is the key's mic): halfway between the
      loudest bleed peak and the softest own-hit peak in the key mic (in dBFS), or just above
      the loudest bleed when they overlap;
    - ``hysteresis_db``: half the gap between the two, at most 12 dB;
    - ``hold_ms``: the median time of the own hits to fall 12 dB; ``release_ms``: the median
      time from there to 30 dB down;
    - ``range_db``: deep enough to bring the loudest bleed (``bleed_rel_db``, from the bleed
      matrix) 40 dB under the own piece, and at least 35 dB.
    """
    sr = kit.sample_rate
    row = kit.mics.index(mic)
    own = [h for p in kit.own_pieces(mic) for h in kit.of(piece=p)]
    d12 = np.median([decay_ms(h, row, sr, 12.0) for h in own]) if own else 50.0
    d30 = np.median([decay_ms(h, row, sr, 30.0) for h in own]) if own else 150.0
    s = {"hold_ms": clamp("hold_ms", d12), "release_ms": clamp("release_ms", max(d30 - d12, 5.0)),
         "range_db": clamp("range_db", min(-(40.0 + bleed_rel_db), -35.0))}
    why = {"hold_ms": f"median time of the own hits to fall 12 dB ({d12:.0f} ms)",
           "release_ms": f"median time from 12 to 30 dB down ({d30 - d12:.0f} ms)",
           "range_db": f"loudest bleed {bleed_rel_db:+.1f} dB (bleed matrix) brought 40 dB under the own piece, at least 35 dB"}
    if key_mic is not None:
        krow = kit.mics.index(key_mic)
        own_pk = [20 * np.log10(max(float(np.max(np.abs(h.audio[krow, h.onset:h.onset + int(0.05 * sr)]))), 1e-10))
                  for h in own]
        bl_pk = [20 * np.log10(max(float(np.max(np.abs(h.audio[krow]))), 1e-10))
                 for h in kit.hits if h.piece not in kit.own_pieces(mic)]
        lo_own = float(np.percentile(own_pk, 5)) if own_pk else -20.0
        hi_bl = float(np.percentile(bl_pk, 95)) if bl_pk else -80.0
        gap = lo_own - hi_bl
        thr = (lo_own + hi_bl) / 2 if gap > 0 else hi_bl + 3.0
        s["threshold_db"] = clamp("threshold_db", thr)
        s["hysteresis_db"] = clamp("hysteresis_db", -min(12.0, max(gap, 0.0) / 2))
        why["threshold_db"] = ((f"between the loudest bleed peak ({hi_bl:.1f} dBFS, 95th percentile) and the softest "
                                f"own hit ({lo_own:.1f} dBFS, 5th percentile) in the key mic") if gap > 0 else
                               (f"3 dB over the loudest bleed peak ({hi_bl:.1f} dBFS, 95th percentile), which is louder "
                                f"than the softest own hit ({lo_own:.1f} dBFS, 5th percentile) in the key mic"))
        why["hysteresis_db"] = f"half the gap between them ({gap:.1f} dB), at most 12 dB"
    return {"values": s, "why": why}


@dataclasses.dataclass
class FitScene:
    """A mixture for the gate fit: the channel's input (``audio``, the mic or its denoised
    copy), key signal, MIDI events, the mic, its own piece and its own hits; ``latency`` is how
    late ``audio`` is against the mic; ``dry`` the mic delayed as much (denoised channels: for
    the denoiser's attenuation limit)."""

    audio: np.ndarray
    key: np.ndarray | None
    events: np.ndarray
    mic: np.ndarray
    own: np.ndarray
    frames: np.ndarray
    velocities: np.ndarray
    latency: int
    dry: np.ndarray | None = None


def run_channel(spec, audio: np.ndarray, key: np.ndarray | None, events: np.ndarray, sample_rate: int,
                block: int = 1024) -> np.ndarray:
    """One channel through :class:`~debleed.dsp.chain.Chain` (input row 0, key row 1), float32 (n,)."""
    from debleed.dsp.chain import Chain

    n = audio.size
    rows = 1 if key is None else 2
    x = np.zeros((rows, n), np.float32)
    x[0] = audio
    if key is not None:
        x[1] = key
    spec = dataclasses.replace(spec, input=0, key_input=1 if spec.key in ("input", "trigger") else -1)
    ch = Chain([spec], n_inputs=rows)
    ch.prepare(sample_rate, block)
    return ch.render(x, events, block=block)[0]


def scene_metrics(sc: FitScene, out: np.ndarray, sample_rate: int, latency: int) -> dict:
    """SI-SDR (against the own piece), bleed reduction, hit loss (loud / ghost, against the mic
    and the own piece) of one output."""
    from debleed.models.metrics import align

    n = sc.mic.size
    y = align(out, latency, n)
    loss = hit_loss_db(sc.mic, y, sc.frames, sample_rate)
    loss_c = hit_loss_db(sc.own, y, sc.frames, sample_rate)
    loud, ghost = sc.velocities >= LOUD_VELOCITY, sc.velocities < GHOST_VELOCITY
    return {"si_sdr_db": si_sdr_db(sc.own, y), "bleed_reduction_db": bleed_reduction_db(sc.mic, y, sc.own, sample_rate),
            "loud": list(loss[loud]), "ghost": list(loss[ghost]), "loud_clean": list(loss_c[loud]),
            "ghost_clean": list(loss_c[ghost])}


def pool(ms: list) -> dict:
    """Mean metrics over scenes."""
    def m(v):
        return float(np.mean(v)) if len(v) else float("nan")

    return {"si_sdr_db": m([x["si_sdr_db"] for x in ms]),
            "bleed_reduction_db": float(np.nanmean([x["bleed_reduction_db"] for x in ms])),
            "hit_loss_loud_db": m(sum((x["loud"] for x in ms), [])),
            "hit_loss_loud_vs_clean_db": m(sum((x["loud_clean"] for x in ms), [])),
            "hit_loss_ghost_db": m(sum((x["ghost"] for x in ms), [])),
            "hit_loss_ghost_vs_clean_db": m(sum((x["ghost_clean"] for x in ms), []))}


def fit_score(m: dict) -> float:
    """The fit's objective: SI-SDR, less 10 per dB of loud-hit loss over :data:`FIT_LOUD_LOSS_DB`, 10 per dB of
    bleed reduction under :data:`MIN_BLEED_REDUCTION_DB`, and :data:`GHOST_WEIGHT` per dB of
    ghost-note loss (against the clean own piece) over 1 dB. Loud-hit loss and bleed are the
    constraints; SI-SDR picks among what meets them."""
    def over(v, lim):
        return 0.0 if not np.isfinite(v) else max(0.0, v - lim)

    return (m["si_sdr_db"] - 10.0 * over(m["hit_loss_loud_db"], FIT_LOUD_LOSS_DB)
            - GHOST_WEIGHT * over(m["hit_loss_ghost_vs_clean_db"], MAX_GHOST_LOSS_DB)
            - 10.0 * max(0.0, MIN_BLEED_REDUCTION_DB - (m["bleed_reduction_db"] if np.isfinite(m["bleed_reduction_db"]) else 0.0)))


#: Attenuation limits of the denoiser the fit tries on denoised channels, dB (-100: none).
DENOISE_LIMITS_DB = (-100.0, -30.0, -20.0, -12.0)


def fit_channel(spec, scenes: list, sample_rate: int, start: dict, *, progress=None,
                limits_db=(None,), also: dict | None = None) -> tuple[dict, dict, list]:
    """Refine a channel's settings by a grid around ``start`` (:func:`initial_settings` values),
    each point run through the real chain on the fit mixtures; keeps the best :func:`fit_score`.

    The grid: hold x (0.5, 0.75, 1, 1.5, 2, 3), release x (0.5, 1, 2), range (start, -10 dB,
    -20 dB), and for audio keys threshold (-6, 0, +6 dB) and hysteresis (start, 0); on denoised
    channels (scenes with ``dry``) times ``denoise_limit_db`` in ``limits_db`` (the denoiser
    stage's attenuation limit: ``dry * lim + denoised * (1 - lim)``); plus the point ``also``
    (the config's own values: the fit never scores below them). Returns ``(best values, best
    metrics, every point tried)``.
    """
    from debleed.dsp.units import ms_to_samples

    grid = []
    thr = [start.get("threshold_db")] if "threshold_db" not in start else \
        [start["threshold_db"] + d for d in (-6.0, 0.0, 6.0)]
    hys = [start.get("hysteresis_db")] if "hysteresis_db" not in start else sorted({start["hysteresis_db"], 0.0})
    for hold_f in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
        for rel_f in (0.5, 1.0, 2.0):
            for rng_d in (0.0, -10.0, -20.0):
                for t in thr:
                    for hy in hys:
                        v = {"hold_ms": clamp("hold_ms", start["hold_ms"] * hold_f),
                             "release_ms": clamp("release_ms", start["release_ms"] * rel_f),
                             "range_db": clamp("range_db", start["range_db"] + rng_d)}
                        if t is not None:
                            v["threshold_db"] = clamp("threshold_db", t)
                        if hy is not None:
                            v["hysteresis_db"] = clamp("hysteresis_db", hy)
                        grid.append(v)
    if also is not None:
        grid.append({k: also[k] for k in grid[0]})
    tried, best = [], None
    grid = [dict(v, denoise_limit_db=lim) if lim is not None else v for lim in limits_db for v in grid]
    for v in grid:
        lim = v.get("denoise_limit_db")
        sp = dataclasses.replace(spec, **{k: x for k, x in v.items() if k != "denoise_limit_db"})
        la = ms_to_samples(sp.lookahead_ms, sample_rate)
        ms = []
        for sc in scenes:
            audio = sc.audio
            if lim is not None and lim > -100.0 and sc.dry is not None:
                g = 10.0 ** (lim / 20.0)
                audio = (g * sc.dry + (1.0 - g) * sc.audio).astype(np.float32)
            ms.append(scene_metrics(sc, run_channel(sp, audio, sc.key, sc.events, sample_rate), sample_rate,
                                    sc.latency + la))
        m = pool(ms)
        m["score"] = fit_score(m)
        tried.append((v, m))
        if best is None or m["score"] > best[1]["score"]:
            best = (v, m)
        if progress is not None:
            progress.update(1)
    return best[0], best[1], tried


# ---------------------------------------------------------------------------------------------
# 5. denoiser

def _scenes_npz(path, kit: MultiMicKit, mic: str, *, n: int, seconds: float, seed: int, offsets) -> Path:
    noisy = np.zeros((n, int(round(seconds * kit.sample_rate))), np.float32)
    clean = np.zeros_like(noisy)
    rng = np.random.default_rng([seed, 31])
    for i in range(n):
        off = float(rng.uniform(*offsets)) if isinstance(offsets, tuple) else float(offsets[i % len(offsets)])
        sc = kit_scene(kit, mic, seconds=seconds, seed=seed * 1009 + i, bleed_offset_db=off)
        g = np.float32(10.0 ** (rng.uniform(-12.0, 3.0) / 20.0)) if isinstance(offsets, tuple) else np.float32(1.0)
        noisy[i], clean[i] = sc.noisy * g, sc.clean * g
    with atomic_path(Path(path)) as tmp:
        np.savez(tmp, noisy=noisy, clean=clean, sample_rate=np.int64(kit.sample_rate))
    return Path(path)


def denoiser_metrics(model_path, scenes: list, sample_rate: int) -> dict:
    """A model's metrics (:func:`pool`) on denoiser scenes (:func:`kit_scene`)."""
    from debleed.models.denoiser import Denoiser, denoise_signal

    den = Denoiser(model_path)
    den.prepare(sample_rate, 1024)
    ms = []
    for sc in scenes:
        y = denoise_signal(sc.noisy, sample_rate, denoiser=den, compensate=False)
        fs = FitScene(audio=sc.noisy, key=None, events=np.zeros((0, 4)), mic=sc.noisy, own=sc.clean,
                      frames=sc.hit_frames, velocities=sc.hit_velocities, latency=den.latency_samples)
        ms.append(scene_metrics(fs, y, sample_rate, den.latency_samples))
    return pool(ms)


#: Loss settings of the soundcheck's fine-tuning (:class:`debleed.models.train.Loss`).
FINE_TUNE_LOSS = {}  # the defaults: SI-SDR weight 0.05 (0.5, as make train's second stage, cost loud hits more)


def adapt_denoiser(kit: MultiMicKit, mic: str, out_onnx, *, shipped, minutes: float = 5.0, device: str = "cpu",
                   work_dir, seed: int = 0, progress: bool = True, n_train: int = 160, scene_s: float = 4.0,
                   n_valid: int = 6, valid_s: float = 8.0, lr: float = 3e-4, loss_kwargs: dict | None = None) -> dict:
    """Fine-tune ``shipped`` on mixtures of the kit's hits for the close mic ``mic``.

    A quarter of the recordings (:meth:`MultiMicKit.split`, every 4th by velocity) is held out:
    the validation scenes are grooves mixed from them alone, at the measured bleed (as the show).
    Training scenes mix the other hits with every piece's bleed offset by a random
    -10..+20 dB (:data:`AUGMENT_BLEED_DB`) and a random gain. Training runs ``minutes`` on
    ``device`` (:func:`debleed.models.train.train`, from the shipped model's weights).

    Returns
    -------
    dict
        ``before``/``after`` metrics on the validation scenes, ``shipped`` (the model to use:
        ``out_onnx`` if it is better, else the shipped path), ``kept_shipped`` and ``why``.
    """
    from debleed.models.train import train

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    valid_kit, train_kit = kit.split(every=4, keep=1)
    if not valid_kit.of(piece=kit.own_pieces(mic)[0]) or not train_kit.of(piece=kit.own_pieces(mic)[0]):
        raise DebleedError(f"too few hits of {kit.own_pieces(mic)[0]} to hold some out for validation")
    tr = _scenes_npz(work / "train.npz", train_kit, mic, n=n_train, seconds=scene_s, seed=seed + 1,
                     offsets=AUGMENT_BLEED_DB)
    va = _scenes_npz(work / "valid.npz", valid_kit, mic, n=2, seconds=valid_s, seed=seed + 2, offsets=[0.0])
    vscenes = [kit_scene(valid_kit, mic, seconds=valid_s, seed=(seed + 3) * 1009 + i, bleed_offset_db=0.0, augment=False)
               for i in range(max(1, n_valid))]
    before = denoiser_metrics(shipped, vscenes, kit.sample_rate)
    res = train(sample_rate=kit.sample_rate, steps=100000, work_dir=work, out=out_onnx, init_onnx=shipped,
                seed=seed, batch=8, crop_s=min(0.67, scene_s), lr=lr, scene_s=scene_s, ckpt_every=100000,
                resume=False, progress=progress, valid_scenes=2, data=(tr, va), ckpt_name="soundcheck.pt",
                device=device, max_seconds=60.0 * minutes,
                loss_kwargs=FINE_TUNE_LOSS if loss_kwargs is None else loss_kwargs)
    after = denoiser_metrics(out_onnx, vscenes, kit.sample_rate)
    # loud hits against the clean snare: against the mic, removing the bleed under a hit counts
    # as losing the hit (on the +10 dB scenes the bleed is as loud as the snare)
    ok_loud = after["hit_loss_loud_vs_clean_db"] <= max(before["hit_loss_loud_vs_clean_db"] + 0.2, MAX_LOUD_LOSS_DB)
    better = after["si_sdr_db"] >= before["si_sdr_db"] and ok_loud
    why = ("adapted model: SI-SDR {:.1f} dB against the shipped {:.1f} dB on held-out hits, loud-hit loss (vs the "
           "clean snare) {:.2f} against {:.2f} dB".format(after["si_sdr_db"], before["si_sdr_db"],
                                                         after["hit_loss_loud_vs_clean_db"],
                                                         before["hit_loss_loud_vs_clean_db"]) if better else
           "kept the shipped model: the adapted one is worse on held-out hits (SI-SDR {:.1f} against {:.1f} dB, "
           "loud-hit loss vs the clean snare {:.2f} against {:.2f} dB)".format(
               after["si_sdr_db"], before["si_sdr_db"], after["hit_loss_loud_vs_clean_db"],
               before["hit_loss_loud_vs_clean_db"]))
    if not better:
        Path(out_onnx).unlink(missing_ok=True)
    return {"before": before, "after": after, "kept_shipped": not better, "model": str(shipped if not better else out_onnx),
            "why": why, "steps": res["steps"], "train_seconds": res["seconds"], "n_valid_scenes": len(vscenes),
            "valid_hits": len(valid_kit.hits), "train_hits": len(train_kit.hits)}


# ---------------------------------------------------------------------------------------------
# the whole soundcheck

def _fit_scenes(kit: MultiMicKit, cfg, ch, sample_rate: int, *, key_delays_ms, denoise_model=None,
                n: int = 3, seconds: float = 8.0, seed: int = 0) -> list:
    """Mixtures from the kit for fitting channel ``ch``: grooves at the measured bleed, the key
    rebuilt as the soundcheck measured it (trigger pulses or MIDI notes at the measured delays,
    a mic key from the mix)."""
    kind, _, ref = ch.key.partition(":")
    pieces = set(kit.own_pieces(ch.input))
    rng = np.random.default_rng([seed, 77])
    den = None
    if denoise_model is not None:
        from debleed.models.denoiser import Denoiser

        den = Denoiser(denoise_model)
        den.prepare(sample_rate, 1024)
    out = []
    for i in range(n):
        hits = groove(seconds, sample_rate, bpm=float(rng.uniform(80, 160)), seed=seed * 31 + i)
        mx = mix(kit, hits, int(seconds * sample_rate), seed=seed * 31 + i)
        own_hits = [h for h in hits if role_piece(h.role) in pieces]
        d = np.asarray(key_delays_ms if len(key_delays_ms) else [0.0])
        lag = lambda: int(round(rng.choice(d) * sample_rate / 1000.0))  # noqa: E731
        key, events = None, np.zeros((0, 4), np.int64)
        if kind == "trigger":
            key = np.zeros(mx.mics[ch.input].size, np.float32)
            for h in own_hits:
                f = h.frame + lag()
                if 0 <= f < key.size:
                    key[f] = 1.0
        elif kind == "midi":
            notes = [int(v) for v in ref.split(",")]
            rows = [(h.frame + lag(), 0x90 | max(ch.midi_channel - 1, 0), notes[0], max(1, int(round(h.velocity * 127))))
                    for h in own_hits]
            events = np.array(sorted(r for r in rows if 0 <= r[0] < mx.mics[ch.input].size), np.int64).reshape(-1, 4)
        elif kind == "input":
            key = mx.mics[ref]
        audio, latency, dry = mx.mics[ch.input], 0, None
        if den is not None:
            from debleed.models.denoiser import denoise_signal

            y = denoise_signal(audio, sample_rate, denoiser=den, compensate=False)
            latency = den.latency_samples
            dry = np.concatenate([np.zeros(latency, np.float32), audio])[:audio.size].astype(np.float32)
            audio = np.asarray(y[:audio.size], np.float32)
        out.append(FitScene(audio=audio, key=key, events=events, mic=mx.mics[ch.input], own=mx.own[ch.input],
                            frames=np.array([h.frame for h in own_hits], np.int64),
                            velocities=np.array([h.velocity for h in own_hits]), latency=latency, dry=dry))
    return out


def run_soundcheck(config_path, takes_dir, out_dir, *, midi_path=None, minutes: float = 5.0, device: str = "cpu",
                   block: int = 128, progress: bool = True, seed: int = 0, fit_scenes: int = 3,
                   denoiser_scenes: int = 160) -> dict:
    """``debleed soundcheck``: steps 1-6 of the module docs; writes ``OUT/gig.toml``,
    ``OUT/<channel>.onnx`` (when the adapted model wins), ``OUT/report.md``, ``OUT/report.json``
    and PNGs. Returns the report dict.

    ``block`` is the JACK period the gig will run at (the offline renders run at it). A denoised
    channel's audio reaches the gate the denoiser stage's latency (``window - 1`` samples of its
    model, 63 for the shipped ones) after its key, which the lookahead accounts for.

    Raises
    ------
    DebleedError
        A bad config, takes or MIDI file (see :func:`debleed.offline.render.read_inputs`), a MIDI key
        without ``--midi``, ``minutes`` not > 0, no hits found.
    """
    from tqdm import tqdm

    from debleed.models.train import model_path as shipped_path
    from debleed.offline.audiofile import check_output_dir
    from debleed.rt.config import load_config
    from debleed.offline.render import midi_file_events, read_inputs

    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise DebleedError(f"--minutes must be a finite number > 0, got {minutes!r}")
    if device not in ("cpu", "cuda"):
        raise DebleedError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        try:
            import torch
        except ImportError:
            raise DebleedError("--device cuda needs torch (the train extra: pip install -e '.[train]')") from None
        if not torch.cuda.is_available():
            raise DebleedError(f"--device cuda: torch {torch.__version__} sees no CUDA device here; use --device cpu")
    t_start = time.monotonic()
    cfg = load_config(config_path)
    src, out = check_output_dir(takes_dir, out_dir, what="takes")
    midi_ch = [ch.name for ch in cfg.channel if cfg.key_kind(ch) == "midi"]
    if midi_ch and midi_path is None:
        raise DebleedError(f"channel(s) {', '.join(map(repr, midi_ch))} have a MIDI key: give the soundcheck's notes "
                           "with --midi FILE.mid to measure their delay")
    x, sr, files = read_inputs(cfg, src)
    if x.shape[1] < sr // 10:
        raise DebleedError(f"the takes in {src} hold {x.shape[1]} frames ({x.shape[1] / sr:.3f} s): a soundcheck "
                           "needs each piece played alone for a few seconds (record them, e.g. with --record 60)")
    events = midi_file_events(midi_path, sr) if midi_path is not None else np.zeros((0, 4), np.int64)
    close, mics, triggers = pieces_of_config(cfg)
    names = cfg.input_names
    takes = {m: x[names.index(m)] for m in mics}
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda s: print(s, flush=True)) if progress else (lambda s: None)  # noqa: E731

    # 1. hits
    kit, hits = kit_from_takes(takes, sr, close, events=events)
    if not kit.hits:
        raise DebleedError(f"no hits found in the takes of {src}: play each piece alone, a few seconds each")
    per_piece = {p: len(kit.of(piece=p)) for p in kit.pieces}
    say("soundcheck: hits per piece: " + ", ".join(f"{p} {n}" for p, n in per_piece.items()))
    plot_hits(out / "hits.png", takes, sr, hits)

    # 2. bleed matrix
    bm_mics, bm_pieces, mat = bleed_matrix(kit)
    plot_bleed(out / "bleed_matrix.png", bm_mics, bm_pieces, mat)
    say("soundcheck: bleed matrix (dB relative to each mic's own piece):\n" + bleed_table(bm_mics, bm_pieces, mat))

    report = {"config": str(config_path), "takes": files, "sample_rate": sr, "seconds": x.shape[1] / sr,
              "block": block, "hits_per_piece": per_piece, "close_mics": close,
              "hits_identified_by": {p: {by: sum(1 for h in hits if h.piece == p and h.by == by)
                                         for by in sorted({h.by for h in hits if h.piece == p})} for p in per_piece},
              "bleed_matrix": {"mics": bm_mics, "pieces": bm_pieces, "db": [[None if np.isnan(v) else float(v) for v in r] for r in mat]},
              "channels": {}, "denoiser": {}}

    # 5 first (the gate after a denoiser is fitted on the denoiser's output)
    models = {}
    for c, ch in enumerate(cfg.channel):
        if not ch.denoise:
            continue
        shipped = ch.denoise_model or (shipped_path(sr) if sr in (44100, 48000) else None)
        if shipped is None:
            report["denoiser"][ch.name] = {"why": f"no shipped denoiser for {sr} Hz (44100, 48000): not adapted"}
            continue
        say(f"soundcheck: adapting the denoiser of channel {ch.name!r} for {minutes:g} min on {device}")
        try:
            res = adapt_denoiser(kit, ch.input, out / f"{ch.name}.onnx", shipped=shipped, minutes=minutes,
                                 device=device, work_dir=out / ".soundcheck-work", seed=seed, progress=progress,
                                 n_train=denoiser_scenes)
        except DebleedError as e:
            res = {"why": f"not adapted: {e}", "model": str(shipped), "kept_shipped": True}
        finally:  # rendered mixtures and the checkpoint: hundreds of MB, not an output
            shutil.rmtree(out / ".soundcheck-work", ignore_errors=True)
        report["denoiser"][ch.name] = res
        models[ch.name] = res["model"]
        say(f"soundcheck: {ch.name}: {res['why']}")

    # 3 + 4: alignment and gate settings
    specs = cfg.channel_specs()
    settings = {}
    gated = [(c, ch) for c, ch in enumerate(cfg.channel) if ch.mode != "bypass" and ch.input in close.values()]
    bar = tqdm(desc="fit gates", disable=not progress, mininterval=5.0)
    aligned = {}
    for c, ch in gated:
        kind, _, ref = ch.key.partition(":")
        piece = next(p for p, m in close.items() if m == ch.input)
        own_frames = [h.frame for h in hits if h.piece == piece]
        row = bm_mics.index(ch.input)
        others = [v for j, v in enumerate(mat[row]) if bm_pieces[j] != piece and np.isfinite(v)]
        bleed_rel = float(max(others)) if others else -40.0
        init = initial_settings(kit, ch.input, None if kind in ("trigger", "midi") else
                                (ch.input if kind == "self" else ref), bleed_rel)
        vals, why = dict(init["values"]), dict(init["why"])
        delays = np.zeros(0)
        audio_delay_ms = 0.0
        if ch.denoise:
            from debleed.models.denoiser import model_latency_samples

            dn_path = models.get(ch.name) or (shipped_path(sr) if sr in (44100, 48000) else None)
            audio_delay_ms = 1000.0 * model_latency_samples(dn_path) / sr if dn_path else 0.0
        if kind == "trigger":
            tf = trigger_onsets(x[names.index(ref)], sr, ch.trigger_threshold_db, ch.retrigger_ms)
            delays = match_delays(tf, own_frames, sr)
        elif kind == "midi":
            notes = {int(v) for v in ref.split(",")}
            on = events[((events[:, 1] & 0xF0) == 0x90) & (events[:, 3] > 0) & np.isin(events[:, 2], list(notes))]
            if ch.midi_channel:
                on = on[(on[:, 1] & 0x0F) == ch.midi_channel - 1]
            delays = match_delays(on[:, 0], own_frames, sr)
        align = None
        if kind in ("trigger", "midi"):
            align = key_alignment(delays, ch.attack_ms, vals["range_db"], audio_delay_ms)
            if align["n"] == 0:
                align["lookahead_ms"] = ch.lookahead_ms
                why["lookahead_ms"] = f"no {kind} event matched a hit of {piece}: kept the config's value"
            else:
                why["lookahead_ms"] = (f"latest {kind} key {align['max_ms']:+.2f} ms after the hit's first sample "
                                       f"(median {align['median_ms']:+.2f} ms, {align['n']} hits) + "
                                       f"{align['attack_allowance_ms']:.2f} ms for the {ch.attack_ms:g} ms attack to open"
                                       + (f" - {audio_delay_ms:.2f} ms the denoiser already delays the audio"
                                          if audio_delay_ms else ""))
            vals["lookahead_ms"] = align["lookahead_ms"]
        if align is not None and align["n"]:
            aligned[ch.name] = (delays, align)
        if kind in ("self", "input"):
            # a mic key sees the hit when it crosses the threshold: look ahead over that
            krow = kit.mics.index(ch.input if kind == "self" else ref)
            thr = 10.0 ** (vals["threshold_db"] / 20.0)
            late = []
            for h in kit.hits:
                if h.piece == piece:
                    above = np.flatnonzero(np.abs(h.audio[krow, h.onset:h.onset + int(0.02 * sr)]) >= thr)
                    if above.size:
                        late.append(1000.0 * above[0] / sr)
            d = np.asarray(late)
            align = key_alignment(d, ch.attack_ms, vals["range_db"], audio_delay_ms if kind == "input" else 0.0)
            vals["lookahead_ms"] = align["lookahead_ms"]
            why["lookahead_ms"] = (f"the key crosses the threshold up to {align['max_ms']:.2f} ms after the hit's first "
                                   f"sample + {align['attack_allowance_ms']:.2f} ms attack allowance")
            aligned[ch.name] = (d, align)
        spec = dataclasses.replace(specs[c], **{k: v for k, v in vals.items()})
        start = {k: v for k, v in vals.items() if k != "lookahead_ms"}
        own_vals = {k: getattr(ch, k) for k in start}
        denoise = None
        if ch.denoise and models.get(ch.name):
            scenes = _fit_scenes(kit, cfg, ch, sr, key_delays_ms=delays, denoise_model=models[ch.name],
                                 n=fit_scenes, seed=seed + c)
            best, m, tried = fit_channel(spec, scenes, sr, start, progress=bar, limits_db=DENOISE_LIMITS_DB,
                                         also=own_vals)
            # the same gate without the denoiser (its own lookahead: the audio is no longer late)
            plain_la = key_alignment(delays, ch.attack_ms, vals["range_db"], 0.0)["lookahead_ms"] \
                if kind in ("trigger", "midi") else vals["lookahead_ms"]
            plain_scenes = _fit_scenes(kit, cfg, ch, sr, key_delays_ms=delays, n=fit_scenes, seed=seed + c)
            b2, m2, t2 = fit_channel(dataclasses.replace(spec, lookahead_ms=plain_la), plain_scenes, sr, start,
                                     progress=bar, also=own_vals)
            tried += t2
            if m2["score"] > m["score"]:
                denoise = (False, f"the gate alone scores {m2['score']:.1f} on the fit mixtures, the denoiser and gate "
                                  f"{m['score']:.1f} (SI-SDR {m2['si_sdr_db']:.1f} against {m['si_sdr_db']:.1f} dB, ghost-note "
                                  f"loss vs clean {m2['hit_loss_ghost_vs_clean_db']:.1f} against "
                                  f"{m['hit_loss_ghost_vs_clean_db']:.1f} dB)")
                best, m = b2, m2
                vals["lookahead_ms"] = plain_la
                why["lookahead_ms"] = why["lookahead_ms"].split(" - ")[0] + " (no denoiser delay: denoise turned off)"
            else:
                denoise = (True, f"denoiser and gate score {m['score']:.1f} on the fit mixtures, the gate alone "
                                 f"{m2['score']:.1f}")
                lim = best.get("denoise_limit_db", -100.0)
                why["denoise_limit_db"] = ("grid fit: " + ("no attenuation limit" if lim <= -100 else
                                                           f"the denoiser may remove at most {-lim:.0f} dB"))
        else:
            scenes = _fit_scenes(kit, cfg, ch, sr, key_delays_ms=delays, n=fit_scenes, seed=seed + c)
            best, m, tried = fit_channel(spec, scenes, sr, start, progress=bar, also=own_vals)
        for k in best:
            if k not in vals:
                continue
            if k in own_vals and abs(best[k] - own_vals[k]) < 1e-9 and abs(best[k] - vals[k]) > 1e-9:
                why[k] = (f"the config's own value: the grid fit on {len(scenes)} grooves mixed from the soundcheck's hits "
                          f"found nothing better (measured start: {vals[k]:.3g}, {why[k]})")
            elif abs(best[k] - vals[k]) > 1e-9:
                why[k] = f"grid fit on {len(scenes)} grooves mixed from the soundcheck's hits (start: {vals[k]:.3g}, {why[k]})"
            else:
                why[k] = f"{why[k]}; kept by the grid fit"
        vals.update(best)
        if denoise is not None:
            why["denoise"] = denoise[1]
            if not denoise[0]:
                vals.pop("denoise_limit_db", None)
        settings[ch.name] = (vals, why, denoise)
        report["channels"][ch.name] = {"key": ch.key, "piece": piece, "alignment": align, "settings": vals,
                                       "why": why, "fit": m, "grid_points": len(tried),
                                       "denoise": None if denoise is None else denoise[0]}
    bar.close()
    if aligned:
        plot_alignment(out / "alignment.png", aligned, sr)
        report["alignment_plot"] = "alignment.png"

    # write the gig
    gig_text = write_gig(config_path, out / "gig.toml", settings, {k: v for k, v in models.items()},
                         shipped_models={ch.name: report["denoiser"].get(ch.name, {}).get("kept_shipped", True)
                                         for ch in cfg.channel if ch.denoise})
    load_config(out / "gig.toml")  # what we wrote must load
    report["gig"] = str(out / "gig.toml")
    report["seconds_taken"] = round(time.monotonic() - t_start, 1)
    from debleed.fileio import jsonable

    atomic_write_text(out / "report.json", json.dumps(jsonable(report), indent=2, default=float) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report))
    del gig_text
    return report


def write_gig(config_path, out_path, settings: dict, models: dict, shipped_models: dict) -> str:
    """The input config with the soundcheck's values, one comment per value (tomlkit keeps the
    user's comments and layout); written atomically. Returns the text."""
    import tomlkit

    doc = tomlkit.parse(Path(config_path).read_text())
    for tbl in doc["channel"]:
        name = tbl["name"]
        denoise = None
        if name in settings:
            vals, why, *rest = settings[name]
            denoise = rest[0] if rest else None
            for k, v in vals.items():
                # denoise_limit_db is written even at -100 (no limit): the config's default is another value
                it = tomlkit.item(round(float(v), 3))
                it.comment(f"soundcheck: {why.get(k, '')}")
                tbl[k] = it
        if denoise is not None and not denoise[0]:
            for k in [k for k in tbl if k.startswith("denoise")]:
                del tbl[k]
            it = tomlkit.item(False)
            it.comment(f"soundcheck: {denoise[1]}")
            tbl["denoise"] = it
            continue
        if name in models and not shipped_models.get(name, True):
            it = tomlkit.item(str(Path(models[name]).resolve()))
            it.comment("soundcheck: denoiser fine-tuned on this kit's hits (better than the shipped one on held-out hits)")
            tbl["denoise_model"] = it
    text = tomlkit.dumps(doc)
    atomic_write_text(out_path, text)
    return text


def report_markdown(r: dict) -> str:
    """``report.md``."""
    lines = ["# Soundcheck", "", f"Config `{r['config']}`, {r['sample_rate']} Hz, {r['seconds']:.1f} s of takes.", "",
             "## Hits found per piece", "", "| piece | close mic | hits |", "|---|---|---:|"]
    for p, n in r["hits_per_piece"].items():
        lines.append(f"| {p} | {r['close_mics'].get(p, '(none: no close mic claims it)')} | {n} |")
    bm = r["bleed_matrix"]
    mat = np.array([[np.nan if v is None else v for v in row] for row in bm["db"]])
    lines += ["", "![hits](hits.png)", "", "## Bleed matrix", "",
              "Level of each piece in each mic relative to the mic's own piece, dB (median over hits, first 200 ms).", "",
              bleed_table(bm["mics"], bm["pieces"], mat), "", "![bleed matrix](bleed_matrix.png)", "",
              "## Alignment and settings", ""] + (["![alignment](alignment.png)", ""] if r.get("alignment_plot") else [])
    for name, ch in r["channels"].items():
        lines += [f"### {name} (key `{ch['key']}`, piece {ch['piece']})", ""]
        a = ch.get("alignment")
        if a and a.get("n"):
            lines.append(f"Key minus first sample of each hit: median {a['median_ms']:+.2f} ms, range "
                         f"{a['min_ms']:+.2f} .. {a['max_ms']:+.2f} ms over {a['n']} hits; lookahead {a['lookahead_ms']:.2f} ms.")
            lines.append("")
        lines += ["| setting | value | where it came from |", "|---|---:|---|"]
        for k, v in ch["settings"].items():
            lines.append(f"| `{k}` | {v:.3g} | {ch['why'].get(k, '')} |")
        if ch.get("denoise") is not None:
            lines += ["", f"Denoiser {'on' if ch['denoise'] else 'turned off'}: {ch['why'].get('denoise', '')}."]
        m = ch["fit"]
        lines += ["", f"On the fit mixtures: SI-SDR {m['si_sdr_db']:.1f} dB, bleed reduction {m['bleed_reduction_db']:.1f} dB, "
                  f"hit loss loud {m['hit_loss_loud_db']:.2f} dB, ghost {m['hit_loss_ghost_db']:.2f} dB (vs mic) / "
                  f"{m['hit_loss_ghost_vs_clean_db']:.2f} dB (vs clean); {ch['grid_points']} grid points.", ""]
    if r["denoiser"]:
        lines += ["## Denoiser", ""]
        for name, d in r["denoiser"].items():
            lines += [f"### {name}", "", d.get("why", ""), ""]
            if "before" in d:
                lines += [f"Fine-tuned {d['steps']} steps in {d['train_seconds']:.0f} s on mixtures of {d['train_hits']} hits; "
                          f"validation: {d['n_valid_scenes']} grooves mixed from {d['valid_hits']} held-out hits "
                          "(at the measured bleed).", "",
                          "| model | SI-SDR dB | bleed reduction dB | hit loss loud dB (vs mic / vs clean) | ghost dB (vs mic / vs clean) |",
                          "|---|---:|---:|---:|---:|"]
                for lab, m in (("shipped", d["before"]), ("adapted", d["after"])):
                    lines.append(f"| {lab} | {m['si_sdr_db']:.1f} | {m['bleed_reduction_db']:.1f} | {m['hit_loss_loud_db']:.2f} / "
                                 f"{m.get('hit_loss_loud_vs_clean_db', float('nan')):.2f} | "
                                 f"{m['hit_loss_ghost_db']:.2f} / {m['hit_loss_ghost_vs_clean_db']:.2f} |")
                lines.append("")
    lines += [f"The new gig: `{r['gig']}`. Took {r['seconds_taken']:.0f} s.", ""]
    return "\n".join(lines)
