"""``debleed clean-stems``: duck separated drum stems by each other, a batch of track folders.

The audio runs through :class:`debleed.dsp.chain.Chain` (the same
:func:`~debleed.dsp.chain.run_block` as ``debleed live``); the work lives in
:mod:`debleed.offline.stems`. This module holds the command line, the worker pool, the progress
bar and the summary table.
"""

from __future__ import annotations

import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from debleed.dsp.params import PARAMS
from debleed.errors import DebleedError, ParameterError
from debleed.rt.server import pid_alive

_STEM = re.compile(r"^[A-Za-z0-9_.]+$")

CLEAN_HELP = """\
Duck a target stem wherever a key stem hits (sidechain cleanup of separated drum stems).

Input layout: INPUT/<track>/<track>-<stem>.wav (stems kick, snare, toms, hihat, cymbals); every
track folder is processed, one worker process per track. Each --pair KEY:TARGET writes
OUTPUT/<track>/<track>-<TARGET>.wav ducked by the key stem; every other stem is copied
unchanged. Sample rate, channel count, length, format and subtype (PCM_16, PCM_24, FLOAT, ...)
are kept. Stereo: one gain for all channels of the target, from the max over the key's
channels. The lookahead is compensated: the ducked stem is time-aligned with the input and
exactly as long (the tail is rendered with zeros and the first lookahead samples dropped).

Parameters are kept in OUTPUT/<track>/.debleed-params.json; a re-run skips outputs already
written from the same inputs with the same parameters, whose size, length and format are still
what was written, and redoes the others, so an interrupted batch resumes where it stopped. Outputs are written to a temporary file and
renamed: no half-written file ever appears under a final name.
"""



_STOP = None  # multiprocessing.Event in worker processes: set when the batch is interrupted
#: How often a worker checks that the process that started it is still alive, s.
PARENT_CHECK_S = 0.5


def _init_worker(stop, parent_pid: int) -> None:
    """Worker initializer: remember the stop flag, and die with the process that made the pool.

    A worker forked by that process gets SIGTERM when it dies (``PR_SET_PDEATHSIG``, Linux),
    whatever killed it (SIGKILL included); a watchdog thread also ends the worker within
    :data:`PARENT_CHECK_S` once that process is gone, which covers the start-up race, start
    methods where the pool's process is not the parent (forkserver) and other systems. A killed
    worker leaves at most a temporary file, never a half-written output.
    """
    global _STOP
    _STOP = stop
    import threading

    if sys.platform.startswith("linux") and os.getppid() == parent_pid:
        import ctypes
        import ctypes.util
        import signal

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    if not pid_alive(parent_pid):  # it died before the line above
        os._exit(1)

    def watchdog():
        while True:
            time.sleep(PARENT_CHECK_S)
            if not pid_alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watchdog, name="debleed-parent-watchdog", daemon=True).start()


def _run_track(job):
    """Worker entry: process one track unless the batch was interrupted meanwhile."""
    if _STOP is not None and _STOP.is_set():
        return None
    from debleed.offline.stems import process_track

    return process_track(job)


def _pair(text: str) -> tuple[str, str]:
    key, sep, target = text.partition(":")
    if not sep or not _STEM.match(key) or not _STEM.match(target):
        raise ParameterError(f"--pair must be KEY:TARGET with stem names (e.g. snare:kick), got {text!r}")
    if key == target:
        raise ParameterError(f"--pair {text!r}: key and target must be different stems")
    return key, target


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        out.append("  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(out)


def summary_table(results) -> str:
    """The per-track summary of ``clean-stems`` (one row per pair of each track)."""
    rows = [["track", "pair", "GR median", "GR max", "ducking", "copies", "time", "status"]]
    for r in sorted(results, key=lambda r: r.track):
        copies = f"{r.copies_done}+{r.copies_skipped}s" if r.copies_skipped else str(r.copies_done)
        if r.error or r.skipped:
            rows.append([r.track, "-", "-", "-", "-", "-", f"{r.time_s:.2f} s", "error" if r.error else "skipped"])
            continue
        for p in r.pairs:
            s = p.get("stats") or {}
            rows.append([r.track, f"{p['key']}>{p['target']}",
                         f"{s.get('median_active_db', float('nan')):.1f} dB", f"{s.get('max_db', float('nan')):.1f} dB",
                         f"{s.get('active_percent', float('nan')):.1f} %", copies, f"{r.time_s:.2f} s",
                         "done" if p["status"] == "done" else "up to date"])
    return _table(rows, right={2, 3, 4, 5, 6})


#: clean-stems flag of each ducking parameter (the long form; from the parameter table).
_DUCK_FLAGS = {n: p.flag.split(",")[0] for n, p in PARAMS.items() if p.flag}


def cmd_clean_stems(args) -> int:
    from tqdm import tqdm

    from debleed.offline.audiofile import check_output_dir
    from debleed.offline.stems import DEFAULT_PAIR, TrackJob, duck_params, process_track

    src, dst = check_output_dir(args.input, args.output, what="input")
    pairs = [_pair(p) for p in args.pair] if args.pair else [DEFAULT_PAIR]
    targets = [t for _, t in pairs]
    dup = sorted({t for t in targets if targets.count(t) > 1})
    if dup:
        raise ParameterError(f"--pair: target stem(s) {', '.join(dup)} given more than once; each target "
                             "can be ducked by one key")
    try:
        params = duck_params(args.preset, **{name: getattr(args, name) for name in _DUCK_FLAGS})
    except ParameterError as e:  # name the flag the user typed, not the internal channel
        msg = re.sub(r"^channel '[^']*': ", "", str(e))
        for key, flag in _DUCK_FLAGS.items():
            msg = re.sub(rf"\b{key}\b", f"{flag} ({key})", msg)
        raise ParameterError(msg) from None
    if not 1 <= args.block <= 16384:
        raise ParameterError(f"--block must be in [1, 16384] frames, got {args.block}")
    tracks = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not tracks:
        raise DebleedError(f"no track folders in {args.input} (expected {args.input}/<track>/<track>-<stem>.wav)")
    from debleed.offline.stems import stem_files

    found = set()
    for t in tracks:
        found |= set(stem_files(src / t, t))
    absent = [s for pair in pairs for s in pair if s not in found]
    if absent:
        raise ParameterError(f"--pair names stem(s) {', '.join(dict.fromkeys(absent))} that no track has (stems found: "
                             f"{', '.join(sorted(found)) or 'none'}; files are INPUT/<track>/<track>-<stem>.wav)")
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise ParameterError(f"--jobs must be >= 1, got {jobs}")
    jobs = min(jobs, len(tracks))
    work = [TrackJob(track=t, in_dir=src, out_dir=dst, pairs=pairs, params=params, block=args.block) for t in tracks]
    desc = ", ".join(f"{k}>{t}" for k, t in pairs)
    print(f"clean-stems: {len(tracks)} track(s) in {args.input}, pairs {desc}, {jobs} job(s); parameters: "
          + ", ".join(f"{k}={v:g}" for k, v in sorted(params.items())), flush=True)
    results = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(work), unit="track", desc="clean-stems", file=sys.stderr, disable=args.quiet or None)

    def done(res):
        if res is None:   # not started: the batch was interrupted
            return
        results.append(res)
        for w in res.warnings:
            bar.write(f"debleed: warning: {w}", file=sys.stderr)
        if res.error:
            bar.write(f"debleed: error: {res.error}", file=sys.stderr)
        bar.update(1)

    try:
        if jobs == 1:
            for job in work:
                done(process_track(job))
        else:
            import multiprocessing

            stop = multiprocessing.get_context().Event()
            with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                                     initargs=(stop, os.getpid())) as pool:
                futures = [pool.submit(_run_track, job) for job in work]
                try:
                    for f in as_completed(futures):
                        done(f.result())
                except KeyboardInterrupt:
                    # queued tracks are not started; a track in progress stops at Ctrl-C (its
                    # worker got the signal too) or, when only this process was signalled, ends
                    stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                except BrokenProcessPool as e:
                    raise DebleedError(f"a worker process died ({e}); finished outputs are kept: run the "
                                       "same command again to resume (with fewer --jobs if memory ran out)") from None
    except KeyboardInterrupt:
        bar.close()
        print("debleed: interrupted; finished outputs are kept: run the same command again to resume",
              file=sys.stderr)
        return 130
    bar.close()
    wall = time.perf_counter() - t0
    print()
    print(summary_table(results))
    audio = sum(r.audio_s for r in results)
    n_done = sum(1 for r in results for p in r.pairs if p["status"] == "done")
    n_skip = sum(1 for r in results for p in r.pairs if p["status"] == "skipped")
    print(f"\nbatch: {n_done} stem(s) cleaned, {n_skip} up to date (skipped), "
          f"{sum(r.copies_done for r in results)} copied, {sum(r.copies_skipped for r in results)} copies up to date")
    if audio > 0:
        print(f"batch: {audio:.1f} s of audio in {wall:.2f} s wall with {jobs} job(s): {audio / wall:.1f}x real "
              f"time (real-time factor {wall / audio:.4f})")
    else:
        print(f"batch: nothing to process ({wall:.2f} s)")
    failed = [r for r in results if r.error]
    skipped = [r for r in results if r.skipped]
    if skipped:
        print(f"skipped (missing stems): {', '.join(sorted(r.track for r in skipped))}")
    if failed:
        print(f"debleed: error: {len(failed)} track(s) failed, nothing written for them: "
              f"{', '.join(sorted(r.track for r in failed))} (see the messages above)", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    """Add ``clean-stems`` to the ``debleed`` command line."""
    import argparse

    from debleed.rt.config import load_presets
    from debleed.offline.stems import DUCK_DEFAULTS

    d = DUCK_DEFAULTS
    p = subparsers.add_parser("clean-stems", help="duck a target stem wherever a key stem hits (stem cleanup)",
                              description=CLEAN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, metavar="DIR", help="folder of track folders (INPUT/<track>/<track>-<stem>.wav)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (not inside the input folder)")
    p.add_argument("--pair", action="append", metavar="KEY:TARGET",
                   help="key stem ducks target stem; repeatable (default snare:kick)")
    p.add_argument("--preset", choices=tuple(load_presets()),
                   help="start from a preset (configs/presets.toml); explicit flags override it")
    for name, flag in _DUCK_FLAGS.items():  # one flag per parameter of the table that has one
        par = PARAMS[name]
        flags = par.flag.split(",")[::-1] if "," in par.flag else [par.flag]
        unit = f", {par.unit}" if par.unit else ""
        p.add_argument(*flags, dest=name, type=float, metavar=(par.unit or "VALUE").upper().replace("DBFS", "DB"),
                       help=f"{par.doc}{unit}, {par.range_text()} (default {d[name]:g})".replace("%", "%%"))
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="worker processes, one track each (default: all cores)")
    p.add_argument("--block", type=int, default=4096, metavar="FRAMES",
                   help="frames per chain call, 1-16384 (default 4096; the output does not depend on it)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_clean_stems)
