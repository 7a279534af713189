"""``debleed demo``: a real-drum multitrack with bleed, through ``debleed live``, measured.

Steps: start a private dummy JACK server when none runs; render a groove on an installed
Hydrogen kit into five close mics with bleed, a kick piezo trigger and the groove's MIDI
notes (:mod:`debleed.models.multitrack`); start ``debleed live`` with ``configs/demo.toml``;
play the tracks into its ports and record its outputs in real time; stop it; write inputs,
outputs, ``stats.json`` and ``report.json`` to the output folder and print bleed reduction
between hits, hit loss, latency, callback times and xruns.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from debleed.models.metrics import bleed_reduction_db, hit_loss_db
from debleed.models.multitrack import PIECES, render_multitrack
from debleed.fileio import atomic_write_text
from debleed.offline.audiofile import write_audio
from debleed.rt.config import load_config
from debleed.rt.server import server_running, sigterm_raises
from debleed.testing import DummyServer, bounce_live

DEMO_KIT = "ForzeeStereo"


def demo_config_path() -> Path:
    """Path of the shipped demo gig config."""
    return Path(str(resources.files("debleed.configs").joinpath("demo.toml")))


#: After a cut in the live stream (an xrun), the time left out of the live-vs-offline
#: comparison, ms: the denoiser's recurrent state and the gates forget the wrong block within it
#: (measured on this demo: the denoised channel back within -60 dB of the render after 45 ms).
CUT_SETTLE_MS = 100.0


def _cuts(cfg, tracks: dict, rec: np.ndarray, n: int, sr: int, block: int) -> np.ndarray | None:
    """Where xruns cut the live stream (:func:`~debleed.models.metrics.stream_cuts`), from the
    gig's bypassed channels without latency; None if it has none."""
    from debleed.models.metrics import stream_cuts

    taps = [c for c, ch in enumerate(cfg.channel)
            if ch.mode == "bypass" and not getattr(ch, "denoise", False) and ch.input in tracks]
    if not taps:
        return None
    return stream_cuts([tracks[cfg.channel[c].input] for c in taps], [rec[c] for c in taps], n, block,
                       int(CUT_SETTLE_MS * sr / 1000))


def _offline_denoise(cfg, mt, sr: int, rows: list, rec: np.ndarray, cut: np.ndarray | None) -> dict:
    """Per denoised channel: its live bleed reduction beside that of ``debleed denoise`` (the
    onnxruntime batch path, same model, limit and mix) on the same input, over the whole take
    and, where the run had cuts, away from them."""
    from debleed.models.denoiser import denoise_signal

    out = {}
    live = {r["channel"]: r for r in rows}
    for c, ch in enumerate(cfg.channel):
        if not getattr(ch, "denoise", False) or ch.name not in live or ch.input not in PIECES:
            continue
        x, own = mt.mics[ch.input], mt.own[ch.input]
        y = denoise_signal(x, sr, limit_db=ch.denoise_limit_db, mix=ch.denoise_mix)
        r = {"live_db": live[ch.name]["bleed_reduction_db"], "offline_db": bleed_reduction_db(x, y, own, sr, 0)}
        if cut is not None:
            lat = live[ch.name]["latency_samples"]
            r.update(uncut_fraction=float(1.0 - cut.mean()),
                     live_uncut_db=bleed_reduction_db(x, rec[c], own, sr, lat, exclude=cut),
                     offline_uncut_db=bleed_reduction_db(x, y, own, sr, 0, exclude=cut))
        out[ch.name] = r
    return out


def run_demo(out_dir="demo-out", seconds: float = 10.0, engine: str = "cfunc", period_frames: int = 128,
             kit: str = DEMO_KIT, freewheel: bool = False) -> int:
    """Run the demo; returns the process exit code (0 on success).

    SIGTERM stops it as Ctrl-C does: ``debleed live`` and the private server are stopped.
    """
    with sigterm_raises():
        return _run_demo(out_dir, seconds, engine, period_frames, kit, freewheel)


def _run_demo(out_dir, seconds, engine, period_frames, kit, freewheel) -> int:
    out = Path(out_dir)
    (out / "inputs").mkdir(parents=True, exist_ok=True)
    (out / "outputs").mkdir(parents=True, exist_ok=True)
    cfg_path = demo_config_path()
    cfg = load_config(cfg_path)
    server = None
    if not server_running():
        server = DummyServer(sample_rate=48000, period_frames=period_frames, nice=cfg.client.process_nice).start()
        env = server.env
        print(f"demo: started a private dummy JACK server '{server.name}' (48000 Hz, {period_frames} frames, nice "
              f"{cfg.client.process_nice})")
    else:
        import os

        env = dict(os.environ)
        print("demo: using the running JACK server")
    try:
        import jack

        probe = jack.Client("debleed-demo-probe", no_start_server=True, servername=env.get("JACK_DEFAULT_SERVER"))
        sr, block = probe.samplerate, probe.blocksize
        probe.close()
        print(f"demo: rendering {seconds:g} s of a groove on the '{kit}' kit (hydrogen-drumkits) at {sr} Hz")
        mt = render_multitrack(kit=kit, seconds=seconds, sample_rate=sr, bpm=120.0, seed=7)
        tracks = {**mt.mics, "kick_trig": mt.kick_trigger}
        for name, x in tracks.items():
            write_audio(out / "inputs" / f"{name}.wav", np.asarray(x, np.float32)[None], sr)
        client = cfg.client.name
        tail = int(0.5 * sr)
        print(f"demo: playing {len(tracks)} tracks and {len(mt.midi)} MIDI notes through '{client}' "
              f"({engine} engine) {'in freewheel' if freewheel else 'in real time'}")
        b = bounce_live(cfg_path, env, {f"{client}:in_{k}": v for k, v in tracks.items()},
                        [f"{client}:out_{ch.name}" for ch in cfg.channel], stats_json=out / "stats.json",
                        engine=engine, freewheel=freewheel, midi=mt.midi, midi_dest=[f"{client}:midi_in"],
                        tail_frames=tail, timeout_s=seconds * 4 + 60, name="debleed-demo",
                        nice=cfg.client.process_nice, warn=lambda msg: print(f"demo: {msg}", file=sys.stderr))
        rec, stats, log = b["rec"], b["stats"], b["log"]
        if not b["complete"]:
            print(f"demo: warning: debleed ran {stats['frames']} of the frames played: the figures below are not "
                  "debleed's", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
    lat = stats["latency_samples"]
    rows = []
    for c, ch in enumerate(cfg.channel):
        write_audio(out / "outputs" / f"{ch.name}.wav", rec[c][None], sr)
        piece = ch.input
        if piece not in PIECES:
            continue
        frames = [h.frame for h in mt.piece_hits(piece)]
        vel = np.array([h.velocity for h in mt.piece_hits(piece)])
        loss = hit_loss_db(mt.mics[piece], rec[c], frames, sr, latency=lat[ch.name])
        rows.append({
            "channel": ch.name, "mode": ch.mode + ("+dn" if getattr(ch, "denoise", False) else ""),
            "key": "-" if ch.mode == "bypass" else ch.key, "hits": len(frames),
            "bleed_reduction_db": bleed_reduction_db(mt.mics[piece], rec[c], mt.own[piece], sr, lat[ch.name]),
            "hit_loss_db_loud": float(np.median(loss[vel >= 0.5])) if np.any(vel >= 0.5) else None,
            "hit_loss_db_ghost": float(np.median(loss[vel < 0.5])) if np.any(vel < 0.5) else None,
            "latency_samples": lat[ch.name],
        })
    n_in = int(np.asarray(next(iter(tracks.values()))).size)
    cut = _cuts(cfg, tracks, rec, n_in, sr, block)
    cuts = None if cut is None else int(np.count_nonzero(np.diff(np.concatenate([[0], cut.astype(np.int8)])) == 1))
    offline = _offline_denoise(cfg, mt, sr, rows, rec, cut)
    report = {"kit": mt.kit, "kit_license": mt.license, "sample_rate": sr, "period_frames": block,
              "seconds": seconds, "engine": engine, "channels": rows, "live": stats, "stream_cuts": cuts,
              "offline_denoise": offline}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    print()
    print(f"{'channel':8s} {'mode':9s} {'key':18s} {'hits':>4s} {'bleed red.':>10s} {'hit loss':>9s} "
          f"{'ghost loss':>10s} {'latency':>9s}")
    fmt = lambda v: "-" if v is None or v != v else f"{v:.1f} dB"  # noqa: E731
    for r in rows:
        print(f"{r['channel']:8s} {r['mode']:9s} {r['key']:18s} {r['hits']:4d} {fmt(r['bleed_reduction_db']):>10s} "
              f"{fmt(r['hit_loss_db_loud']):>9s} {fmt(r['hit_loss_db_ghost']):>10s} "
              f"{r['latency_samples']:4d} smp ({1000 * r['latency_samples'] / sr:.2f} ms)")
    cb = stats["callback_us"]
    print(f"\ncallbacks {stats['callbacks']}, xruns {stats['xruns']}, callback time p50 {cb['p50']:.1f} us, "
          f"p99 {cb['p99']:.1f} us, p99.9 {cb['p99.9']:.1f} us, max {cb['max']:.1f} us "
          f"(deadline {stats['deadline_us']:.0f} us at {block} frames)")
    dn = stats.get("denoiser")
    if dn:
        print(f"denoiser (+dn): in the audio callback, {sum(dn['hops'])} hops run, latency "
              f"{max(dn['latency_samples'])} samples (the model's own), resets after non-finite output "
              f"{sum(dn['nonfinite_resets'])}")
    if cuts:
        print(f"xruns cut the stream {cuts} time(s) (where the bypassed channels differ from their inputs); "
              f"{CUT_SETTLE_MS:g} ms after each is left out of the comparison below")
    for name, r in offline.items():
        print(f"{name}: live bleed reduction {r['live_db']:.1f} dB, `debleed denoise` of the same input "
              f"{r['offline_db']:.1f} dB (difference {r['live_db'] - r['offline_db']:+.2f} dB)")
        if cuts:
            print(f"{name}: away from the cuts ({100 * r['uncut_fraction']:.1f} % of the take): live "
                  f"{r['live_uncut_db']:.1f} dB, `debleed denoise` {r['offline_uncut_db']:.1f} dB (difference "
                  f"{r['live_uncut_db'] - r['offline_uncut_db']:+.2f} dB)")
    print(f"inputs, outputs, stats.json and report.json written to {out}/")
    if stats["callbacks"] == 0:
        print(f"demo: debleed processed nothing; its log:\n{log}", file=sys.stderr)
        return 1
    return 0
