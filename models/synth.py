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


@dataclass
class Scene:
    """A rendered snare close mic: ``noisy`` (mic), ``clean`` (snare direct), float32 (n,), and
    the snare hits ``(frame, velocity)`` as int64 (k,) and float64 (k,)."""

    noisy: np.ndarray
    clean: np.ndarray
    hit_frames: np.ndarray
    hit_velocities: np.ndarray
    sample_rate: int


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
                 bleed_db: float | None = None, room: bool = True, augment: bool = True) -> Scene:
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
    irs = room_bleed_irs(sample_rate, rng) if room else None
    tuning = None
    if augment:  # drawn after the evaluation scenes' draws, so those stay as they were
        tuning = {"snare": float(rng.uniform(*TRAIN_TUNING_SNARE)),
                  **{p: float(rng.uniform(*TRAIN_TUNING_OTHERS)) for p in ("kick", "toms")}}
    mt = render_multitrack(kit=kit, seconds=seconds, sample_rate=sample_rate, bpm=bpm, seed=seed,
                           bleed_db={"snare": per_piece}, hits=hits, bleed_irs=irs, tuning=tuning)
    noisy, clean = mt.mics["snare"], mt.direct["snare"]
    if augment:
        toned = _apply(snare_tone(rng, sample_rate), clean)
        # keep the snare's -6 dBFS peak so the bleed level stays relative to the snare
        toned *= np.float32(float(np.max(np.abs(clean))) / max(float(np.max(np.abs(toned))), 1e-12))
        noisy, clean = toned + (noisy - clean), toned
        sections = colour(noisy, rng, sample_rate)
        g = np.float32(10.0 ** (rng.uniform(-18.0, 3.0) / 20.0))
        noisy, clean = _apply(sections, noisy) * g, _apply(sections, clean) * g
    sn = [h for h in mt.hits if h.role == "snare"]
    return Scene(noisy=noisy.astype(np.float32), clean=clean.astype(np.float32),
                 hit_frames=np.array([h.frame for h in sn], np.int64),
                 hit_velocities=np.array([h.velocity for h in sn], np.float64), sample_rate=sample_rate)


def build_cache(path, *, kits, sample_rate: int, n_scenes: int, seconds: float, seed: int,
                room: bool = True, progress: bool = True) -> Path:
    """Render ``n_scenes`` scenes (kits in turn) into ``path`` (npz: ``noisy``, ``clean`` as
    float32 (n_scenes, n)); written atomically. Returns the path."""
    from tqdm import tqdm

    path = Path(path)
    if set(kits) & set(HELD_OUT_KITS) and set(kits) - set(HELD_OUT_KITS):
        raise DebleedError(f"kits {sorted(set(kits) & set(HELD_OUT_KITS))} are held out for validation "
                           f"and cannot be mixed with training kits {sorted(set(kits) - set(HELD_OUT_KITS))}")
    n = int(round(seconds * sample_rate))
    noisy = np.zeros((n_scenes, n), np.float32)
    clean = np.zeros((n_scenes, n), np.float32)
    for i in tqdm(range(n_scenes), desc=f"render {path.name}", disable=not progress):
        sc = render_scene(kit=kits[i % len(kits)], sample_rate=sample_rate, seconds=seconds,
                          seed=seed * 100003 + i, room=room)
        noisy[i], clean[i] = sc.noisy[:n], sc.clean[:n]
    if not np.all(np.isfinite(noisy)):
        raise DebleedError(f"rendered scenes for {path} contain non-finite samples")
    with atomic_path(path) as tmp:
        np.savez(tmp, noisy=noisy, clean=clean, sample_rate=np.int64(sample_rate))
    return path
