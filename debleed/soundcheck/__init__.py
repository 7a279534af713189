"""The soundcheck: learn a kit, its room and its mics from a line check (each piece played alone).

``debleed soundcheck`` (:mod:`debleed.cli.soundcheck`) runs :func:`run_soundcheck`, one step
per module:

1. **Hits** (:mod:`debleed.soundcheck.hits`): every hit on every mic and the piece that played
   it (its MIDI note, or the mic that hears its passage loudest), cut across all mics into a
   :class:`~debleed.models.kit.MultiMicKit`.
2. **Bleed** (:mod:`debleed.soundcheck.bleed`): the bleed matrix, per mic the median level of
   every piece relative to the mic's own piece, dB.
3. **First gate settings** (:func:`debleed.soundcheck.fit.initial_channel_settings`): threshold,
   hysteresis, hold, release and range from the measured levels, decay times and bleed.
4. **Alignment** (:mod:`debleed.soundcheck.alignment`): per keyed channel, key time minus the
   first sample of each hit; ``lookahead_ms`` covers the latest key plus the time the attack
   needs to open, less the denoiser stage's latency (the model's ``window - 1`` samples: an
   adapted model keeps its start model's architecture, so its latency).
5. **Denoiser** (:mod:`debleed.soundcheck.adapt`): the snare denoiser of each denoised channel
   fine-tuned on mixtures of the line check's hits (an informed model with the channel's
   reference mics and its key at the measured delays), kept only if it beats the start model
   on held-out hits. Before the gate fit: a gate after a denoiser is fitted on its output.
6. **Gate fit** (:func:`debleed.soundcheck.fit.fit_channels`): a grid around the first settings
   through :class:`~debleed.dsp.chain.Chain` on grooves mixed from the line check's hits.
7. **The gig** (:mod:`debleed.soundcheck.gig`): ``OUT/gig.toml``, the input config with the new
   values, one comment each.
8. **The show, predicted** (:mod:`debleed.soundcheck.predict`): the gig, as ``debleed render``
   runs it, on grooves mixed from the half of each piece's hits that steps 3-6 never saw, at the
   measured balance and at +10 dB of bleed.
9. **The report** (:mod:`debleed.soundcheck.report`): ``report.md``, ``report.json`` and PNGs.

Steps 3, 5 and 6 see one half of each piece's hits (alternate recordings by velocity); the
hits, the bleed matrix and the key delays are measured on all of them.

The constants more than one step uses live in :mod:`debleed.soundcheck.common`.
"""

from __future__ import annotations

import math
import time

from debleed.errors import DebleedError
from debleed.rt.config import load_config
from debleed.soundcheck.adapt import adapt_denoisers, start_models
from debleed.soundcheck.alignment import align_keys
from debleed.soundcheck.bleed import bleed_table, measure_bleed
from debleed.soundcheck.fit import fit_channels, initial_channel_settings
from debleed.soundcheck.gig import write_gig
from debleed.soundcheck.predict import PREDICT_GROOVES, PREDICT_SECONDS, predict_show
from debleed.soundcheck.hits import (find_hits, kit_from_takes, passage_summary,  # noqa: F401 (kit_from_takes: named by debleed.models.kit)
                                     read_line_check, trigger_pieces)
from debleed.soundcheck.report import plot_alignment, plot_hits, soundcheck_report, write_report

__all__ = ["run_soundcheck", "check_options", "kit_from_takes"]


def check_options(minutes: float, device: str, block: int = 128, predict_grooves: int = PREDICT_GROOVES) -> None:
    """Refuse options that cannot work, before any work (and before ``--record``).

    Raises
    ------
    DebleedError
        ``minutes`` not a finite number > 0; ``device`` not ``cpu`` or ``cuda``; ``cuda``
        without torch or without a CUDA device; ``block`` not an integer 1-16384 frames;
        ``predict_grooves`` not an integer >= 1.
    """
    if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= 16384:
        raise DebleedError(f"--block must be a whole number of frames from 1 to 16384, got {block!r}")
    if isinstance(predict_grooves, bool) or not isinstance(predict_grooves, int) or predict_grooves < 1:
        raise DebleedError(f"--predict-grooves must be a whole number >= 1, got {predict_grooves!r}")
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


def run_soundcheck(config_path, takes_dir, out_dir, *, midi_path=None, minutes: float = 5.0, device: str = "cpu",
                   block: int = 128, progress: bool = True, seed: int = 0, fit_scenes: int = 3,
                   denoiser_scenes: int = 160, predict_grooves: int = PREDICT_GROOVES,
                   predict_seconds: float = PREDICT_SECONDS) -> dict:
    """``debleed soundcheck``: the steps of the module docs, in order.

    Parameters
    ----------
    config_path : path
        The gig config (TOML); never written to.
    takes_dir : path
        The line check: ``<input>.wav`` per ``[inputs]`` entry, mono, one rate and length.
    out_dir : path
        Outputs: ``gig.toml``, ``<channel>.onnx`` (when an adapted model wins), ``report.md``,
        ``report.json``, ``hits.png``, ``bleed_matrix.png``, ``alignment.png``. Not inside
        ``takes_dir``.
    midi_path : path, optional
        The line check's MIDI (standard MIDI file); needed for ``midi:`` keys.
    minutes : float
        Denoiser fine-tuning time per denoised channel, minutes, > 0; default 5.
    device : str
        torch device for fine-tuning: ``cpu`` (default) or ``cuda``.
    block : int
        The JACK period the gig will run at, frames: the prediction's renders run at it. A
        denoised channel's audio reaches its gate the denoiser stage's ``latency_samples`` after
        its key (63 samples for the shipped models) whatever the period; the lookahead accounts
        for it.
    progress : bool
        Progress lines and bars.
    seed : int
        Seeds the mixtures and the fine-tuning.
    fit_scenes : int
        Grooves per channel for the gate fit; default 3.
    denoiser_scenes : int
        Fine-tuning mixtures per denoised channel; default 160.
    predict_grooves, predict_seconds :
        Grooves per bleed balance and their length (s) for the show prediction
        (:func:`debleed.soundcheck.predict.predict_show`); default 6 of 8 s.

    Returns
    -------
    dict
        The report (:func:`debleed.soundcheck.report.soundcheck_report`, plus ``gig``,
        ``alignment_plot`` and ``seconds_taken``).

    Raises
    ------
    DebleedError
        A bad config, takes or MIDI file (see :func:`debleed.offline.render.read_inputs`), a MIDI key
        without ``--midi``, a bad option (:func:`check_options`), no hits found.
    """
    check_options(minutes, device, block, predict_grooves)
    t_start = time.monotonic()
    say = (lambda s: print(s, flush=True)) if progress else (lambda s: None)  # noqa: E731
    lc = read_line_check(config_path, takes_dir, out_dir, midi_path)
    sr, out = lc.sample_rate, lc.out

    kit, hits = find_hits(lc.takes, sr, lc.close, events=lc.events, note_pieces=lc.pieces,
                          triggers=trigger_pieces(lc.cfg, lc.close, lc.inputs, sr),
                          where=f"the takes of {lc.takes_dir}")
    plot_hits(out / "hits.png", lc.takes, sr, hits)
    say("soundcheck: hits per piece: " + ", ".join(f"{p} {len(kit.of(piece=p))}" for p in kit.pieces))
    for w in passage_summary(hits, sr)[1]:
        say(f"soundcheck: warning: {w}")

    bleed = measure_bleed(kit, out)
    say("soundcheck: bleed matrix (dB relative to each mic's own piece):\n" + bleed_table(bleed.mics, bleed.pieces, bleed.db))

    fit_kit, held_out = kit.split(every=2, keep=0)  # fit on one half of each piece's hits, predict on the other
    starts = initial_channel_settings(lc.cfg, fit_kit, bleed)
    keys = align_keys(starts, kit, hits, lc.inputs, lc.events, start_models(lc.cfg, sr))
    models, denoisers = adapt_denoisers(lc.cfg, fit_kit, out, keys=keys, minutes=minutes, device=device, seed=seed,
                                        progress=progress, n_train=denoiser_scenes, say=say)
    fits = fit_channels(lc.cfg, fit_kit, starts, keys, models, n_scenes=fit_scenes, seed=seed, progress=progress)

    report = soundcheck_report(lc, kit, hits, bleed, keys, fits, denoisers, block=block)
    measured = {name: (k.delays_ms, k.alignment) for name, k in keys.items() if k.measured}
    if measured:
        plot_alignment(out / "alignment.png", measured, sr)
        report["alignment_plot"] = "alignment.png"
    write_gig(lc.config_path, out / "gig.toml", {n: (f.values, f.why, f.denoise) for n, f in fits.items()}, models,
              shipped_models={ch.name: denoisers.get(ch.name, {}).get("kept_shipped", True)
                              for ch in lc.cfg.channel if ch.denoise})
    gig = load_config(out / "gig.toml")  # what we wrote must load

    say(f"soundcheck: predicting the show on {predict_grooves} grooves of the {len(held_out.hits)} held-out hits")
    try:
        report["prediction"] = predict_show({"soundcheck": gig, "as given": lc.cfg}, held_out, keys,
                                            channels=list(fits), block=block, n_grooves=predict_grooves,
                                            seconds=predict_seconds, seed=seed)
        report["prediction"]["fit_hits"] = len(fit_kit.hits)
    except DebleedError as e:  # e.g. a denoised channel at a rate no model is made for: the gig stands
        report["prediction"] = {"why": f"no prediction: {e}"}
        say(f"soundcheck: {report['prediction']['why']}")
    report["gig"] = str(out / "gig.toml")
    report["seconds_taken"] = round(time.monotonic() - t_start, 1)
    write_report(out, report)
    return report
