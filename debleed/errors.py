"""The one exception family of debleed.

Every message names what was wrong, the value, and what is allowed, e.g.
``channel 'kick': key 'trigger:snare_trig' names no input (defined: kick, snare)``.
"""


class DebleedError(Exception):
    """Base class of every error debleed raises on purpose."""


class ParameterError(DebleedError, ValueError):
    """A processor parameter is out of its valid range (also a ``ValueError``)."""


class ConfigError(DebleedError):
    """A gig config (TOML) is unreadable or invalid."""


class EngineError(DebleedError):
    """The audio engine could not start or lost its server."""


class FileError(DebleedError):
    """A file or folder could not be read or written (the message names the path and the cause)."""
    exit_status = 1
