"""Fixtures for the denoiser tests."""

import importlib
import importlib.util
import subprocess
import sys

import pytest

TRAIN_PACKAGES = ("torch==2.13.0", "auraloss>=0.4", "onnx>=1.15", "pyroomacoustics>=0.7")


@pytest.fixture(scope="session")
def torch_installed():
    """Make sure the CPU torch and the rest of the train extra are importable.

    Installs them into the running venv with pip when missing (``torch==2.13.0`` is the CPU
    build; never a bare ``torch``, which pulls a multi-GB CUDA build).
    """
    missing = [p for p, m in zip(TRAIN_PACKAGES, ("torch", "auraloss", "onnx", "pyroomacoustics"))
               if importlib.util.find_spec(m) is None]
    if missing:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.fail(f"could not install {missing} into {sys.prefix}: {r.stderr[-2000:]}")
        importlib.invalidate_caches()
    import torch

    torch.set_num_threads(1)
    return torch
