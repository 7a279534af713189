"""Sidechain cleanup of separated drum stems: duck a target stem wherever a key stem hits.

The audio runs through :class:`debleed.dsp.chain.Chain` (the same :func:`run_block` as the live
engines). A pair ``key:target`` compiles to one chain whose inputs are the target's channels,
the key's channels and a constant 1.0 row:

- one ``duck`` channel per target channel, keyed by a key channel (the same index when the key
  has that many channels, else the key's last channel), all in one link group;
- one *gain probe* per key channel: the same ducker on the constant 1.0 input, in the same link
  group, without lookahead. Its output is exactly the gain the target channels get at that
  sample (``(1 - dry_wet) + dry_wet * gain``), and its key makes the link group take the max
  over *all* key channels. So a stereo key ducks a mono target from both sides, a mono key
  ducks both sides of a stereo target, and a stereo target always gets one gain for both sides.

The lookahead delays the target inside the chain. :func:`compensated_blocks` feeds ``latency``
frames of zeros after the input and drops the first ``latency`` output frames, so the cleaned
stem is time-aligned with the input and exactly as long. Output does not depend on the block
size (the chain snaps its state per sample; tested).
"""

from __future__ import annotations

import json
import math
import time
from itertools import chain as _chain
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from debleed.dsp.processor import ProcessSpec, Processor, check_channels
from debleed.dsp.params import PARAMS
from debleed.dsp.chain import Chain, ChannelSpec
from debleed.errors import DebleedError, ParameterError
from debleed.fileio import jsonable
from debleed.offline.audiofile import (atomic_output, atomic_path, audio_info, copy_atomic, file_signature,
                                  remove_stale_tmp)

#: Stem names of the usual drum separation models (LarsNet and similar).
STEMS = ("kick", "snare", "toms", "hihat", "cymbals")
#: Default pair: the snare stem ducks the kick stem (snare bleed in the kick stem).
DEFAULT_PAIR = ("snare", "kick")
#: Defaults of ``debleed clean-stems`` (user units): the parameters of the table that have a
#: clean-stems flag, with the table's defaults except two. ``range_db`` -40 dB: deep enough to
#: remove bleed that sits 10-30 dB under the target's own hits, while a key far over the
#: threshold never digs a silent hole into the target; no hold (offline, the release suffices).
DUCK_DEFAULTS = {**{n: p.default for n, p in PARAMS.items() if p.flag}, "hold_ms": 0.0, "range_db": -40.0}
#: Gain reduction above this (dB) counts as "ducking" for the statistics.
ACTIVE_DB = 0.1
#: Manifest kept beside the outputs of each track (resume).
MANIFEST = ".debleed-params.json"
MANIFEST_VERSION = 1
_HIST_STEP_DB = 0.01
_HIST_BINS = 12001  # 0 .. 120 dB


def duck_params(preset: str | None = None, **overrides) -> dict:
    """Ducking parameters: :data:`DUCK_DEFAULTS`, then the preset, then explicit values.

    Parameters
    ----------
    preset : {"balanced", "aggressive", "gentle", "fast"} or None
        A preset of ``configs/presets.toml``.
    **overrides : float or None
        ``threshold_db``, ``ratio``, ... ; ``None`` means "not given".

    Raises
    ------
    ParameterError
        On an unknown preset or key, or a value out of range (via :class:`ChannelSpec`).
    """
    from debleed.rt.config import PRESETS

    p = dict(DUCK_DEFAULTS)
    if preset is not None:
        if preset not in PRESETS:
            raise ParameterError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        p.update({k: float(v) for k, v in PRESETS[preset].items() if k in DUCK_DEFAULTS})
    for k, v in overrides.items():
        if k not in DUCK_DEFAULTS:
            raise ParameterError(f"unknown ducking parameter {k!r} (allowed: {', '.join(DUCK_DEFAULTS)})")
        if v is not None:
            p[k] = float(v)
    duck_specs(p, 1, 1)  # validates
    return p


def duck_specs(params: dict, n_key: int, n_target: int) -> list[ChannelSpec]:
    """The chain channels of one key:target pair (see the module docs for the layout).

    Inputs are ordered ``[target_0 .. target_{T-1}, key_0 .. key_{K-1}, ones]``; the first
    ``n_target`` channels are the ducked target, the next ``n_key`` are gain probes.
    """
    if n_key < 1 or n_target < 1:
        raise ParameterError(f"key and target need >= 1 channel, got {n_key} and {n_target}")
    common = dict(mode="duck", key="input", link="pair", detector="peak", **params)
    ones = n_target + n_key
    specs = [ChannelSpec(name=f"target{c}", input=c, key_input=n_target + min(c, n_key - 1), **common)
             for c in range(n_target)]
    probe = {**common, "lookahead_ms": 0.0}
    specs += [ChannelSpec(name=f"gain{k}", input=ones, key_input=n_target + k, **probe) for k in range(n_key)]
    return specs


class StemDucker(Processor):
    """Duck a target stem by a key stem, block by block, through the chain.

    Parameters
    ----------
    params : dict
        Ducking parameters in user units (see :func:`duck_params`).
    n_key_channels, n_target_channels : int
        Channels of the key and target files, >= 1.

    Notes
    -----
    Prepared with ``ProcessSpec(sample_rate, max_block, n_channels=n_target_channels)``.
    ``process`` writes the chain's *raw* output: the target delayed by ``latency_samples``
    (the lookahead), as a live run would. :func:`compensated_blocks` removes that delay.
    """

    def __init__(self, *, params: dict, n_key_channels: int, n_target_channels: int):
        self.params = dict(params)
        self.n_key, self.n_target = int(n_key_channels), int(n_target_channels)
        specs = duck_specs(self.params, self.n_key, self.n_target)
        self.chain = Chain(specs, n_inputs=self.n_target + self.n_key + 1)

    def _allocate(self, spec: ProcessSpec) -> None:
        """Compile the chain for ``spec.sample_rate`` and allocate for ``spec.max_block`` frames;
        ``spec.n_channels`` must be the target's channel count."""
        check_channels(self, spec, self.n_target, "the target's channels")
        self.chain.prepare(ProcessSpec(spec.sample_rate, spec.max_block, self.chain.n_channels))
        self._in = np.zeros((self.chain.n_inputs, self.max_block), np.float32)
        self._in[-1] = 1.0
        self._out = np.zeros((self.chain.n_channels, self.max_block), np.float32)
        self._gain = np.zeros(self.max_block, np.float32)

    @property
    def latency_samples(self) -> int:
        """Delay of the target output (the lookahead), samples."""
        return self.chain.latency_samples

    def _clear(self) -> None:
        """Forget all state (a fresh run)."""
        self.chain.reset()

    def process(self, key: np.ndarray, target: np.ndarray, out: np.ndarray, gain_db: np.ndarray) -> None:
        """Process one block.

        Parameters
        ----------
        key : float32 (n_key_channels, n)
        target : float32 (n_target_channels, n), ``n <= max_block``
        out : float32 (n_target_channels, n)
            Written: the ducked target, delayed by ``latency_samples``.
        gain_db : float32 (n,)
            Written: the gain applied to ``out`` at each sample, dB (<= 0; dry/wet included).

        Notes
        -----
        Allocates nothing; a NaN or Inf sample is read as 0 by the chain and never reaches its state.
        """
        self.check_prepared("process")
        n = target.shape[1]
        if key.shape != (self.n_key, n) or target.shape[0] != self.n_target or n > self.max_block:
            raise ParameterError(f"expected key ({self.n_key}, n) and target ({self.n_target}, n) with "
                                 f"n <= {self.max_block}, got {key.shape} and {target.shape}")
        nt = self.n_target
        self._in[:nt, :n] = target
        self._in[nt:nt + self.n_key, :n] = key
        y = self._out[:, :n]
        self.chain.process(self._in[:, :n], y)
        out[:] = y[:nt]
        g = self._gain[:n]
        np.maximum(y[nt], np.float32(1e-12), out=g)
        np.log10(g, out=gain_db)
        gain_db *= np.float32(20.0)


def compensated_blocks(ducker: StemDucker, blocks, n_frames: int):
    """Run ``ducker`` over input blocks and yield output blocks aligned with the input.

    Parameters
    ----------
    ducker : StemDucker
        Prepared.
    blocks : iterable of (key, target)
        float32 arrays ``(n_key, m)`` and ``(n_target, m)``, ``m <= max_block``, ``n_frames`` in all.
    n_frames : int
        Input length.

    Yields
    ------
    (out, gain_db) : float32 ``(n_target, k)`` and ``(k,)``
        Views of scratch buffers, valid until the next iteration; ``n_frames`` frames in all.

    Notes
    -----
    The lookahead delays the target by ``L = ducker.latency_samples``: ``L`` frames of zeros
    are fed after the input and the first ``L`` output frames are dropped, so output frame ``i``
    is input frame ``i`` times the gain the chain computed ``L`` frames later (the gain that
    acts *before* the key's hit).
    """
    lat = ducker.latency_samples
    out = np.zeros((ducker.n_target, ducker.max_block), np.float32)
    gain = np.zeros(ducker.max_block, np.float32)
    zk = np.zeros((ducker.n_key, ducker.max_block), np.float32)
    zt = np.zeros((ducker.n_target, ducker.max_block), np.float32)

    def tail():
        left = lat
        while left > 0:
            m = min(left, ducker.max_block)
            yield zk[:, :m], zt[:, :m]
            left -= m

    skip, emitted = lat, 0
    for key, target in _chain(blocks, tail()):
        m = target.shape[1]
        if m == 0:
            continue
        ducker.process(key, target, out[:, :m], gain[:m])
        s = min(skip, m)
        skip -= s
        k = min(m - s, n_frames - emitted)
        if k > 0:
            yield out[:, s:s + k], gain[s:s + k]
            emitted += k
    if emitted != n_frames:
        raise DebleedError(f"internal: produced {emitted} frames, expected {n_frames}")


def duck_arrays(key: np.ndarray, target: np.ndarray, sample_rate: float, params: dict,
                block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Duck ``target`` by ``key`` in memory (the same path as the files, for tests and scripts).

    Parameters
    ----------
    key : float32 (n_key_channels, n)
    target : float32 (n_target_channels, n)
    sample_rate : float
        Hz.
    params : dict
        See :func:`duck_params`.
    block : int
        Frames per chain call, 1-16384; the output does not depend on it.

    Returns
    -------
    out : float32 (n_target_channels, n)
        Time-aligned with ``target`` (lookahead compensated).
    gain_db : float32 (n,)
        Gain applied per sample, dB.
    """
    key = np.ascontiguousarray(key, np.float32)
    target = np.ascontiguousarray(target, np.float32)
    if key.ndim != 2 or target.ndim != 2 or key.shape[1] != target.shape[1]:
        raise ParameterError(f"key and target must be (channels, n) of the same length, got {key.shape} "
                             f"and {target.shape}")
    n = target.shape[1]
    d = StemDucker(params=params, n_key_channels=key.shape[0], n_target_channels=target.shape[0])
    d.prepare(ProcessSpec(sample_rate, block, d.n_target))
    out = np.zeros_like(target)
    gain = np.zeros(n, np.float32)
    pos = 0
    blocks = ((key[:, s:s + block], target[:, s:s + block]) for s in range(0, n, block))
    for y, g in compensated_blocks(d, blocks, n):
        out[:, pos:pos + y.shape[1]] = y
        gain[pos:pos + g.size] = g
        pos += g.size
    return out, gain


class GainStats:
    """Gain-reduction statistics over a stream: max, median while ducking, time ducking.

    The median is read from a histogram with 0.01 dB bins (exact to 0.01 dB) over the samples
    whose reduction exceeds :data:`ACTIVE_DB`.
    """

    def __init__(self):
        self.hist = np.zeros(_HIST_BINS, np.int64)
        self.n = 0
        self.max_db = 0.0

    def add(self, gain_db: np.ndarray) -> None:
        """Add a block of gains (dB, <= 0)."""
        if gain_db.size == 0:
            return
        gr = -gain_db.astype(np.float64)
        self.n += gr.size
        self.max_db = max(self.max_db, float(gr.max()))
        idx = np.clip(np.rint(gr / _HIST_STEP_DB), 0, _HIST_BINS - 1).astype(np.int64)
        self.hist += np.bincount(idx, minlength=_HIST_BINS)

    def result(self) -> dict:
        """``{"max_db", "median_active_db", "active_percent"}`` (reductions as positive dB)."""
        first = int(math.ceil(ACTIVE_DB / _HIST_STEP_DB - 1e-9)) + 1
        act = self.hist[first:]
        n_act = int(act.sum())
        med = 0.0
        if n_act:
            med = (first + int(np.searchsorted(np.cumsum(act), (n_act + 1) // 2))) * _HIST_STEP_DB
        return {"max_db": round(self.max_db, 3), "median_active_db": round(med, 2),
                "active_percent": round(100.0 * n_act / self.n, 3) if self.n else 0.0}


# ---------------------------------------------------------------------------------------------
# one track


@dataclass
class TrackJob:
    """Work for one track folder (picklable: sent to a worker process)."""

    track: str
    in_dir: Path
    out_dir: Path
    pairs: list
    params: dict
    block: int = 4096


@dataclass
class TrackResult:
    """What a worker did for one track."""

    track: str
    pairs: list = field(default_factory=list)   # dicts: key, target, status, stats, seconds
    copies_done: int = 0
    copies_skipped: int = 0
    warnings: list = field(default_factory=list)
    error: str | None = None
    skipped: bool = False
    audio_s: float = 0.0
    time_s: float = 0.0


def stem_files(track_dir: Path, track: str) -> dict[str, Path]:
    """``{stem: path}`` for the ``<track>-<stem>.wav`` files of a track folder."""
    prefix = f"{track}-"
    out = {}
    for p in sorted(track_dir.iterdir()):
        if p.is_file() and p.name.startswith(prefix) and p.suffix.lower() == ".wav":
            out[p.name[len(prefix):-len(p.suffix)]] = p
    return out


def _load_manifest(path: Path, warnings: list) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") == MANIFEST_VERSION and isinstance(data.get("outputs"), dict):
            return data["outputs"]
    except (OSError, ValueError, AttributeError):
        pass
    warnings.append(f"{path}: unreadable parameter file; its outputs are written again")
    return {}


def _save_manifest(path: Path, outputs: dict) -> None:
    text = json.dumps({"version": MANIFEST_VERSION, "outputs": jsonable(outputs)}, indent=1, sort_keys=True)
    with atomic_output(path) as fh:
        fh.write((text + "\n").encode())


def _same(entry: dict | None, want: dict) -> bool:
    if not entry:
        return False
    return {k: v for k, v in entry.items() if k not in ("stats", "output")} == jsonable(want)


def _output_record(path: Path) -> dict:
    """What the manifest keeps of a written output to recognise it on resume: its size and, when
    it is readable audio, its length and format."""
    rec = {"size": path.stat().st_size}
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError):
        return rec
    rec.update(frames=info.frames, samplerate=info.samplerate, channels=info.channels, format=info.format,
               subtype=info.subtype)
    return rec


def _output_ok(path: Path, entry: dict, source: Path) -> bool:
    """Whether the output at ``path`` is the complete file the manifest ``entry`` recorded: the
    same size, length and format as then, and the length and format of ``source`` (a truncated
    or replaced output is redone, not skipped)."""
    try:
        now, src = _output_record(path), _output_record(source)
    except OSError:
        return False
    if entry.get("output") != now:
        return False
    keys = ("frames", "samplerate", "channels", "format", "subtype")
    return all(now.get(k) == src.get(k) for k in keys)


def duck_file(key_path: Path, target_path: Path, out_path: Path, params: dict, block: int) -> tuple[dict, float]:
    """Duck one target file by one key file, streaming; write ``out_path`` atomically.

    The output keeps the target's sample rate, channel count, length, format and subtype.
    Returns the gain statistics (see :class:`GainStats`) and the target's length in seconds.
    """
    ki, ti = audio_info(key_path), audio_info(target_path)
    stats = GainStats()
    with sf.SoundFile(str(key_path)) as fk, sf.SoundFile(str(target_path)) as ft, \
            atomic_path(out_path, keep_suffix=False) as tmp, \
            sf.SoundFile(str(tmp), "w", ti.samplerate, ti.channels, ti.subtype, format=ti.format) as fo:
        d = StemDucker(params=params, n_key_channels=ki.channels, n_target_channels=ti.channels)
        d.prepare(ProcessSpec(ti.samplerate, block, d.n_target))

        def blocks():
            while True:
                t = ft.read(block, dtype="float32", always_2d=True)
                k = fk.read(t.shape[0], dtype="float32", always_2d=True)
                if t.shape[0] == 0:
                    return
                if k.shape[0] != t.shape[0]:
                    raise DebleedError(f"{key_path}: ended before {target_path} (file shorter than its header says)")
                yield np.ascontiguousarray(k.T), np.ascontiguousarray(t.T)

        for y, g in compensated_blocks(d, blocks(), ti.frames):
            fo.write(np.ascontiguousarray(y.T))
            stats.add(g)
    return stats.result(), ti.frames / ti.samplerate


def check_pair(track: str, key_path: Path, target_path: Path) -> None:
    """Raise a :class:`DebleedError` when key and target differ in sample rate or length."""
    ki, ti = audio_info(key_path), audio_info(target_path)
    if ki.samplerate != ti.samplerate:
        raise DebleedError(
            f"track {track!r}: key {key_path} is {ki.samplerate} Hz but target {target_path} is "
            f"{ti.samplerate} Hz; resample one of them to the other's rate (both stems of a pair "
            "must have the same sample rate) and run again")
    if ki.frames != ti.frames:
        raise DebleedError(
            f"track {track!r}: key {key_path} has {ki.frames} frames ({ki.frames / ki.samplerate:.3f} s) "
            f"but target {target_path} has {ti.frames} frames ({ti.frames / ti.samplerate:.3f} s); the "
            "stems of a track must come from the same separation run: trim or pad them to the same "
            "length and run again")


def process_track(job: TrackJob) -> TrackResult:
    """Clean one track folder: duck every pair's target, copy the other stems, resume-aware.

    Never raises for bad input: problems come back in ``TrackResult.error`` / ``.warnings``.
    Nothing is written for a track whose stems fail the checks.
    """
    t0 = time.perf_counter()
    res = TrackResult(track=job.track)
    src_dir = job.in_dir / job.track
    dst_dir = job.out_dir / job.track
    try:
        stems = stem_files(src_dir, job.track)
        for key, target in job.pairs:
            for role, stem in (("key", key), ("target", target)):
                if stem not in stems:
                    res.warnings.append(
                        f"track {job.track!r}: no {role} stem {job.track}-{stem}.wav in {src_dir} "
                        f"(found: {', '.join(stems) or 'no stems'}); track skipped, the others are processed")
                    res.skipped = True
                    return res
        for key, target in job.pairs:
            check_pair(job.track, stems[key], stems[target])
        targets = {t for _, t in job.pairs}
        dst_dir.mkdir(parents=True, exist_ok=True)
        sources = {p.resolve() for p in stems.values()}
        for stem in stems:
            if (dst_dir / stems[stem].name).resolve() in sources:
                raise DebleedError(f"output {dst_dir / stems[stem].name} is an input file; choose another output folder")
        remove_stale_tmp(dst_dir)
        mpath = dst_dir / MANIFEST
        manifest = _load_manifest(mpath, res.warnings)
        for key, target in job.pairs:
            kp, tp = stems[key], stems[target]
            name = tp.name
            want = {"kind": "duck", "key": file_signature(kp), "target": file_signature(tp),
                    "params": dict(sorted(job.params.items()))}
            row = {"key": key, "target": target}
            if _same(manifest.get(name), want) and _output_ok(dst_dir / name, manifest[name], tp):
                row.update(status="skipped", stats=manifest[name].get("stats", {}))
            else:
                if manifest.pop(name, None) is not None:
                    _save_manifest(mpath, manifest)   # never a stale entry beside a new file
                stats, secs = duck_file(kp, tp, dst_dir / name, job.params, job.block)
                manifest[name] = {**want, "stats": stats, "output": _output_record(dst_dir / name)}
                _save_manifest(mpath, manifest)
                row.update(status="done", stats=stats)
                res.audio_s += secs
            res.pairs.append(row)
        for stem, p in stems.items():
            if stem in targets:
                continue
            want = {"kind": "copy", "source": file_signature(p)}
            if _same(manifest.get(p.name), want) and _output_ok(dst_dir / p.name, manifest[p.name], p):
                res.copies_skipped += 1
                continue
            if manifest.pop(p.name, None) is not None:
                _save_manifest(mpath, manifest)
            copy_atomic(p, dst_dir / p.name)
            manifest[p.name] = {**want, "output": _output_record(dst_dir / p.name)}
            _save_manifest(mpath, manifest)
            res.copies_done += 1
    except DebleedError as e:
        res.error = str(e)
    except (OSError, sf.LibsndfileError, RuntimeError) as e:
        res.error = f"track {job.track!r}: {e}"
    finally:
        res.time_s = time.perf_counter() - t0
    return res


__all__ = ["STEMS", "DEFAULT_PAIR", "DUCK_DEFAULTS", "duck_params", "duck_specs", "StemDucker",
           "compensated_blocks", "duck_arrays", "GainStats", "TrackJob", "TrackResult", "process_track",
           "duck_file", "check_pair", "stem_files", "MANIFEST"]
