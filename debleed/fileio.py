"""Atomic file writes and strict JSON, for every layer of debleed (imports nothing of the project).

An output is written to a hidden temporary file in its destination folder
(``.<name>.<pid>.debleed-tmp``, plus the real suffix where a writer picks its format from the
name), flushed to disk, and renamed over the final name with :func:`os.replace`. A reader, or an
interrupted run, never sees a half-written file under a final name; a crash leaves at most a
temporary file, which :func:`debleed.offline.audiofile.remove_stale_tmp` deletes on the next run.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np

TMP_SUFFIX = ".debleed-tmp"


def tmp_path(path: Path, keep_suffix: bool = False) -> Path:
    """The temporary name for ``path`` (hidden, in the same folder, tagged with the pid)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}" + (path.suffix if keep_suffix else ""))


@contextlib.contextmanager
def atomic_path(path, keep_suffix: bool = True):
    """Yield a temporary path with ``path``'s suffix; on success rename it to ``path``.

    For writers that take a file name (soundfile, numpy, torch, matplotlib). On an exception the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_output(path):
    """Open a binary temporary file beside ``path``; on success rename it to ``path``.

    Yields
    ------
    file object
        Opened ``"wb"``. On an exception the temporary file is removed and ``path`` is untouched.
    """
    with atomic_path(path, keep_suffix=False) as tmp, open(tmp, "wb") as fh:
        yield fh


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as fh:
        fh.write(text.encode())


def jsonable(obj):
    """``obj`` with non-finite floats as strings ("inf", "-inf", "nan"), so it is strict JSON."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
