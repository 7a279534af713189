"""The soundcheck's denoiser step: fine-tune the snare denoiser of each denoised channel on the line
check's own hits.

:func:`adapt_denoisers` (what :func:`debleed.soundcheck.run_soundcheck` calls) runs
:func:`adapt_denoiser` per ``denoise = true`` channel: the shipped model's weights (read back
from its ONNX file) fine-tuned on mixtures of three quarters of the line check's recordings,
kept only if it beats the shipped model on grooves mixed from the other quarter. Without the
train extra (torch) the denoiser is not adapted and the report says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from debleed.dsp.processor import ProcessSpec
from debleed.errors import DebleedError
from debleed.fileio import atomic_path
from debleed.models.denoiser import Denoiser, denoise_signal
from debleed.models.kit import MultiMicKit, kit_scene
from debleed.models.streaming import load_weights
from debleed.models.train import model_path as shipped_path
from debleed.models.train import train
from debleed.soundcheck.common import MAX_GHOST_LOSS_DB, MAX_LOUD_LOSS_DB
from debleed.soundcheck.fit import FitScene, pool, scene_metrics
from debleed.soundcheck.informed import InformedInputs, denoise_informed, informed_inputs, informed_scene

#: Bleed-level augmentation of the denoiser's fine-tuning mixtures, dB around the measured bleed.
AUGMENT_BLEED_DB = (-10.0, 20.0)


def _scenes_npz(path, kit: MultiMicKit, mic: str, *, n: int, seconds: float, seed: int, offsets,
                informed: InformedInputs | None = None) -> Path:
    noisy = np.zeros((n, int(round(seconds * kit.sample_rate))), np.float32)
    clean = np.zeros_like(noisy)
    extra = {} if informed is None else {"refs": np.zeros((n, informed.n_refs, noisy.shape[1]), np.float32),
                                         "key": np.zeros_like(noisy)}
    rng = np.random.default_rng([seed, 31])
    for i in range(n):
        off = float(rng.uniform(*offsets)) if isinstance(offsets, tuple) else float(offsets[i % len(offsets)])
        if informed is None:
            sc = kit_scene(kit, mic, seconds=seconds, seed=seed * 1009 + i, bleed_offset_db=off)
        else:
            sc = informed_scene(kit, mic, informed, seconds=seconds, seed=seed * 1009 + i, bleed_offset_db=off)
            extra["refs"][i], extra["key"][i] = sc.refs, sc.key
        g = np.float32(10.0 ** (rng.uniform(-12.0, 3.0) / 20.0)) if isinstance(offsets, tuple) else np.float32(1.0)
        noisy[i], clean[i] = sc.noisy * g, sc.clean * g
        if informed is not None:
            extra["refs"][i] *= g  # the whole stage at one gain; the key is a velocity, not a level
    with atomic_path(Path(path)) as tmp:
        np.savez(tmp, noisy=noisy, clean=clean, sample_rate=np.int64(kit.sample_rate), **extra)
    return Path(path)


def denoiser_metrics(model_path, scenes: list, sample_rate: int, informed: InformedInputs | None = None) -> dict:
    """A model's metrics (:func:`~debleed.soundcheck.fit.pool`) on denoiser scenes
    (:func:`~debleed.models.kit.kit_scene`, or :func:`informed_scene` with ``informed``: the
    model then hears the scenes' reference mics and key, as the denoiser stage feeds them)."""
    den = None
    if informed is None:
        den = Denoiser(model_path)
        den.prepare(ProcessSpec(sample_rate, 1024))
    ms = []
    for sc in scenes:
        if den is not None:
            y, lat = denoise_signal(sc.noisy, sample_rate, denoiser=den, compensate=False), den.latency_samples
        else:
            y, lat = denoise_informed(model_path, sc.noisy, sc.refs, sc.key if informed.key else None)
        fs = FitScene(audio=sc.noisy, key=None, events=np.zeros((0, 4)), mic=sc.noisy, own=sc.clean,
                      frames=sc.hit_frames, velocities=sc.hit_velocities, latency=lat)
        ms.append(scene_metrics(fs, y, sample_rate, lat))
    return pool(ms)


#: Loss settings of the soundcheck's fine-tuning (:class:`debleed.models.train.Loss`).
FINE_TUNE_LOSS = {}  # the defaults: SI-SDR weight 0.05 (0.5, as make train's second stage, cost loud hits more)
#: An informed model is fine-tuned with the loss of its own last training stages (make train:
#: TRAIN_INF_GHOST and the bleed loss, models/README.md): with the defaults the fine-tuning gave
#: back the ghost notes those stages had kept.
FINE_TUNE_LOSS_INFORMED = {"sisdr_weight": 0.2, "snare_level_weight": 3.0, "snare_deficit_weight": 4.0,
                           "bleed_weight": 0.5}


#: Steps of the adapted informed model's key power search (:func:`choose_key_power`).
KEY_POWER_STEP = 0.05
#: The ghost-note loss (against the clean snare, dB) the key power search keeps on the held-out
#: grooves: the 1 dB target less a margin for the show, which plays other hits (as the gate
#: fit's loud-hit bound and bleed floor keep theirs).
ADAPT_GHOST_LOSS_DB = MAX_GHOST_LOSS_DB - 0.5


def choose_key_power(model_onnx, scenes: list, sample_rate: int, informed: InformedInputs, current: dict,
                     *, min_si_sdr_db: float = -np.inf) -> dict:
    """Lower a fine-tuned informed model's key power until its ghost notes come back.

    The shipped model's ``key_power`` was chosen as the largest (in steps of 0.05) at which
    every training kit keeps its ghost notes within 1 dB of the clean snare (models/README.md);
    fine-tuning on one kit's hits can give some back. The same rule on the soundcheck's held-out
    grooves (``scenes``): if the model's ghost-note loss there (``current``, its
    :func:`denoiser_metrics`) is over :data:`ADAPT_GHOST_LOSS_DB`, the powers below its own, in
    steps of :data:`KEY_POWER_STEP` down to the lowest allowed, are tried (the same weights,
    exported again), and the largest that meets it, keeps loud hits within
    :data:`MAX_LOUD_LOSS_DB` of the clean snare and SI-SDR at ``min_si_sdr_db`` or more replaces
    ``model_onnx`` (written atomically). Needs torch (the train extra).

    Returns
    -------
    dict
        ``key_power`` (the one kept), ``from`` (the model's own), ``metrics`` (on ``scenes``,
        with the kept power) and ``tried`` (``[(power, ghost-note loss dB, SI-SDR dB), ...]``).
    """
    from debleed.models.graph import KEY_POWER_RANGE
    from debleed.models.net import export_onnx
    from debleed.models.train import model_from_onnx

    model = model_from_onnx(model_onnx)
    p0 = float(model.key_power)
    out = {"key_power": p0, "from": p0, "metrics": current, "tried": []}
    if not informed.key or not model.key or current["hit_loss_ghost_vs_clean_db"] <= ADAPT_GHOST_LOSS_DB:
        return out
    lo = KEY_POWER_RANGE[0]
    p = round(p0 - KEY_POWER_STEP, 6)
    while p >= lo - 1e-9:
        model.key_power = p
        cand = Path(model_onnx).with_name(f"{Path(model_onnx).stem}_kpow{p:.2f}.onnx")
        export_onnx(model.eval(), cand, sample_rate=sample_rate)
        m = denoiser_metrics(cand, scenes, sample_rate, informed=informed)
        out["tried"].append((p, m["hit_loss_ghost_vs_clean_db"], m["si_sdr_db"]))
        if (m["hit_loss_ghost_vs_clean_db"] <= ADAPT_GHOST_LOSS_DB and m["si_sdr_db"] >= min_si_sdr_db
                and m["hit_loss_loud_vs_clean_db"] <= MAX_LOUD_LOSS_DB):
            with atomic_path(Path(model_onnx)) as tmp:
                shutil.copyfile(cand, tmp)
            cand.unlink(missing_ok=True)
            out.update(key_power=p, metrics=m)
            return out
        cand.unlink(missing_ok=True)
        p = round(p - KEY_POWER_STEP, 6)
    return out


def adapt_denoiser(kit: MultiMicKit, mic: str, out_onnx, *, shipped, minutes: float = 5.0, device: str = "cpu",
                   work_dir, seed: int = 0, progress: bool = True, n_train: int = 160, scene_s: float = 4.0,
                   n_valid: int = 6, valid_s: float = 8.0, lr: float = 3e-4, loss_kwargs: dict | None = None,
                   informed: InformedInputs | None = None) -> dict:
    """Fine-tune ``shipped`` on mixtures of the kit's hits for the close mic ``mic``.

    A quarter of the recordings (:meth:`MultiMicKit.split`, every 4th by velocity) is held out:
    the validation scenes are grooves mixed from them alone, at the measured bleed (as the show).
    Training scenes mix the other hits with every piece's bleed offset by a random
    -10..+20 dB (:data:`AUGMENT_BLEED_DB`) and a random gain. Training runs ``minutes`` on
    ``device`` (:func:`debleed.models.train.train`, from the shipped model's weights).

    An informed model (``informed``, :func:`informed_inputs`) is fine-tuned and validated with
    the channel's own reference mics and key, mixed from the same hits (:func:`informed_scene`),
    all connected (no inputs dropped): what it hears at this gig.

    An adapted informed model that loses ghost notes there gets a lower key power
    (:func:`choose_key_power`). The adapted model is kept only if it is no worse there and the
    denoiser stage's kernels load it (:func:`debleed.models.streaming.load_weights`: what
    ``debleed live`` and ``debleed render`` run).

    Returns
    -------
    dict
        ``before``/``after`` metrics on the validation scenes, ``model`` (the model to use:
        ``out_onnx`` if it is better, else the shipped path), ``kept_shipped`` and ``why``;
        ``key_power`` (an informed model kept: the power kept, its own and those tried), else None.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    valid_kit, train_kit = kit.split(every=4, keep=1)
    if not valid_kit.of(piece=kit.own_pieces(mic)[0]) or not train_kit.of(piece=kit.own_pieces(mic)[0]):
        raise DebleedError(f"too few hits of {kit.own_pieces(mic)[0]} to hold some out for validation")
    tr = _scenes_npz(work / "train.npz", train_kit, mic, n=n_train, seconds=scene_s, seed=seed + 1,
                     offsets=AUGMENT_BLEED_DB, informed=informed)
    va = _scenes_npz(work / "valid.npz", valid_kit, mic, n=2, seconds=valid_s, seed=seed + 2, offsets=[0.0],
                     informed=informed)
    if informed is None:
        vscenes = [kit_scene(valid_kit, mic, seconds=valid_s, seed=(seed + 3) * 1009 + i, bleed_offset_db=0.0,
                             augment=False) for i in range(max(1, n_valid))]
    else:
        vscenes = [informed_scene(valid_kit, mic, informed, seconds=valid_s, seed=(seed + 3) * 1009 + i,
                                  augment=False) for i in range(max(1, n_valid))]
    metric_kw = {} if informed is None else {"informed": informed}
    before = denoiser_metrics(shipped, vscenes, kit.sample_rate, **metric_kw)
    res = train(sample_rate=kit.sample_rate, steps=100000, work_dir=work, out=out_onnx, init_onnx=shipped,
                seed=seed, batch=8, crop_s=min(0.67, scene_s), lr=lr, scene_s=scene_s, ckpt_every=100000,
                resume=False, progress=progress, valid_scenes=2, data=(tr, va), ckpt_name="soundcheck.pt",
                device=device, max_seconds=60.0 * minutes,
                loss_kwargs=(loss_kwargs if loss_kwargs is not None
                             else FINE_TUNE_LOSS if informed is None else FINE_TUNE_LOSS_INFORMED),
                # the channel's own inputs, every example: its key connected where it has one
                **({} if informed is None else {"drop_key": 0.0 if informed.key else 1.0, "drop_ref": 0.0,
                                                "drop_all_refs": 0.0}))
    after = denoiser_metrics(out_onnx, vscenes, kit.sample_rate, **metric_kw)
    # loud hits against the clean snare: against the mic, removing the bleed under a hit counts
    # as losing the hit (on the +10 dB scenes the bleed is as loud as the snare)
    ok_loud = after["hit_loss_loud_vs_clean_db"] <= max(before["hit_loss_loud_vs_clean_db"] + 0.2, MAX_LOUD_LOSS_DB)
    better = after["si_sdr_db"] >= before["si_sdr_db"] and ok_loud
    power = None
    if better and informed is not None:  # ghost notes the fine-tuning gave back: the key power's rule
        power = choose_key_power(out_onnx, vscenes, kit.sample_rate, informed, after, min_si_sdr_db=before["si_sdr_db"])
        after = power["metrics"]
    unusable = None
    if better:
        try:  # what the engines and debleed render run: the data-plane kernels load its weights
            load_weights(out_onnx)
        except DebleedError as e:
            better, unusable = False, str(e)
    why = ("adapted model: SI-SDR {:.1f} dB against the shipped {:.1f} dB on held-out hits, loud-hit loss (vs the "
           "clean snare) {:.2f} against {:.2f} dB".format(after["si_sdr_db"], before["si_sdr_db"],
                                                         after["hit_loss_loud_vs_clean_db"],
                                                         before["hit_loss_loud_vs_clean_db"])
           + ("" if power is None else
              ", ghost-note loss (vs the clean snare) {:.2f} against {:.2f} dB{}".format(
                  after["hit_loss_ghost_vs_clean_db"], before["hit_loss_ghost_vs_clean_db"],
                  " with its key power lowered from {:g} to {:g}".format(power["from"], power["key_power"])
                  if power["key_power"] != power["from"] else
                  " (no lower key power kept them within {:g} dB)".format(ADAPT_GHOST_LOSS_DB) if power["tried"]
                  else ""))
           if better else
           "kept the shipped model: the adapted one is worse on held-out hits (SI-SDR {:.1f} against {:.1f} dB, "
           "loud-hit loss vs the clean snare {:.2f} against {:.2f} dB)".format(
               after["si_sdr_db"], before["si_sdr_db"], after["hit_loss_loud_vs_clean_db"],
               before["hit_loss_loud_vs_clean_db"]))
    if unusable is not None:
        why = (f"kept the shipped model: the adapted one scores better on held-out hits (SI-SDR {after['si_sdr_db']:.1f} "
               f"against {before['si_sdr_db']:.1f} dB) but the denoiser stage cannot run it ({unusable})")
    if not better:
        Path(out_onnx).unlink(missing_ok=True)
    return {"before": before, "after": after, "kept_shipped": not better, "model": str(shipped if not better else out_onnx),
            "why": why, "steps": res["steps"], "train_seconds": res["seconds"], "n_valid_scenes": len(vscenes),
            "valid_hits": len(valid_kit.hits), "train_hits": len(train_kit.hits),
            "informed": None if informed is None else {"refs": list(informed.refs), "n_refs": informed.n_refs,
                                                       "key": informed.key},
            "key_power": None if power is None else {k: power[k] for k in ("key_power", "from", "tried")}}


def shipped_model(sample_rate: int):
    """The shipped denoiser for ``sample_rate`` (44100 or 48000 Hz), or None at another rate."""
    return shipped_path(sample_rate) if int(sample_rate) in (44100, 48000) else None


def start_models(cfg, sample_rate: int) -> dict:
    """``{channel: model path}``: the model each denoised channel starts from (its
    ``denoise_model``, else the shipped one; absent when there is none for the rate)."""
    out = {}
    for ch in cfg.channel:
        if ch.denoise and (ch.denoise_model or shipped_model(sample_rate)):
            out[ch.name] = str(ch.denoise_model or shipped_model(sample_rate))
    return out


def adapt_denoisers(cfg, kit: MultiMicKit, out_dir, *, keys: dict | None = None, minutes: float = 5.0,
                    device: str = "cpu", seed: int = 0, progress: bool = True, n_train: int = 160,
                    say=None) -> tuple[dict, dict]:
    """The denoiser step: :func:`adapt_denoiser` for every denoised channel of ``cfg``.

    The channel's own ``denoise_model``, else the shipped model for the kit's rate, is the
    start. A channel whose fine-tuning cannot run (no torch, too few hits: a
    :class:`~debleed.errors.DebleedError`) keeps its start model and the report says why. The
    rendered mixtures and checkpoint (``OUT/.soundcheck-work``) are removed afterwards.

    Parameters
    ----------
    cfg : GigConfig
    kit : MultiMicKit
        The line check's hits.
    out_dir : path
        ``OUT``: adapted models are written to ``OUT/<channel>.onnx``.
    keys : dict, optional
        ``{channel: KeyAlignment}`` (:func:`debleed.soundcheck.alignment.align_keys`): an informed
        model's key is rebuilt at its channel's measured key delays.
    minutes : float
        Fine-tuning time per channel, minutes (> 0).
    device : str
        torch device, ``cpu`` or ``cuda``.
    seed : int
    progress : bool
        Progress bars.
    n_train : int
        Fine-tuning mixtures per channel.
    say : callable, optional
        Gets one line of progress text at a time.

    Returns
    -------
    (dict, dict)
        ``{channel: model path}`` (the model each denoised channel uses: adapted or its start;
        absent when there is no model for the rate) and ``{channel: report dict}``
        (:func:`adapt_denoiser`'s, or ``{"why": ...}``).
    """
    say = say or (lambda s: None)
    out = Path(out_dir)
    sr = kit.sample_rate
    models, report = {}, {}
    for ch in cfg.channel:
        if not ch.denoise:
            continue
        shipped = ch.denoise_model or shipped_model(sr)
        if shipped is None:
            report[ch.name] = {"why": f"no shipped denoiser for {sr} Hz (44100, 48000): not adapted"}
            continue
        say(f"soundcheck: adapting the denoiser of channel {ch.name!r} for {minutes:g} min on {device}")
        try:
            k = (keys or {}).get(ch.name)
            inf = informed_inputs(shipped, ch, k.key_delays_ms if k is not None else ())
            if inf is not None:
                say(f"soundcheck: {ch.name}: an informed model, fine-tuned with reference mics "
                    f"{', '.join(inf.refs) or '(none)'} and {'the key' if inf.key else 'no key'}")
            res = adapt_denoiser(kit, ch.input, out / f"{ch.name}.onnx", shipped=shipped, minutes=minutes,
                                 device=device, work_dir=out / ".soundcheck-work", seed=seed, progress=progress,
                                 n_train=n_train, informed=inf)
        except DebleedError as e:
            res = {"why": f"not adapted: {e}", "model": str(shipped), "kept_shipped": True}
        finally:  # rendered mixtures and the checkpoint: hundreds of MB, not an output
            shutil.rmtree(out / ".soundcheck-work", ignore_errors=True)
        report[ch.name] = res
        models[ch.name] = res["model"]
        say(f"soundcheck: {ch.name}: {res['why']}")
    return models, report
