"""DSP kernels and processors (numpy and numba only; no I/O).

Arrays are ``(n_channels, n_frames)`` float32, C-contiguous: one JACK port is one row.
"""

from debleed.dsp.chain import Chain, ChannelSpec, run_block
from debleed.dsp.delay import LookaheadDelay
from debleed.dsp.envelope import EnvelopeFollower
from debleed.dsp.gain import GainComputer
from debleed.dsp.keys import KeyFilter, MidiKey, TriggerDetector
from debleed.dsp.units import coef_to_ms, db_to_lin, lin_to_db, ms_to_coef, ms_to_samples

__all__ = [
    "Chain", "ChannelSpec", "EnvelopeFollower", "GainComputer", "KeyFilter", "LookaheadDelay",
    "MidiKey", "TriggerDetector", "coef_to_ms", "db_to_lin", "lin_to_db", "ms_to_coef",
    "ms_to_samples", "run_block",
]
