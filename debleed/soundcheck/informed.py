"""Informed denoisers at the soundcheck: what such a model hears at one channel besides its mic
(its reference mics and its key), mixtures that carry them, and the model run over them as the
denoiser stage runs it.

An informed model (``models/snare_denoiser_48k_informed.onnx``; see ``models/README.md``) takes
``refs`` (reference mics: the channel's ``denoise_refs``) and a ``key`` (the own piece's
onsets, velocity in (0, 1], from a ``midi:`` or ``trigger:`` key) besides the mic.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from debleed.models.denoiser import model_info
from debleed.models.evaluate import run_onnx_one_shot
from debleed.models.kit import MultiMicKit, kit_scene
from debleed.models.synth import Scene
from debleed.soundcheck.common import key_frame


@dataclasses.dataclass
class InformedInputs:
    """What an informed denoiser (``models/snare_denoiser_48k_informed.onnx``) hears at one
    channel besides its mic (:func:`informed_inputs`).

    Attributes
    ----------
    refs : tuple of str
        The channel's reference mics (``denoise_refs``), the model's ``refs`` rows in order; rows
        beyond them read as zeros (not connected).
    n_refs : int
        Reference rows the model takes.
    key : bool
        The model takes a key and the channel has one (``midi:`` or ``trigger:``): the own
        piece's onsets, velocity in (0, 1], at the key delays measured at the line check.
    key_delays_ms : ndarray
        Key time minus each own hit's first sample, ms (empty: 0).
    """

    refs: tuple
    n_refs: int
    key: bool
    key_delays_ms: np.ndarray


def informed_inputs(model_path, ch, key_delays_ms=()) -> InformedInputs | None:
    """The informed inputs of channel ``ch`` for the model file ``model_path``, or None for a
    mic-only model.

    Parameters
    ----------
    model_path : path
        An exported denoiser (its ``config`` metadata says ``n_refs`` and ``key``).
    ch : ChannelConfig
        The channel: ``denoise_refs`` (at most the model's ``n_refs`` are used) and its key
        (only ``midi:`` and ``trigger:`` keys reach the model, as in the denoiser stage).
    key_delays_ms : sequence of float
        The channel's measured key delays (:class:`~debleed.soundcheck.alignment.KeyAlignment`).

    Raises
    ------
    DebleedError
        ``model_path`` missing or not a loadable model.
    """
    cfg = model_info(model_path).get("config", {})
    n_refs, takes_key = int(cfg.get("n_refs", 0)), bool(cfg.get("key", False))
    if not n_refs and not takes_key:
        return None
    kind = ch.key.partition(":")[0]
    return InformedInputs(refs=tuple(ch.denoise_refs[:n_refs]), n_refs=n_refs,
                          key=takes_key and kind in ("midi", "trigger"),
                          key_delays_ms=np.asarray(key_delays_ms, np.float64))


def informed_scene(kit: MultiMicKit, mic: str, inf: InformedInputs, *, seconds: float, seed: int,
                   bleed_offset_db: float = 0.0, augment: bool = True) -> Scene:
    """A denoiser scene for an informed model: :func:`~debleed.models.kit.kit_scene`'s groove and
    mix, plus ``refs`` (the reference mics of the same mix, float32 (n_refs, n)) and ``key``
    (float32 (n,): each own hit's velocity, quantised to 1/127, one of the measured key delays
    after it; zeros when the channel has no key)."""
    sr = kit.sample_rate

    def key_of(own, n):
        if not inf.key:
            return np.zeros(n, np.float32)
        d = inf.key_delays_ms if inf.key_delays_ms.size else np.zeros(1)
        krng = np.random.default_rng([seed, 4244])
        placed = [(key_frame(h.frame, float(krng.choice(d)), sr, n), h.velocity) for h in own]
        placed = [(f, v) for f, v in placed if f is not None]
        return key_track([f for f, _ in placed], [v for _, v in placed], n)

    return kit_scene(kit, mic, seconds=seconds, seed=seed, bleed_offset_db=bleed_offset_db, augment=augment,
                     informed=True, refs=inf.refs, n_refs=inf.n_refs, key_of=key_of)


def key_track(frames, velocities, n: int) -> np.ndarray:
    """An informed model's key, float32 (n,): at each frame the velocity quantised to 1/127 (a
    MIDI note's; the louder one where two land on one sample), zeros elsewhere."""
    key = np.zeros(int(n), np.float32)
    for f, v in zip(frames, velocities):
        if 0 <= f < n:
            key[f] = max(key[f], max(1, round(float(v) * 127)) / 127.0)
    return key


def denoise_informed(model_path, audio: np.ndarray, refs: np.ndarray | None, key: np.ndarray | None):
    """An informed model over a whole signal with its reference mics and key (onnxruntime, from
    zero state), delayed as the denoiser stage delays it (``window - 1`` samples, plus the key's
    lead when a key is given to a model with one).

    Parameters
    ----------
    model_path : path
    audio : float (n,)
    refs : float (n_refs, n), optional
        Rows not given (None, or fewer than the model takes) read as not connected (zeros).
    key : float (n,), optional
        :func:`key_track`; None: no key.

    Returns
    -------
    (ndarray, int)
        Output float32 (n,), and its latency, samples.
    """
    info = model_info(model_path)
    y, lat_graph = run_onnx_one_shot(model_path, audio, refs, key)  # hop, plus a key lead
    lat = lat_graph + int(info["window"]) - 1 - int(info["hop"])  # the stage's hop buffering
    n = audio.size
    return np.concatenate([np.zeros(lat - lat_graph, np.float32), np.asarray(y, np.float32)])[:n], lat
