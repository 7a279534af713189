"""``debleed train``: train the denoiser (:mod:`debleed.models.train`; needs the train extra)."""

from __future__ import annotations

from debleed.errors import DebleedError


def cmd_train(args) -> int:
    import importlib.util

    missing = [m for m in ("torch", "auraloss", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise DebleedError(f"training needs {', '.join(missing)} (the train extra): run "
                           "`pip install -e '.[train]'` in the venv, or `make train`")
    from debleed.models.train import run_from_args

    return run_from_args(args)


def register(sub) -> None:
    """Add ``train`` to the ``debleed`` subparsers."""
    t = sub.add_parser("train", help="train the denoiser (needs the train extra: make train)")
    from debleed.models.train import add_arguments

    add_arguments(t)
    t.set_defaults(func=cmd_train)
