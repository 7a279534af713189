"""The soundcheck: learn a kit, its room and its mics from a line check (see :mod:`debleed.soundcheck.hits`)."""

from debleed.soundcheck.hits import *  # noqa: F401,F403 (the split into one module per step follows)
from debleed.soundcheck.hits import run_soundcheck  # noqa: F401
