"""The processor contract every audio processor of debleed follows.

A processor is built with its parameters in user units (keyword-only, checked against
:data:`debleed.dsp.params.PARAMS`), then prepared once with a :class:`ProcessSpec` (sample rate,
largest block, channel count), which computes coefficients and allocates every buffer; then its
``process`` runs block after block with no allocation, and ``reset`` clears its state. The
shape follows JUCE's ``dsp::ProcessSpec`` / ``prepare`` / ``reset`` and pedalboard's ``Plugin``
(``reset``, ``latency``): one contract for the dsp processors, the :class:`~debleed.dsp.chain.Chain`
and the denoisers of :mod:`debleed.models`.

Example
-------
>>> from debleed.dsp.envelope import EnvelopeFollower
>>> env = EnvelopeFollower(attack_ms=1.0)
>>> env.prepare(ProcessSpec(sample_rate=48000, max_block=256, n_channels=2))
>>> env.sample_rate, env.max_block, env.n_channels, env.latency_samples
(48000.0, 256, 2, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

from debleed.dsp._common import MAX_BLOCK, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_int, check_range
from debleed.errors import DebleedError, ParameterError


@dataclass(frozen=True)
class ProcessSpec:
    """What a processor is prepared for.

    Attributes
    ----------
    sample_rate : float
        Hz, in [8000, 384000] (an int is stored as float).
    max_block : int
        Largest block ``process`` will be given, frames, in [1, 1048576]. Only allocation reads
        it; the JACK period is ``period_frames`` (:mod:`debleed.rt`), which may be smaller.
    n_channels : int
        Channels (rows of the arrays ``process`` takes), >= 1; default 1.

    Raises
    ------
    ParameterError
        Naming the field, the value and the allowed range.
    """

    sample_rate: float
    max_block: int
    n_channels: int = 1

    def __post_init__(self):
        object.__setattr__(self, "sample_rate",
                           check_range("sample_rate", self.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE))
        object.__setattr__(self, "max_block", check_int("max_block", self.max_block, 1, MAX_BLOCK))
        object.__setattr__(self, "n_channels", check_int("n_channels", self.n_channels, 1))


class Processor:
    """Base of every processor: ``prepare(spec)``, ``reset()``, ``latency_samples``.

    A subclass implements :meth:`_allocate` (coefficients and buffers for a spec) and, if its
    state is not all zeros when fresh, :meth:`_clear`; it lists its state arrays in
    :meth:`state_arrays` (the default ``_clear`` zeroes them). ``sample_rate``, ``max_block``
    and ``n_channels`` read the spec it was prepared with.

    Raises
    ------
    ParameterError
        From :meth:`prepare` if ``spec`` is not a :class:`ProcessSpec` or the processor cannot
        take it (a subclass's :meth:`_allocate` names why).
    DebleedError
        From :meth:`reset` (and a subclass's ``process``) before :meth:`prepare`.
    """

    spec: ProcessSpec | None = None

    @property
    def sample_rate(self) -> float | None:
        """Hz, after prepare (None before)."""
        return self.spec.sample_rate if self.spec else None

    @property
    def max_block(self) -> int:
        """Largest block, frames, after prepare (0 before)."""
        return self.spec.max_block if self.spec else 0

    @property
    def n_channels(self) -> int:
        """Channels, after prepare (0 before)."""
        return self.spec.n_channels if self.spec else 0

    @property
    def latency_samples(self) -> int:
        """Latency the processor adds, samples: 0 unless a subclass says otherwise."""
        return 0

    def prepare(self, spec: ProcessSpec) -> None:
        """Compute coefficients and allocate every buffer for ``spec``; the state is fresh after.

        Raises
        ------
        ParameterError
            If ``spec`` is not a :class:`ProcessSpec`, or the processor cannot run with it;
            the processor is then unprepared.
        """
        if not isinstance(spec, ProcessSpec):
            raise ParameterError(f"{type(self).__name__}.prepare takes a ProcessSpec(sample_rate, max_block, "
                                 f"n_channels), got {spec!r}")
        self.spec = spec  # _allocate may read it through sample_rate, max_block, n_channels
        try:
            self._allocate(spec)
        except BaseException:
            self.spec = None  # a failed prepare leaves the processor unprepared, never half-prepared
            raise
        self.reset()

    def reset(self) -> None:
        """Restore the state of a freshly prepared processor; parameters are kept.

        Raises
        ------
        DebleedError
            If called before :meth:`prepare`.
        """
        self.check_prepared("reset")
        self._clear()

    def check_prepared(self, method: str) -> None:
        """Raise :class:`DebleedError` naming ``method`` if :meth:`prepare` has not run."""
        if self.spec is None:
            raise DebleedError(f"{type(self).__name__}.{method} called before prepare()")

    def state_arrays(self) -> tuple:
        """The arrays that hold the processor's running state (zeroed by the default reset)."""
        return ()

    def _allocate(self, spec: ProcessSpec) -> None:
        raise NotImplementedError

    def _clear(self) -> None:
        for a in self.state_arrays():
            a[...] = 0


def check_channels(proc: Processor, spec: ProcessSpec, expected: int, why: str) -> None:
    """For a processor with a fixed channel count: raise unless ``spec.n_channels == expected``.

    Raises
    ------
    ParameterError
        ``<Class>.prepare: n_channels must be <expected> (<why>), got <n>``.
    """
    if spec.n_channels != expected:
        raise ParameterError(f"{type(proc).__name__}.prepare: n_channels must be {expected} ({why}), "
                             f"got {spec.n_channels}")
