"""``debleed denoise``, ``debleed eval`` and ``debleed train``."""

from __future__ import annotations

from pathlib import Path

from debleed.fileio import atomic_path
from debleed.errors import DebleedError, ParameterError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".w64", ".caf")


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def denoise_file(src: Path, dst: Path, denoiser, block: int) -> None:
    """Denoise one audio file into ``dst`` (same rate, length, channels, subtype), atomically."""
    import soundfile as sf

    from debleed.models.denoiser import denoise_signal

    try:
        info = sf.info(str(src))
        x, sr = sf.read(str(src), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise DebleedError(f"cannot read audio file {src}: {e}") from None
    y = denoise_signal(x, sr, denoiser=denoiser, block=block)
    with atomic_path(dst) as tmp:
        sf.write(str(tmp), y, sr, subtype=info.subtype, format=info.format)


def cmd_denoise(args) -> int:
    from tqdm import tqdm

    from debleed.models.denoiser import Denoiser

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise DebleedError(f"input {src} does not exist (give an audio file or a folder of them)")
    if not 16 <= args.block <= 8192:
        raise ParameterError(f"--block must be 16 to 8192 frames, got {args.block}")
    if src.is_dir():
        files = _audio_files(src)
        if not files:
            raise DebleedError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in folder {src}")
        if dst.exists() and not dst.is_dir():
            raise DebleedError(f"output {dst} is a file; the input is a folder, so give a folder")
        pairs = [(f, dst / f.name) for f in files]
    else:
        pairs = [(src, dst / src.name if dst.is_dir() else dst)]
    for s, d in pairs:
        if d.exists() and d.resolve() == s.resolve():
            raise DebleedError(f"output {d} is the input file; refusing to overwrite an input")
    den = Denoiser(args.model, providers=args.providers)
    for s, d in tqdm(pairs, desc="denoise", unit="file", disable=args.quiet or len(pairs) == 1 and not args.progress):
        denoise_file(s, d, den, args.block)
    if not args.quiet:
        print(f"debleed: denoised {len(pairs)} file(s) into {dst} (latency compensated)")
    return 0


def cmd_eval(args) -> int:
    from debleed.models.evaluate import evaluate, markdown_table

    res = evaluate(out_dir=args.out, sample_rate=args.rate, kit=args.kit, scenes=args.scenes,
                   seconds=args.seconds, seed=args.seed, model_path=args.model, progress=not args.quiet)
    print(markdown_table(res), end="")
    print(f"debleed: wrote {Path(args.out) / 'eval.md'}, eval.json and mel.png")
    return 0


def cmd_train(args) -> int:
    import importlib.util

    missing = [m for m in ("torch", "auraloss", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise DebleedError(f"training needs {', '.join(missing)} (the train extra): run "
                           "`pip install -e '.[train]'` in the venv, or `make train`")
    from debleed.models.train import run_from_args

    return run_from_args(args)


def register(sub) -> None:
    """Add ``denoise``, ``eval`` and ``train`` to the ``debleed`` subparsers."""
    from debleed.models.synth import VALID_KIT

    p = sub.add_parser("denoise", help="remove bleed from snare-mic files with the neural denoiser")
    p.add_argument("-i", "--input", required=True, help="audio file or folder of audio files")
    p.add_argument("-o", "--output", required=True, help="output file, or folder (created if needed)")
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped one for 44.1/48 kHz; "
                   "other rates are resampled to 48 kHz and back)")
    p.add_argument("--providers", nargs="+", default=None, metavar="PROVIDER",
                   help="onnxruntime providers (default CPUExecutionProvider; e.g. CUDAExecutionProvider)")
    p.add_argument("--block", type=int, default=1024, help="processing block, frames (default 1024)")
    p.add_argument("--progress", action="store_true", help="progress bar even for a single file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_denoise)

    e = sub.add_parser("eval", help="compare raw, best gate, denoiser and denoiser+gate on the held-out kit")
    e.add_argument("--out", default="eval-out", help="folder for eval.md, eval.json, mel.png (default eval-out)")
    e.add_argument("--rate", type=int, choices=(44100, 48000), default=48000, help="sample rate, Hz")
    e.add_argument("--kit", default=VALID_KIT, help=f"kit: a Hydrogen kit, avldrums:STEM or sonic-pi "
                   f"(default {VALID_KIT!r}, held out of training)")
    e.add_argument("--scenes", type=int, default=4, help="scenes per scenario (default 4)")
    e.add_argument("--seconds", type=float, default=10.0, help="length of each scene, s (default 10)")
    e.add_argument("--seed", type=int, default=1000, help="scene seed (default 1000)")
    e.add_argument("--model", default=None, help="ONNX model (default: the shipped one for --rate)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    t = sub.add_parser("train", help="train the denoiser (needs the train extra: make train)")
    from debleed.models.train import add_arguments

    add_arguments(t)
    t.set_defaults(func=cmd_train)
