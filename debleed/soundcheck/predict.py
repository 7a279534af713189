"""The soundcheck's prediction of the show: the written gig, run as ``debleed render`` runs it,
on grooves mixed from line-check hits the fit never saw.

The soundcheck splits the line check's hits of every piece in two halves
(:meth:`~debleed.models.kit.MultiMicKit.split`, alternate recordings by velocity): the gate fit
and the denoiser's fine-tuning see one, :func:`predict_show` mixes the other into grooves with
the densities of a show (:func:`show_groove`: hi-hat eighths or sixteenths under every
backbeat, fills, ghost notes, flams, crashes), at the measured balance and with every piece's
bleed raised :data:`LOUDER_BLEED_DB`, and runs the whole gig over them with
:func:`debleed.offline.render.render_arrays` (the offline render's own loop, at the gig's JACK
period, the denoiser stage included). Trigger inputs and MIDI notes are rebuilt at the key
delays the soundcheck measured. Per channel it states the SI-SDR (against the channel's own
pieces), bleed reduction between hits and hit loss, as the median and 10-90 % range over the
grooves, for the gig it wrote and for the config as given.
"""

from __future__ import annotations

import numpy as np

from debleed.models.kit import ROLE_FALLBACK, Hit, MultiMicKit, groove, mix, role_piece
from debleed.models.metrics import align, bleed_reduction_db, hit_loss_db, si_sdr_db
from debleed.offline.render import render_arrays
from debleed.soundcheck.common import GHOST_VELOCITY, LOUD_VELOCITY, key_frame

#: Grooves per bleed balance, and their length (s), for the prediction.
PREDICT_GROOVES = 8
PREDICT_SECONDS = 8.0
#: The louder stage the prediction also plays: every piece's bleed this much above the
#: measured balance, dB.
LOUDER_BLEED_DB = 10.0
#: The spread stated: these percentiles over the grooves.
SPREAD_PERCENTILES = (10.0, 90.0)


def _show_draw(seed: int):
    """``(rng, bpm)``: the random stream of :func:`show_groove` for ``seed`` after its tempo draw."""
    rng = np.random.default_rng([seed, 404])
    return rng, float(rng.uniform(80.0, 160.0))


def show_bpm(seed: int) -> float:
    """The tempo :func:`show_groove` plays for ``seed``, bpm (80-160)."""
    return _show_draw(seed)[1]


def show_groove(seconds: float, sample_rate: int, *, seed: int) -> list[Hit]:
    """A show groove: :func:`~debleed.models.groove.groove` at a random tempo (80-160 bpm), ghost
    notes, flams and fills at random densities; every second seed plays the hi-hat in
    sixteenths (the off-sixteenths softer) instead of eighths.

    Parameters
    ----------
    seconds : float
        Length, s.
    sample_rate : int
        Hz.
    seed : int

    Returns
    -------
    list of Hit
        In time order.
    """
    rng, bpm = _show_draw(seed)
    hits = groove(seconds, sample_rate, bpm=bpm, seed=seed, ghost_prob=float(rng.uniform(0.3, 0.6)),
                  flam_prob=float(rng.uniform(0.0, 0.2)), fill_every=int(rng.integers(2, 5)))
    if seed % 2:
        step = int(round(60.0 / bpm / 4.0 * sample_rate))
        hats = [h.frame for h in hits if h.role.startswith("hihat")]
        toms = np.array([h.frame for h in hits if h.role.startswith("tom")] or [-10 ** 9])
        for f in hats:
            g = f + step
            if g < int(seconds * sample_rate) and np.min(np.abs(toms - g)) > step:
                hits.append(Hit(g, "hihat_closed", float(rng.uniform(0.3, 0.5))))
        hits.sort(key=lambda h: h.frame)
    return hits


def played_piece(kit: MultiMicKit, role: str) -> str | None:
    """The piece of ``kit`` whose hits play a groove ``role`` (as :meth:`MultiMicKit.pick`
    chooses them: the role, its fallback, its piece), or None."""
    cands = kit.of(role=role) or (kit.of(role=ROLE_FALLBACK[role]) if role in ROLE_FALLBACK else []) \
        or kit.of(piece=role_piece(role))
    return cands[0].piece if cands else None


def show_inputs(cfg, kit: MultiMicKit, hits: list, n: int, keys: dict, *, bleed_offset_db: float = 0.0,
                seed: int = 0):
    """One groove as the gig's inputs: the mix at every mic, each trigger input and MIDI note
    rebuilt at the key delays measured for the channel that uses it.

    Parameters
    ----------
    cfg : GigConfig
    kit : MultiMicKit
    hits : list of Hit
        The groove.
    n : int
        Frames.
    keys : dict
        ``{channel: KeyAlignment}``: each key event lands one of the channel's measured
        ``key_delays_ms`` (drawn at random) after its hit; 0 when none was measured; clamped into the groove
        (:func:`~debleed.soundcheck.common.key_frame`).
    bleed_offset_db : float
        Every piece's bleed offset, dB.
    seed : int

    Returns
    -------
    (ndarray, ndarray, Multitrack)
        Inputs float32 (n_inputs, n) in ``[inputs]`` order, MIDI events int64 (k, 4), the mix.
    """
    sr = kit.sample_rate
    rng = np.random.default_rng([seed, 405])
    mx = mix(kit, hits, n, bleed_offset_db=bleed_offset_db, seed=seed)
    x = np.zeros((len(cfg.input_names), n), np.float32)
    for i, name in enumerate(cfg.input_names):
        if name in mx.mics:
            x[i] = mx.mics[name]
    pieces = [played_piece(kit, h.role) for h in hits]
    events = []
    for ch in cfg.channel:
        kind, _, ref = ch.key.partition(":")
        if kind not in ("trigger", "midi") or ch.name not in keys:
            continue
        own = kit.own_pieces(ch.input)
        d = np.asarray(keys[ch.name].key_delays_ms if len(keys[ch.name].key_delays_ms) else [0.0])
        for h, p in zip(hits, pieces):
            if p not in own:
                continue
            f = key_frame(h.frame, float(rng.choice(d)), sr, n)
            if f is None:
                continue
            if kind == "trigger":
                x[cfg.input_names.index(ref), f] = 1.0
            else:
                note = int(ref.split(",")[0])
                events.append((f, 0x90 | max(ch.midi_channel - 1, 0), note, max(1, int(round(h.velocity * 127)))))
    ev = np.array(sorted(events), np.int64).reshape(-1, 4)
    return x, ev, mx


def _channel_metrics(mx, kit: MultiMicKit, hits: list, mic: str, y: np.ndarray, latency: int, sr: int) -> dict:
    own = set(kit.own_pieces(mic))
    mine = [h for h, p in zip(hits, [played_piece(kit, h.role) for h in hits]) if p in own]
    frames = np.array([h.frame for h in mine], np.int64)
    vel = np.array([h.velocity for h in mine])
    n = mx.mics[mic].size
    ya = align(y, latency, n)
    loss = hit_loss_db(mx.mics[mic], ya, frames, sr) if frames.size else np.zeros(0)
    loud, ghost = vel >= LOUD_VELOCITY, vel < GHOST_VELOCITY

    def mean(v):
        return float(np.mean(v)) if len(v) else float("nan")

    return {"si_sdr_db": si_sdr_db(mx.own[mic], ya), "mic_si_sdr_db": si_sdr_db(mx.own[mic], mx.mics[mic]),
            "bleed_reduction_db": bleed_reduction_db(mx.mics[mic], ya, mx.own[mic], sr),
            "hit_loss_loud_db": mean(loss[loud]), "hit_loss_ghost_db": mean(loss[ghost])}


def spread(values) -> dict:
    """``{"median", "p10", "p90", "n"}`` of the finite ``values`` (NaN when there are none)."""
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"median": float("nan"), "p10": float("nan"), "p90": float("nan"), "n": 0}
    lo, hi = np.percentile(v, SPREAD_PERCENTILES)
    return {"median": float(np.median(v)), "p10": float(lo), "p90": float(hi), "n": int(v.size)}


def predict_show(gigs: dict, kit: MultiMicKit, keys: dict, *, channels: list, block: int = 128,
                 n_grooves: int = PREDICT_GROOVES, seconds: float = PREDICT_SECONDS,
                 offsets_db=(0.0, LOUDER_BLEED_DB), seed: int = 0) -> dict:
    """Predict each channel's figures on the show from hits the fit never saw.

    Parameters
    ----------
    gigs : dict
        ``{label: GigConfig}``: the gigs to run on the same grooves (e.g. ``"soundcheck"``, the
        gig written; ``"as given"``, the config the soundcheck started from).
    kit : MultiMicKit
        The held-out half of the line check's hits.
    keys : dict
        ``{channel: KeyAlignment}`` (key delays per channel).
    channels : list of str
        The channels to measure (each must read a close mic of ``kit``).
    block : int
        The JACK period the renders run at, frames.
    n_grooves : int
        Grooves per bleed balance, >= 1.
    seconds : float
        Groove length, s.
    offsets_db : sequence of float
        Bleed balances: every piece's bleed offset, dB (0: as measured).
    seed : int

    Returns
    -------
    dict
        ``{"grooves", "seconds", "offsets_db", "hits", "channels": {channel: {label: {offset:
        {metric: spread}}}}}``, offsets as strings (``"+0"``, ``"+10"``), each
        :func:`spread` over the grooves; the metrics of :func:`_channel_metrics`
        (``si_sdr_db``, ``mic_si_sdr_db``: the unprocessed mic, ``bleed_reduction_db``,
        ``hit_loss_loud_db``, ``hit_loss_ghost_db``).
    """
    sr = kit.sample_rate
    n = int(round(seconds * sr))
    rows = {c: {lab: {f"{o:+g}": [] for o in offsets_db} for lab in gigs} for c in channels}
    for g in range(int(n_grooves)):
        hits = show_groove(seconds, sr, seed=seed * 1000 + 700 + g)
        for off in offsets_db:
            cfg0 = next(iter(gigs.values()))
            x, ev, mx = show_inputs(cfg0, kit, hits, n, keys, bleed_offset_db=off, seed=seed * 1000 + g)
            for lab, cfg in gigs.items():
                res = render_arrays(cfg, x, sr, block, ev)
                for c, ch in enumerate(cfg.channel):
                    if ch.name in rows:
                        rows[ch.name][lab][f"{off:+g}"].append(
                            _channel_metrics(mx, kit, hits, ch.input, res["outputs"][c], res["latency_samples"][c], sr))
    out = {}
    for c, per in rows.items():
        out[c] = {lab: {o: {k: spread([m[k] for m in ms]) for k in (ms[0] if ms else {})} for o, ms in offs.items()}
                  for lab, offs in per.items()}
    return {"grooves": int(n_grooves), "seconds": float(seconds), "offsets_db": [float(o) for o in offsets_db],
            "hits": len(kit.hits), "channels": out}
