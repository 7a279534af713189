"""Atomic file writes and strict JSON, for every layer of debleed (imports only :mod:`debleed.errors`).

An output is written to a hidden temporary file in its destination folder
(``.<name>.<pid>.debleed-tmp``, plus the real suffix where a writer picks its format from the
name), flushed to disk, and renamed over the final name with :func:`os.replace`. A reader, or an
interrupted run, never sees a half-written file under a final name; a crash leaves at most a
temporary file, which :func:`debleed.offline.audiofile.remove_stale_tmp` deletes on the next run.

A write that fails (a full disk, a folder that cannot be created because a file has its name,
no permission) raises :class:`~debleed.errors.FileError` naming the output and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
from pathlib import Path

import numpy as np

from debleed.errors import DebleedError, FileError

TMP_SUFFIX = ".debleed-tmp"
#: Below this many free bytes a writer's short write is taken for a full disk.
_FULL_BYTES = 1 << 20


def os_error_text(e: OSError) -> str:
    """``<path>: <cause>`` for an :class:`OSError` (a file in the way of a folder said so)."""
    cause = e.strerror or str(e)
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        cause += " (a file is where a folder is needed)"
    elif e.errno == errno.EISDIR:
        cause += " (a folder is where a file is needed)"
    name = e.filename if e.filename is not None else None
    if e.filename2 is not None:
        name = f"{e.filename} -> {e.filename2}"
    return f"{name}: {cause}" if name is not None else cause


def write_error(path: Path, e: BaseException) -> FileError | None:
    """The :class:`FileError` for an exception raised while writing ``path``, or None when it is
    not a file error (then it is re-raised as it is).

    soundfile reports a short write (a full disk) as an ``AssertionError`` or ``RuntimeError``;
    those count as file errors only when the disk is indeed (nearly) full.
    """
    if isinstance(e, OSError):
        cause = e.strerror or str(e)
        if e.errno in (errno.EEXIST, errno.ENOTDIR):
            cause += f" ({e.filename} is a file where a folder is needed)"
        elif e.errno == errno.EISDIR:
            cause += " (a folder is where the file should go)"
        return FileError(f"cannot write {path}: {cause}")
    if isinstance(e, (AssertionError, RuntimeError)):
        with contextlib.suppress(OSError):
            if shutil.disk_usage(Path(path).parent).free < _FULL_BYTES:
                return FileError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
    return None


def tmp_path(path: Path, keep_suffix: bool = False) -> Path:
    """The temporary name for ``path`` (hidden, in the same folder, tagged with the pid)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}" + (path.suffix if keep_suffix else ""))


@contextlib.contextmanager
def atomic_path(path, keep_suffix: bool = True):
    """Yield a temporary path with ``path``'s suffix; on success rename it to ``path``.

    An existing ``path`` is replaced with its permission bits kept.

    For writers that take a file name (soundfile, numpy, torch, matplotlib). On an exception the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    if path.is_dir():
        raise FileError(f"cannot write {path}: it is a folder")
    tmp = tmp_path(path, keep_suffix=keep_suffix)
    try:
        mode = path.stat().st_mode & 0o7777  # a replaced file keeps its permissions (0600, 0444, ...)
    except OSError:
        mode = None
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        err = None if isinstance(e, DebleedError) else write_error(path, e) if isinstance(e, Exception) else None
        if err is not None:
            raise err from None
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
