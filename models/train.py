"""Train the snare denoiser (needs the ``train`` extra: torch, auraloss, onnx).

``make train`` runs it three times: 48 kHz from scratch, a 48 kHz fine-tuning stage with the
SI-SDR term weighted 10 times higher, then 44.1 kHz fine-tuned from those weights; it exports
``models/snare_denoiser_48k.onnx`` and ``..._44k1.onnx``. Fixed seeds, a progress bar, a
checkpoint every ``--ckpt-every`` steps and ``--resume`` from the last one. Loss: time-domain L1
+ multi-resolution STFT (auraloss) + compressed spectral and level losses + SI-SDR (:class:`Loss`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from debleed.fileio import atomic_path
from debleed.errors import DebleedError
from debleed.models.graph import KEY_POWER_RANGE, connected_key
from debleed.models.synth import TRAIN_KITS, VALID_KIT, build_cache, informed_recipe_tag, recipe_tag

MODELS_DIR = Path(__file__).resolve().parent
RATE_TAG = {48000: "48k", 44100: "44k1"}


#: The shipped architecture (see models/README.md): 1024 samples of causal context, GRU 192.
DEFAULT_MODEL = {"hop": 32, "n_filters": 256, "hidden": 192, "layers": 2, "context": 1024, "cq_bins": 64}
#: The small informed architecture (issue 20; see models/README.md): it also hears the hi-hat and
#: overhead mics and the key; about 173k multiply-adds per 32-sample hop.
INFORMED_MODEL = {"hop": 32, "n_filters": 128, "hidden": 96, "layers": 1, "context": 512, "cq_bins": 32,
                  "n_refs": 2, "key": True, "key_ctx": 256, "key_bins": 4, "key_lead_ms": 7.0}
#: The informed model's first two training stages: its key one feature (the newest frame's value);
#: the third stage grows it into :data:`INFORMED_MODEL` (``--init-onnx``).
INFORMED_FRAME_KEY_MODEL = dict(INFORMED_MODEL, key_ctx=1, key_lead_ms=0.0)
ARCHITECTURES = {"default": DEFAULT_MODEL, "informed": INFORMED_MODEL, "informed-frame-key": INFORMED_FRAME_KEY_MODEL}
#: Per training example, the probability that the key, and each reference mic, is replaced by
#: zeros ("not connected"), so one model serves mic-only channels, key only, and key and refs.
DROP_KEY = 0.3
DROP_REF = 0.3
#: ... and the probability that all reference mics at once are (a mic-only or key-only channel);
#: 0 in the first stage, where both refs are missing in only 9 % of the examples.
DROP_ALL_REFS = 0.0
#: ``--loud-share``: the bleed-to-snare energy ratio a loud-stage example is raised to, dB (drawn
#: uniformly; the loud-stage evaluation's scenes, bleed -10 dB, measure -5 to -2 dB). A scene
#: already louder keeps its level.
LOUD_LEVEL_DB = (-6.0, 2.0)


def model_path(sample_rate: int, folder=MODELS_DIR) -> Path:
    """Where the shipped model for ``sample_rate`` lives."""
    return Path(folder) / f"snare_denoiser_{RATE_TAG[int(sample_rate)]}.onnx"


def model_from_onnx(path):
    """A :class:`~debleed.models.net.SnareDenoiserNet` with the weights of an exported ONNX model.

    Reads the constructor arguments from the model's ``config`` metadata and maps the graph's
    initializers back: named parameters as they are; the two ``MatMul`` weights (input and
    output layers) transposed; each ``GRU`` node's W, R and B with ONNX's gate order (z, r, h)
    turned into torch's (r, z, n). Lets the soundcheck fine-tune a shipped model for which no
    training checkpoint ships. One-tap models only (the shipped ones).

    Raises
    ------
    DebleedError
        A file that is not a debleed denoiser export, or one with a multi-frame head.
    """
    _require_torch()
    import onnx
    import torch
    from onnx import numpy_helper

    from debleed.models.net import SnareDenoiserNet

    path = Path(path)
    try:
        m = onnx.load(str(path))
    except Exception as e:  # onnx raises several types for unreadable files
        raise DebleedError(f"cannot read ONNX model {path}: {e}") from None
    meta = {p.key: p.value for p in m.metadata_props}
    if "config" not in meta:
        raise DebleedError(f"{path} has no 'config' metadata: not a debleed denoiser export")
    cfg = json.loads(meta["config"])
    if int(cfg.get("taps", 1)) != 1:
        raise DebleedError(f"{path}: a multi-frame (taps={cfg['taps']}) model cannot be loaded back from ONNX")
    model = SnareDenoiserNet(**cfg)
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    sd = {k: v for k, v in model.state_dict().items()}
    new = {}
    for name in sd:
        if name in init:
            new[name] = torch.from_numpy(np.array(init[name]))
    mats = [n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in init]
    grus = [n for n in m.graph.node if n.op_type == "GRU"]
    if len(mats) != 2 + model.key_mask or len(grus) != model.layers:
        raise DebleedError(f"{path}: graph does not match the model ({len(mats)} weight MatMuls, {len(grus)} GRU nodes)")
    # in graph order: the input layer, the mask layer, then the key's mask weights (key_mask)
    new["inp.weight"] = torch.from_numpy(np.array(init[mats[0].input[1]]).T.copy())
    new["out.weight"] = torch.from_numpy(np.array(init[mats[1].input[1]]).T.copy())
    if model.key_mask:
        new["key_out.weight"] = torch.from_numpy(np.array(init[mats[2].input[1]]).T.copy())
    h = model.hidden

    def reorder(w):  # ONNX (z, r, h) -> torch (r, z, n) along axis 0
        return np.concatenate([w[h:2 * h], w[:h], w[2 * h:3 * h]], axis=0)

    for layer, node in enumerate(grus):
        w, r, b = (np.array(init[node.input[i]])[0] for i in (1, 2, 3))
        new[f"gru.weight_ih_l{layer}"] = torch.from_numpy(reorder(w).copy())
        new[f"gru.weight_hh_l{layer}"] = torch.from_numpy(reorder(r).copy())
        new[f"gru.bias_ih_l{layer}"] = torch.from_numpy(reorder(b[:3 * h]).copy())
        new[f"gru.bias_hh_l{layer}"] = torch.from_numpy(reorder(b[3 * h:]).copy())
    missing = set(sd) - set(new)
    if missing:
        raise DebleedError(f"{path}: no weights found for {sorted(missing)}")
    model.load_state_dict({k: v.to(sd[k].dtype).reshape(sd[k].shape) for k, v in new.items()})
    return model.eval()


def _with_key_filter(start: dict, model) -> dict:
    """``start`` (a state dict) made to fit ``model`` when ``model`` adds a key filter to a start
    whose key is one feature (the newest frame's value): the input layer gains the filter's
    ``key_bins`` columns, the first taking the old key column (the filter's first output starts
    as that same value), the others as ``model`` drew them. Any other start is returned as is."""
    w = start.get("inp.weight")
    if (w is None or not getattr(model, "has_key_state", False) or "key_filt.weight" in start
            or tuple(w.shape) != (model.hidden, model.n_features - model.key_bins + 1)):
        return start
    base = model.n_features - model.key_bins
    grown = model.state_dict()["inp.weight"].clone()
    grown[:, :base + 1] = w
    return dict(start, **{"inp.weight": grown})


def _with_key_connected(start: dict, model) -> dict:
    """``start`` (a state dict) made to fit a ``key_connected`` ``model`` from weights without
    that feature: the input layer and the key's mask weights each gain one zero column for it
    (the model starts as the same model). Any other start is returned as is."""
    if not getattr(model, "key_connected", False):
        return start
    out, shapes = dict(start), {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in ("inp.weight", "key_out.weight"):
        w, want = start.get(name), shapes.get(name)
        if w is not None and want is not None and tuple(w.shape) == (want[0], want[1] - 1):
            out[name] = _zero_column(w)
    return out


def _zero_column(w):
    """``w`` (rows, cols) with one zero column appended (rows, cols + 1)."""
    import torch

    return torch.cat([w, w.new_zeros(w.shape[0], 1)], dim=1)


def _require_torch():
    try:
        import auraloss  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise DebleedError(f"training needs the train extra ({e.name} is missing): run "
                           "`pip install -e '.[train]'` in the venv, or `make train`") from None


def batch_si_sdr_db(reference, estimate, eps: float = 1e-8):
    """Per-item scale-invariant SDR, dB, of ``estimate`` against ``reference``, torch (B, n)
    (Le Roux et al. 2019); the argument order of :func:`debleed.models.metrics.si_sdr_db`."""
    import torch

    ref = reference - reference.mean(-1, keepdim=True)
    est = estimate - estimate.mean(-1, keepdim=True)
    a = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    t = a * ref
    return 10.0 * torch.log10(t.pow(2).sum(-1) / ((est - t).pow(2).sum(-1) + eps) + eps)


def compressed_spectral_loss(est, ref, fft_sizes=(256, 512, 1024), power: float = 0.3,
                             complex_weight: float = 0.3):
    """Multi-resolution power-law-compressed spectral distance between ``est`` and ``ref`` (B, n).

    Per resolution (Hann window of ``n_fft``, hop ``n_fft / 4``, orthonormal scaling): the mean
    squared difference of the magnitudes raised to ``power`` plus ``complex_weight`` times that
    of the compressed complex spectra (magnitude ** power with the phase kept), averaged over
    resolutions. Compression by 0.3 brings a component 30 dB down to 9 dB down, so quiet
    strokes and the residual bleed between hits weigh in the loss instead of vanishing under
    the accents (Ephrat et al., "Looking to listen at the cocktail party", SIGGRAPH 2018;
    Schroeter et al., DeepFilterNet, ICASSP 2022).
    """
    import torch

    total = 0.0
    for n in fft_sizes:
        win = torch.hann_window(n, device=est.device)
        e = torch.stft(est, n, n // 4, window=win, normalized=True, return_complex=True)
        r = torch.stft(ref, n, n // 4, window=win, normalized=True, return_complex=True)
        ge = (e.real.square() + e.imag.square() + 1e-10).pow((power - 1.0) / 2.0)
        gr = (r.real.square() + r.imag.square() + 1e-10).pow((power - 1.0) / 2.0)
        ec, rc = e * ge, r * gr
        mag = (ec.abs() - rc.abs()).square().mean()
        cpx = (ec - rc).abs().square().mean()
        total = total + mag + complex_weight * cpx
    return total / len(fft_sizes)


def frame_level_loss(est, ref, frame: int = 256, floor_db: float = -50.0):
    """Mean absolute difference of short-time levels, in units of 10 dB (B, n inputs).

    Levels are ``10 log10(E + floor)`` over frames of ``frame`` samples (hop ``frame / 2``) with
    the floor ``floor_db`` relative to unit power. It weighs a ghost note 30 dB under the
    accents like an accent (losing half of either's energy costs 3 dB), and it keeps asking for
    less between hits until the residual bleed is ``-floor_db`` dB under unit power: the hit loss
    and bleed reduction of :mod:`debleed.models.metrics`, as a loss.
    """
    import torch

    def level(x):
        e = x.unfold(-1, frame, frame // 2).pow(2).mean(-1)
        return torch.log10(e + 10.0 ** (floor_db / 10.0))

    return (level(est) - level(ref)).abs().mean()


def snare_level_loss(est, ref, frame: int = 256, present_db: float = -50.0, deficit_weight: float = 1.0):
    """Mean absolute difference of short-time levels over the frames where the snare sounds, in
    units of 10 dB (B, n inputs at unit mic RMS); a level under the clean snare's counts
    ``deficit_weight`` times (1: symmetric), so losing a ghost note costs more than passing the
    bleed under it, as the hit-loss metric sees it.

    Levels as :func:`frame_level_loss` (frames of ``frame`` samples, hop ``frame / 2``), averaged
    only over the frames where the clean snare's power is above ``present_db`` (relative to unit
    mic power): a ghost note's few frames weigh as much as an accent's, however much of the crop
    is bleed between hits, so losing a ghost note under loud bleed costs what it costs the
    hit-loss metric of :mod:`debleed.models.metrics`. Those are the frames an informed model's
    key points at.
    """
    import torch

    def energy(x):
        return x.unfold(-1, frame, frame // 2).pow(2).mean(-1)

    e_ref, e_est = energy(ref), energy(est)
    present = (e_ref > 10.0 ** (present_db / 10.0)).float()
    diff = torch.log10(e_est + 1e-6) - torch.log10(e_ref + 1e-6)
    d = torch.relu(diff) + float(deficit_weight) * torch.relu(-diff)
    return (d * present).sum() / present.sum().clamp(min=1.0)


def bleed_loss(est, ref, mix, frame: int = 256, below_db: float = 20.0, target_db: float = -40.0,
               reference: str = "mic"):
    """How far the output stays above ``target_db`` relative to the mic between snare hits, in
    units of 10 dB (B, n inputs; 0 once every item reaches it).

    Per item: the frames (``frame`` samples, hop ``frame / 2``) where the snare (``ref``) is
    ``below_db`` or more under the bleed (``mix - ref``) are the bleed-only frames of the bleed
    reduction metric (:func:`debleed.models.metrics.silent_mask`); the item's output level there
    is ``10 log10(sum of output energy / sum of mic energy)`` over those frames, energy-weighted
    like the metric, so the loudest residual (hi-hat under a snare decay, a tom that passes)
    counts most. Items with no such frame add nothing.

    ``reference="rms"`` measures the output there against the item's whole mic power instead
    (mean output power in those frames over mean mic power): quiet bleed next to loud hits (a
    studio) already sits far under the target and costs nothing, so only bleed one can hear
    over the snare is pushed down (use a lower ``target_db``, e.g. -50).
    """
    import torch

    def energy(x):
        return x.unfold(-1, frame, frame // 2).pow(2).sum(-1)

    e_ref, e_bleed = energy(ref), energy(mix - ref)
    e_mix, e_est = energy(mix), energy(est)
    silent = ((e_ref * 10.0 ** (below_db / 10.0) <= e_bleed) & (e_bleed > 1e-10)).float()
    n = silent.sum(-1)
    if reference == "mic":
        level_db = 10.0 * torch.log10(((e_est * silent).sum(-1) + 1e-10) / ((e_mix * silent).sum(-1) + 1e-10))
    elif reference == "rms":
        p_out = (e_est * silent).sum(-1) / (n * frame).clamp(min=1.0)
        level_db = 10.0 * torch.log10((p_out + 1e-12) / (mix.pow(2).mean(-1) + 1e-12))
    else:
        raise DebleedError(f"bleed_loss reference must be 'mic' or 'rms', got {reference!r}")
    per_item = torch.relu(level_db - target_db) / 10.0
    has = (n > 0).float()
    return (per_item * has).sum() / has.sum().clamp(min=1.0)


class Loss:
    """Training loss per item at unit mic RMS (Le Roux et al. 2019 for SI-SDR; auraloss for the
    multi-resolution STFT loss):

    ``L1 + MRSTFT + compressed_weight * compressed spectral loss + level_weight * frame level
    loss + snare_level_weight * snare level loss + bleed_weight * bleed loss - sisdr_weight *
    SI-SDR (dB)`` (``sisdr_weight`` 0.05 and ``snare_level_weight`` 0 by default).

    Estimate and target are divided by the RMS of the mic signal (the input) first, so every
    item weighs the same whatever its level. (Dividing by the clean RMS instead blows up crops
    with little snare in them, and training then learns to output silence.) The auraloss
    MRSTFT loss (FFT 256/512/1024) is spectral convergence + linear-magnitude L1; the
    power-law-compressed spectral loss (:func:`compressed_spectral_loss`) carries the quiet
    parts: ghost notes and the residual bleed between hits; the frame level loss
    (:func:`frame_level_loss`) asks for the short-time level of the clean snare, and the snare
    level loss (:func:`snare_level_loss`) for it where the snare sounds, ghost notes as much as
    accents; the bleed loss
    (:func:`bleed_loss`) asks for 40 dB less than the mic where only bleed sounds.
    """

    def __init__(self, compressed_weight: float = 10.0, level_weight: float = 1.0, bleed_weight: float = 0.0,
                 bleed_reference: str = "mic", bleed_target_db: float = -40.0, sisdr_weight: float = 0.05,
                 snare_level_weight: float = 0.0, snare_deficit_weight: float = 1.0):
        import auraloss

        self.compressed_weight = float(compressed_weight)
        self.level_weight = float(level_weight)
        self.bleed_weight = float(bleed_weight)
        self.bleed_kw = {"reference": bleed_reference, "target_db": float(bleed_target_db)}
        self.sisdr_weight = float(sisdr_weight)
        self.snare_level_weight = float(snare_level_weight)
        if not (np.isfinite(snare_deficit_weight) and snare_deficit_weight >= 1.0):
            raise DebleedError(f"snare_deficit_weight must be a number >= 1, got {snare_deficit_weight!r}")
        self.snare_deficit_weight = float(snare_deficit_weight)
        self.mrstft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=[256, 512, 1024], hop_sizes=[64, 128, 256], win_lengths=[256, 512, 1024],
            w_sc=1.0, w_log_mag=0.0, w_lin_mag=1.0, eps=1e-2)

    def __call__(self, est, ref, mix):
        rms = mix.pow(2).mean(-1, keepdim=True).sqrt() + 1e-6
        est, ref = est / rms, ref / rms
        l1 = (est - ref).abs().mean()
        spec = self.mrstft(est.unsqueeze(1), ref.unsqueeze(1))
        comp = compressed_spectral_loss(est, ref)
        lev = frame_level_loss(est, ref)
        bl = bleed_loss(est, ref, mix / rms, **self.bleed_kw) if self.bleed_weight else est.new_zeros(())
        sl = (snare_level_loss(est, ref, deficit_weight=self.snare_deficit_weight) if self.snare_level_weight
              else est.new_zeros(()))
        has_snare = (ref.pow(2).mean(-1) > 1e-8).float()
        sisdr = (batch_si_sdr_db(ref, est).clamp(max=50.0) * has_snare).sum() / has_snare.sum().clamp(min=1.0)
        loss = (l1 + spec + self.compressed_weight * comp + self.level_weight * lev + self.bleed_weight * bl
                + self.snare_level_weight * sl - self.sisdr_weight * sisdr)
        return loss, {"l1": l1.item(), "stft": spec.item(), "comp": comp.item(), "level": lev.item(),
                      "snare_level": sl.item(), "bleed": bl.item(), "sisdr": sisdr.item()}


def _atomic_save(obj, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _crops(data, rng, batch: int, length: int, *, informed: bool = False, drop_key: float = 0.0,
           drop_ref: float = 0.0, drop_all_refs: float = 0.0, key_lead: int = 0, loud_share: float = 0.0,
           levels=None, key_idle: bool = False):
    """``batch`` random crops ``(noisy, clean)``, each (batch, length); informed: also ``refs``
    (batch, R, length) and ``key`` (batch, length), each dropped to zeros with its probability
    per example, and all refs of an example at once with ``drop_all_refs`` (the draws come after
    the crop positions, so the plain crops stay as they were). The key crop starts ``key_lead``
    samples later than the audio's (the key heard that much ahead; zeros past the scene's end).
    With ``loud_share``, that share of the examples has its bleed (``noisy - clean``) raised so the
    scene's bleed-to-snare energy ratio (``levels``, dB per scene) reaches a level drawn from
    :data:`LOUD_LEVEL_DB` (a loud stage; drawn last, so the other draws stay as they were).
    With ``key_idle`` (a ``key_connected`` model) every example whose key is kept reads at least
    :data:`~debleed.models.graph.KEY_IDLE` on every sample (a connected key), a dropped key zeros."""
    idx = rng.integers(0, data["noisy"].shape[0], batch)
    start = rng.integers(0, data["noisy"].shape[1] - length, batch)
    x = np.stack([data["noisy"][i, s:s + length] for i, s in zip(idx, start)])
    y = np.stack([data["clean"][i, s:s + length] for i, s in zip(idx, start)])
    if loud_share > 0.0:
        loud = rng.random(batch) < loud_share
        target = rng.uniform(*LOUD_LEVEL_DB, batch)
        boost = np.where(loud, np.maximum(target - levels[idx], 0.0), 0.0)
        x = y + (x - y) * (10.0 ** (boost / 20.0)).astype(np.float32)[:, None]
    if not informed:
        return x, y
    refs = np.stack([data["refs"][i, :, s:s + length] for i, s in zip(idx, start)])
    key = np.zeros((batch, length), np.float32)
    for b, (i, s) in enumerate(zip(idx, start)):
        k = data["key"][i, s + key_lead:s + key_lead + length]
        key[b, :k.size] = k
    kept = np.ones(batch, bool)
    if drop_key > 0.0 or drop_ref > 0.0:
        kept = rng.random(batch) >= drop_key
        key *= kept[:, None]
        refs *= (rng.random((batch, refs.shape[1])) >= drop_ref)[:, :, None]
    if key_idle:
        key = np.where(kept[:, None], connected_key(key), np.float32(0.0))
    if drop_all_refs > 0.0:
        refs *= (rng.random(batch) >= drop_all_refs)[:, None, None]
    return x, y, refs, key


def _check_settings(**kw) -> None:
    """Refuse training settings outside their ranges, naming the value (:class:`DebleedError`)."""
    fine_tuning = kw.pop("init") is not None
    lowest = {"steps": 0 if fine_tuning else 1, "batch": 1, "n_scenes": 1, "ckpt_every": 1, "threads": 1,
              "valid_scenes": 1}
    for name, low in lowest.items():
        v = kw[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            why = " (0 exports the --init checkpoint unchanged)" if name == "steps" and fine_tuning else ""
            raise DebleedError(f"{name} must be an integer >= {low}{why}, got {v!r}")
    for name in ("crop_s", "lr", "scene_s"):
        v = kw[name]
        if not isinstance(v, (int, float, np.floating)) or not np.isfinite(v) or v <= 0:
            raise DebleedError(f"{name} must be a finite number > 0, got {v!r}")
    if kw["crop_s"] > kw["scene_s"]:
        raise DebleedError(f"crop_s {kw['crop_s']} s is longer than a scene (scene_s {kw['scene_s']} s)")


def train(*, sample_rate: int, steps: int, work_dir, out=None, init=None, seed: int = 0,
          batch: int = 12, crop_s: float = 0.67, lr: float = 1e-3, n_scenes: int = 400,
          scene_s: float = 6.0, ckpt_every: int = 100, resume: bool = True, threads: int = 1,
          progress: bool = True, model_kwargs: dict | None = None, valid_scenes: int = 12,
          log=None, loss_kwargs: dict | None = None, ckpt_name: str | None = None,
          device: str = "cpu", taps: int | None = None, data=None, init_onnx=None,
          max_seconds: float | None = None, drop_key: float = DROP_KEY, drop_ref: float = DROP_REF,
          drop_all_refs: float = DROP_ALL_REFS, key_lead_ms: float | None = None, loud_share: float = 0.0,
          key_mask: bool | None = None, key_power: float | None = None,
          key_connected: bool | None = None) -> dict:
    """Train (or resume) one model and export it; returns a summary dict.

    Parameters
    ----------
    sample_rate : int
        44100 or 48000 Hz.
    steps : int
        Optimiser steps in total (a resumed run continues up to this count); >= 1, or >= 0 with
        ``init`` or ``init_onnx`` (0 exports the start weights, e.g. with a new ``key_power``).
    work_dir : path
        Cache and checkpoint folder (git-ignored, e.g. ``train-cache/``).
    out : path, optional
        ONNX output; default the shipped model path for the rate.
    init : path, optional
        A checkpoint whose weights start this run (fine-tuning), used when no checkpoint of this
        run exists yet.
    loss_kwargs : dict, optional
        Arguments of :class:`Loss` (``compressed_weight``, ``level_weight``, ``bleed_weight``,
        ``bleed_reference``, ``bleed_target_db``, ``sisdr_weight``).
    ckpt_name : str, optional
        Checkpoint file name in ``work_dir``; default ``ckpt_48k.pt`` / ``ckpt_44k1.pt``. A
        fine-tuning stage at the same rate needs its own name.
    taps : int, optional
        Multi-frame filter length of the model (see :class:`~debleed.models.net.SnareDenoiserNet`);
        default that of ``init``, or 1. Fine-tuning a one-tap checkpoint with more taps adds the
        coefficient head at zero, so the run starts from the checkpoint's output exactly.
    device : str
        torch device for training (``"cpu"``, the default and what ``make train`` uses, or e.g.
        ``"cuda"``); checkpoints and the exported model are the same either way.
    data : (path, path), optional
        ``(training npz, validation npz)`` caches (``noisy``, ``clean`` float32 (n_scenes, n)) to
        train on instead of the rendered kit scenes, e.g. the soundcheck's own mixtures; their
        file names then stand for the recipe of the checkpoint.
    init_onnx : path, optional
        Start from the weights of an exported model (:func:`model_from_onnx`) instead of a
        checkpoint, e.g. a shipped model; not together with ``init``.
    drop_key, drop_ref, drop_all_refs : float
        Informed models: per example, the probability that the key, each reference mic, and all
        reference mics at once read as zeros (not connected); defaults :data:`DROP_KEY`,
        :data:`DROP_REF`, :data:`DROP_ALL_REFS`.
    key_mask : bool, optional
        Informed models with a key filter: give its features a direct path to the mask
        (:class:`~debleed.models.net.SnareDenoiserNet`'s ``key_mask``, started at zero); default
        that of ``model_kwargs`` or the start weights.
    loud_share : float
        Share of the training examples (0 to 1; default 0) whose bleed is raised to a loud
        stage's level (:data:`LOUD_LEVEL_DB`): the rendered scenes' bleed is uniform in dB from a
        studio to a loud stage, where an informed model's key matters most.
    key_lead_ms : float, optional
        Informed models with a key: how far ahead of the audio the model hears the key, ms (0 to
        20; see :class:`~debleed.models.net.SnareDenoiserNet`); default that of ``model_kwargs``
        or the start weights.
    key_power : float, optional
        Informed models with a key: the exponent its frame values are raised to (0.1 to 1; see
        :class:`~debleed.models.net.SnareDenoiserNet`); default that of ``model_kwargs`` or the
        start weights.
    key_connected : bool, optional
        Informed models with a key filter: one more key feature that says whether a key is
        connected (see :class:`~debleed.models.net.SnareDenoiserNet`; its weights start at zero);
        default that of ``model_kwargs`` or the start weights.
    max_seconds : float, optional
        Stop after this much training time, s (> 0), whatever ``steps`` says; the learning-rate
        schedule is stretched over the steps the first ones say fit in that time.
    seed : int
        Seeds the scene caches (``seed + 1`` training, ``seed + 2`` validation), the crops and torch.
    batch : int
        Crops per step, >= 1 (default 12).
    crop_s : float
        Crop length, s, > 0 and at most ``scene_s``; it must hold at least ``context + window``
        samples of the model (0.023 s at 48 kHz for the default model).
    lr : float
        Learning rate of the mask network, > 0 (the filterbank learns 20 times slower); 100
        warm-up steps from scratch (1 when fine-tuning), then cosine decay to 10 % at ``steps``.
    n_scenes, valid_scenes : int
        Rendered training and validation scenes, >= 1 (default 400 and 12).
    scene_s : float
        Scene length, s, > 0 (default 6).
    ckpt_every : int
        Checkpoint (and validation log row) every N steps, >= 1.
    resume : bool
        Continue from ``work_dir``'s checkpoint of this run when it exists (default True).
    threads : int
        torch intra-op threads, >= 1.
    progress : bool
        tqdm progress bars on stderr.
    model_kwargs : dict, optional
        :class:`~debleed.models.net.SnareDenoiserNet` arguments; default those of ``init``, else
        ``DEFAULT_MODEL`` at ``sample_rate``.
    log : file, optional
        Gets one JSON line per checkpoint (losses, validation loss and SI-SDR, elapsed s).

    Raises
    ------
    DebleedError
        An unsupported ``sample_rate``; a setting outside its range (named in the message); an
        ``init`` that is missing or does not fit the model; a checkpoint to resume made with
        another scene recipe or model.
    """
    _require_torch()
    import torch
    from tqdm import tqdm

    from debleed.models.net import SnareDenoiserNet, export_onnx

    if int(sample_rate) not in RATE_TAG:
        raise DebleedError(f"sample_rate {sample_rate} Hz not supported (allowed: 44100, 48000)")
    _check_settings(steps=steps, batch=batch, crop_s=crop_s, lr=lr, n_scenes=n_scenes, scene_s=scene_s,
                    ckpt_every=ckpt_every, threads=threads, valid_scenes=valid_scenes,
                    init=init if init is not None else init_onnx)
    if init is not None and init_onnx is not None:
        raise DebleedError("give init (a checkpoint) or init_onnx (an exported model), not both")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and np.isfinite(max_seconds)
                                        and max_seconds > 0):
        raise DebleedError(f"max_seconds must be a finite number > 0, got {max_seconds!r}")
    for name, v in (("drop_key", drop_key), ("drop_ref", drop_ref), ("drop_all_refs", drop_all_refs),
                    ("loud_share", loud_share)):
        if not (isinstance(v, (int, float, np.floating)) and 0.0 <= v <= 1.0):
            raise DebleedError(f"{name} must be a probability from 0 to 1, got {v!r}")
    if init_onnx is not None and not Path(init_onnx).is_file():
        raise DebleedError(f"init_onnx model {init_onnx} does not exist (or is not a file)")
    if init is not None and not Path(init).is_file():
        raise DebleedError(f"--init checkpoint {init} does not exist (or is not a file)")
    torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    work = Path(work_dir)
    tag = RATE_TAG[int(sample_rate)]
    work.mkdir(parents=True, exist_ok=True)
    if model_kwargs is not None:
        arch = model_kwargs
    elif init is not None:  # fine-tuning keeps the architecture of the start weights
        arch = torch.load(init, weights_only=False, map_location="cpu")["config"]
    elif init_onnx is not None:
        arch = model_from_onnx(init_onnx).config()
    else:
        arch = DEFAULT_MODEL
    informed = bool(arch.get("n_refs") or arch.get("key"))
    recipe = informed_recipe_tag() if informed else recipe_tag()
    train_npz = work / f"train_{tag}_{n_scenes}x{scene_s:g}s_seed{seed}_{recipe}.npz"
    valid_npz = work / f"valid_{tag}_{valid_scenes}x{scene_s:g}s_seed{seed}_{recipe}.npz"
    if data is not None:
        train_npz, valid_npz = (Path(p) for p in data)
        for p in (train_npz, valid_npz):
            if not p.is_file():
                raise DebleedError(f"training data {p} does not exist (or is not a file)")
        recipe = f"{train_npz.name}|{valid_npz.name}"
    if not train_npz.exists():
        build_cache(train_npz, kits=TRAIN_KITS, sample_rate=sample_rate, n_scenes=n_scenes,
                    seconds=scene_s, seed=seed + 1, progress=progress, informed=informed)
    if not valid_npz.exists():
        build_cache(valid_npz, kits=(VALID_KIT,), sample_rate=sample_rate, n_scenes=valid_scenes,
                    seconds=scene_s, seed=seed + 2, progress=progress, informed=informed)
    # float32 whatever the cache holds (a cache may be stored as float16 to move it around)
    keys = ("noisy", "clean", "refs", "key") if informed else ("noisy", "clean")
    data = {k: np.asarray(v, np.float32) for k, v in np.load(train_npz).items() if k in keys}
    valid = {k: np.asarray(v, np.float32) for k, v in np.load(valid_npz).items() if k in keys}
    if informed and not {"refs", "key"} <= set(data) & set(valid):
        raise DebleedError(f"an informed model needs training data with reference mics and a key "
                           f"('refs', 'key'); {train_npz.name} / {valid_npz.name} have {sorted(data)} / {sorted(valid)}")
    with np.errstate(divide="ignore"):  # bleed-to-snare energy ratio of each scene, dB (loud_share)
        levels = 10.0 * np.log10(np.sum((data["noisy"] - data["clean"]) ** 2, axis=1)
                                 / np.maximum(np.sum(data["clean"] ** 2, axis=1), 1e-12))
    init_state = torch.load(init, weights_only=False, map_location="cpu") if init is not None else None
    if init_onnx is not None:
        start = model_from_onnx(init_onnx)
        init_state = {"model": start.state_dict(), "config": start.config()}
        init = init_onnx
    if model_kwargs is None:
        # fine-tuning keeps the architecture (and filters) of the start weights
        model_kwargs = (dict(init_state["config"]) if init_state is not None
                        else dict(DEFAULT_MODEL, sample_rate=int(sample_rate)))
    if taps is not None:
        model_kwargs = dict(model_kwargs, taps=int(taps))
    if key_lead_ms is not None:
        model_kwargs = dict(model_kwargs, key_lead_ms=float(key_lead_ms))
    if key_mask is not None:
        model_kwargs = dict(model_kwargs, key_mask=bool(key_mask))
    if key_power is not None:
        model_kwargs = dict(model_kwargs, key_power=float(key_power))
    if key_connected is not None:
        model_kwargs = dict(model_kwargs, key_connected=bool(key_connected))
    try:
        model = SnareDenoiserNet(**model_kwargs).to(device)
    except ValueError as e:  # a setting out of its range (key_power, key_lead_ms, taps, ...)
        raise DebleedError(f"model settings: {e}") from None
    hop = model.hop
    key_lead = int(round(model.key_lead_ms * 1e-3 * sample_rate))
    length = min(int(crop_s * sample_rate), data["noisy"].shape[1] - hop) // hop * hop
    if length < model.context + model.window:
        raise DebleedError(f"crop_s {crop_s} s gives {length} samples per crop; at least {model.context + model.window} "
                           f"({(model.context + model.window) / sample_rate:.3f} s at {sample_rate} Hz) are needed")
    # The filterbank starts as a perfect-reconstruction frame with weights of about 0.04: at
    # the mask network's learning rate Adam's first steps scramble it (the output fell 40 dB
    # in 100 steps), so it learns 20 times slower. Warm-up 100 steps, then cosine to 10 %.
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # not the fixed constant-Q
    fb = [p for n, p in trained if n.startswith(("encoder.", "decoder."))]
    rest = [p for n, p in trained if not n.startswith(("encoder.", "decoder."))]
    opt = torch.optim.Adam([{"params": rest, "lr": lr}, {"params": fb, "lr": lr / 20.0}])
    warm = 100 if init is None else 1
    span = {"steps": steps}  # the schedule's length; a time budget shortens it after the first steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1.0 + np.cos(np.pi * min(s / max(span["steps"], 1), 1.0)))))
    ckpt = work / (ckpt_name or f"ckpt_{tag}.pt")
    step = 0
    rng = np.random.default_rng([seed, 17])
    if resume and ckpt.exists():
        st = torch.load(ckpt, weights_only=False, map_location="cpu")
        if st.get("recipe") != recipe:
            why = f"was trained on scene recipe {st.get('recipe')!r}, this run renders recipe {recipe!r}"
        elif st.get("config") != model.config():
            why = f"holds a model {st.get('config')}, this run builds {model.config()} (another --taps?)"
        else:
            why = None
        if why:
            raise DebleedError(f"checkpoint {ckpt} {why}: move it away to keep it, or pass --no-resume to "
                               "start over (it is then overwritten)")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step = int(st["step"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
    elif init_state is not None:
        try:
            grown = _with_key_connected(_with_key_filter(init_state["model"], model), model)
            missing, unexpected = model.load_state_dict(grown, strict=False)
        except RuntimeError as e:  # a shape mismatch
            raise DebleedError(f"checkpoint {init} does not fit this model: {e}") from None
        if unexpected or any(not k.startswith(("taps_out.", "key_filt.", "key_out.")) for k in missing):
            raise DebleedError(f"checkpoint {init} does not fit this model (missing {missing}, unexpected "
                               f"{unexpected}); only the multi-frame filter head and the key filter and mask "
                               "weights may be new")
    loss_fn = Loss(**(loss_kwargs or {}))
    loss_fn.mrstft.to(device)
    vlen = min(int(2.0 * sample_rate), valid["noisy"].shape[1] - hop) // hop * hop
    vc = [torch.from_numpy(a).to(device)
          for a in _crops(valid, np.random.default_rng(99), 8, vlen, informed=informed, key_lead=key_lead,
                         key_idle=model.key_connected)]
    vx, vy, vextra = vc[0], vc[1], vc[2:]  # informed: every input connected

    def validate():
        model.eval()
        with torch.no_grad():
            est = model.run(vx, *vextra)[:, hop:]
            v, parts = loss_fn(est, vy[:, :-hop], vx[:, :-hop])
        model.train()
        return float(v), parts

    def save():
        _atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                      "step": step, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                      "config": model.config(), "sample_rate": sample_rate, "recipe": recipe}, ckpt)

    t0 = time.monotonic()
    first_step = step
    requested = steps
    t_mark = [0, 0.0]  # (steps done, elapsed s) at the last pace estimate
    bar = tqdm(total=steps, initial=step, desc=f"train {tag}", disable=not progress,
               file=sys.stderr, mininterval=5.0)
    model.train()
    while step < steps:
        c = [torch.from_numpy(a).to(device) for a in _crops(data, rng, batch, length, informed=informed,
                                                             drop_key=drop_key, drop_ref=drop_ref,
                                                             drop_all_refs=drop_all_refs, key_lead=key_lead,
                                                             loud_share=loud_share, levels=levels,
                                                             key_idle=model.key_connected)]
        x, y = c[0], c[1]
        est = model.run(x, *c[2:])[:, hop:]
        loss, parts = loss_fn(est, y[:, :-hop], x[:, :-hop])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", sisdr=f"{parts['sisdr']:.1f}")
        elapsed = time.monotonic() - t0
        done = step - first_step
        if max_seconds is not None and (done in (5, 20) or (done % 50 == 0 and done > 0)):
            # steps that fit in the time left at the recent pace (the first steps are slower)
            per_step = (elapsed - t_mark[1]) / max(done - t_mark[0], 1) if done > 5 else elapsed / done
            t_mark[:] = [done, elapsed]
            fit = step + int(max(max_seconds - elapsed, 0.0) / max(per_step, 1e-6))
            steps = span["steps"] = max(min(requested, fit), step)
            bar.total = steps
            bar.refresh()
        if max_seconds is not None and elapsed >= max_seconds:
            steps = step
        if step % ckpt_every == 0 or step == steps:
            save()
            if log is not None:
                v, vp = validate()
                print(json.dumps({"step": step, "loss": loss.item(), **parts, "valid_loss": v,
                                  "valid_sisdr": vp["sisdr"], "elapsed_s": round(time.monotonic() - t0, 1)}),
                      file=log, flush=True)
    bar.close()
    v, vp = validate()
    out = Path(out) if out is not None else model_path(sample_rate)
    with atomic_path(out) as tmp:
        export_onnx(model.to("cpu").eval(), tmp, sample_rate=sample_rate)
    return {"sample_rate": sample_rate, "steps": step, "valid_loss": v, "valid_sisdr_db": vp["sisdr"],
            "onnx": str(out), "checkpoint": str(ckpt), "seconds": round(time.monotonic() - t0, 1)}


def export_checkpoint(ckpt, out) -> Path:
    """Export a training checkpoint's weights to a streaming ONNX model (atomically)."""
    _require_torch()
    import torch

    from debleed.models.net import SnareDenoiserNet, export_onnx

    st = torch.load(ckpt, weights_only=False, map_location="cpu")
    model = SnareDenoiserNet(**st["config"])
    model.load_state_dict(st["model"])
    out = Path(out)
    with atomic_path(out) as tmp:
        export_onnx(model.eval(), tmp, sample_rate=int(st["sample_rate"]))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``debleed train`` flags."""
    p.add_argument("--rate", type=int, choices=(44100, 48000), default=48000, help="sample rate, Hz")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps in total (default 3000)")
    p.add_argument("--work-dir", default="train-cache", help="cache and checkpoint folder (default train-cache)")
    p.add_argument("--out", default=None, help="ONNX output (default: the shipped model for the rate)")
    p.add_argument("--init", default=None, help="checkpoint to start from (fine-tuning)")
    p.add_argument("--init-onnx", default=None,
                   help="exported model to start from instead of a checkpoint (e.g. a shipped .onnx); with --arch "
                        "informed, a model whose key is one feature gains the key filter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--crop-s", type=float, default=0.67, help="training crop length, s")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--scenes", type=int, default=400, help="rendered training scenes (6 s each; default 400)")
    p.add_argument("--ckpt-every", type=int, default=100, help="checkpoint every N steps")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--bleed-weight", type=float, default=0.0,
                   help="weight of the bleed loss (output level where only bleed sounds; default 0)")
    p.add_argument("--bleed-reference", choices=("mic", "rms"), default="mic",
                   help="bleed loss level against the mic in those frames (mic) or the item's mic power (rms)")
    p.add_argument("--bleed-target", type=float, default=-40.0, help="bleed loss target level, dB (default -40)")
    p.add_argument("--sisdr-weight", type=float, default=0.05, help="weight of -SI-SDR (dB) in the loss (default 0.05)")
    p.add_argument("--snare-level-weight", type=float, default=0.0,
                   help="weight of the snare level loss (short-time level where the snare sounds, ghost notes as "
                        "much as accents; default 0)")
    p.add_argument("--snare-deficit-weight", type=float, default=1.0,
                   help="in the snare level loss, a level under the clean snare's counts this many times more "
                        "than one above it (>= 1; default 1, symmetric)")
    p.add_argument("--ckpt-name", default=None,
                   help="checkpoint file name in --work-dir (default ckpt_48k.pt / ckpt_44k1.pt)")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default=None,
                   help="architecture from scratch: default (mic only, 256 filters, GRU 2x192), informed "
                        "(hi-hat and overhead mics and the key through a key filter, 128 filters, GRU 96) or "
                        "informed-frame-key (the same with the key as one feature); default that of --init, "
                        "else default")
    p.add_argument("--drop-key", type=float, default=DROP_KEY,
                   help=f"informed models: probability that an example's key is zeros (default {DROP_KEY})")
    p.add_argument("--drop-ref", type=float, default=DROP_REF,
                   help=f"informed models: probability that each reference mic is zeros (default {DROP_REF})")
    p.add_argument("--drop-all-refs", type=float, default=DROP_ALL_REFS,
                   help=f"informed models: probability that all reference mics are zeros (default {DROP_ALL_REFS})")
    p.add_argument("--key-mask", action="store_true", default=None,
                   help="informed models: the key filter's features also reach the mask directly (started at zero)")
    p.add_argument("--loud-share", type=float, default=0.0,
                   help="share of the examples whose bleed is raised to a loud stage's level (0 to 1; default 0)")
    p.add_argument("--key-lead-ms", type=float, default=None,
                   help="informed models: how far ahead of the audio the model hears its key, ms (0 to 20; "
                        "default that of --arch or the start weights)")
    p.add_argument("--key-power", type=float, default=None,
                   help="informed models: the exponent the key's values are raised to ({:g} to {:g}; 0.5 lifts ghost "
                        "notes' keys toward the accents'; default that of --arch or the start weights)".format(*KEY_POWER_RANGE))
    p.add_argument("--key-connected", action="store_true", default=None,
                   help="informed models with a key filter: one more key feature that says whether a key is connected "
                        "(its weights started at zero; default that of --arch or the start weights)")
    p.add_argument("--taps", type=int, default=None,
                   help="multi-frame filter length (frames per filter; default that of --init, or 1)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    p.add_argument("--log", default=None, help="append JSON lines (loss, validation) to this file")
    p.add_argument("--export-only", action="store_true",
                   help="export the latest checkpoint of --rate in --work-dir to --out and stop")


def run_from_args(args) -> int:
    """Entry point of ``debleed train``."""
    if args.export_only:
        ckpt = Path(args.work_dir) / (args.ckpt_name or f"ckpt_{RATE_TAG[args.rate]}.pt")
        if not ckpt.is_file():
            raise DebleedError(f"no checkpoint {ckpt} to export (train first)")
        print(export_checkpoint(ckpt, args.out or model_path(args.rate)))
        return 0
    log = open(args.log, "a") if args.log else None
    try:
        res = train(sample_rate=args.rate, steps=args.steps, work_dir=args.work_dir, out=args.out,
                    init=args.init, init_onnx=args.init_onnx, seed=args.seed, batch=args.batch, crop_s=args.crop_s, lr=args.lr,
                    n_scenes=args.scenes, ckpt_every=args.ckpt_every, resume=not args.no_resume,
                    threads=args.threads, log=log, ckpt_name=args.ckpt_name,
                    loss_kwargs={"bleed_weight": args.bleed_weight, "bleed_reference": args.bleed_reference,
                                 "bleed_target_db": args.bleed_target, "sisdr_weight": args.sisdr_weight,
                                 "snare_level_weight": args.snare_level_weight,
                                 "snare_deficit_weight": args.snare_deficit_weight},
                    device=args.device, taps=args.taps, drop_key=args.drop_key, drop_ref=args.drop_ref,
                    drop_all_refs=args.drop_all_refs, key_lead_ms=args.key_lead_ms, loud_share=args.loud_share,
                    key_mask=args.key_mask, key_power=args.key_power, key_connected=args.key_connected,
                    model_kwargs=(dict(ARCHITECTURES[args.arch], sample_rate=args.rate) if args.arch else None))
    finally:
        if log:
            log.close()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    add_arguments(ap)
    sys.exit(run_from_args(ap.parse_args()))
