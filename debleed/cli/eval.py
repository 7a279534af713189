"""``debleed eval``: the denoiser against the gates on held-out kits (:mod:`debleed.models.evaluate`)."""

from __future__ import annotations

from pathlib import Path


def cmd_eval(args) -> int:
    from debleed.models.evaluate import evaluate, evaluate_informed, informed_table, markdown_table

    if args.informed:
        res = evaluate_informed(model_path=args.informed, out_dir=args.out, sample_rate=args.rate,
                                kits=args.kits, scenes=args.scenes, seconds=args.seconds, seed=args.seed,
                                baseline_path=args.model, drumgizmo=args.drumgizmo, progress=not args.quiet)
        print(informed_table(res), end="")
        print(f"debleed: wrote {Path(args.out) / 'informed.md'} and informed.json")
        return 0

    res = evaluate(out_dir=args.out, sample_rate=args.rate, kit=args.kit, scenes=args.scenes,
                   seconds=args.seconds, seed=args.seed, model_path=args.model, progress=not args.quiet)
    print(markdown_table(res), end="")
    print(f"debleed: wrote {Path(args.out) / 'eval.md'}, eval.json and mel.png")
    return 0


def register(sub) -> None:
    """Add ``eval`` to the ``debleed`` subparsers."""
    from debleed.models.synth import VALID_KIT

    e = sub.add_parser("eval", help="compare raw, best gate, denoiser and denoiser+gate on the held-out kit")
    e.add_argument("--out", default="eval-out", help="folder for eval.md, eval.json, mel.png (default eval-out)")
    e.add_argument("--rate", type=int, choices=(44100, 48000), default=48000, help="sample rate, Hz")
    e.add_argument("--kit", default=VALID_KIT, help=f"kit: a Hydrogen kit, avldrums:STEM or sonic-pi "
                   f"(default {VALID_KIT!r}, held out of training)")
    e.add_argument("--scenes", type=int, default=4, help="scenes per scenario (default 4)")
    e.add_argument("--seconds", type=float, default=10.0, help="length of each scene, s (default 10)")
    e.add_argument("--seed", type=int, default=1000, help="scene seed (default 1000)")
    e.add_argument("--model", default=None, help="ONNX model (default: the shipped one for --rate)")
    e.add_argument("--informed", default=None, metavar="MODEL",
                   help="instead: evaluate this informed ONNX model (reference mics and key) on the held-out "
                        "kits, studio and loud stage, mic only / with key / with key and refs, against --model "
                        "(default the shipped one), the key gate and the oracle mask")
    e.add_argument("--kits", nargs="+", default=None, help="with --informed: kits (default: every held-out kit)")
    e.add_argument("--drumgizmo", default=None, metavar="PATH",
                   help="with --informed: also evaluate on this DrumGizmo kit (its folder or drumkit.xml), a real "
                        "multi-mic recording (default: the first kit found in /usr/share/drumgizmo, if any)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)
