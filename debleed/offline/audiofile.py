"""File helpers for the offline commands: read audio with clear errors, write atomically.

Every output goes through :func:`atomic_output`: the bytes are written to a hidden temporary
file in the destination folder (``.<name>.<pid>.debleed-tmp``), flushed to disk, and renamed
over the final name with :func:`os.replace`. A reader (or an interrupted batch) therefore never
sees a half-written file under a final name; a crash leaves at most a temporary file, which
:func:`remove_stale_tmp` deletes on the next run.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from debleed.errors import DebleedError

from debleed.fileio import TMP_SUFFIX, atomic_output, atomic_path  # noqa: F401  (re-exported for the offline commands)


def remove_stale_tmp(folder) -> int:
    """Delete temporary files an interrupted run left in ``folder``; returns how many."""
    n = 0
    for p in Path(folder).glob(f".*{TMP_SUFFIX}*"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


def wav_missing_frames(path) -> tuple[int, int] | None:
    """``(frames the header declares, frames present)`` of a RIFF/WAVE file whose data chunk is
    shorter than its header says, else None (not a WAV, or complete).

    libsndfile quietly corrects a truncated file's frame count from its size, so a cut-off
    file would read as a shorter recording; the header's own data-chunk size tells.
    """
    import struct

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            align, pos = None, 12
            while pos + 8 <= size:
                fh.seek(pos)
                cid, n = struct.unpack("<4sI", fh.read(8))
                if cid == b"fmt ":
                    fmt = fh.read(16)
                    if len(fmt) >= 14:
                        align = struct.unpack_from("<H", fmt, 12)[0]
                elif cid == b"data":
                    if not align or n in (0, 0xFFFFFFFF):  # unknown layout, or a streamed header
                        return None
                    present = max(size - pos - 8, 0)
                    return (n // align, present // align) if n > present else None
                pos += 8 + n + (n & 1)
    except (OSError, struct.error):
        return None
    return None


def audio_info(path):
    """``soundfile.info`` of ``path``.

    Raises
    ------
    DebleedError
        If the file is missing or not a readable audio file (the message names the path).
    """
    path = Path(path)
    try:
        info = sf.info(str(path))
        missing = wav_missing_frames(path)
        if missing:
            declared, present = missing
            raise DebleedError(f"{path}: truncated WAV: its header says {declared} frames but the file holds "
                               f"{present} ({declared - present} frames missing); re-export or copy it again")
        return info
    except FileNotFoundError:
        raise DebleedError(f"{path}: file not found") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise DebleedError(f"{path}: cannot read this audio file ({e}); "
                           "check that it is a complete WAV file, or move it out of the folder") from None


def read_audio(path) -> tuple[np.ndarray, int]:
    """Read a whole audio file.

    Returns
    -------
    data : ndarray, float32, shape (n_channels, n_frames)
    sample_rate : int
        Hz.

    Raises
    ------
    DebleedError
        If the file is missing or unreadable (names the path).
    """
    path = Path(path)
    audio_info(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise DebleedError(f"{path}: cannot read this audio file ({e})") from None
    return np.ascontiguousarray(data.T), int(sr)


def write_audio(path, data: np.ndarray, sample_rate: int, *, subtype: str = "FLOAT",
                format: str = "WAV") -> None:
    """Write ``data`` (float32, shape (n_channels, n_frames)) to ``path`` atomically.

    soundfile writes to a file name, not a Python file object: a write error then comes back as
    an exception (through a file object, libsndfile's callback would print it and go on).

    Raises
    ------
    FileError
        If the file cannot be written (full disk, ...), naming it and the cause.
    """
    with atomic_path(path, keep_suffix=False) as tmp:
        sf.write(str(tmp), np.ascontiguousarray(np.asarray(data, np.float32).T), int(sample_rate),
                 subtype=subtype, format=format)


def copy_atomic(src, dst) -> None:
    """Copy the bytes of ``src`` to ``dst`` through a temporary file and a rename."""
    with open(src, "rb") as fin, atomic_output(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def file_signature(path) -> dict:
    """``{"name", "size", "mtime_ns"}`` of ``path``: changes when the file is replaced or edited."""
    st = Path(path).stat()
    return {"name": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def check_output_dir(input_dir, output_dir, *, what: str = "input") -> tuple[Path, Path]:
    """Resolve both folders and refuse an output folder that is, or is inside, the input folder.

    Returns
    -------
    (input_dir, output_dir) : resolved paths

    Raises
    ------
    DebleedError
        If the input folder does not exist, or the output folder equals it or lies inside it.
    """
    src = Path(input_dir).expanduser().resolve()
    dst = Path(output_dir).expanduser().resolve()
    if not src.is_dir():
        raise DebleedError(f"{what} folder {input_dir} does not exist or is not a folder")
    if dst == src:
        raise DebleedError(f"output folder {output_dir} is the {what} folder: outputs could overwrite "
                           "inputs; choose another output folder (e.g. a sibling folder)")
    if src in dst.parents:
        raise DebleedError(f"output folder {output_dir} is inside the {what} folder {input_dir}: its "
                           "files would be read as inputs on the next run; choose a folder outside it")
    return src, dst
