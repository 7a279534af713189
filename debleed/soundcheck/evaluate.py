"""Measure the soundcheck on an installed kit, the way a real multi-mic kit would be measured.

``python -m debleed.soundcheck.evaluate --kit "The Black Pearl 1.0" --out DIR``:

1. the kit's one-shots in one simulated room at loud-stage bleed (:func:`loud_stage_kit`:
   every other piece -10 dB (-16..-7) in the snare mic, :data:`DEFAULT_BLEED_DB` elsewhere),
   split by recording (:meth:`~debleed.models.kit.MultiMicKit.split`): even layers for the
   soundcheck, odd layers for the show, so the show never plays a recording the soundcheck heard;
2. soundcheck takes from the first half (:func:`soundcheck_takes`: each piece alone, soft to
   loud, ghost notes on the snare, pauses), with a kick piezo that lags its mic by
   :data:`TRIGGER_LAG_S` (+-1 ms) and the snare's MIDI notes; ``debleed soundcheck`` on them;
3. the show from the second half: show grooves (:func:`~debleed.soundcheck.predict.show_groove`) mixed by
   :func:`~debleed.models.kit.mix`, through ``debleed render`` twice: with the soundcheck's
   gig and with the MIDI-keyed gate of ``configs/demo.toml`` (the baseline);
4. per groove: the snare's SI-SDR against its own clean signal, bleed reduction between hits,
   hit loss of loud hits and ghost notes (first 30 ms, against the mic), and the kick's hit
   loss (its attack); next to them, what the soundcheck's report predicted
   (:mod:`debleed.soundcheck.predict`, from line-check hits its fit never saw).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from debleed.fileio import atomic_write_text
from debleed.models.kit import Hit, MultiMicKit, kit_from_oneshots, mix, piezo_trigger
from debleed.models.metrics import align, bleed_reduction_db, hit_loss_db, si_sdr_db
from debleed.models.multitrack import DEFAULT_BLEED_DB, GM
from debleed.offline.audiofile import read_audio, write_audio
from debleed.offline.render import render_gig
from debleed.soundcheck import run_soundcheck
from debleed.soundcheck.common import GHOST_VELOCITY, LOUD_VELOCITY
from debleed.soundcheck.predict import show_bpm, show_groove

#: The kick piezo lags its mic by this much (a common 4-6 ms), +-1 ms per hit.
TRIGGER_LAG_S = 0.005
#: Show grooves played (12 s each). The show's median is the yardstick of the report's
#: prediction, and one groove's bleed reduction differs from the next by up to 10 dB (31.5 to
#: 42.2 dB over twelve grooves on The Black Pearl with the same gig): a median over three moves
#: by 1-2 dB with the draw.
SHOW_GROOVES = 12

#: The gig the soundcheck starts from: the demo's channels, the snare denoised.
EVAL_GIG = """\
# Evaluation gig: the demo's channels, the snare denoised before its MIDI-keyed gate.
[inputs]
kick = []
snare = []
hihat = []
toms = []
cymbals = []
kick_trig = []

[[channel]]
name = "kick"
input = "kick"
mode = "gate"
key = "trigger:kick_trig"
trigger_threshold_db = -20.0
retrigger_ms = 30.0
ratio = inf
range_db = -60.0
attack_ms = 0.3
hold_ms = 90.0
release_ms = 60.0
lookahead_ms = 1.0

[[channel]]
name = "snare"
input = "snare"
mode = "gate"
key = "midi:38,40"
ratio = inf
range_db = -60.0
attack_ms = 0.3
hold_ms = 70.0
release_ms = 50.0
lookahead_ms = 1.0
denoise = true

[[channel]]
name = "toms"
input = "toms"
mode = "gate"
key = "self"
threshold_db = -12.0
ratio = 20.0
knee_db = 3.0
hysteresis_db = -20.0
range_db = -60.0
attack_ms = 0.3
hold_ms = 120.0
release_ms = 120.0
lookahead_ms = 1.0

[[channel]]
name = "hihat"
input = "hihat"
mode = "bypass"

[[channel]]
name = "cymbals"
input = "cymbals"
mode = "bypass"
"""


def loud_stage_kit(kit: str, sample_rate: int, seed: int = 0, room: bool = True) -> MultiMicKit:
    """The kit's one-shots in one room, every other piece at -10 dB (-16..-7) in the snare mic."""
    rng = np.random.default_rng([seed, 12])
    bleed = {m: dict(v) for m, v in DEFAULT_BLEED_DB.items()}
    bleed["snare"] = {p: -10.0 + float(rng.uniform(-6.0, 3.0)) for p in bleed["snare"]}
    return kit_from_oneshots(kit, sample_rate, seed=seed, bleed_db=bleed, room=room)


def soundcheck_takes(kit: MultiMicKit, *, seed: int = 0, hits_per_role: int = 8, spacing_s: float = 0.6,
                     pause_s: float = 2.0):
    """Soundcheck takes: each piece alone (its roles in turn), soft to loud, with pauses.

    Returns ``(mix, hits)``: a :class:`~debleed.models.multitrack.Multitrack` and the hits played. The snare
    also plays ghost notes (velocity 0.05-0.15).
    """
    rng = np.random.default_rng([seed, 21])
    sr = kit.sample_rate
    hits, t = [], 1.0
    for piece in kit.pieces:
        roles = sorted({h.role for h in kit.of(piece=piece)})
        for role in roles:
            vel = list(np.geomspace(0.3, 1.0, hits_per_role))
            if piece == "snare":
                vel = list(rng.uniform(0.05, 0.15, hits_per_role // 2)) + vel + list(np.geomspace(0.3, 1.0, hits_per_role))
            rng.shuffle(vel)
            for v in vel:
                hits.append(Hit(int(round(t * sr)), role, float(v)))
                t += spacing_s * float(rng.uniform(0.8, 1.3))
        t += pause_s
    n = int(round((t + 1.5) * sr))
    return mix(kit, hits, n, seed=seed), hits


def write_midi(path, events: list, sample_rate: int) -> None:
    """Note-on/off pairs at exact sample frames into a type-0 standard MIDI file (one tick is one
    sample: 480 ticks per beat at ``480e6 / sample_rate`` us per beat)."""
    import mido

    tpb = 480
    mf = mido.MidiFile(type=0, ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    tr.append(mido.MetaMessage("set_tempo", tempo=int(round(tpb * 1e6 / sample_rate)), time=0))
    msgs = []
    for f, b in events:
        msgs.append((f, mido.Message("note_on", channel=b[0] & 0x0F, note=b[1], velocity=b[2])))
        msgs.append((f + 100, mido.Message("note_off", channel=b[0] & 0x0F, note=b[1], velocity=0)))
    msgs.sort(key=lambda m: m[0])
    last = 0
    for f, m in msgs:
        tr.append(m.copy(time=f - last))
        last = f
    mf.tracks.append(tr)
    mf.save(str(path))


def _write_inputs(folder: Path, tracks: dict, sample_rate: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in tracks.items():
        write_audio(folder / f"{name}.wav", np.asarray(x, np.float32)[None], sample_rate, subtype="FLOAT")


def informed_gig(sample_rate: int) -> str:
    """:data:`EVAL_GIG` with the snare on the shipped informed model for ``sample_rate``,
    hearing the hi-hat and cymbal mics (and its MIDI key, 7 ms ahead of the audio)."""
    from debleed.models.denoiser import SHIPPED_INFORMED

    model = SHIPPED_INFORMED[int(sample_rate)]
    return EVAL_GIG.replace("denoise = true\n", f'denoise = true\ndenoise_model = "{model}"\n'
                                                'denoise_refs = ["hihat", "cymbals"]\n', 1)


def evaluate_soundcheck(*, kit: str, out_dir, sample_rate: int = 48000, minutes: float = 5.0,
                        grooves: int = SHOW_GROOVES,
                        seconds: float = 12.0, seed: int = 0, device: str = "cpu", progress: bool = True,
                        denoiser_scenes: int = 160, informed: bool = False) -> dict:
    """Steps 1-4 of the module docs; writes ``soundcheck_eval.md`` and ``.json`` into ``out_dir``.
    ``informed``: the snare's denoiser is the shipped informed model with the hi-hat and cymbal
    mics as its reference mics (:func:`informed_gig`) instead of the mic-only one."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = loud_stage_kit(kit, sample_rate, seed=seed)
    check_kit, show_kit = full.split(every=2, keep=0)
    sc_mix, sc_hits = soundcheck_takes(check_kit, seed=seed)
    trig = piezo_trigger(sc_hits, sc_mix.mics["kick"].size, sample_rate, lag_s=TRIGGER_LAG_S, jitter_s=0.001, seed=seed)
    takes = out / "takes"
    _write_inputs(takes, {**sc_mix.mics, "kick_trig": trig}, sample_rate)
    snare_midi = [(f, b) for f, b in sc_mix.midi if b[1] == GM["snare"]]
    write_midi(takes / "notes.mid", snare_midi, sample_rate)
    gig = out / "eval_gig.toml"
    atomic_write_text(gig, informed_gig(sample_rate) if informed else EVAL_GIG)
    rep = run_soundcheck(gig, takes, out / "soundcheck", midi_path=takes / "notes.mid", minutes=minutes, device=device,
                         progress=progress, seed=seed, denoiser_scenes=denoiser_scenes)
    rows = []
    for g in range(grooves):
        # a show groove as the prediction draws them (eighth or sixteenth hi-hats, fills, ghost
        # notes), from seeds the prediction never uses
        hits = show_groove(seconds, sample_rate, seed=seed * 101 + g + 500)
        bpm = show_bpm(seed * 101 + g + 500)
        n = int(round(seconds * sample_rate))
        mx = mix(show_kit, hits, n, seed=seed * 101 + g + 500)
        trig = piezo_trigger(hits, n, sample_rate, lag_s=TRIGGER_LAG_S, jitter_s=0.001, seed=g + 7)
        folder = out / f"show{g}"
        _write_inputs(folder / "inputs", {**mx.mics, "kick_trig": trig}, sample_rate)
        write_midi(folder / "inputs" / "notes.mid", mx.midi, sample_rate)
        res = {}
        for label, cfgp in (("soundcheck", out / "soundcheck" / "gig.toml"), ("midi gate", gig_baseline(out))):
            r = render_gig(cfgp, folder / "inputs", folder / label.replace(" ", "_"), midi_path=folder / "inputs" / "notes.mid",
                           plots=False)
            res[label] = {}
            for piece in ("snare", "kick"):
                y = read_audio(folder / label.replace(" ", "_") / f"{piece}.wav")[0][0]
                lat = r["channels"][piece]["latency_samples"]
                ya = align(y, lat, n)
                own = [h for h in hits if h.role == piece]
                fr = np.array([h.frame for h in own])
                v = np.array([h.velocity for h in own])
                loud, ghost = v >= LOUD_VELOCITY, v < GHOST_VELOCITY
                loss = hit_loss_db(mx.mics[piece], ya, fr, sample_rate)
                attack = hit_loss_db(mx.mics[piece], ya, fr, sample_rate, window_ms=2.0)
                res[label][piece] = {
                    "si_sdr_db": si_sdr_db(mx.own[piece], ya),
                    "bleed_reduction_db": bleed_reduction_db(mx.mics[piece], ya, mx.own[piece], sample_rate),
                    "hit_loss_loud_db": float(np.mean(loss[loud])) if np.any(loud) else float("nan"),
                    "hit_loss_ghost_db": float(np.mean(loss[ghost])) if np.any(ghost) else float("nan"),
                    "hit_loss_ghost_vs_clean_db": float(np.mean(hit_loss_db(mx.own[piece], ya, fr[ghost], sample_rate)))
                    if np.any(ghost) else float("nan"),
                    "attack_loss_2ms_db": float(np.mean(attack[loud])) if np.any(loud) else float("nan"),
                    "latency_samples": lat}
        rows.append({"groove": g, "bpm": bpm, **res})
    result = {"kit": kit, "license": full.license, "sample_rate": sample_rate, "minutes": minutes, "informed": informed,
              "soundcheck_hits": len(check_kit.hits), "show_hits": len(show_kit.hits),
              "denoiser": {k: {kk: vv for kk, vv in v.items() if kk in ("before", "after", "why", "kept_shipped", "steps")}
                           for k, v in rep["denoiser"].items()},
              "kick_lookahead_ms": rep["channels"]["kick"]["settings"].get("lookahead_ms"),
              "snare_settings": rep["channels"]["snare"]["settings"], "grooves": rows,
              "predicted": {ch: rep["prediction"]["channels"][ch]["soundcheck"]["+0"]
                            for ch in ("snare", "kick") if ch in rep.get("prediction", {}).get("channels", {})}}
    atomic_write_text(out / "soundcheck_eval.json", json.dumps(result, indent=2, default=float) + "\n")
    atomic_write_text(out / "soundcheck_eval.md", eval_markdown(result))
    return result


def gig_baseline(out: Path) -> Path:
    """The baseline gig: the evaluation gig without the denoiser (the demo's MIDI-keyed gate)."""
    p = out / "baseline_gig.toml"
    atomic_write_text(p, EVAL_GIG.replace("denoise = true\n", ""))
    return p


def eval_markdown(r: dict) -> str:
    """The evaluation as markdown: per groove, snare against the MIDI-keyed gate, kick attack."""
    lines = [f"Kit *{r['kit']}*, {r['sample_rate']} Hz, loud stage; soundcheck from {r['soundcheck_hits']} recordings, "
             f"show from {r['show_hits']} others; denoiser fine-tuned {r['minutes']:g} min; kick lookahead chosen "
             f"{r['kick_lookahead_ms']:.2f} ms.", "",
             "| groove | snare: processor | SI-SDR dB | bleed red. dB | hit loss loud dB | ghost dB (vs mic / vs clean) |",
             "|---|---|---:|---:|---:|---:|"]
    for g in r["grooves"]:
        for lab in ("midi gate", "soundcheck"):
            m = g[lab]["snare"]
            lines.append(f"| {g['groove']} ({g['bpm']:.0f} bpm) | {lab} | {m['si_sdr_db']:.1f} | {m['bleed_reduction_db']:.1f} | "
                         f"{m['hit_loss_loud_db']:.2f} | {m['hit_loss_ghost_db']:.2f} / {m['hit_loss_ghost_vs_clean_db']:.2f} |")
    lines += ["", "| groove | kick: processor | hit loss loud dB (30 ms) | attack loss dB (first 2 ms) | bleed red. dB |",
              "|---|---|---:|---:|---:|"]
    for g in r["grooves"]:
        for lab in ("midi gate", "soundcheck"):
            m = g[lab]["kick"]
            lines.append(f"| {g['groove']} | {'demo config' if lab == 'midi gate' else lab} | {m['hit_loss_loud_db']:.2f} | "
                         f"{m['attack_loss_2ms_db']:.2f} | {m['bleed_reduction_db']:.1f} |")
    diffs = [g["soundcheck"]["snare"]["si_sdr_db"] - g["midi gate"]["snare"]["si_sdr_db"] for g in r["grooves"]]
    if diffs:
        lines += ["", f"Snare, soundcheck against the MIDI gate: {sum(d >= 2.0 for d in diffs)} of {len(diffs)} "
                      f"grooves >= +2 dB, {sum(d < 0.0 for d in diffs)} below it; median {np.median(diffs):+.1f} "
                      f"dB, least {min(diffs):+.1f} dB."]
    if r.get("predicted"):
        lines += ["", "The soundcheck report's prediction (median over its grooves, 10-90 %) against the show "
                      "(median over its grooves, 10-90 %):", "",
                  "| channel | SI-SDR dB: predicted / show | bleed reduction dB: predicted / show |", "|---|---:|---:|"]

        def med(v):
            v = np.asarray([x for x in v if np.isfinite(x)])
            return f"{np.median(v):.1f} ({np.percentile(v, 10):.1f} to {np.percentile(v, 90):.1f})" if v.size else "-"

        for ch, p in r["predicted"].items():
            show = [g["soundcheck"][ch] for g in r["grooves"]]
            lines.append(f"| {ch} | {p['si_sdr_db']['median']:.1f} ({p['si_sdr_db']['p10']:.1f} to {p['si_sdr_db']['p90']:.1f}) / "
                         f"{med([m['si_sdr_db'] for m in show])} | {p['bleed_reduction_db']['median']:.1f} "
                         f"({p['bleed_reduction_db']['p10']:.1f} to {p['bleed_reduction_db']['p90']:.1f}) / "
                         f"{med([m['bleed_reduction_db'] for m in show])} |")
    for name, d in r["denoiser"].items():
        lines += ["", f"Denoiser ({name}): {d.get('why', '')}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kit", default="The Black Pearl 1.0")
    ap.add_argument("--out", default="soundcheck-eval")
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--grooves", type=int, default=SHOW_GROOVES, help="show grooves (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scenes", type=int, default=160, help="denoiser fine-tuning scenes")
    ap.add_argument("--informed", action="store_true",
                    help="the snare on the shipped informed model, hearing the hi-hat and cymbal mics and its key")
    a = ap.parse_args(argv)
    r = evaluate_soundcheck(kit=a.kit, out_dir=a.out, sample_rate=a.rate, minutes=a.minutes, grooves=a.grooves,
                            seconds=a.seconds, seed=a.seed, device=a.device, denoiser_scenes=a.scenes,
                            informed=a.informed)
    print(eval_markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
