"""``debleed eval``: the denoiser against a best-tuned gate on the held-out validation kit.

Two scenarios on the validation kit (never seen in training): *studio* (bleed -40 dB relative
to the snare) and *loud stage* (-10 dB). Per scenario, several scenes of the evaluation groove
are rendered (:func:`debleed.models.synth.render_scene`, no colouration, unity gain; bleed
through a simulated room, pyroomacoustics) and four processors compared:

- ``raw``: the mic as is;
- ``gate``: debleed's own gate (:class:`debleed.dsp.chain.Chain`, key self, no lookahead), its
  threshold and release picked from a grid for the best mean SI-SDR on that very scenario
  (an optimistic gate: tuned on the test signal itself; the grid includes "never closes");
- ``denoiser``: the shipped model;
- ``denoiser+gate``: the gate, tuned the same way, after the denoiser;
- ``gate (bleed-tuned)``, ``denoiser+gate (bleed-tuned)``: the grid point with the most bleed
  reduction whose loud-hit loss (vs mic) stays within 0.5 dB;
- ``oracle mask (bound)``: not a processor but a ceiling: the ideal ratio mask computed from the
  clean snare itself (:func:`oracle_mask_signal`) at the denoiser's time-frequency resolution
  (64-sample window, 32-sample hop). No mask at that resolution, learned or not, does better
  on average, so a target above it cannot be met by this kind of model. A model trained with
  ``--taps`` (a multi-frame filter) reaches further into the past; for it the row is a reference
  point, not a strict bound.

Metrics (:mod:`debleed.models.metrics`): SI-SDR against the clean snare; bleed reduction where
the snare is silent; hit loss over the first 30 ms of loud hits (velocity >= 0.6) and ghost
notes (< 0.2), against the mic (the project's metric) and against the clean snare. Outputs are
aligned by each processor's latency before measuring.

``debleed eval --informed MODEL`` (:func:`evaluate_informed`) evaluates an informed model (reference
mics and key) instead: every held-out kit, loud stage, the model with its mic only, with the key,
with key and reference mics, against the shipped model, the self-keyed gate, a key gate with
look-ahead (:func:`key_gate_signal`) and the oracle mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from debleed.errors import DebleedError
from debleed.fileio import atomic_path, atomic_write_text
from debleed.models.graph import key_graph_input, key_lead_samples
from debleed.models.metrics import bleed_reduction_db, hit_loss_db, si_sdr_db
from debleed.models.synth import GHOST_VELOCITY, LOUD_VELOCITY, TRAIN_KITS, VALID_KIT, render_scene
from debleed.dsp.processor import ProcessSpec

SCENARIOS = {"studio": -40.0, "loud stage": -10.0}
#: Gate grid: -120 dB is a gate that never closes, so "best gate" is never worse than no gate.
GATE_THRESHOLDS_DB = (-120,) + tuple(range(-70, -4, 5))
GATE_RELEASES_MS = (10.0, 30.0, 60.0, 120.0, 250.0, 500.0)




def gate_signal(x: np.ndarray, sample_rate: int, threshold_db: float, release_ms: float) -> np.ndarray:
    """``x`` through debleed's self-keyed gate (hold 10 ms, attack 0.5 ms, range -80 dB)."""
    from debleed.dsp.chain import Chain, ChannelSpec

    ch = Chain([ChannelSpec(name="snare", input=0, mode="gate", key="self", threshold_db=threshold_db,
                            release_ms=release_ms, attack_ms=0.5, hold_ms=10.0, range_db=-80.0)], n_inputs=1)
    ch.prepare(ProcessSpec(sample_rate, 1024, ch.n_channels))
    return ch.render(np.asarray(x, np.float32)[None, :], block=1024)[0]


def _metrics(scenes, outs, latency: int, sample_rate: int) -> dict:
    sisdr, bleed, loud, ghost, loud_c, ghost_c = [], [], [], [], [], []
    for sc, y in zip(scenes, outs):
        n = sc.noisy.size
        ya = np.zeros(n, np.float64)
        seg = y[latency:latency + n]
        ya[:seg.size] = seg
        sisdr.append(si_sdr_db(sc.clean, ya))
        bleed.append(bleed_reduction_db(sc.noisy, ya, sc.clean, sample_rate))
        loss = hit_loss_db(sc.noisy, ya, sc.hit_frames, sample_rate)
        loud.extend(loss[sc.hit_velocities >= LOUD_VELOCITY])
        ghost.extend(loss[sc.hit_velocities < GHOST_VELOCITY])
        loss_c = hit_loss_db(sc.clean, ya, sc.hit_frames, sample_rate)
        loud_c.extend(loss_c[sc.hit_velocities >= LOUD_VELOCITY])
        ghost_c.extend(loss_c[sc.hit_velocities < GHOST_VELOCITY])
    return {"si_sdr_db": float(np.mean(sisdr)), "bleed_reduction_db": float(np.nanmean(bleed)),
            "hit_loss_loud_db": float(np.mean(loud)) if loud else float("nan"),
            "hit_loss_ghost_db": float(np.mean(ghost)) if ghost else float("nan"),
            "hit_loss_loud_vs_clean_db": float(np.mean(loud_c)) if loud_c else float("nan"),
            "hit_loss_ghost_vs_clean_db": float(np.mean(ghost_c)) if ghost_c else float("nan"),
            "n_loud": len(loud), "n_ghost": len(ghost)}


#: The "bleed-tuned" gate: the most bleed reduction whose loud-hit loss (vs mic) stays within this.
BLEED_TUNED_MAX_LOUD_LOSS_DB = 0.5


def _best_gates(scenes, inputs, sample_rate: int, latency: int):
    """Grid search; returns ``(best by SI-SDR, best bleed reduction with loud-hit loss <= 0.5 dB)``,
    each ``metrics | {threshold_db, release_ms}``."""
    by_sisdr = by_bleed = None
    for thr in GATE_THRESHOLDS_DB:
        for rel in GATE_RELEASES_MS:
            outs = [gate_signal(x, sample_rate, thr, rel) for x in inputs]
            m = {**_metrics(scenes, outs, latency, sample_rate), "threshold_db": thr, "release_ms": rel}
            if by_sisdr is None or m["si_sdr_db"] > by_sisdr["si_sdr_db"]:
                by_sisdr = m
            if m["hit_loss_loud_db"] <= BLEED_TUNED_MAX_LOUD_LOSS_DB and (
                    by_bleed is None or m["bleed_reduction_db"] > by_bleed["bleed_reduction_db"]):
                by_bleed = m
    return by_sisdr, by_bleed


def oracle_mask_signal(noisy: np.ndarray, clean: np.ndarray, window: int = 64) -> np.ndarray:
    """``noisy`` through the ideal ratio mask ``min(|S| / |X|, 1)`` of an STFT with a square-root
    Hann window of ``window`` samples at 50 % overlap (S: clean, X: noisy), float64 (n,).

    Needs the clean signal, so it is a bound, not a processor (Wang, "On ideal binary mask as
    the computational goal of auditory scene analysis", 2005; the ratio mask as in Narayanan &
    Wang, ICASSP 2013). Zero latency (aligned with the input).
    """
    from scipy.signal import istft, stft

    win = np.sqrt(np.hanning(window + 1)[:window])
    kw = dict(window=win, nperseg=window, noverlap=window // 2, boundary="zeros", padded=True)
    _, _, x = stft(np.asarray(noisy, np.float64), **kw)
    _, _, c = stft(np.asarray(clean, np.float64), **kw)
    mask = np.minimum(np.abs(c) / np.maximum(np.abs(x), 1e-12), 1.0)
    _, y = istft(x * mask, window=win, nperseg=window, noverlap=window // 2, boundary=True)
    out = np.zeros(len(noisy), np.float64)
    out[:min(y.size, out.size)] = y[:out.size]
    return out


def mel_db(x: np.ndarray, sample_rate: int, n_mels: int = 96, n_fft: int = 1024, hop: int = 256):
    """Mel power spectrogram in dB (HTK mel scale, triangular filters), (n_mels, frames).

    A dozen lines of numpy instead of a dependency for one figure.
    """
    from scipy.signal import stft

    f, _, z = stft(x, sample_rate, nperseg=n_fft, noverlap=n_fft - hop)
    power = np.abs(z) ** 2
    mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    edges = 700.0 * (10.0 ** (np.linspace(mel(30.0), mel(sample_rate / 2), n_mels + 2) / 2595.0) - 1.0)
    fb = np.zeros((n_mels, f.size))
    for i in range(n_mels):
        lo, c, hi = edges[i:i + 3]
        fb[i] = np.clip(np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)), 0.0, None)
    return 10.0 * np.log10(fb @ power + 1e-10)


def plot_mels(path, signals: dict, sample_rate: int) -> None:
    """A PNG with one mel spectrogram per ``{title: signal}``, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(signals), 1, figsize=(10, 2.6 * len(signals)), sharex=True)
    for ax, (title, x) in zip(np.atleast_1d(axes), signals.items()):
        m = mel_db(x, sample_rate)
        ax.imshow(m, origin="lower", aspect="auto", vmin=m.max() - 80, vmax=m.max(), cmap="magma",
                  extent=(0, x.size / sample_rate, 0, m.shape[0]))
        ax.set_title(title)
        ax.set_ylabel("mel band")
    np.atleast_1d(axes)[-1].set_xlabel("time, s")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def evaluate(*, out_dir, sample_rate: int = 48000, kit: str = VALID_KIT, scenes: int = 4,
             seconds: float = 10.0, seed: int = 1000, model_path=None, progress: bool = True) -> dict:
    """Run the evaluation; write ``eval.md``, ``eval.json`` and ``mel.png`` into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed); the three files are written atomically.
    sample_rate : int
        44100 or 48000 Hz (the denoiser's real-time rates).
    kit : str
        A Hydrogen kit name, ``avldrums:STEM`` or ``sonic-pi``; default the held-out validation kit.
        A training kit is evaluated too, and the table says so.
    scenes : int
        Scenes per scenario, >= 1 (default 4).
    seconds : float
        Length of each scene, s, > 0 and finite (default 10).
    seed : int
        Scene ``i`` uses seed ``seed + i``.
    model_path : path, optional
        ONNX model; default the shipped one for ``sample_rate``.

    Returns
    -------
    dict
        ``{scenario: {processor: metrics}}`` plus ``"setup"``.

    Raises
    ------
    DebleedError
        ``scenes`` or ``seconds`` out of range (named), pyroomacoustics missing, a model that
        cannot be loaded; :class:`ParameterError` for an unsupported ``sample_rate``.
    """
    from tqdm import tqdm

    from debleed.models.denoiser import Denoiser, denoise_signal

    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        # no silent fallback to another bleed model: its numbers would not compare with the model card's
        raise DebleedError("debleed eval renders bleed through pyroomacoustics rooms, which is not installed "
                           "(a dependency of debleed: reinstall it, e.g. `pip install -e .`)") from None
    if isinstance(scenes, bool) or not isinstance(scenes, (int, np.integer)) or scenes < 1:
        raise DebleedError(f"--scenes must be an integer >= 1, got {scenes!r}")
    if not (isinstance(seconds, (int, float, np.floating)) and np.isfinite(seconds) and seconds > 0):
        raise DebleedError(f"--seconds must be a finite number > 0, got {seconds!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    den = Denoiser(model_path)
    den.prepare(ProcessSpec(sample_rate, 1024))
    lat = den.latency_samples
    results = {"setup": {"kit": kit, "sample_rate": sample_rate, "scenes": scenes, "seconds": seconds,
                         "seed": seed, "bleed": "room (pyroomacoustics)",
                         "model": str(den.model_path), "latency_samples": lat}}
    bar = tqdm(total=len(SCENARIOS) * 4, desc="eval", disable=not progress)
    plot = None
    for name, bleed_db in SCENARIOS.items():
        sc = [render_scene(kit=kit, sample_rate=sample_rate, seconds=seconds, seed=seed + i,
                           bleed_db=bleed_db, room=True, augment=False) for i in range(scenes)]
        res = {"raw": _metrics(sc, [s.noisy for s in sc], 0, sample_rate)}
        bar.update(1)
        g, gb = _best_gates(sc, [s.noisy for s in sc], sample_rate, 0)
        res["gate"] = g
        bar.update(1)
        dn = [denoise_signal(s.noisy, sample_rate, denoiser=den, compensate=False) for s in sc]
        res["denoiser"] = _metrics(sc, dn, lat, sample_rate)
        bar.update(1)
        dg, dgb = _best_gates(sc, dn, sample_rate, lat)
        res["denoiser+gate"] = dg
        if gb is not None:
            res["gate (bleed-tuned)"] = gb
        if dgb is not None:
            res["denoiser+gate (bleed-tuned)"] = dgb
        res["oracle mask (bound)"] = _metrics(sc, [oracle_mask_signal(s.noisy, s.clean) for s in sc], 0, sample_rate)
        bar.update(1)
        results[name] = res
        if name == "loud stage":
            n = min(int(4.0 * sample_rate), sc[0].noisy.size)
            plot = {"noisy (loud stage, -10 dB bleed)": sc[0].noisy[:n],
                    "denoised": dn[0][lat:lat + n], "clean (snare direct)": sc[0].clean[:n]}
    bar.close()
    if plot:
        plot_mels(out_dir / "mel.png", plot, sample_rate)
    atomic_write_text(out_dir / "eval.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out_dir / "eval.md", markdown_table(results))
    return results


def markdown_table(results: dict) -> str:
    """The results as a markdown table."""
    s = results["setup"]
    held = ("Kit *{}* (a training kit, not held out)" if s["kit"] in TRAIN_KITS
            else "Validation kit *{}* (held out of training)").format(s["kit"])
    lines = [f"{held}, {s['sample_rate']} Hz, "
             f"{s['scenes']} scenes x {s['seconds']:g} s per scenario, bleed: {s['bleed']}; "
             f"denoiser latency {s['latency_samples']} samples "
             f"({1000.0 * s['latency_samples'] / s['sample_rate']:.2f} ms).", "",
             "Hit loss is the mean over hits of 10 log10(E_ref / E_out) in the first 30 ms of each "
             "snare hit, with E_ref from the mic (the project's metric) or from the clean snare "
             "(did the hit itself survive; residual bleed in the output counts in its favour).", "",
             "| scenario | processor | SI-SDR dB | bleed reduction dB | hit loss loud dB (vs mic / vs clean) "
             "| hit loss ghost dB (vs mic / vs clean) | gate threshold / release |",
             "|---|---|---:|---:|---:|---:|---|"]
    for name in SCENARIOS:
        for proc, m in results[name].items():
            g = f"{m['threshold_db']} dB / {m['release_ms']:g} ms" if "threshold_db" in m else ""
            lines.append(f"| {name} | {proc} | {m['si_sdr_db']:.1f} | {m['bleed_reduction_db']:.1f} | "
                         f"{m['hit_loss_loud_db']:.2f} / {m['hit_loss_loud_vs_clean_db']:.2f} (n={m['n_loud']}) | "
                         f"{m['hit_loss_ghost_db']:.2f} / {m['hit_loss_ghost_vs_clean_db']:.2f} (n={m['n_ghost']}) | {g} |")
    if "loud stage" in results:
        lines += ["", *targets_table(results["loud stage"])]
    return "\n".join(lines) + "\n"


#: The denoiser's targets on the held-out kit, loud stage: (label, metric, comparison, value).
TARGETS = (("SI-SDR >= best-tuned gate + 5 dB", "si_sdr_db", ">=gate+", 5.0),
           ("bleed reduction between hits >= 25 dB", "bleed_reduction_db", ">=", 25.0),
           ("hit loss, loud hits <= 0.5 dB (vs mic)", "hit_loss_loud_db", "<=", 0.5),
           ("hit loss, ghost notes <= 1 dB (vs mic)", "hit_loss_ghost_db", "<=", 1.0),
           ("hit loss, ghost notes <= 1 dB (vs clean)", "hit_loss_ghost_vs_clean_db", "<=", 1.0))


def targets_table(loud: dict) -> list:
    """Markdown lines: each target, the denoiser's value, met or not, and the oracle mask's value."""
    den, gate, bound = loud["denoiser"], loud["gate"], loud.get("oracle mask (bound)", {})
    out = ["Targets, loud stage (the oracle mask is the ceiling at the model's resolution):", "",
           "| target | denoiser | met? | oracle mask (bound) |", "|---|---:|---|---:|"]
    for label, key, cmp, value in TARGETS:
        v, b = den[key], bound.get(key, float("nan"))
        if cmp == ">=gate+":
            ok, shown, shown_b = v >= gate[key] + value, f"{v:.1f} (gate {gate[key]:.1f})", f"{b:.1f}"
        elif cmp == ">=":
            ok, shown, shown_b = v >= value, f"{v:.1f}", f"{b:.1f}"
        else:
            ok, shown, shown_b = v <= value, f"{v:.2f}", f"{b:.2f}"
        out.append(f"| {label} | {shown} | {'yes' if ok else 'no'} | {shown_b} |")
    return out


#: Key gate (the key alone, no denoiser): a look-ahead that covers the key's lag (MIDI up to
#: 5.5 ms after the hit, a piezo up to 6.2 ms), and the grid its hold and release are tuned over.
KEY_GATE_LOOKAHEAD_MS = 7.0
KEY_GATE_HOLDS_MS = (5.0, 10.0, 20.0, 40.0, 80.0)
KEY_GATE_RELEASES_MS = (10.0, 30.0, 60.0, 120.0, 250.0, 500.0)
#: The informed model's configurations: which of its inputs are connected.
INFORMED_INPUTS = {"model, mic only": (False, False), "model, key": (True, False),
                   "model, key + refs": (True, True)}


def key_gate_signal(x: np.ndarray, key: np.ndarray, sample_rate: int, *, hold_ms: float, release_ms: float,
                    lookahead_ms: float = KEY_GATE_LOOKAHEAD_MS, range_db: float = -80.0) -> np.ndarray:
    """``x`` through a gate opened by the key's onsets, float64 (n,), delayed by the look-ahead.

    The gate opens fully at each key onset (any non-zero key sample), stays open ``hold_ms``,
    then closes exponentially (time constant ``release_ms``) down to ``range_db``. The audio is
    delayed by ``lookahead_ms`` (its latency, ``round(lookahead_ms * sample_rate / 1000)``
    samples), so a key that lags its hit by less than that opens the gate before the hit passes:
    what a ``midi:`` or ``trigger:`` key with the chain's look-ahead delay does.
    """
    n = x.size
    lat = int(round(lookahead_ms * 1e-3 * sample_rate))
    idx = np.where(key[:n] > 0, np.arange(n), -1)
    last = np.maximum.accumulate(idx)
    dt = (np.arange(n) - last).astype(np.float64)
    hold = hold_ms * 1e-3 * sample_rate
    g = np.exp(-np.maximum(dt - hold, 0.0) / (release_ms * 1e-3 * sample_rate))
    g = np.maximum(g, 10.0 ** (range_db / 20.0))
    g[last < 0] = 10.0 ** (range_db / 20.0)
    y = np.zeros(n + lat, np.float64)
    y[lat:] = x
    return y[:n] * g, lat


def _best_key_gate(scenes, inputs, sample_rate: int, latency: int):
    """Key gate over ``inputs`` (aligned with the scenes after ``latency`` samples), hold and
    release tuned for the best mean SI-SDR on the scenes themselves (optimistic)."""
    best = None
    for hold in KEY_GATE_HOLDS_MS:
        for rel in KEY_GATE_RELEASES_MS:
            outs, lat = [], 0
            for s, x in zip(scenes, inputs):
                xa = np.zeros(s.noisy.size, np.float64)
                seg = np.asarray(x[latency:latency + s.noisy.size], np.float64)
                xa[:seg.size] = seg
                y, lat = key_gate_signal(xa, s.key, sample_rate, hold_ms=hold, release_ms=rel)
                outs.append(y)
            m = {**_metrics(scenes, outs, lat, sample_rate), "hold_ms": hold, "release_ms": rel}
            if best is None or m["si_sdr_db"] > best["si_sdr_db"]:
                best = m
    return best


def run_onnx_one_shot(path, audio: np.ndarray, refs: np.ndarray | None = None, key: np.ndarray | None = None):
    """An exported model over a whole signal from zero state (onnxruntime): ``(output float32
    (n,), latency samples)``, the output delayed by the model's hop (no block buffering) plus,
    when a key is given to a model with a key lead (``key_lead_ms`` in its config), that lead:
    the model hears the key that much ahead of the mic and reference mics, as the denoiser stage
    arranges by delaying them. Inputs the model lacks are ignored; inputs it has but that are not
    given are zeros (not connected)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    hop = int(meta["hop"])
    has_key = any(i.name == "key" for i in sess.get_inputs())
    config = json.loads(meta.get("config", "{}"))
    lead = key_lead_samples(config, int(meta["sample_rate"])) if key is not None and has_key else 0
    if lead:
        key = np.concatenate([np.asarray(key, np.float32)[lead:], np.zeros(min(lead, key.size), np.float32)])
    n = audio.size
    m = -(-n // hop) * hop
    pad = lambda a: np.pad(np.asarray(a, np.float32), [(0, 0)] * (a.ndim - 1) + [(0, m - n)])  # noqa: E731
    feed = {}
    for i in sess.get_inputs():
        if i.name == "audio":
            feed[i.name] = pad(audio)[None]
        elif i.name == "refs":
            feed[i.name] = (pad(refs) if refs is not None else np.zeros((i.shape[1], m), np.float32))[None]
        elif i.name == "key":
            feed[i.name] = key_graph_input(key, m, config)[None]  # a connected key's idle value, where the model has one
        else:
            feed[i.name] = np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
    y = sess.run(None, feed)[0][0][:n]
    if lead:
        y = np.concatenate([np.zeros(lead, np.float32), y])[:n]
    return y, hop + lead


#: Where a DrumGizmo kit is looked for when none is given (``<dir>/<kit>/drumkit.xml``).
DRUMGIZMO_DIRS = (Path("/usr/share/drumgizmo"), Path("/usr/local/share/drumgizmo"), Path.home() / ".drumgizmo")


def find_drumgizmo_kit() -> Path | None:
    """The first ``drumkit.xml`` under :data:`DRUMGIZMO_DIRS` (one folder deep), or None."""
    for d in DRUMGIZMO_DIRS:
        if d.is_dir():
            for xml in sorted(d.glob("*/drumkit.xml")) + sorted(d.glob("drumkit.xml")):
                return xml
    return None


def _informed_rows(sc: list, model_path, base, sample_rate: int) -> dict:
    """Every row of :func:`evaluate_informed` on the scenes ``sc`` of one kit and scenario."""
    from debleed.models.denoiser import denoise_signal

    res = {"raw": _metrics(sc, [s.noisy for s in sc], 0, sample_rate)}
    res["gate"] = _best_gates(sc, [s.noisy for s in sc], sample_rate, 0)[0]
    res["key gate"] = _best_key_gate(sc, [s.noisy for s in sc], sample_rate, 0)
    outs, lats = {}, {}
    for row, (use_key, use_refs) in INFORMED_INPUTS.items():
        ys = []
        for s in sc:
            y, lats[row] = run_onnx_one_shot(model_path, s.noisy, s.refs if use_refs else None,
                                             s.key if use_key else None)
            ys.append(y)
        outs[row] = ys
        res[row] = _metrics(sc, ys, lats[row], sample_rate)
    for row in ("model, key", "model, key + refs"):  # the channel as deployed: the model, then its key's gate
        res[f"{row} -> key gate"] = _best_key_gate(sc, outs[row], sample_rate, lats[row])
    dn = [denoise_signal(s.noisy, sample_rate, denoiser=base, compensate=False) for s in sc]
    res["baseline (mic only)"] = _metrics(sc, dn, base.latency_samples, sample_rate)
    res["oracle mask (bound)"] = _metrics(sc, [oracle_mask_signal(s.noisy, s.clean) for s in sc], 0, sample_rate)
    return res


def evaluate_informed(*, model_path, out_dir=None, sample_rate: int = 48000, kits=None, scenes: int = 4,
                      seconds: float = 10.0, seed: int = 1000, baseline_path=None, scenarios=None,
                      drumgizmo=None, progress: bool = True) -> dict:
    """The informed model against the mic-only shipped model and the key gate, per held-out kit
    and scenario.

    Per kit (default :data:`~debleed.models.synth.HELD_OUT_KITS`, never seen in training: held out
    by kit) and scenario (default :data:`SCENARIOS`: studio, -40 dB of bleed, and loud stage,
    -10 dB), ``scenes`` scenes (the evaluation groove, informed: hi-hat and overhead reference mics
    and a key with trigger timing, :func:`~debleed.models.synth.render_scene`) and these rows:
    ``raw``; ``gate`` (self-keyed, best-tuned, as :func:`evaluate`); ``key gate``
    (:func:`key_gate_signal`, hold and release best-tuned on the scenes); the informed model with
    its mic only, with the key, with key and reference mics (onnxruntime, one shot); ``model, key
    -> key gate`` and ``model, key + refs -> key gate`` (the key gate, tuned again, after the
    model with its key, and with its key and refs: a denoised channel keyed by the same MIDI
    note or trigger, as it runs live); the baseline model
    (default today's shipped model, through :class:`~debleed.models.denoiser.Denoiser`); the
    oracle mask.

    ``drumgizmo``: a DrumGizmo kit (its folder or ``drumkit.xml``; default the first one found
    by :func:`find_drumgizmo_kit`) evaluated the same way, a real multi-mic recording: its snare
    close mic, its own bleed (``loud stage`` adds 10 dB to it, ``studio`` takes 20 dB off), the
    hi-hat and overhead mics as references (:func:`~debleed.models.kit.reference_mics`), grooves
    mixed from its samples (:func:`~debleed.models.kit.kit_scene`). Without one, the setup says
    so. Writes ``informed.md`` and ``informed.json`` into ``out_dir`` when given.

    Returns
    -------
    dict
        ``{kit: {scenario: {row: metrics}}}`` plus ``"setup"``.

    Raises
    ------
    DebleedError
        An unreadable DrumGizmo kit or model (named).
    """
    from tqdm import tqdm

    from debleed.models.denoiser import SHIPPED, Denoiser
    from debleed.models.kit import kit_from_drumgizmo, kit_scene, reference_mics
    from debleed.models.synth import HELD_OUT_KITS

    kits = tuple(kits) if kits is not None else HELD_OUT_KITS
    scenarios = dict(SCENARIOS if scenarios is None else scenarios)
    baseline_path = Path(baseline_path) if baseline_path is not None else SHIPPED[int(sample_rate)]
    base = Denoiser(baseline_path)
    base.prepare(ProcessSpec(sample_rate, 1024))
    dg_path = Path(drumgizmo) if drumgizmo is not None else find_drumgizmo_kit()
    results = {"setup": {"kits": list(kits), "scenarios": scenarios, "sample_rate": sample_rate, "scenes": scenes,
                         "seconds": seconds, "seed": seed, "model": str(model_path),
                         "baseline": str(baseline_path), "key_gate_lookahead_ms": KEY_GATE_LOOKAHEAD_MS,
                         "drumgizmo": str(dg_path) if dg_path else None}}
    bar = tqdm(total=(len(kits) + (dg_path is not None)) * len(scenarios), desc="eval informed", disable=not progress)
    for kit in kits:
        results[kit] = {}
        for name, bleed_db in scenarios.items():
            sc = [render_scene(kit=kit, sample_rate=sample_rate, seconds=seconds, seed=seed + i, bleed_db=bleed_db,
                               room=True, augment=False, informed=True) for i in range(scenes)]
            results[kit][name] = _informed_rows(sc, model_path, base, sample_rate)
            bar.update()
    if dg_path is not None:
        dg = kit_from_drumgizmo(dg_path, sample_rate)
        if "snare" not in dg.close_mic:
            raise DebleedError(f"DrumGizmo kit {dg_path} has no snare instrument to evaluate")
        label = f"DrumGizmo: {dg.name}"
        results["setup"]["kits"].append(label)
        results["setup"]["drumgizmo_refs"] = list(reference_mics(dg, dg.close_mic["snare"]))
        results[label] = {}
        for name, bleed_db in scenarios.items():
            off = bleed_db + 20.0  # on the kit's own bleed: loud stage (-10) +10 dB, studio (-40) -20 dB
            sc = [kit_scene(dg, dg.close_mic["snare"], seconds=seconds, seed=seed + i, bleed_offset_db=off,
                            augment=False, informed=True) for i in range(scenes)]
            results[label][name] = _informed_rows(sc, model_path, base, sample_rate)
            bar.update()
    bar.close()
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "informed.json", json.dumps(results, indent=2) + "\n")
        atomic_write_text(out_dir / "informed.md", informed_table(results))
    return results


def informed_table(results: dict) -> str:
    """:func:`evaluate_informed`'s results as a markdown table."""
    s = results["setup"]
    scen = ", ".join(f"{k} ({v:g} dB bleed)" for k, v in s["scenarios"].items())
    lines = [f"Held-out kits ({scen}), {s['sample_rate']} Hz, {s['scenes']} scenes x "
             f"{s['seconds']:g} s per kit and scenario (seed {s['seed']}); model {Path(s['model']).name}, baseline "
             f"{Path(s['baseline']).name}; key gate look-ahead {s['key_gate_lookahead_ms']:g} ms.",
             "" if s.get("drumgizmo") else "No DrumGizmo kit installed: the real multi-mic row is missing "
             "(pass --drumgizmo PATH, a kit's folder or drumkit.xml).", "",
             "| kit | scenario | processor | SI-SDR dB | bleed reduction dB | hit loss loud dB (vs mic / vs clean) "
             "| hit loss ghost dB (vs mic / vs clean) | tuned |", "|---|---|---|---:|---:|---:|---:|---|"]
    for kit in s["kits"]:
        for scenario, rows in results[kit].items():
            for proc, m in rows.items():
                if "threshold_db" in m:
                    g = f"{m['threshold_db']} dB / {m['release_ms']:g} ms"
                elif "hold_ms" in m:
                    g = f"hold {m['hold_ms']:g} ms / release {m['release_ms']:g} ms"
                else:
                    g = ""
                lines.append(f"| {kit} | {scenario} | {proc} | {m['si_sdr_db']:.1f} | {m['bleed_reduction_db']:.1f} | "
                             f"{m['hit_loss_loud_db']:.2f} / {m['hit_loss_loud_vs_clean_db']:.2f} (n={m['n_loud']}) | "
                             f"{m['hit_loss_ghost_db']:.2f} / {m['hit_loss_ghost_vs_clean_db']:.2f} "
                             f"(n={m['n_ghost']}) | {g} |")
    return "\n".join(lines) + "\n"
