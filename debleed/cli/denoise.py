"""``debleed denoise``: the snare denoiser over audio files (onnxruntime, batch)."""

from __future__ import annotations

from pathlib import Path

from debleed.fileio import atomic_path
from debleed.errors import DebleedError, ParameterError

#: Output container per file suffix (libsndfile major formats).
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aif": "AIFF", ".aiff": "AIFF", ".w64": "W64",
           ".caf": "CAF"}
AUDIO_SUFFIXES = tuple(FORMATS)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def output_format(src_info, dst: Path) -> tuple[str, str]:
    """``(format, subtype)`` to write ``dst``: the container its suffix names, with the input's
    sample format (``src_info``: :func:`soundfile.info` of the input).

    Raises
    ------
    DebleedError
        ``dst`` has no audio suffix, or its container cannot hold the input's sample format
        (e.g. 32-bit float into FLAC); nothing is written.
    """
    import soundfile as sf

    fmt = FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise DebleedError(f"output {dst}: unknown audio suffix {dst.suffix!r} (allowed: {', '.join(AUDIO_SUFFIXES)})")
    if not sf.check_format(fmt, src_info.subtype):
        raise DebleedError(f"output {dst}: a {fmt} file cannot hold the input's {src_info.subtype} samples; "
                           f"give an output with the input's suffix, or one of .wav, .w64, .caf")
    return fmt, src_info.subtype


def denoise_file(src: Path, dst: Path, denoiser, block: int, limit_db: float = -100.0, mix: float = 1.0) -> None:
    """Denoise one audio file into ``dst`` atomically: same rate, length, channels and sample
    format as ``src``, in the container ``dst``'s suffix names.

    Raises
    ------
    DebleedError
        ``src`` unreadable (names the path), or ``dst``'s container cannot hold the input's
        sample format (see :func:`output_format`); ``dst`` is then not touched.
    """
    import soundfile as sf

    from debleed.models.denoiser import denoise_signal

    from debleed.offline.audiofile import audio_info

    info = audio_info(src)  # names the path; a truncated WAV says how many frames are missing
    try:
        x, sr = sf.read(str(src), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise DebleedError(f"cannot read audio file {src}: {e}") from None
    fmt, subtype = output_format(info, dst)
    y = denoise_signal(x, sr, denoiser=denoiser, block=block, limit_db=limit_db, mix=mix)
    with atomic_path(dst) as tmp:
        sf.write(str(tmp), y, sr, subtype=subtype, format=fmt)


def _is_folder_arg(arg: str, path: Path) -> bool:
    """An ``-o`` naming a folder: one that exists, ends with a separator, or has no suffix."""
    import os

    return path.is_dir() or arg.endswith((os.sep, "/")) or path.suffix == ""


def cmd_denoise(args) -> int:
    import soundfile as sf
    from tqdm import tqdm

    from debleed.models.denoiser import Denoiser

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise DebleedError(f"input {src} does not exist (give an audio file or a folder of them)")
    if not 16 <= args.block <= 8192:
        raise ParameterError(f"--block must be 16 to 8192 frames, got {args.block}")
    from debleed.models.denoiser import limit_mix_gain

    try:
        limit_mix_gain(args.limit_db, args.mix)
    except ParameterError as e:
        raise ParameterError(str(e).replace("denoise_limit_db", "--limit-db").replace("denoise_mix", "--mix")) from None
    if src.is_dir():
        files = _audio_files(src)
        if not files:
            raise DebleedError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in folder {src}")
        if dst.exists() and not dst.is_dir():
            raise DebleedError(f"output {dst} is a file; the input is a folder, so give a folder")
        pairs = [(f, dst / f.name) for f in files]
    else:
        pairs = [(src, dst / src.name if _is_folder_arg(str(args.output), dst) else dst)]
    for s, d in pairs:
        if d.exists() and d.resolve() == s.resolve():
            raise DebleedError(f"output {d} is the input file; refusing to overwrite an input")
        if not src.is_dir():
            try:
                output_format(sf.info(str(s)), d)
            except (RuntimeError, sf.LibsndfileError) as e:
                raise DebleedError(f"cannot read audio file {s}: {e}") from None
    den = Denoiser(args.model, providers=args.providers)
    for s, d in tqdm(pairs, desc="denoise", unit="file", disable=args.quiet or len(pairs) == 1 and not args.progress):
        denoise_file(s, d, den, args.block, args.limit_db, args.mix)
    if not args.quiet:
        print(f"debleed: denoised {len(pairs)} file(s) into {dst} (latency compensated)")
    return 0


def register(sub) -> None:
    """Add ``denoise`` to the ``debleed`` subparsers."""
    p = sub.add_parser("denoise", help="remove bleed from snare-mic files with the neural denoiser")
    p.add_argument("-i", "--input", required=True, help="audio file or folder of audio files")
    p.add_argument("-o", "--output", required=True,
                   help="output file (its suffix picks the container), or folder: one that exists, ends with '/' "
                        "or has no suffix (created if needed)")
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped one for 44.1/48 kHz; "
                   "other rates are resampled to 48 kHz and back; a given model's rate otherwise)")
    p.add_argument("--providers", nargs="+", default=None, metavar="PROVIDER",
                   help="onnxruntime providers (default CPUExecutionProvider; e.g. CUDAExecutionProvider)")
    p.add_argument("--block", type=int, default=1024, help="processing block, frames (default 1024)")
    from debleed.dsp.params import PARAMS

    lim, mix = PARAMS["denoise_limit_db"].default, PARAMS["denoise_mix"].default
    p.add_argument("--limit-db", type=float, default=lim, metavar="DB",
                   help=f"attenuation limit, dB, -100 (none) to 0 (default {lim:g}, as a live channel's "
                        "denoise_limit_db)")
    p.add_argument("--mix", type=float, default=mix, help=f"denoised share, 0 to 1 (default {mix:g}; denoise_mix)")
    p.add_argument("--progress", action="store_true", help="progress bar even for a single file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_denoise)
