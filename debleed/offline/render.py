"""Virtual soundcheck: run a gig config over recorded multitracks, as a live run would.

``<input name>.wav`` is read for every ``[inputs]`` entry of the config, MIDI keys come from a
standard MIDI file, and the chain runs block by block at ``block`` frames with the same
:func:`~debleed.dsp.chain.run_block` as the JACK engines. The output of each channel is what
``debleed live`` would have played at a JACK period of ``block`` frames: delayed by the
channel's lookahead (its reported latency) and as long as the input, bit for bit (tested
against a JACK freewheel run).

For the report and the plots, the chain gets one *gain probe* per channel: the same channel
on a constant 1.0 input, with the channel's own key (a ``self`` key becomes an ``input`` key on
the channel's input, which runs the same code), its link group and dry/wet, and no lookahead.
The probe's output is exactly the gain the channel applies at that output sample. Probes only
add channels; the gig's own channels and their outputs are unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from debleed.dsp.chain import M_BAD, Chain
from debleed.errors import DebleedError, ParameterError
from debleed.fileio import jsonable
from debleed.offline.audiofile import atomic_output, audio_info, read_audio, write_audio
from debleed.offline.stems import GainStats
from debleed.dsp.processor import ProcessSpec

#: Default tempo of a standard MIDI file, us per quarter note (120 bpm).
DEFAULT_TEMPO_US = 500000


def midi_file_events(path, sample_rate: int) -> np.ndarray:
    """Note-on and note-off messages of a standard MIDI file, at sample frames.

    Parameters
    ----------
    path : str or Path
        A type 0 or type 1 standard MIDI file (all tracks are merged; tempo changes in any
        track apply to all, as the format defines).
    sample_rate : int
        Hz.

    Returns
    -------
    ndarray, int64, shape (k, 4)
        Rows ``(frame, status, note, velocity)`` sorted by frame (stable: file order within a
        frame). ``frame = round(t * sample_rate)`` with ``t`` the message time in seconds,
        computed exactly (rational arithmetic) from the ticks, the ticks per beat and every
        ``set_tempo`` before the message.

    Raises
    ------
    DebleedError
        If the file is missing, not a MIDI file, or of type 2 (independent sequences).
    """
    import mido

    path = Path(path)
    try:
        mf = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise DebleedError(f"MIDI file {path} not found") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise DebleedError(f"{path}: not a readable standard MIDI file ({e})") from None
    if mf.type == 2:
        raise DebleedError(f"{path}: MIDI file type 2 (independent sequences) is not supported; "
                           "export it as type 0 or 1")
    tpb = mf.ticks_per_beat
    tempo = DEFAULT_TEMPO_US
    tick = 0
    seg_tick, seg_us = 0, Fraction(0)   # start of the current tempo segment
    rows = []
    for msg in mido.merge_tracks(mf.tracks):
        tick += msg.time
        if msg.type == "set_tempo":
            seg_us += Fraction((tick - seg_tick) * tempo, tpb)
            seg_tick, tempo = tick, msg.tempo
        elif msg.type in ("note_on", "note_off"):
            us = seg_us + Fraction((tick - seg_tick) * tempo, tpb)
            frame = round(us * sample_rate / 1_000_000)
            status = (0x90 if msg.type == "note_on" else 0x80) | msg.channel
            rows.append((frame, status, msg.note, msg.velocity))
    ev = np.array(rows, np.int64).reshape(-1, 4)
    return ev[np.argsort(ev[:, 0], kind="stable")]


def probe_specs(specs, ones_input: int):
    """One gain probe per channel (see the module docs)."""
    probes = []
    for s in specs:
        key = dict(key="input", key_input=s.input) if s.key == "self" else {}
        probes.append(dataclasses.replace(s, name=f"{s.name}~gain", input=ones_input, lookahead_ms=0.0, **key))
    return probes


def render_arrays(cfg, inputs: np.ndarray, sample_rate: int, block: int = 128,
                  events: np.ndarray | None = None, changes=None) -> dict:
    """Run a gig over in-memory inputs at ``block`` frames per call, like a live run.

    Parameters
    ----------
    cfg : GigConfig
    inputs : float32 (n_inputs, n)
        In ``cfg.input_names`` order.
    sample_rate : int
        Hz.
    block : int
        Frames per call, 1-16384 (a JACK period).
    events : int (k, 4), optional
        MIDI rows ``(frame, status, data1, data2)`` sorted by frame (see :func:`midi_file_events`).
    changes : list of dict, optional
        Parameter changes to replay (:func:`debleed.rt.control.load_changes`): each
        ``{"frame", "channel", "param", "value"}`` takes effect at the start of the block that
        begins at ``frame``, as in the live run that logged it; a frame that is not a block
        boundary at this ``block`` takes effect at the next one (counted in ``changes_moved``).

    Returns
    -------
    dict
        ``outputs`` float32 (n_channels, n); ``gain_db`` float32 (n_channels, n), the gain each
        output sample got; ``latency_samples`` list; ``nonfinite`` per channel;
        ``midi_used``, ``midi_dropped`` (over :data:`MAX_MIDI_EVENTS` in one block),
        ``midi_outside`` (after the end of the audio); ``changes_applied``, ``changes_moved``.

    Raises
    ------
    ParameterError
        On a bad block size, inputs of the wrong shape, or a change that names an unknown
        channel or parameter or a value out of range.
    """
    if not 1 <= int(block) <= 16384:
        raise ParameterError(f"block must be in [1, 16384] frames, got {block!r}")
    block = int(block)
    specs = cfg.channel_specs()
    n_in = len(cfg.input_names)
    x = np.asarray(inputs, np.float32)
    if x.ndim != 2 or x.shape[0] != n_in:
        raise ParameterError(f"inputs must be float32 of shape ({n_in}, n_frames), got {x.shape}")
    n = x.shape[1]
    n_ch = len(specs)
    n_rows = n_in + len(cfg.denoised())  # real inputs, then the denoised channels' virtual rows
    chain = Chain(specs + probe_specs(specs, n_rows), n_inputs=n_rows + 1)
    chain.prepare(ProcessSpec(sample_rate, block, chain.n_channels))
    xin = np.ones((n_rows + 1, n), np.float32)
    xin[:n_in] = x
    from debleed.models.streaming import StreamingStage

    stage = StreamingStage.from_gig(cfg, sample_rate, block)
    latency = list(chain.channel_latency_samples[:n_ch])
    if stage is not None:
        for c, _, _ in cfg.denoised():
            latency[c] += stage.channel_latency(c)
    ev = np.zeros((0, 4), np.int64) if events is None else np.asarray(events, np.int64).reshape(-1, 4)
    outside = int(np.sum(ev[:, 0] >= n)) + int(np.sum(ev[:, 0] < 0))
    ev = ev[(ev[:, 0] >= 0) & (ev[:, 0] < n)]
    pending = list(changes or [])
    names = [sp.name for sp in specs]
    for ch in pending:
        if ch["channel"] not in names:
            raise ParameterError(f"change at frame {ch['frame']}: unknown channel {ch['channel']!r} "
                                 f"(channels: {', '.join(names)})")
    counts = {"moved": 0, "applied": 0}

    def before_block(s, xb, ev_block, n_ev):
        # logged changes at their block, then the denoiser stage: as in the audio callback
        if pending and pending[0]["frame"] <= s:
            todo = []
            while pending and pending[0]["frame"] <= s:
                e = pending.pop(0)
                counts["moved"] += e["frame"] != s
                todo.append(e)
            counts["applied"] += len(todo)
            _apply_changes(chain, stage, cfg, todo, n_ch)
        if stage is not None:
            stage.process(xb.shape[1], xb, ev_block, n_ev)

    y = chain.render(xin, ev, block=block, before_block=before_block)
    dropped = chain.last_midi_dropped
    moved, applied = counts["moved"], counts["applied"]
    with np.errstate(divide="ignore"):
        gain_db = (20.0 * np.log10(np.maximum(y[n_ch:], 1e-12))).astype(np.float32)
    return {"outputs": y[:n_ch].copy(), "gain_db": gain_db,
            "latency_samples": latency,
            "nonfinite": [int(v) for v in chain.meters[:n_ch, M_BAD]],
            "midi_used": int(ev.shape[0]) - dropped, "midi_dropped": int(dropped), "midi_outside": outside,
            "changes_applied": applied, "changes_moved": moved}


def _apply_changes(chain, stage, cfg, entries, n_ch) -> None:
    """Apply logged changes to the channels (and their gain probes) before the next block."""
    from debleed.dsp.params import get

    todo = []
    for e in entries:
        c = chain.channel_index(e["channel"])
        p = get(e["param"])
        if p.target == "denoiser":
            if stage is not None and hasattr(stage, "set_param") and cfg.channel[c].denoise:
                stage.set_param(c, e["param"], e["value"])
            continue
        if p.kind == "key":
            from debleed.dsp.chain import KeyRoute

            route = cfg.resolve_key(e["value"])
            probe = KeyRoute("input", chain.channels[c].input) if route.kind == "self" else route
            todo += [(c, "key", route), (n_ch + c, "key", probe)]
            continue
        todo += [(c, e["param"], e["value"]), (n_ch + c, e["param"], e["value"])]
    if todo:
        chain.set_params(todo)


def read_inputs(cfg, input_dir) -> tuple[np.ndarray, int, dict]:
    """Read ``<input name>.wav`` for every ``[inputs]`` entry.

    Returns
    -------
    inputs : float32 (n_inputs, n)
    sample_rate : int
    files : dict  input name -> path

    Raises
    ------
    DebleedError
        A file missing, unreadable or not mono; sample rates or lengths that differ (all listed).
    """
    input_dir = Path(input_dir)
    files = {name: input_dir / f"{name}.wav" for name in cfg.input_names}
    missing = [f"{name!r} ({p})" for name, p in files.items() if not p.is_file()]
    if missing:
        found = ", ".join(sorted(p.name for p in input_dir.glob("*.wav"))) or "no .wav files"
        raise DebleedError(f"no file for input {', '.join(missing)}: render reads <input name>.wav for each "
                           f"[inputs] entry of the config (found in {input_dir}: {found})")
    infos = {name: audio_info(p) for name, p in files.items()}
    multi = [f"{files[k]} has {i.channels}" for k, i in infos.items() if i.channels != 1]
    if multi:
        raise DebleedError(f"every input must be a mono file (one JACK port each): {'; '.join(multi)} "
                           "channels; split it into one file per channel and name them after the inputs")
    rates = {i.samplerate for i in infos.values()}
    if len(rates) > 1:
        lst = ", ".join(f"{files[k].name} {i.samplerate} Hz" for k, i in infos.items())
        raise DebleedError(f"the inputs have different sample rates ({lst}); resample them to one rate "
                           "(a live run has one) and run again")
    lengths = {i.frames for i in infos.values()}
    if len(lengths) > 1:
        lst = ", ".join(f"{files[k].name} {i.frames} frames" for k, i in infos.items())
        raise DebleedError(f"the inputs have different lengths ({lst}); they must be one multitrack "
                           "recording: trim or pad them to the same length and run again")
    sr = rates.pop()
    data = np.zeros((len(files), lengths.pop()), np.float32)
    for r, p in enumerate(files.values()):
        data[r] = read_audio(p)[0][0]
    return data, sr, {k: str(p) for k, p in files.items()}


def _envelope(x: np.ndarray, width: int):
    """Min and max of ``x`` over ``width`` equal buckets (for plotting long signals)."""
    n = x.size
    if n <= 2 * width:
        return np.arange(n), x, x
    edges = np.linspace(0, n, width + 1).astype(np.int64)
    lo = np.minimum.reduceat(x, edges[:-1])
    hi = np.maximum.reduceat(x, edges[:-1])
    return edges[:-1], lo, hi


def plot_channel(path, name: str, x: np.ndarray, y: np.ndarray, gain_db: np.ndarray, sample_rate: int,
                 latency: int, title: str) -> None:
    """Write a PNG (atomically): input waveform, output waveform and gain reduction over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(12, 6.5), sharex=True, constrained_layout=True)
    for ax, sig, label in ((axes[0], x, "input"), (axes[1], y, f"output (delayed {latency} smp by the lookahead)")):
        idx, lo, hi = _envelope(sig, 3000)
        ax.fill_between(idx / sample_rate, lo, hi, color="tab:blue", linewidth=0.5, step="post")
        ax.set_ylabel(label if len(label) < 12 else "output")
        ax.set_ylim(-1.0, 1.0)
        ax.set_title(label, loc="left", fontsize=9)
    idx, lo, _ = _envelope(gain_db, 3000)
    axes[2].plot(idx / sample_rate, lo, color="tab:red", linewidth=0.8, drawstyle="steps-post")
    axes[2].set_ylabel("gain (dB)")
    axes[2].set_ylim(min(float(gain_db.min()) - 3.0 if gain_db.size else -6.0, -6.0), 1.0)
    axes[2].set_xlabel("time (s)")
    axes[2].set_title("gain applied to the output (0 dB: untouched)", loc="left", fontsize=9)
    axes[2].grid(True, alpha=0.3)
    fig.suptitle(f"{name}: {title}")
    with atomic_output(path) as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)


def render_gig(config_path, input_dir, output_dir, *, block: int = 128, midi_path=None,
               plots: bool = True, changes_path=None, changes_origin: int = 0) -> dict:
    """``debleed render``: read, run, write ``<channel>.wav``, ``report.json`` and PNGs.

    Outputs are 32-bit float WAV (the chain's float32 samples, unchanged) at the inputs' rate.

    Returns
    -------
    dict
        The report (also written to ``report.json``).

    Raises
    ------
    DebleedError
        Bad config, inputs, MIDI file or folders (see :func:`read_inputs`,
        :func:`midi_file_events`, :func:`~debleed.offline.audiofile.check_output_dir`).
    """
    from debleed.offline.audiofile import check_output_dir
    from debleed.rt.config import load_config

    cfg = load_config(config_path)
    src, dst = check_output_dir(input_dir, output_dir, what="input")
    if not 1 <= int(block) <= 16384:
        raise ParameterError(f"--block must be in [1, 16384] frames, got {block!r}")
    midi_ch = [ch.name for ch in cfg.channel if cfg.key_kind(ch) == "midi"]
    if midi_ch and midi_path is None:
        raise DebleedError(f"channel(s) {', '.join(map(repr, midi_ch))} have a MIDI key: give the notes "
                           "with --midi FILE.mid (a standard MIDI file of the take)")
    x, sr, files = read_inputs(cfg, src)
    events = midi_file_events(midi_path, sr) if midi_path is not None else None
    changes = None
    if changes_path is not None:
        from debleed.rt.control import load_changes

        changes = load_changes(changes_path, origin=changes_origin)
    res = render_arrays(cfg, x, sr, block, events, changes=changes)
    names = cfg.input_names
    specs = cfg.channel_specs()
    dst.mkdir(parents=True, exist_ok=True)
    # a re-run into a folder that holds an earlier run's outputs first removes the ones it will
    # write (the report first): each output is then current and complete (written atomically)
    # or absent, whenever the run is stopped, never an old one beside new ones
    for f in ["report.json"] + [f"{ch.name}{ext}" for ch in cfg.channel for ext in (".wav", ".png")]:
        (dst / f).unlink(missing_ok=True)
    report = {"config": str(config_path), "sample_rate": sr, "block": int(block), "frames": int(x.shape[1]),
              "seconds": x.shape[1] / sr, "inputs": files, "output_subtype": "FLOAT",
              "midi": None if midi_path is None else {
                  "file": str(midi_path), "events": res["midi_used"], "dropped": res["midi_dropped"],
                  "after_end": res["midi_outside"]},
              "changes": None if changes_path is None else {
                  "file": str(changes_path), "origin": int(changes_origin), "applied": res["changes_applied"],
                  "moved_to_block_boundary": res["changes_moved"]},
              "channels": {}}
    for c, (ch, spec) in enumerate(zip(cfg.channel, specs)):
        write_audio(dst / f"{ch.name}.wav", res["outputs"][c][None, :], sr, subtype="FLOAT")
        st = GainStats()
        st.add(res["gain_db"][c])
        lat = int(res["latency_samples"][c])
        params = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("name", "input", "key_input")}
        params["notes"] = list(spec.notes)
        report["channels"][ch.name] = {
            "input": ch.input, "mode": ch.mode, "key": ch.key, "output": f"{ch.name}.wav",
            "plot": f"{ch.name}.png" if plots else None,
            "gain_reduction_db": st.result(), "latency_samples": lat, "latency_ms": 1000.0 * lat / sr,
            "block": int(block), "nonfinite_input_samples": res["nonfinite"][c], "parameters": params}
        if plots:
            g = st.result()
            plot_channel(dst / f"{ch.name}.png", ch.name, x[names.index(ch.input)], res["outputs"][c],
                         res["gain_db"][c], sr, lat,
                         f"{ch.mode}, key {ch.key}; max reduction {g['max_db']:.1f} dB, "
                         f"{g['active_percent']:.1f} % of the time")
    with atomic_output(dst / "report.json") as fh:
        fh.write((json.dumps(jsonable(report), indent=2) + "\n").encode())
    return report
