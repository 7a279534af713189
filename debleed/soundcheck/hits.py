"""The soundcheck's first step: find every hit in the line check and say which piece played it.

:func:`find_hits` (what :func:`debleed.soundcheck.run_soundcheck` calls) finds onsets on every
mic (:func:`detect_hits`; every ``[inputs]`` entry that is not a trigger is a mic, the close mic
of the piece named after it, see :func:`pieces_of_config`) and names each hit's piece:

- by its MIDI note where the line check has one (:data:`GM_PIECES`, or the gig's ``[pieces]``
  table: :func:`load_gig_and_pieces`);
- otherwise by its passage (hits less than :data:`PASSAGE_GAP_S` apart: one piece played
  alone): the piece of the mic that hears most of its hits loudest (a hit no close mic claims
  by :data:`CLAIM_MARGIN_DB` is a cymbal). Two passages loudest in the same mic are two pieces
  (``snare`` and ``snare_2``); a passage no mic wins is reported (:func:`passage_summary`).

:func:`kit_from_takes` cuts each hit across all mics into a
:class:`~debleed.models.kit.MultiMicKit`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from numba import njit

from debleed.errors import DebleedError
from debleed.models.kit import PIECE_ROLE, KitHit, MultiMicKit, _dg_role, role_piece
from debleed.models.multitrack import PIECES
from debleed.offline.audiofile import check_output_dir
from debleed.offline.render import midi_file_events, read_inputs
from debleed.rt.config import load_config

#: A hit is a cymbal when its loudest close mic hears it less than this much above the next one.
CLAIM_MARGIN_DB = 6.0
#: Hits closer than this belong to one passage (one piece played alone), s.
PASSAGE_GAP_S = 1.0
#: A passage is one piece's when at least this share of its hits are heard loudest in that
#: piece's mic.
PASSAGE_MAJORITY = 0.6
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


def load_gig_and_pieces(path) -> tuple:
    """The gig config and its ``[pieces]`` table, ``{note: piece}`` (checked by the config:
    :class:`~debleed.rt.config.GigConfig`).

    Raises
    ------
    ConfigError
        What :func:`~debleed.rt.config.load_config` raises, a bad ``[pieces]`` entry included.
    """
    cfg = load_config(path)
    return cfg, dict(cfg.pieces)


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
#: How a hit's piece was named outright (a note or a trigger), not by its passage.
NAMED_BY = ("midi", "trigger")


def canonical_piece(name: str) -> str:
    """``kick``, ``snare``, ``hihat``, ``toms`` or ``cymbals`` if ``name`` names one, else ``name``."""
    low = name.lower()
    if low in PIECES:
        return low
    if any(w in low for w in ("overhead", "oh", "cymbal", "crash", "ride")):
        return "cymbals"
    role = _dg_role(low.replace("_", " ").replace("-", " "))
    return role_piece(role) if role else name


def piece_role(piece: str) -> str:
    """The groove role a piece's hits play: :data:`~debleed.models.kit.PIECE_ROLE`'s, else the
    role its name says (``tom2`` -> ``tom_mid``, ``ride`` -> ``ride``), else the name itself."""
    return PIECE_ROLE.get(piece) or _dg_role(piece.replace("_", " ").replace("-", " ")) or piece


@dataclasses.dataclass
class DetectedHit:
    """A hit found in the takes: ``frame`` (its first sample at its close mic), ``piece``,
    ``levels`` (peak dBFS per mic, first 50 ms), ``velocity`` (amplitude over the piece's
    loudest hit), how it was identified."""

    frame: int
    piece: str
    levels: dict
    velocity: float = 1.0
    #: how the piece was found: "midi" (its note), "trigger" (its piezo trigger fired), "passage"
    #: (the mic that hears its passage loudest), "loudest mic" (a passage with no majority: the
    #: mic that hears this hit loudest), "no note" (the loudest other piece: the piece of that mic
    #: has notes or a trigger, this hit none)
    by: str = "loudest mic"
    #: the same in words, for the report (e.g. "MIDI note 38", "passage 3, loudest in mic 'snare'")
    how: str = ""
    #: index of its passage (hits less than PASSAGE_GAP_S apart), from 0
    passage: int = 0
    #: the groove role its kit hit plays (None: the piece's own, :data:`PIECE_ROLE`)
    role: str | None = None
    #: spectral centroid of the first 100 ms at the mic that hears it loudest, Hz
    centroid_hz: float = 0.0


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


def _centroid_hz(x: np.ndarray, sample_rate: int) -> float:
    """Power-weighted spectral centroid of ``x`` (Hann window), Hz; 0 for silence."""
    x = np.asarray(x, np.float64)
    if x.size < 2:
        return 0.0
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    total = float(np.sum(power))
    return float(np.sum(f * power) / total) if total > 0 else 0.0


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
                events=None, note_pieces: dict | None = None, triggers: dict | None = None) -> list:
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
        snare or the kick has a trigger): its passage is another piece.
    note_pieces : dict, optional
        ``{note: piece}`` overriding :data:`GM_PIECES` (the gig's ``[pieces]`` table).
    triggers : dict, optional
        ``{piece: (trigger input, frames)}``: where each piezo trigger fired
        (:func:`~debleed.soundcheck.alignment.trigger_onsets`, at its channel's trigger
        threshold and retrigger time). Like a note: a hit that no note names, with a firing
        within :data:`NOTE_WINDOW_MS` of its first sample, is that piece; a hit without one is
        not that piece (a ride stroke loudest in the kick mic is no kick stroke when the kick's
        trigger stayed silent).

    Notes
    -----
    Without a note, a hit's piece is its passage's (hits less than :data:`PASSAGE_GAP_S`
    apart: one piece played alone): the piece of the mic that hears most of its hits loudest
    (at least :data:`PASSAGE_MAJORITY`). Two passages heard loudest in the same mic are two
    pieces (see :func:`_name_passages`); a passage with no majority is not placed, and the
    report warns about it.

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
        hits.append(DetectedHit(frame=t, piece=piece, levels=levels,
                                centroid_hz=_centroid_hz(takes[max(mics, key=levels.get)][t0:t0 + 2 * w], sr)))
    for i, ps in enumerate(_passages(hits, sr)):
        for h in ps:
            h.passage = i
    # one piece per passage (a majority of at least 60 %), decided before the MIDI notes so that
    # each hit's first sample is found on its piece's close mic
    votes = {}
    for ps in _passages(hits, sr):
        names = [h.piece for h in ps]
        best = max(set(names), key=names.count)
        if names.count(best) >= PASSAGE_MAJORITY * len(names):
            votes[ps[0].passage] = best
            for h in ps:
                h.piece = best
    for h in hits:
        mic = close.get(h.piece) or max(mics, key=lambda m: h.levels[m])
        h.frame = first_sample(takes[mic], h.frame, sr)
        h.levels = {m: float(np.max(env[m][max(0, h.frame):h.frame + w])) for m in mics}
    noted = set()
    if events is not None and len(events):
        noted = _identify_by_notes(hits, np.asarray(events, np.int64).reshape(-1, 4), sr, close, mics, note_pieces)
    if triggers:
        noted |= _identify_by_triggers(hits, triggers, sr)
    _name_passages(hits, close, votes, noted)
    for p in {h.piece for h in hits}:
        mic = close.get(p)
        own = [h for h in hits if h.piece == p]
        lv = np.array([h.levels[mic] if mic else max(h.levels.values()) for h in own])
        for h, v in zip(own, lv):
            h.velocity = float(max(10.0 ** ((v - lv.max()) / 20.0), 1e-3))
    return hits


def _passages(hits: list, sr: int) -> list:
    """Hits grouped into passages: less than :data:`PASSAGE_GAP_S` between neighbours."""
    passages, cur = [], []
    for h in hits:
        if cur and h.frame - cur[-1].frame > PASSAGE_GAP_S * sr:
            passages.append(cur)
            cur = []
        cur.append(h)
    if cur:
        passages.append(cur)
    return passages


def _name_passages(hits: list, close: dict, votes: dict, noted: set) -> None:
    """Give every passage that a majority placed its own piece, in place.

    The hits a MIDI note did not name, in a passage whose majority (``votes``: ``{passage:
    piece}``) says one piece, are that piece's. Two such passages of the same piece are two
    pieces heard loudest in the same mic (a snare and a rack tom in the snare mic), unless every
    mic hears them alike (:data:`SAME_PIECE_DB`: the same piece again, or one passage split by a
    stroke too soft to be found): the one the mic hears loudest (90th percentile of its hits' levels) keeps the piece's name, the
    others are ``<piece>_2``, ``<piece>_3``, ... in time order, with no close mic of their own
    (bleed in every mic) and a role from their sound (:func:`_extra_role`). A piece that MIDI
    notes already name gives all its passages new names. A passage with no majority is not
    placed: each of its hits keeps the piece of the mic that hears it loudest (``by`` is
    ``"loudest mic"``), unless that piece has MIDI notes (then the loudest other piece, ``"no
    note"``).
    """
    groups = {}
    free = {}
    for h in hits:
        if h.by not in NAMED_BY:
            free.setdefault(h.passage, []).append(h)
    for i, ps in free.items():
        if i in votes:
            groups.setdefault(votes[i], []).append(ps)
        else:
            for h in ps:
                h.by = "loudest mic"
                h.how = f"passage {i + 1} not placed (no piece has {PASSAGE_MAJORITY:.0%} of its hits): loudest mic"
                if h.piece in noted:
                    others = [p for p in close if p not in noted]
                    if others:
                        h.piece = max(others, key=lambda p: h.levels[close[p]])
                        h.by = "no note"
                        h.how += f"; no MIDI note or trigger for it, so not {', '.join(sorted(noted))}"
    n_extra = {}
    for piece, group in groups.items():
        group = _merge_same_piece(group)
        mic = close.get(piece)
        if piece in noted or mic is None:
            own = None if piece in noted else group[0]
        else:
            own = max(group, key=lambda ps: float(np.percentile([h.levels[mic] for h in ps], 90)))
        k = 2
        for ps in group:
            name = piece
            if ps is not own:
                while f"{piece}_{k}" in close or any(h.piece == f"{piece}_{k}" for h in hits if h.by in NAMED_BY):
                    k += 1
                name = f"{piece}_{k}"
                k += 1
            loudest = max(ps[0].levels, key=lambda m: np.median([h.levels[m] for h in ps]))
            role = None if name == piece else _extra_role(ps, n_extra)
            for h in ps:
                h.piece, h.by, h.role = name, "passage", role
                h.how = f"passage {ps[0].passage + 1}, loudest in mic {loudest!r}"


#: Two passages heard loudest in one mic are one piece (played again, or split by a stroke too
#: soft to be found) when every mic hears them at the same level relative to their loudest mic,
#: within this much (medians over each passage's hits), dB; otherwise two pieces.
SAME_PIECE_DB = 3.0


def _level_profile(passage: list) -> dict:
    """Median level of a passage's hits in every mic relative to the hit's loudest mic, dB."""
    mics = list(passage[0].levels)
    return {m: float(np.median([h.levels[m] - max(h.levels.values()) for h in passage])) for m in mics}


def _merge_same_piece(group: list) -> list:
    """Passages of one mic, those that sound alike merged (:data:`SAME_PIECE_DB`), in time order."""
    merged = []
    for ps in group:
        prof = _level_profile(ps)
        for g in merged:
            ref = _level_profile(g)
            if max(abs(prof[m] - ref[m]) for m in prof) <= SAME_PIECE_DB:
                g.extend(ps)
                break
        else:
            merged.append(list(ps))
    return merged


#: A passage's pieces beyond the first loudest in one mic: cymbal roles when their sound is
#: bright (spectral centroid of the first 100 ms above this, Hz), tom roles otherwise.
BRIGHT_HZ = 3000.0


def _extra_role(passage: list, used: dict) -> str:
    """A groove role for a piece found as an extra passage (so the mixtures play it): its hits'
    median ``centroid_hz`` (:func:`detect_hits` measures it) over :data:`BRIGHT_HZ` is a cymbal
    (crash, then ride), else a tom (high, mid, low in turn)."""
    bright = float(np.median([h.centroid_hz for h in passage])) > BRIGHT_HZ
    roles = ("crash", "ride") if bright else ("tom_high", "tom_mid", "tom_low")
    n = used.get(bright, 0)
    used[bright] = n + 1
    return roles[min(n, len(roles) - 1)]


def _identify_by_notes(hits, events, sr: int, close: dict, mics: list, note_pieces: dict | None = None) -> set:
    """Name hits by their MIDI notes (see :func:`detect_hits`'s ``events``), in place; returns
    the pieces the notes name."""
    by_mic = {m: p for p, m in close.items()}  # a [pieces] name that is a mic names that mic's piece
    table = {**GM_PIECES, **{n: by_mic.get(p, p) for n, p in (note_pieces or {}).items()}}
    ons = events[((events[:, 1] & 0xF0) == 0x90) & (events[:, 3] > 0)]
    noted = {table.get(int(n)) for n in ons[:, 2]} - {None}
    lo, hi = (int(v * sr / 1000.0) for v in NOTE_WINDOW_MS)
    for h in hits:
        near = ons[(ons[:, 0] >= h.frame + lo) & (ons[:, 0] <= h.frame + hi)]
        named = [int(n) for n in near[:, 2] if int(n) in table]
        if named:
            h.piece, h.by, h.how = table[named[0]], "midi", f"MIDI note {named[0]}"
            h.role = None
    return noted


def _identify_by_triggers(hits, triggers: dict, sr: int) -> set:
    """Name the hits no note named by their piezo triggers (see :func:`detect_hits`'s
    ``triggers``), in place; returns the pieces whose trigger named at least one hit (a trigger
    that stayed silent through the line check, unplugged or set too high, names nothing and
    takes nothing from its piece's passages)."""
    lo, hi = (int(v * sr / 1000.0) for v in NOTE_WINDOW_MS)
    named = set()
    for h in hits:
        if h.by == "midi":
            continue
        for piece, (name, frames) in triggers.items():
            f = np.asarray(frames, np.int64)
            if np.any((f >= h.frame + lo) & (f <= h.frame + hi)):
                h.piece, h.by, h.how, h.role = piece, "trigger", f"trigger {name!r}", None
                named.add(piece)
                break
    return named


def trigger_pieces(cfg, close: dict, inputs: dict, sample_rate: int) -> dict:
    """``{piece: (trigger input, frames)}`` for :func:`detect_hits`: where each ``trigger:`` key
    of the gig fired in the line check, at its channel's ``trigger_threshold_db`` and
    ``retrigger_ms``; the piece is the one whose close mic is the channel's input."""
    from debleed.soundcheck.alignment import trigger_onsets

    out = {}
    for ch in cfg.channel:
        if cfg.key_kind(ch) != "trigger":
            continue
        ref = ch.key.partition(":")[2]
        piece = next((p for p, m in close.items() if m == ch.input), None)
        if piece is not None and ref in inputs and piece not in out:
            out[piece] = (ref, trigger_onsets(inputs[ref], sample_rate, ch.trigger_threshold_db, ch.retrigger_ms))
    return out


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
        kit.hits.append(KitHit(piece=h.piece, role=h.role or piece_role(h.piece), velocity=h.velocity,
                               audio=x[:, s:e].copy(), onset=h.frame - s, source=f"{name}@{h.frame}"))
    return kit, hits



@dataclasses.dataclass
class LineCheck:
    """A line check as the soundcheck reads it (:func:`read_line_check`).

    Attributes
    ----------
    config_path : Path
        The gig config.
    cfg : GigConfig
    takes_dir, out : Path
        Where the takes are, where the outputs go.
    sample_rate : int
        Hz.
    inputs : dict
        ``{input: float32 (n,)}``: every ``[inputs]`` entry's take, triggers included.
    files : dict
        ``{input: path}`` of the takes.
    events : int (k, 4)
        The line check's MIDI ``(frame, status, data1, data2)`` (none without ``--midi``).
    close : dict
        ``{piece: mic}`` (:func:`pieces_of_config`).
    mics, triggers : list of str
        The inputs that are mics and those that are ``trigger:`` keys.
    pieces : dict
        The gig's ``[pieces]`` table, ``{note: piece}`` (:func:`load_gig_and_pieces`).
    """

    config_path: Path
    cfg: object
    takes_dir: Path
    out: Path
    sample_rate: int
    inputs: dict
    files: dict
    events: np.ndarray
    close: dict
    mics: list
    triggers: list
    pieces: dict = dataclasses.field(default_factory=dict)

    @property
    def takes(self) -> dict:
        """``{mic: float32 (n,)}``: the mics' takes (no triggers)."""
        return {m: self.inputs[m] for m in self.mics}

    @property
    def seconds(self) -> float:
        """Length of the takes, s."""
        return next(iter(self.inputs.values())).size / self.sample_rate


def read_line_check(config_path, takes_dir, out_dir, midi_path=None) -> LineCheck:
    """Read a line check: the gig config, one take per ``[inputs]`` entry, its MIDI.

    Parameters
    ----------
    config_path : path
        The gig config (TOML).
    takes_dir : path
        ``<input>.wav`` per ``[inputs]`` entry (mono, one rate and length).
    out_dir : path
        The output folder (not inside ``takes_dir``; created).
    midi_path : path, optional
        A standard MIDI file of the line check; needed when a channel has a ``midi:`` key.

    Returns
    -------
    LineCheck

    Raises
    ------
    DebleedError
        A bad config, takes or MIDI file (see :func:`debleed.offline.render.read_inputs`), an
        output folder inside the takes, a MIDI key without ``midi_path``, takes shorter than
        0.1 s, a channel whose input is also a trigger key.
    """
    cfg, pieces = load_gig_and_pieces(config_path)
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
    out.mkdir(parents=True, exist_ok=True)
    return LineCheck(config_path=Path(config_path), cfg=cfg, takes_dir=src, out=out, sample_rate=sr,
                     inputs={n: x[i] for i, n in enumerate(cfg.input_names)}, files=files, events=events,
                     close=close, mics=mics, triggers=triggers, pieces=pieces)


def find_hits(takes: dict, sample_rate: int, close: dict, *, events=None, note_pieces: dict | None = None,
              triggers: dict | None = None, where: str = "the takes") -> tuple[MultiMicKit, list]:
    """The hits step: the line check's hits as a kit (:func:`kit_from_takes`), refusing a line check
    with none.

    Parameters
    ----------
    takes : dict
        ``{mic: float (n,)}``, every mic of the kit, one length.
    sample_rate : int
        Hz.
    close : dict
        ``{piece: mic}`` (:func:`pieces_of_config`).
    events : int (k, 4), optional
        The line check's MIDI (see :func:`detect_hits`).
    note_pieces : dict, optional
        ``{note: piece}`` overriding the General MIDI map (the gig's ``[pieces]``).
    triggers : dict, optional
        Where the piezo triggers fired (:func:`trigger_pieces`; see :func:`detect_hits`).
    where : str
        What the takes are, for the error message.

    Returns
    -------
    (MultiMicKit, list of DetectedHit)

    Raises
    ------
    DebleedError
        No hit found.
    """
    hits = detect_hits(takes, sample_rate, close, events=events, note_pieces=note_pieces, triggers=triggers)
    kit, hits = kit_from_takes(takes, sample_rate, close, hits)
    if not kit.hits:
        raise DebleedError(f"no hits found in {where}: play each piece alone, a few seconds each")
    return kit, hits


def passage_summary(hits: list, sample_rate: int) -> tuple[list, list]:
    """The line check's passages for the report, and a warning per passage not placed.

    Returns
    -------
    (list of dict, list of str)
        Per passage: ``passage`` (from 1), ``start_s``, ``end_s``, ``hits``, ``pieces``
        (``{piece: hits}``), ``placed`` (one piece by its mic or MIDI notes); the warnings.
    """
    rows, warnings = [], []
    for i in sorted({h.passage for h in hits}):
        ps = [h for h in hits if h.passage == i]
        pieces = {p: sum(1 for h in ps if h.piece == p) for p in dict.fromkeys(h.piece for h in ps)}
        placed = all(h.by in (*NAMED_BY, "passage") for h in ps)
        rows.append({"passage": i + 1, "start_s": ps[0].frame / sample_rate, "end_s": ps[-1].frame / sample_rate,
                     "hits": len(ps), "pieces": pieces, "placed": placed})
        if not placed:
            warnings.append(f"passage {i + 1} ({ps[0].frame / sample_rate:.1f}-{ps[-1].frame / sample_rate:.1f} s, "
                            f"{len(ps)} hits) could not be placed: no mic hears {PASSAGE_MAJORITY:.0%} of its hits "
                            f"loudest, so each hit went to the mic that hears it loudest "
                            f"({', '.join(f'{p} {n}' for p, n in pieces.items())}); play one piece per passage, "
                            f"with more than {PASSAGE_GAP_S:g} s of silence between passages")
    return rows, warnings


def identified_by(hits: list, pieces: list) -> dict:
    """``{piece: {how: count}}`` for each of ``pieces``: how its hits were identified
    (:attr:`DetectedHit.by`)."""
    return {p: {by: sum(1 for h in hits if h.piece == p and h.by == by)
                for by in sorted({h.by for h in hits if h.piece == p})} for p in pieces}


def identified_how(hits: list, pieces: list) -> dict:
    """``{piece: {how: count}}`` for each of ``pieces``, in words (:attr:`DetectedHit.how`:
    the MIDI note, or the passage and the mic that hears it loudest)."""
    return {p: {how: sum(1 for h in hits if h.piece == p and h.how == how)
                for how in dict.fromkeys(h.how for h in hits if h.piece == p)} for p in pieces}
