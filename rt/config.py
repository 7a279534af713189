"""Gig configs: TOML in, validated, compiled to a :class:`~debleed.dsp.chain.Chain`.

Validation uses pydantic; every error becomes a :class:`~debleed.errors.ConfigError` whose
message names the file, the key, the value and what is allowed. An unknown key is an error:
a typo must never silently do nothing. README.md documents every key with its unit and range.

Every processing parameter is checked by its :meth:`~debleed.dsp.params.Param.check` and by
nothing else; this module adds the routing rules (names, inputs, keys that name nothing).

Why it lives in ``rt/``: a :class:`GigConfig` is what the engines are built from (port layout,
the chain's routing, the denoised rows, the MIDI port), and the control plane resolves live key
changes with it; the application (:mod:`debleed.cli`, :mod:`debleed.offline`,
:mod:`debleed.soundcheck`) loads it and hands it down. In ``debleed/`` it would make ``rt``
import the application, against the import direction ``debleed -> rt -> models -> dsp``.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from debleed.dsp.chain import Chain, ChannelSpec, KeyRoute
from debleed.dsp.params import DENOISE_PARAMS, PARAMS, SPEC_PARAMS, parse_key
from debleed.errors import ConfigError, ParameterError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")


def _check_name(cls, v):
    """Port-safe names: JACK port names are built from them."""
    if not _NAME.match(v):
        raise ValueError(f"must be 1-48 characters of letters, digits, '_', '-', '.', got {v!r}")
    return v


def load_presets() -> dict[str, dict]:
    """The shipped presets (``configs/presets.toml``): name -> channel keys."""
    text = resources.files("debleed.configs").joinpath("presets.toml").read_text()
    return tomllib.loads(text)


PRESETS = load_presets()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ClientConfig(_Strict):
    """``[client]``: the JACK client."""

    name: str = Field("debleed", description="JACK client name")
    process_nice: int = Field(
        -20, ge=-20, le=0,
        description="nice value (-20 to 0) debleed gives its JACK process thread when the server runs without "
                    "real-time scheduling (jackd without -R), so ordinary processes preempt the audio thread less; "
                    "needs root or CAP_SYS_NICE (else a warning, and the thread stays at 0); 0 leaves the thread as "
                    "JACK made it. With -R, JACK's SCHED_FIFO applies and this is not used")

    _name = field_validator("name")(_check_name)


class MidiConfig(_Strict):
    """``[midi]``: sources to connect to ``<client>:midi_in``."""

    connect: list[str] = Field(default_factory=list)


_PY_TYPES = {"float": float, "int": int, "bool": bool, "choice": str, "key": str, "path": str | None,
             "inputs": tuple}


def _param_field(p):
    """The type and field of one :data:`~debleed.dsp.params.PARAMS` entry: the type for the
    schema and the model's attribute; :func:`_check_param` is its only validator."""
    return _PY_TYPES[p.kind], Field(p.default, description=p.doc)


def _check_param(cls, v, info):
    """Every processing parameter is checked by its :meth:`~debleed.dsp.params.Param.check`
    (type, range, form; a number written as a string is refused), and nothing else."""
    try:
        return PARAMS[info.field_name].check(v)
    except ParameterError as e:
        raise ValueError(str(e).removeprefix(f"{info.field_name} ")) from None


class _ChannelBase(_Strict):
    """One ``[[channel]]``: an output port ``<client>:out_<name>`` and its gain stage.

    Routing fields are written here; every processing parameter comes from
    :data:`debleed.dsp.params.PARAMS` (type, range, default, doc).
    """

    name: str
    input: str
    connect: list[str] = Field(default_factory=list)
    preset: Literal[tuple(PRESETS)] | None = None  # the names in configs/presets.toml
    link: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        return data

    _name = field_validator("name")(_check_name)

    # "plain": Param.check replaces pydantic's own type and range checks
    _params = field_validator(*PARAMS, mode="plain", check_fields=False)(_check_param)

    @field_validator("link")
    @classmethod
    def _link(cls, v):
        return None if v is None else _check_name(cls, v)

    @model_validator(mode="after")
    def _no_inert_keys(self):
        """Keys that would do nothing on this channel are errors, not silently ignored."""
        given = self.model_fields_set
        kind = self.key.partition(":")[0]
        if self.velocity_depth and kind != "midi":
            raise ValueError(f"velocity_depth = true needs a midi:<note> key, this channel's key is {self.key!r}")
        for name in DENOISE_PARAMS:
            if name in given and not self.denoise:
                raise ValueError(f"{name} is set but denoise is not true (set denoise = true, or remove {name})")
        for name in ("key_hpf_hz", "key_lpf_hz"):
            if kind in ("trigger", "midi") and getattr(self, name) > 0:
                raise ValueError(f"{name} filters an audio key; a {kind}: key has none (remove {name})")
        return self


ChannelConfig = create_model(
    "ChannelConfig", __base__=_ChannelBase, __module__=__name__,
    **{n: _param_field(p) for n, p in PARAMS.items()})


def _check_pieces(cls, v):
    """``[pieces]``: MIDI note = piece name, read by the soundcheck (it overrides the General MIDI
    drum map there); keys are note numbers 0-127 (TOML gives them as strings), names port-safe."""
    if not isinstance(v, dict):
        raise ValueError(f'must be a table of MIDI note = "piece" (e.g. 38 = "snare"), got {v!r}')
    out = {}
    for key, name in v.items():
        k = str(key).strip()
        if not re.fullmatch(r"\d{1,3}", k) or not 0 <= int(k) <= 127:
            raise ValueError(f"key {key!r} is not a MIDI note (allowed: a whole number 0-127)")
        if not isinstance(name, str) or not _NAME.match(name.strip()):
            raise ValueError(f"{k} = {name!r}: a piece name is 1-48 letters, digits, '_', '-', '.' "
                             '(e.g. "snare", "tom2")')
        out[int(k)] = name.strip()
    return out


class GigConfig(_Strict):
    """A whole gig: client, inputs, MIDI, channels and the kit's pieces (see README.md, "Config
    reference")."""

    client: ClientConfig = Field(default_factory=ClientConfig)
    inputs: dict[str, list[str]]
    midi: MidiConfig = Field(default_factory=MidiConfig)
    channel: list[ChannelConfig] = Field(min_length=1)
    pieces: dict[int, str] = Field(default_factory=dict, description="MIDI note = piece, for the soundcheck")

    _pieces = field_validator("pieces", mode="before")(_check_pieces)

    @model_validator(mode="after")
    def _references(self):
        for name in self.inputs:
            if not _NAME.match(name):
                raise ValueError(f"inputs: name {name!r} must be 1-48 characters of letters, digits, '_', '-', '.'")
        if not self.inputs:
            raise ValueError("inputs: at least one input is needed, got none")
        defined = ", ".join(self.inputs)
        seen = set()
        for ch in self.channel:
            where = f"channel {ch.name!r}"
            if ch.name in seen:
                raise ValueError(f"{where}: the name is used by another channel (names must be unique)")
            seen.add(ch.name)
            if ch.input not in self.inputs:
                raise ValueError(f"{where}: input {ch.input!r} is not a defined input (defined: {defined})")
            kind, _, ref = ch.key.partition(":")
            if kind in ("input", "trigger") and ref not in self.inputs:
                raise ValueError(f"{where}: key {ch.key!r} names no defined input (defined: {defined})")
            own = [d for d in ch.connect if d.startswith(f"{self.client.name}:in_")]
            if own:
                raise ValueError(f"{where}: connect names {own[0]!r}, an input of debleed itself: its output would "
                                 "feed back into debleed (connect outputs to other clients' inputs)")
            for r in ch.denoise_refs:
                if r not in self.inputs:
                    raise ValueError(f"{where}: denoise_refs names {r!r}, which is not a defined input (defined: {defined})")
        return self

    def key_kind(self, ch: ChannelConfig) -> str:
        """``self``, ``input``, ``trigger`` or ``midi``."""
        return ch.key.partition(":")[0]

    @property
    def input_names(self) -> list[str]:
        """Input names in port order."""
        return list(self.inputs)

    @property
    def uses_midi(self) -> bool:
        """True when any channel has a MIDI key (the client then opens ``midi_in``)."""
        return any(self.key_kind(ch) == "midi" for ch in self.channel)

    def denoised(self) -> list[tuple[int, int, int]]:
        """``(channel index, source input row, virtual input row)`` of each denoised channel.

        A denoised channel reads a virtual input row (after the real inputs) that the denoiser
        stage fills (:func:`debleed.models.streaming.denoise_block`).
        """
        n_in = len(self.inputs)
        rows = []
        for c, ch in enumerate(self.channel):
            if ch.denoise:
                rows.append((c, self.input_names.index(ch.input), n_in + len(rows)))
        return rows

    def resolve_key(self, key: str) -> KeyRoute:
        """A key string (``self``, ``input:<name>``, ``trigger:<name>``, ``midi:<n>[,<n>...]``)
        as the chain's routing: kind, input index, notes.

        Raises
        ------
        ConfigError
            If the form is wrong, a note is outside 0-127, or the input is not defined (the
            message lists the inputs).
        """
        try:
            key = parse_key(key)
        except ParameterError as e:
            raise ConfigError(str(e)) from None
        kind, _, ref = key.partition(":")
        if kind in ("input", "trigger") and ref not in self.inputs:
            raise ConfigError(f"key {key!r} names no defined input (defined: {', '.join(self.inputs)})")
        return KeyRoute(kind, self.input_names.index(ref) if kind in ("input", "trigger") else -1,
                        tuple(int(v) for v in ref.split(",")) if kind == "midi" else ())

    def channel_specs(self) -> list[ChannelSpec]:
        """The channels as :class:`ChannelSpec`, inputs resolved to indices (denoised channels
        read their virtual row)."""
        names = self.input_names
        virtual = {c: row for c, _, row in self.denoised()}
        specs = []
        for c, ch in enumerate(self.channel):
            route = self.resolve_key(ch.key)
            fields = {n: getattr(ch, n) for n in SPEC_PARAMS}
            specs.append(ChannelSpec(
                name=ch.name, input=virtual.get(c, names.index(ch.input)), key=route.kind,
                key_input=route.key_input, notes=route.notes, link=ch.link, **fields))
        return specs

    def chain(self) -> Chain:
        """A fresh (unprepared) :class:`Chain` for this gig."""
        return Chain(self.channel_specs(), n_inputs=len(self.inputs) + len(self.denoised()))


def _describe(err: dict, data: dict) -> str:
    loc = list(err["loc"])
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0 and loc[i - 1] == "channel":
            try:
                path += f"[{part}] ({data['channel'][part]['name']!r})"
            except (KeyError, IndexError, TypeError):
                path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    if err["type"] == "extra_forbidden":
        model = {"client": ClientConfig, "midi": MidiConfig}.get(str(loc[0]), ChannelConfig if loc[0] == "channel" else GigConfig)
        return f"{path}: unknown key (allowed: {', '.join(model.model_fields)})"
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, dict | list) or err["type"] == "value_error":
        return f"{path or 'config'}: {msg}"
    return f"{path}: {msg}, got {value!r}"


def parse_config(data: dict, source: str = "<config>") -> GigConfig:
    """Validate a parsed TOML document.

    Raises
    ------
    ConfigError
        Listing every problem, each with the key path, the value and what is allowed.
    """
    try:
        return GigConfig.model_validate(data)
    except ValidationError as e:
        lines = [_describe(err, data) for err in e.errors()]
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path) -> GigConfig:
    """Read and validate a gig config file.

    Raises
    ------
    ConfigError
        If the file is missing, not TOML, or invalid (the message names the file and key).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or inline tables nested too deeply to read (a gig file nests "
                          "at most a list of port names in a table)") from None
    try:
        return parse_config(data, str(path))
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply (a gig file nests at most a list of port names "
                          "in a table)") from None
