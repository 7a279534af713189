"""The streaming denoiser's ONNX graph contract: its input and state names, defined once.

The torch export (:mod:`debleed.models.net`), the onnxruntime wrapper
(:mod:`debleed.models.denoiser`) and the data-plane kernels' weight loader
(:mod:`debleed.models.streaming`) all read them from here.
"""

from __future__ import annotations


def state_names(n_refs: int = 0, key_state: bool = False) -> tuple:
    """The state inputs of a streaming model, in graph order: ``enc_state``, ``ref_state`` (with
    reference mics), ``key_state`` (with a key filter), ``gru_state``, ``ola_state``; each has an
    output ``<name>_out``, in the same order after ``denoised``."""
    return (("enc_state",) + (("ref_state",) if n_refs else ()) + (("key_state",) if key_state else ())
            + ("gru_state", "ola_state"))


def input_names(n_refs: int = 0, key: bool = False, key_state: bool = False) -> tuple:
    """The graph inputs of a streaming model, in order: ``audio``, ``refs`` (with reference
    mics), ``key`` (with a key), then :func:`state_names` (the contract of
    :func:`debleed.models.net.export_onnx`)."""
    return (("audio",) + (("refs",) if n_refs else ()) + (("key",) if key else ())
            + state_names(n_refs, key_state))


#: The range of a model's ``key_power`` (the exponent its key's values are raised to), inclusive.
KEY_POWER_RANGE = (0.1, 1.0)


def key_lead_samples(config: dict, sample_rate: int) -> int:
    """A model's key lead in samples at ``sample_rate``: its config's ``key_lead_ms`` (how far
    ahead of the mic and reference mics it hears its key) for a model that takes a key, else 0.
    The denoiser stage, the onnxruntime evaluation and the soundcheck's latency all read it here."""
    if not config.get("key"):
        return 0
    return int(round(float(config.get("key_lead_ms", 0.0)) * 1e-3 * int(sample_rate)))


#: The value a connected key carries on every sample between its onsets, for a model with
#: ``key_connected`` in its config (zeros still mean "no key"); onset velocities are at least
#: 1/127, far above it. The graph takes it off again before the key power.
KEY_IDLE = 1e-6


def key_graph_input(key, n: int, config: dict):
    """The ``key`` graph input (float32 (n,)) for a model with ``config``: ``key`` (onset
    velocities in (0, 1] at onset samples, zeros elsewhere; None: no key connected) as it is, or
    for a ``key_connected`` model at least :data:`KEY_IDLE` on every sample of a connected key.
    Zeros for None. ``key`` shorter than ``n`` is padded (connected, idle), longer is cut."""
    import numpy as np

    out = np.zeros(int(n), np.float32)
    if key is None:
        return out
    k = np.asarray(key, np.float32)[:out.size]
    out[:k.size] = k
    return connected_key(out) if config.get("key_connected") else out


def connected_key(key):
    """``key`` (float32, any shape; the last axis samples) as a connected key reads for a
    ``key_connected`` model: at least :data:`KEY_IDLE` on every sample (a new array)."""
    import numpy as np

    return np.maximum(np.asarray(key, np.float32), np.float32(KEY_IDLE))
