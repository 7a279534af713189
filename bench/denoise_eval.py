"""Measure the denoiser's attenuation limit and its use with key-informed gates, on held-out kits.

``python -m debleed.bench.denoise_eval [--out DIR] [--scenes N] [--seconds S]``

1. **limit**: ``denoise_limit_db`` from -100 (no limit) to -6 dB, with ``denoise_mix = 1``: SI-SDR
   against the clean snare, bleed reduction, loud-hit and ghost-note loss (the model card's
   metrics, :mod:`debleed.models.metrics`), per kit and scenario. The limit is the linear mix
   of :class:`debleed.models.denoiser.LimitMix`, so one model run per scene serves every limit.
2. **keys**: a channel that also has a ``trigger:`` or ``midi:`` key (a hit marker at every snare
   hit; MIDI and a clean trigger give the same gate): the key-gated raw mic against the key
   gate after the denoiser, and the denoiser alone. As live, the key reaches the gate the
   denoiser stage's latency before the denoised audio (the model's 63 samples, whatever the
   period) and the hold is lengthened by as much; the gate's hold and release are
   picked per row from a grid for the best SI-SDR (as ``debleed eval`` tunes its gates).

Scenes: :func:`debleed.models.synth.render_scene` (pyroomacoustics rooms) on The Black Pearl and
avldrums' Red Zeppelin (both held out of training), studio (-40 dB bleed) and loud stage
(-10 dB). Writes ``denoise_eval.json`` and ``denoise_eval.md``. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from debleed.dsp.processor import ProcessSpec

KITS = ("The Black Pearl 1.0", "avldrums:Red_Zeppelin_4_LV2")
LIMITS_DB = (-100.0, -40.0, -30.0, -24.0, -18.0, -12.0, -6.0)
HOLDS_MS = (30.0, 60.0, 120.0, 200.0)
RELEASES_MS = (20.0, 60.0, 150.0)


def _key_gate(x: np.ndarray, sr: int, hits, lead: int, hold_ms: float, release_ms: float) -> np.ndarray:
    # lead: samples the key reaches the gate before the (denoised) audio
    """``x`` through debleed's gate keyed by a trigger input pulsing at ``hits - lead``."""
    from debleed.dsp.chain import Chain, ChannelSpec

    trig = np.zeros(x.size, np.float32)
    for f in hits:
        k = int(f) - lead
        if 0 <= k < x.size:
            trig[k] = 1.0
    ch = Chain([ChannelSpec(name="snare", input=0, mode="gate", key="trigger", key_input=1,
                            trigger_threshold_db=-20.0, retrigger_ms=30.0, attack_ms=0.3,
                            hold_ms=hold_ms + 1000.0 * lead / sr, release_ms=release_ms, range_db=-80.0)],
               n_inputs=2)
    ch.prepare(ProcessSpec(sr, 1024, ch.n_channels))
    return ch.render(np.stack([np.asarray(x, np.float32), trig]), block=1024)[0]


def run(out_dir="denoise-eval", scenes: int = 3, seconds: float = 8.0, sample_rate: int = 48000) -> dict:
    from debleed.models.denoiser import Denoiser, denoise_signal, limit_mix_gain
    from debleed.models.evaluate import SCENARIOS, _metrics
    from debleed.models.synth import render_scene

    den = Denoiser()
    den.prepare(ProcessSpec(sample_rate, 1024))
    lat = den.latency_samples  # the denoiser stage's latency: the key leads the denoised audio by it
    res = {"setup": {"kits": KITS, "scenes": scenes, "seconds": seconds, "sample_rate": sample_rate,
                     "limits_db": LIMITS_DB, "key_lead_samples": lat, "holds_ms": HOLDS_MS,
                     "releases_ms": RELEASES_MS}}
    for kit in KITS:
        for name, bleed_db in SCENARIOS.items():
            sc = [render_scene(kit=kit, sample_rate=sample_rate, seconds=seconds, seed=2000 + i, bleed_db=bleed_db,
                               room=True, augment=False) for i in range(scenes)]
            dn = [denoise_signal(s.noisy, sample_rate, denoiser=den, compensate=False) for s in sc]
            row = {"raw": _metrics(sc, [s.noisy for s in sc], 0, sample_rate)}
            for lim in LIMITS_DB:
                g = limit_mix_gain(lim, 1.0)
                outs = []
                for s, y in zip(sc, dn):
                    dry = np.concatenate([np.zeros(lat, np.float32), s.noisy])[:y.size]
                    outs.append((dry + g * (y - dry)).astype(np.float32))
                row[f"denoiser limit {lim:g} dB"] = _metrics(sc, outs, lat, sample_rate)
            for label, inputs, off in (("key gate", [s.noisy for s in sc], 0), ("denoiser + key gate", dn, lat)):
                best = None
                for hold in HOLDS_MS:
                    for rel in RELEASES_MS:
                        outs = [_key_gate(x, sample_rate, np.asarray(s.hit_frames) + off, off, hold, rel)
                                for s, x in zip(sc, inputs)]
                        m = {**_metrics(sc, outs, off, sample_rate), "hold_ms": hold, "release_ms": rel}
                        if best is None or m["si_sdr_db"] > best["si_sdr_db"]:
                            best = m
                row[label] = best
            res[f"{kit} / {name}"] = row
            print(f"done: {kit} / {name}", flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "denoise_eval.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "denoise_eval.md").write_text(markdown(res))
    return res


def markdown(res: dict) -> str:
    lines = []
    for key, row in res.items():
        if key == "setup":
            continue
        lines += [f"### {key}", "", "| processor | SI-SDR dB | bleed red. dB | loud-hit loss dB | ghost loss dB |",
                  "|---|---|---|---|---|"]
        for proc, m in row.items():
            extra = f" (hold {m['hold_ms']:g} ms, release {m['release_ms']:g} ms)" if "hold_ms" in m else ""
            lines.append(f"| {proc}{extra} | {m['si_sdr_db']:.1f} | {m['bleed_reduction_db']:.1f} | "
                         f"{m['hit_loss_loud_db']:.2f} | {m['hit_loss_ghost_db']:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="denoise-eval")
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    print(markdown(run(a.out, a.scenes, a.seconds)))
