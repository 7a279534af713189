"""The soundcheck's gate step: each gated channel's settings, measured, then fitted through the chain.

:func:`initial_channel_settings` measures a first threshold, hysteresis, hold, release and range
per gated channel (:func:`initial_settings`: levels and decay times of the line check's hits,
range from the bleed matrix, after Terrell, Reiss and Sandler, "Automatic noise gate settings
for drum recordings containing bleed from secondary sources", EURASIP JASP 2010);
:func:`fit_channels` refines them by a grid (:func:`fit_channel`) run through
:class:`~debleed.dsp.chain.Chain` on grooves mixed from the line check's hits
(:func:`channel_scenes`), scored by :func:`fit_score`. On a denoised channel the same grid also
runs without the denoiser, and the better of the two is kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from debleed.dsp.processor import ProcessSpec
from debleed.dsp.chain import Chain
from debleed.dsp.units import ms_to_samples
from debleed.models.denoiser import Denoiser, denoise_signal
from debleed.models.kit import KitHit, MultiMicKit, groove, mix, role_piece
from debleed.models.metrics import align, bleed_reduction_db, hit_loss_db, rms_envelope, si_sdr_db
from debleed.soundcheck.alignment import key_alignment
from debleed.soundcheck.common import GHOST_VELOCITY, LOUD_VELOCITY, MAX_GHOST_LOSS_DB, clamp, key_frame
from debleed.soundcheck.informed import denoise_informed, informed_inputs, key_track

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


def decay_ms(h: KitHit, row: int, sample_rate: int, drop_db: float = 20.0) -> float:
    """Time from a hit's peak until its 10 ms RMS envelope at mic ``row`` falls ``drop_db`` under
    the peak (or the cut ends), ms."""
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
    n = audio.size
    rows = 1 if key is None else 2
    x = np.zeros((rows, n), np.float32)
    x[0] = audio
    if key is not None:
        x[1] = key
    spec = dataclasses.replace(spec, input=0, key_input=1 if spec.key in ("input", "trigger") else -1)
    ch = Chain([spec], n_inputs=rows)
    ch.prepare(ProcessSpec(sample_rate, block, ch.n_channels))
    return ch.render(x, events, block=block)[0]


def scene_metrics(sc: FitScene, out: np.ndarray, sample_rate: int, latency: int) -> dict:
    """SI-SDR (against the own piece), bleed reduction, hit loss (loud / ghost, against the mic
    and the own piece) of one output."""
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



def channel_scenes(kit: MultiMicKit, ch, sample_rate: int, *, key_delays_ms, denoise_model=None,
                   n: int = 3, seconds: float = 8.0, seed: int = 0) -> list:
    """Mixtures from the kit for fitting channel ``ch``: grooves at the measured bleed, the key
    rebuilt as the soundcheck measured it (trigger pulses or MIDI notes at the measured delays,
    a mic key from the mix).

    Parameters
    ----------
    kit : MultiMicKit
    ch : ChannelConfig
    sample_rate : int
        Hz.
    key_delays_ms : sequence of float
        Measured key-minus-hit delays, ms; each rebuilt key event takes one at random (0 when
        empty).
    denoise_model : path, optional
        Run the channel's audio through this denoiser first (``audio`` is then late by its
        ``latency_samples``; ``dry`` is the mic delayed as much). An informed model hears the
        channel's reference mics from the same mix and its key (the rebuilt key events, at the
        hits' velocities), as the denoiser stage feeds them.
    n : int
        Mixtures; default 3.
    seconds : float
        Length of each, s; default 8.
    seed : int

    Returns
    -------
    list of FitScene
    """
    kind, _, ref = ch.key.partition(":")
    pieces = set(kit.own_pieces(ch.input))
    rng = np.random.default_rng([seed, 77])
    den = inf = None
    if denoise_model is not None:
        den = Denoiser(denoise_model)
        den.prepare(ProcessSpec(sample_rate, 1024))
        inf = informed_inputs(denoise_model, ch, key_delays_ms)
    out = []
    for i in range(n):
        hits = groove(seconds, sample_rate, bpm=float(rng.uniform(80, 160)), seed=seed * 31 + i)
        mx = mix(kit, hits, int(seconds * sample_rate), seed=seed * 31 + i)
        own_hits = [h for h in hits if role_piece(h.role) in pieces]
        d = np.asarray(key_delays_ms if len(key_delays_ms) else [0.0])
        n_mix = mx.mics[ch.input].size
        at = lambda h: key_frame(h.frame, float(rng.choice(d)), sample_rate, n_mix)  # noqa: E731
        key, events = None, np.zeros((0, 4), np.int64)
        onsets = []  # (frame, velocity) of the key's events: an informed denoiser's key
        if kind == "trigger":
            key = np.zeros(n_mix, np.float32)
            for h in own_hits:
                f = at(h)
                if f is not None:
                    key[f] = 1.0
                    onsets.append((f, h.velocity))
        elif kind == "midi":
            notes = [int(v) for v in ref.split(",")]
            rows = [(at(h), 0x90 | max(ch.midi_channel - 1, 0), notes[0], max(1, int(round(h.velocity * 127))))
                    for h in own_hits]
            events = np.array(sorted(r for r in rows if r[0] is not None), np.int64).reshape(-1, 4)
            onsets = [(int(r[0]), r[3] / 127.0) for r in events]
        elif kind == "input":
            key = mx.mics[ref]
        audio, latency, dry = mx.mics[ch.input], 0, None
        if den is not None and inf is not None:
            refs = np.zeros((inf.n_refs, audio.size), np.float32)
            for r, name in enumerate(inf.refs):
                refs[r] = mx.mics[name]
            ktrack = key_track([f for f, _ in onsets], [v for _, v in onsets], audio.size) if inf.key else None
            y, latency = denoise_informed(denoise_model, audio, refs, ktrack)
        elif den is not None:
            y = denoise_signal(audio, sample_rate, denoiser=den, compensate=False)
            latency = den.latency_samples
        if den is not None:
            dry = np.concatenate([np.zeros(latency, np.float32), audio])[:audio.size].astype(np.float32)
            audio = np.asarray(y[:audio.size], np.float32)
        out.append(FitScene(audio=audio, key=key, events=events, mic=mx.mics[ch.input], own=mx.own[ch.input],
                            frames=np.array([h.frame for h in own_hits], np.int64),
                            velocities=np.array([h.velocity for h in own_hits]), latency=latency, dry=dry))
    return out


@dataclasses.dataclass
class GateStart:
    """A gated channel before its fit (:func:`initial_channel_settings`).

    Attributes
    ----------
    index : int
        The channel's index in the config's ``[[channel]]`` list.
    channel : ChannelConfig
    piece : str
        The piece it gates (the first piece of its input's mic).
    values : dict
        First settings in user units (:func:`initial_settings`).
    why : dict
        One sentence per value: where it came from.
    """

    index: int
    channel: object
    piece: str
    values: dict
    why: dict

    @property
    def kind(self) -> str:
        """The key's kind: ``self``, ``input``, ``trigger`` or ``midi``."""
        return self.channel.key.partition(":")[0]


def initial_channel_settings(cfg, kit: MultiMicKit, bleed) -> list[GateStart]:
    """The gate step's start: the first settings of every gated channel whose input is a close mic of ``kit``
    (a ``bypass`` channel is not gated).

    Parameters
    ----------
    cfg : GigConfig
    kit : MultiMicKit
        The line check's hits (:func:`debleed.soundcheck.hits.find_hits`).
    bleed : Bleed
        The bleed matrix (:func:`debleed.soundcheck.bleed.measure_bleed`): the range is set from
        the loudest other piece in the channel's mic.

    Returns
    -------
    list of GateStart
        In config order.
    """
    starts = []
    for c, ch in enumerate(cfg.channel):
        if ch.mode == "bypass" or ch.input not in kit.close_mic.values():
            continue
        kind, _, ref = ch.key.partition(":")
        piece = kit.own_pieces(ch.input)[0]
        key_mic = None if kind in ("trigger", "midi") else (ch.input if kind == "self" else ref)
        init = initial_settings(kit, ch.input, key_mic, bleed.loudest_other_db(ch.input, piece))
        starts.append(GateStart(c, ch, piece, dict(init["values"]), dict(init["why"])))
    return starts


@dataclasses.dataclass
class ChannelFit:
    """A gated channel's fitted settings (:func:`fit_gate`).

    Attributes
    ----------
    piece : str
        The piece the channel gates.
    key : str
        The channel's key (``self``, ``input:<name>``, ...).
    values : dict
        The settings to write into the gig, user units.
    why : dict
        One sentence per value.
    denoise : tuple or None
        On a denoised channel ``(on, why)``: whether the denoiser stays on; None otherwise.
    metrics : dict
        The best point's metrics on the fit mixtures (:func:`pool`, plus ``score``).
    grid_points : int
        Points tried.
    n_scenes : int
        Fit mixtures.
    """

    piece: str
    key: str
    values: dict
    why: dict
    denoise: tuple | None
    metrics: dict
    grid_points: int
    n_scenes: int


def fit_gate(start: GateStart, key, spec, kit: MultiMicKit, *, denoise_model=None, n_scenes: int = 3,
             seed: int = 0, progress=None) -> ChannelFit:
    """The grid fit of one channel (:func:`fit_channel`) from its first settings and
    its key's lookahead.

    On a denoised channel with a model (``denoise_model``), the grid runs twice: with the
    denoiser (its attenuation limits :data:`DENOISE_LIMITS_DB`) and without it (at the lookahead
    the key needs without the denoiser's delay); the better score is kept and says whether the
    denoiser stays on.

    Parameters
    ----------
    start : GateStart
    key : KeyAlignment
        Its key's alignment (:func:`debleed.soundcheck.alignment.align_key`).
    spec : ChannelSpec
        The channel as the config gives it (:meth:`GigConfig.channel_specs`).
    kit : MultiMicKit
    denoise_model : path, optional
        The denoiser model of a denoised channel (adapted or shipped).
    n_scenes : int
        Fit mixtures (8 s grooves), >= 1.
    seed : int
        The mixtures' seed (the channel's index is added).
    progress : tqdm, optional
        Updated once per grid point.

    Returns
    -------
    ChannelFit
    """
    ch, c, sr = start.channel, start.index, kit.sample_rate
    vals, why = dict(start.values), dict(start.why)
    vals["lookahead_ms"] = key.lookahead_ms
    why["lookahead_ms"] = key.why
    delays = key.key_delays_ms
    spec = dataclasses.replace(spec, **vals)
    begin = {k: v for k, v in vals.items() if k != "lookahead_ms"}
    own_vals = {k: getattr(ch, k) for k in begin}
    denoise = None
    if ch.denoise and denoise_model:
        scenes = channel_scenes(kit, ch, sr, key_delays_ms=delays, denoise_model=denoise_model, n=n_scenes,
                                seed=seed + c)
        best, m, tried = fit_channel(spec, scenes, sr, begin, progress=progress, limits_db=DENOISE_LIMITS_DB,
                                     also=own_vals)
        # the same gate without the denoiser (its own lookahead: the audio is no longer late)
        plain_la = key_alignment(delays, ch.attack_ms, vals["range_db"], 0.0)["lookahead_ms"] \
            if key.kind in ("trigger", "midi") else vals["lookahead_ms"]
        plain_scenes = channel_scenes(kit, ch, sr, key_delays_ms=delays, n=n_scenes, seed=seed + c)
        b2, m2, t2 = fit_channel(dataclasses.replace(spec, lookahead_ms=plain_la), plain_scenes, sr, begin,
                                 progress=progress, also=own_vals)
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
        scenes = channel_scenes(kit, ch, sr, key_delays_ms=delays, n=n_scenes, seed=seed + c)
        best, m, tried = fit_channel(spec, scenes, sr, begin, progress=progress, also=own_vals)
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
    return ChannelFit(start.piece, ch.key, vals, why, denoise, m, len(tried), len(scenes))


def fit_channels(cfg, kit: MultiMicKit, starts: list, keys: dict, models: dict, *, n_scenes: int = 3,
                 seed: int = 0, progress: bool = True) -> dict:
    """The gate step's fit: :func:`fit_gate` for every gated channel.

    Parameters
    ----------
    cfg : GigConfig
    kit : MultiMicKit
    starts : list of GateStart
        :func:`initial_channel_settings`.
    keys : dict
        ``{channel: KeyAlignment}`` (:func:`debleed.soundcheck.alignment.align_key`).
    models : dict
        ``{channel: model path}`` of the denoised channels (adapted or shipped).
    n_scenes, seed :
        See :func:`fit_gate`.
    progress : bool
        A progress bar (tqdm) over the grid points.

    Returns
    -------
    dict
        ``{channel: ChannelFit}``, in config order.
    """
    from tqdm import tqdm

    specs = cfg.channel_specs()
    bar = tqdm(desc="fit gates", disable=not progress, mininterval=5.0)
    out = {}
    try:
        for st in starts:
            name = st.channel.name
            out[name] = fit_gate(st, keys[name], specs[st.index], kit, denoise_model=models.get(name),
                                 n_scenes=n_scenes, seed=seed, progress=bar)
    finally:
        bar.close()
    return out
