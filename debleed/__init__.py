"""debleed: real-time drum-mic bleed processor.

Subpackages (one-way imports, ``rt -> models -> dsp``):

- :mod:`debleed.dsp`: numba kernels and processors (envelope follower, gain computer, keys,
  lookahead delay, the chain that runs one block).
- :mod:`debleed.models`: multitrack rendering of real drum one-shots (data for the demo and
  for training).
- :mod:`debleed.rt`: JACK engines (numba cfunc and Python), config loading, the CLI.
"""

from debleed.errors import ConfigError, DebleedError, EngineError, ParameterError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DebleedError", "EngineError", "ParameterError", "__version__"]
