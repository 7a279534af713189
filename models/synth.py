"""Training and validation scenes for the snare denoiser, rendered with the multitrack renderer.

A scene is one snare close mic: the snare's direct signal (the clean target) plus every other
piece of a real Hydrogen kit bleeding in through a simulated room (:func:`room_bleed_irs`),
with random tempo, groove density (ghost notes, flams, fills, cymbal swells, ride bars), bleed
level, mic colouration and gain. Scenes are rendered once into an ``.npz`` cache so training
epochs cost no rendering.

Needs pyroomacoustics for the rooms (a runtime dependency); ``room=False`` uses the renderer's
plain delay-and-low-pass bleed instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from debleed.fileio import atomic_path
from debleed.errors import DebleedError
from debleed.models.multitrack import PIECES, groove, render_multitrack, room_bleed_irs

#: Kits used for training: seven Hydrogen kits and the Sonic Pi one-shots.
TRAIN_KITS = ("ForzeeStereo", "BJA_Pacific", "rumpf_kit_z01_h2", "ColomboAcousticDrumkit", "Millo-Drums_v.1",
              "Millo_MultiLayered2", "Millo_MultiLayered3", "sonic-pi")
#: The held-out validation kit (``debleed eval``'s default).
VALID_KIT = "The Black Pearl 1.0"
#: Kits never used in training. The avldrums SF2 kits are by the author of The Black Pearl and
#: share its closed hi-hat recording (sample for sample) and, for Black_Pearl_4_LV2, other takes
#: of its drums: training on them would leak the validation kit, so they are held out as well
#: and serve as a second validation kit (``debleed eval --kit avldrums:Red_Zeppelin_4_LV2``).
HELD_OUT_KITS = (VALID_KIT, "avldrums:Black_Pearl_4_LV2", "avldrums:Red_Zeppelin_4_LV2")
#: Bleed level range of training scenes, dB relative to the snare: a quiet studio to a loud
#: stage with wedges, a little past the -10 dB of the loud-stage evaluation.
TRAIN_BLEED_DB = (-40.0, -6.0)
#: Snare retuning range of training scenes, semitones (a tighter or slacker head); toms and kick
#: get :data:`TRAIN_TUNING_OTHERS`.
TRAIN_TUNING_SNARE = (-4.0, 4.0)
TRAIN_TUNING_OTHERS = (-2.0, 2.0)
#: Snare-only tone of training scenes (head, tuning and shell differences the mic EQ does not
#: cover): peaking bands ``(low Hz, high Hz, max |gain| dB)`` applied to the snare alone.
TRAIN_SNARE_TONE = ((120.0, 500.0, 6.0), (600.0, 2500.0, 6.0), (3000.0, 10000.0, 6.0))
#: Version of the scene recipe; with the kits and ranges above it names the training cache.
SCENE_RECIPE = 3
#: Ghost notes are snare hits below this velocity (linear; the groove draws them 20-35 dB down).
GHOST_VELOCITY = 0.2
#: Loud hits are snare hits at or above this velocity.
LOUD_VELOCITY = 0.6
#: The reference mics of an informed scene, in the order of its ``refs`` rows.
REF_MICS = ("hihat", "overhead")
#: Key timing of informed scenes: a drum module's MIDI note comes this many ms after the hit
#: (uniform per scene, plus up to 0.5 ms of jitter per note); a piezo trigger channel lags its
#: mic by about 5 ms (4-6 ms per scene, 0.2 ms jitter).
KEY_MIDI_DELAY_MS = (2.0, 5.0)
KEY_PIEZO_DELAY_MS = (4.0, 6.0)
#: Share of snare hits the trigger misses (uniform per scene) and probability that a kick or tom
#: hit of velocity >= 0.7 sets off a false snare trigger (uniform per scene).
KEY_MISSED = (0.0, 0.05)
KEY_FALSE = (0.0, 0.08)
#: Version of the informed scene recipe (reference mics and key on top of :data:`SCENE_RECIPE`).
INFORMED_RECIPE = 1


@dataclass
class Scene:
    """A rendered snare close mic: ``noisy`` (mic), ``clean`` (snare direct), float32 (n,), and
    the snare hits ``(frame, velocity)`` as int64 (k,) and float64 (k,). Informed scenes
    (``render_scene(informed=True)``) also have ``refs``, float32 (2, n): the reference mics of
    :data:`REF_MICS`, and ``key``, float32 (n,): the snare's key as a trigger module sends it
    (onset velocity at each onset sample, zeros elsewhere; :func:`key_signal`)."""

    noisy: np.ndarray
    clean: np.ndarray
    hit_frames: np.ndarray
    hit_velocities: np.ndarray
    sample_rate: int
    refs: np.ndarray | None = None
    key: np.ndarray | None = None


def _peaking(f0_hz: float, gain_db: float, q: float, sample_rate: int):
    """RBJ cookbook peaking EQ biquad ``(b, a)``."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0_hz / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return b / den[0], den / den[0]


def _highpass(f0_hz: float, sample_rate: int):
    """RBJ cookbook 2nd-order high-pass (Q 0.707) ``(b, a)``."""
    w0 = 2.0 * np.pi * f0_hz / sample_rate
    alpha = np.sin(w0) / (2.0 * 0.7071)
    c = np.cos(w0)
    b = np.array([(1 + c) / 2, -(1 + c), (1 + c) / 2])
    den = np.array([1 + alpha, -2 * c, 1 - alpha])
    return b / den[0], den / den[0]


def colour(x: np.ndarray, rng: np.random.Generator, sample_rate: int):
    """Random mic colouration: a high-pass at 30-150 Hz and two peaking bands of +-6 dB.

    Returns the list of ``(b, a)`` sections so the same colouration can be applied to the
    clean target.
    """
    sections = [_highpass(rng.uniform(30.0, 150.0), sample_rate)]
    for lo, hi in ((150.0, 1200.0), (1500.0, min(12000.0, 0.4 * sample_rate))):
        sections.append(_peaking(np.exp(rng.uniform(np.log(lo), np.log(hi))), rng.uniform(-6.0, 6.0),
                                 rng.uniform(0.5, 2.0), sample_rate))
    return sections


def recipe_tag() -> str:
    """Short hash of the training-scene recipe (kits, ranges, :data:`SCENE_RECIPE`): caches and
    checkpoints made with another recipe are not reused."""
    import hashlib

    spec = repr((SCENE_RECIPE, TRAIN_KITS, TRAIN_BLEED_DB, TRAIN_TUNING_SNARE, TRAIN_TUNING_OTHERS,
                 TRAIN_SNARE_TONE))
    return hashlib.sha1(spec.encode()).hexdigest()[:8]


def informed_recipe_tag() -> str:
    """Short hash of the informed scene recipe (the plain recipe plus reference mics and key timing)."""
    import hashlib

    spec = repr((recipe_tag(), INFORMED_RECIPE, REF_MICS, KEY_MIDI_DELAY_MS, KEY_PIEZO_DELAY_MS, KEY_MISSED,
                 KEY_FALSE))
    return "i" + hashlib.sha1(spec.encode()).hexdigest()[:7]


def key_signal(hits, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The snare's key as a trigger module delivers it, float32 (n,): zeros, and at each onset
    sample the onset's velocity in (0, 1].

    Per call (a scene) it draws the source: a MIDI note from a drum module
    (:data:`KEY_MIDI_DELAY_MS` after the hit, up to 0.5 ms jitter, velocity quantised to 1/127)
    or a piezo channel through a trigger (:data:`KEY_PIEZO_DELAY_MS`, 0.2 ms jitter); the
    velocity read with a 15 % (MIDI) or 25 % (piezo) log-normal error; a share of missed snare
    hits (:data:`KEY_MISSED`) and false triggers on loud kick and tom hits (:data:`KEY_FALSE`,
    velocity 0.05-0.3).

    Parameters
    ----------
    hits : list of Hit
        The groove (snare hits make onsets; kick and tom hits may set off false ones).
    n : int
        Samples.
    sample_rate : int
        Hz.
    rng : numpy.random.Generator
    """
    midi = bool(rng.random() < 0.5)
    delay_ms = rng.uniform(*(KEY_MIDI_DELAY_MS if midi else KEY_PIEZO_DELAY_MS))
    jitter_ms = 0.5 if midi else 0.2
    vel_err = 0.15 if midi else 0.25
    p_miss = rng.uniform(*KEY_MISSED)
    p_false = rng.uniform(*KEY_FALSE)
    key = np.zeros(n, np.float32)
    for h in hits:
        if h.role == "snare":
            if rng.random() < p_miss:
                continue
            v = h.velocity * float(np.exp(rng.normal(0.0, vel_err)))
        elif (h.role == "kick" or h.role.startswith("tom")) and h.velocity >= 0.7 and rng.random() < p_false:
            v = rng.uniform(0.05, 0.3)
        else:
            continue
        v = float(np.clip(v, 1.0 / 127.0, 1.0))
        if midi:
            v = round(v * 127.0) / 127.0
        f = h.frame + int(round((delay_ms + rng.uniform(0.0, jitter_ms)) * 1e-3 * sample_rate))
        if 0 <= f < n:
            key[f] = max(key[f], v)
    return key


#: Reference mic levels of each piece, dB (before a per-scene +-4 dB draw): the hi-hat close mic
#: hears the other pieces as :data:`~debleed.models.multitrack.DEFAULT_BLEED_DB` says; the
#: overhead hears the cymbals and the hi-hat most.
_OVERHEAD_DB = {"kick": -10.0, "snare": -3.0, "hihat": -3.0, "toms": -5.0, "cymbals": 0.0}


def reference_irs(sample_rate: int, room_rng: np.random.Generator, rng: np.random.Generator, *,
                  max_order: int = 20) -> dict:
    """Impulse responses of every piece into the reference mics, in the snare mic's room.

    ``room_rng`` must be in the state that :func:`~debleed.models.multitrack.room_bleed_irs`
    started from (a copy), so the room, its RT60 and the pieces' places are the same as for the
    snare mic; ``rng`` draws the reference mics' places: a cardioid 5-10 cm above the hi-hat,
    aimed down, and an overhead cardioid 0.9-1.3 m above the snare, aimed down. Returns
    ``{"hihat": {piece: ir}, "overhead": {piece: ir}}`` (the hi-hat mic without its own piece).
    """
    import pyroomacoustics as pra
    from pyroomacoustics.directivities import Cardioid, DirectionVector

    from debleed.models.multitrack import _KIT_LAYOUT

    dims = np.array([room_rng.uniform(3.0, 10.0), room_rng.uniform(3.0, 9.0), room_rng.uniform(2.5, 4.5)])
    rt60 = float(room_rng.uniform(0.2, 1.0))
    try:
        e_abs, order = pra.inverse_sabine(rt60, dims)
    except ValueError:
        e_abs, order = 0.05, max_order
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(float(e_abs)),
                       max_order=int(min(order, max_order)))
    centre = np.array([room_rng.uniform(1.2, dims[0] - 1.2), room_rng.uniform(1.2, dims[1] - 1.2), 0.0])
    pos = {p: centre + np.asarray(xyz) + room_rng.uniform(-0.15, 0.15, 3) * (p != "snare")
           for p, xyz in _KIT_LAYOUT.items()}
    for p in PIECES:
        room.add_source(np.clip(pos[p], 0.1, dims - 0.1))
    hh = pos["hihat"] + np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.05, 0.10)])
    oh = pos["snare"] + np.array([rng.uniform(-0.2, 0.2), rng.uniform(0.0, 0.4), rng.uniform(0.9, 1.3)])
    down = [Cardioid(orientation=DirectionVector(azimuth=float(rng.uniform(0.0, 360.0)),
                                                 colatitude=float(rng.uniform(160.0, 180.0)), degrees=True))
            for _ in range(2)]
    room.add_microphone_array(np.clip(np.stack([hh, oh]), 0.1, dims - 0.1).T, directivity=down)
    room.compute_rir()
    return {mic: {p: np.asarray(room.rir[m][i], np.float64) for i, p in enumerate(PIECES) if not (m == 0 and p == "hihat")}
            for m, mic in enumerate(REF_MICS)}


def _reference_mics(direct: dict, irs: dict, rng: np.random.Generator, n: int) -> np.ndarray:
    """The reference mics from each piece's direct signal and :func:`reference_irs`, float32 (2, n):
    each IR scaled to unit energy times the piece's level (hi-hat mic: its own piece direct plus
    :data:`~debleed.models.multitrack.DEFAULT_BLEED_DB` bleed; overhead: :data:`_OVERHEAD_DB`),
    +-4 dB per piece, then a gain of -18..+3 dB per mic (its own preamp)."""
    from scipy.signal import fftconvolve

    from debleed.models.multitrack import DEFAULT_BLEED_DB

    out = np.zeros((len(REF_MICS), n), np.float32)
    for m, mic in enumerate(REF_MICS):
        y = direct["hihat"].astype(np.float64).copy() if mic == "hihat" else np.zeros(n)
        levels = DEFAULT_BLEED_DB["hihat"] if mic == "hihat" else _OVERHEAD_DB
        for p, ir in irs[mic].items():
            if not np.any(direct[p]):
                continue
            ir = ir / max(float(np.sqrt(np.sum(ir ** 2))), 1e-12)
            y += fftconvolve(direct[p], ir)[:n] * 10.0 ** ((levels[p] + rng.uniform(-4.0, 4.0)) / 20.0)
        out[m] = y * 10.0 ** (rng.uniform(-18.0, 3.0) / 20.0)
    return out


def snare_tone(rng: np.random.Generator, sample_rate: int):
    """Random snare-only tone: one peaking band in each :data:`TRAIN_SNARE_TONE` range (log-
    uniform centre, uniform gain within +-max dB, Q 0.7-2), as ``(b, a)`` sections."""
    nyq = 0.45 * sample_rate
    return [_peaking(np.exp(rng.uniform(np.log(lo), np.log(min(hi, nyq)))), rng.uniform(-g, g),
                     rng.uniform(0.7, 2.0), sample_rate) for lo, hi, g in TRAIN_SNARE_TONE]


def _apply(sections, x):
    y = np.asarray(x, np.float64)
    for b, a in sections:
        y = lfilter(b, a, y)
    return y.astype(np.float32)


def render_scene(*, kit: str, sample_rate: int, seconds: float, seed: int,
                 bleed_db: float | None = None, room: bool = True, augment: bool = True,
                 informed: bool = False) -> Scene:
    """Render one snare close-mic scene.

    Parameters
    ----------
    kit : str
        Hydrogen kit.
    sample_rate : int
        Hz.
    seconds : float
        Length, s.
    seed : int
        Random seed: the same seed gives the same scene.
    bleed_db : float, optional
        Overall bleed level relative to the snare, dB (each piece varies by -6..+3 dB around
        it); default random in :data:`TRAIN_BLEED_DB` (-40..-6).
    room : bool
        Bleed through a random pyroomacoustics room (RT60 0.2-1.0 s, cardioid mic); default True.
    augment : bool
        Random groove density, snare and tom tuning (:data:`TRAIN_TUNING_SNARE`), snare tone
        (:func:`snare_tone`), mic colouration and gain; default True (False: the demo groove's
        densities, the kit as sampled, no colouration, unity gain, for evaluation).
    informed : bool
        Also render the reference mics (:data:`REF_MICS`, in the same room; needs ``room``) and
        the key (:func:`key_signal`); default False. Their draws come from their own random
        stream, so the snare mic and the clean target are the same as without them.
    """
    rng = np.random.default_rng([seed, 4242])
    bpm = float(rng.uniform(70.0, 180.0))
    if augment:
        hits = groove(seconds, sample_rate, bpm=bpm, seed=seed, ghost_prob=rng.uniform(0.2, 0.8),
                      flam_prob=rng.uniform(0.0, 0.3), fill_every=int(rng.integers(1, 5)),
                      swell_prob=0.5, ride_prob=0.3)
    else:
        hits = groove(seconds, sample_rate, bpm=bpm, seed=seed, swell_prob=0.5, ride_prob=0.3)
    level = float(rng.uniform(*TRAIN_BLEED_DB)) if bleed_db is None else float(bleed_db)
    per_piece = {p: level + float(rng.uniform(-6.0, 3.0)) for p in PIECES if p != "snare"}
    room_state = rng.bit_generator.state
    irs = room_bleed_irs(sample_rate, rng) if room else None
    tuning = None
    if augment:  # drawn after the evaluation scenes' draws, so those stay as they were
        tuning = {"snare": float(rng.uniform(*TRAIN_TUNING_SNARE)),
                  **{p: float(rng.uniform(*TRAIN_TUNING_OTHERS)) for p in ("kick", "toms")}}
    mt = render_multitrack(kit=kit, seconds=seconds, sample_rate=sample_rate, bpm=bpm, seed=seed,
                           bleed_db={"snare": per_piece}, hits=hits, bleed_irs=irs, tuning=tuning)
    noisy, clean = mt.mics["snare"], mt.own["snare"]
    if augment:
        toned = _apply(snare_tone(rng, sample_rate), clean)
        # keep the snare's -6 dBFS peak so the bleed level stays relative to the snare
        toned *= np.float32(float(np.max(np.abs(clean))) / max(float(np.max(np.abs(toned))), 1e-12))
        noisy, clean = toned + (noisy - clean), toned
        sections = colour(noisy, rng, sample_rate)
        g = np.float32(10.0 ** (rng.uniform(-18.0, 3.0) / 20.0))
        noisy, clean = _apply(sections, noisy) * g, _apply(sections, clean) * g
    refs = key = None
    if informed:
        if not room:
            raise DebleedError("informed scenes render their reference mics in a room: room must be True")
        irng = np.random.default_rng([seed, 4243])
        room_rng = np.random.Generator(np.random.PCG64())
        room_rng.bit_generator.state = room_state
        direct = dict(mt.own)
        if augment:
            direct["snare"] = toned  # the snare as it sounds (its tone), before the snare mic's colouration
        n = noisy.size
        refs = _reference_mics(direct, reference_irs(sample_rate, room_rng, irng), irng, n)
        key = key_signal(mt.hits, n, sample_rate, irng)
    sn = [h for h in mt.hits if h.role == "snare"]
    return Scene(noisy=noisy.astype(np.float32), clean=clean.astype(np.float32),
                 hit_frames=np.array([h.frame for h in sn], np.int64),
                 hit_velocities=np.array([h.velocity for h in sn], np.float64), sample_rate=sample_rate,
                 refs=refs, key=key)


def build_cache(path, *, kits, sample_rate: int, n_scenes: int, seconds: float, seed: int,
                room: bool = True, progress: bool = True, informed: bool = False) -> Path:
    """Render ``n_scenes`` scenes (kits in turn) into ``path`` (npz: ``noisy``, ``clean`` as
    float32 (n_scenes, n); informed scenes also ``refs`` float32 (n_scenes, 2, n) and ``key``
    float32 (n_scenes, n)); written atomically. Returns the path."""
    from tqdm import tqdm

    path = Path(path)
    if set(kits) & set(HELD_OUT_KITS) and set(kits) - set(HELD_OUT_KITS):
        raise DebleedError(f"kits {sorted(set(kits) & set(HELD_OUT_KITS))} are held out for validation "
                           f"and cannot be mixed with training kits {sorted(set(kits) - set(HELD_OUT_KITS))}")
    n = int(round(seconds * sample_rate))
    noisy = np.zeros((n_scenes, n), np.float32)
    clean = np.zeros((n_scenes, n), np.float32)
    extra = {}
    if informed:
        extra = {"refs": np.zeros((n_scenes, len(REF_MICS), n), np.float32), "key": np.zeros((n_scenes, n), np.float32)}
    for i in tqdm(range(n_scenes), desc=f"render {path.name}", disable=not progress):
        sc = render_scene(kit=kits[i % len(kits)], sample_rate=sample_rate, seconds=seconds,
                          seed=seed * 100003 + i, room=room, informed=informed)
        noisy[i], clean[i] = sc.noisy[:n], sc.clean[:n]
        if informed:
            extra["refs"][i], extra["key"][i] = sc.refs[:, :n], sc.key[:n]
    if not np.all(np.isfinite(noisy)):
        raise DebleedError(f"rendered scenes for {path} contain non-finite samples")
    with atomic_path(path) as tmp:
        np.savez(tmp, noisy=noisy, clean=clean, sample_rate=np.int64(sample_rate), **extra)
    return path
