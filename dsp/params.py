"""Every channel parameter, defined once.

:data:`PARAMS` is the one table of channel parameters: name, unit, range, default, step, a
one-line doc, which modes and keys it acts on, and whether it can change while the gig runs.
Everything else reads it: :class:`~debleed.dsp.chain.ChannelSpec` (fields, defaults and range
checks), the gig config model (:mod:`debleed.rt.config`), the ``clean-stems`` flags, the live
control plane (:mod:`debleed.rt.control`: OSC addresses, the terminal UI) and the README's
config reference (:func:`markdown_table`, checked by a test).

Units are in the names: ``_db`` (dB or dBFS), ``_ms``, ``_hz``; coefficients never appear here.

Live changes
------------
A parameter with ``live=True`` can change while the chain runs: the control thread builds new
tables and the audio thread swaps to them at a block boundary (:class:`~debleed.dsp.chain.Chain`).
Jumps that would click are ramped inside the kernel over :data:`RAMP_MS` (``dry_wet``,
``range_db``, ``bypass``; a ``mode`` change crossfades the gain, or ramps through bypass). The
others say why they need a restart in ``restart_reason``.

Example
-------
>>> from debleed.dsp.params import PARAMS
>>> p = PARAMS["threshold_db"]
>>> p.check(-24.0), p.range_text(), p.unit
(-24.0, '[-120, 0]', 'dBFS')
>>> p.stepped(-24.0, +1)
-23.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from debleed.errors import ParameterError

#: Modes and key kinds a parameter can apply to.
ALL_MODES = ("gate", "duck", "bypass")
ALL_KEYS = ("self", "input", "trigger", "midi")
GAIN_MODES = ("gate", "duck")
AUDIO_KEYS = ("self", "input")

#: The forms of a ``key`` value (a note is 0-127).
KEY_FORMS = "self | input:<name> | trigger:<name> | midi:<note>[,<note>...]"
_KEY = re.compile(r"^(self|(input|trigger):([A-Za-z0-9_.-]+)|midi:(\d+(?:\s*,\s*\d+)*))$")


def parse_key(v) -> str:
    """Check the form of a key string; return it stripped.

    Raises
    ------
    ParameterError
        If it is not ``self | input:<name> | trigger:<name> | midi:<note>[,<note>...]`` or a
        note is outside 0-127.
    """
    m = _KEY.match(v.strip()) if isinstance(v, str) else None
    if not m:
        raise ParameterError(f"key must be {KEY_FORMS}, got {v!r}")
    if m.group(4):
        bad = [n for n in m.group(4).split(",") if not 0 <= int(n) <= 127]
        if bad:
            raise ParameterError(f"key notes must be MIDI notes in 0-127, got {', '.join(b.strip() for b in bad)} in {v!r}")
    return v.strip()


#: Largest finite ratio (the gain computer's limit; inf is allowed too).
MAX_RATIO = 1e6
#: Time of the ramps of a live ``dry_wet`` (0 to 1), ``bypass``, ``mode`` change (a gate <-> duck
#: switch crossfades the gain) and of a full-scale (120 dB) ``range_db`` change, ms. Linear
#: ramps: the largest step per sample is bounded (:mod:`debleed.dsp.chain`).
RAMP_MS = 5.0


@dataclass(frozen=True)
class Param:
    """One channel parameter.

    Attributes
    ----------
    name : str
        Config key, ``ChannelSpec`` field, OSC address part (``/debleed/<channel>/<name>``).
    kind : {"float", "int", "bool", "choice", "key", "path", "inputs"}
    unit : str
        Display unit ("dB", "dBFS", "ms", "Hz", "periods", "" for none).
    default : float, int, bool, str or None
    doc : str
        One line for the README, ``--help`` and the terminal UI.
    lo, hi : float, optional
        Inclusive range of numbers (``lo`` exclusive when ``lo_open``); ``inf`` allowed above
        ``hi`` when ``allow_inf``.
    step : float
        Step of one key press or OSC ``inc``: added for linear parameters, a factor for
        ``log_step`` ones (times in ms: 1.25 per press).
    choices : tuple of str
        Allowed values of a ``choice`` parameter.
    modes, keys : tuple of str
        The modes and key kinds the parameter acts on (for the UI and the docs).
    live : bool
        Whether it can change while running.
    restart_reason : str
        For ``live=False``: why it needs a restart.
    target : {"chain", "denoiser", "engine"}
        Who acts on it: the chain's tables, the denoiser stage, or the engine at start.
    flag : str, optional
        ``debleed clean-stems`` option (and its short form after a comma), if it has one.
    """

    name: str
    kind: str
    unit: str
    default: object
    doc: str
    lo: float | None = None
    hi: float | None = None
    step: float = 1.0
    log_step: bool = False
    lo_open: bool = False
    allow_inf: bool = False
    choices: tuple = ()
    modes: tuple = ALL_MODES
    keys: tuple = ALL_KEYS
    live: bool = True
    restart_reason: str = ""
    target: str = "chain"
    flag: str | None = None

    @property
    def is_number(self) -> bool:
        return self.kind in ("float", "int")

    def range_text(self) -> str:
        """The allowed values as text: ``[-120, 0]``, ``(0, 1000]``, ``'gate', 'duck'``..."""
        if self.kind == "choice":
            return ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true, false"
        if self.kind == "key":
            return "self, input:<name>, trigger:<name>, midi:<note>[,<note>...] (notes 0-127)"
        if self.kind == "inputs":
            return f"up to {int(self.hi)} names of [inputs] entries"
        if not self.is_number:
            return ""
        text = f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        return text + (" or inf" if self.allow_inf else "")

    def check(self, value, label: str | None = None):
        """Return ``value`` converted to this parameter's type if it is allowed.

        ``label`` names the value in the message (default: the parameter's name), for a
        processor whose argument has another name (``hpf_hz`` for ``key_hpf_hz``).

        Raises
        ------
        ParameterError
            Naming the parameter, the value and what is allowed, e.g. ``threshold_db must be
            in [-120, 0] dBFS, got 5.0``.
        """
        name = label or self.name
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise ParameterError(f"{name} must be true or false, got {value!r}")
        if self.kind == "choice":
            if value not in self.choices:
                raise ParameterError(f"{name} must be one of {self.range_text()}, got {value!r}")
            return value
        if self.kind == "key":
            try:
                return parse_key(value)
            except ParameterError as e:
                raise ParameterError(str(e).replace("key", name, 1)) from None
        if self.kind == "path":
            if value is not None and not isinstance(value, str):
                raise ParameterError(f"{name} must be a string, got {value!r}")
            return value
        if self.kind == "inputs":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value) \
                    or len(value) > self.hi or len(set(value)) != len(value):
                raise ParameterError(f"{name} must be a list of {self.range_text()} (no repeats), got {value!r}")
            return tuple(value)
        unit = f" {self.unit}" if self.unit else ""
        if self.kind == "int":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ParameterError(f"{name} must be an integer in {self.range_text()}{unit}, got {value!r}")
            v = int(value)
            if not self.lo <= v <= self.hi:
                raise ParameterError(f"{name} must be an integer in {self.range_text()}{unit}, got {value!r}")
            return v
        if isinstance(value, (bool, np.bool_, str, bytes)):
            raise ParameterError(f"{name} must be a number in {self.range_text()}{unit}, got {value!r}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be a number in {self.range_text()}{unit}, got {value!r}") from None
        if math.isnan(v):
            raise ParameterError(f"{name} must be a number in {self.range_text()}{unit}, got NaN")
        if math.isinf(v) and self.allow_inf and v > 0:
            return v
        low_bad = v <= self.lo if self.lo_open else v < self.lo
        if math.isinf(v) or low_bad or v > self.hi:
            raise ParameterError(f"{name} must be in {self.range_text()}{unit}, got {value!r}")
        return v

    def stepped(self, value, direction: int):
        """``value`` moved ``direction`` steps (a key press, OSC ``inc``), clamped to the range.

        Choices and booleans cycle; ``log_step`` parameters multiply by ``step`` per press (a
        value at 0 moves to 1 % of the range's top first).
        """
        if self.kind == "bool":
            return not value if direction else value
        if self.kind == "choice":
            i = self.choices.index(value) if value in self.choices else 0
            return self.choices[(i + direction) % len(self.choices)]
        if not self.is_number:
            raise ParameterError(f"{self.name} has no step (it is a {self.kind})")
        if self.log_step:
            if value <= 0.0 and direction > 0:
                v = max(self.hi * 0.001, 0.1)
            else:
                v = value * self.step ** direction
                if direction < 0 and v < max(self.hi * 0.001, 0.1):
                    v = 0.0 if not self.lo_open else self.lo
        elif math.isinf(value):
            v = 100.0 if direction < 0 else value
        else:
            v = value + direction * self.step
        if self.kind == "int":
            v = int(round(v))
        lo = self.lo if not self.lo_open else (self.lo + (self.hi - self.lo) * 1e-6)
        v = min(max(v, lo), self.hi) if not (math.isinf(v) and self.allow_inf) else v
        return round(v, 6) if isinstance(v, float) and math.isfinite(v) else v


def _p(*args, **kw) -> Param:
    return Param(*args, **kw)


_MS_STEP = dict(step=1.25, log_step=True)

#: The channel parameters, in config order. ``name``, ``input``, ``connect``, ``preset`` and
#: ``link`` (routing, not processing) are the config model's own fields.
PARAMS: dict[str, Param] = {p.name: p for p in (
    _p("mode", "choice", "", "gate", "gate: attenuate while the key is below the threshold; duck: while it is above; bypass: pass the input (a change is ramped)", choices=ALL_MODES),
    _p("bypass", "bool", "", False, f"pass the channel's input through untouched, delayed by its lookahead "
       f"(ramped over {RAMP_MS:g} ms; the key detector keeps running)"),
    _p("key", "key", "", "self", "what opens the gate or ducks; live: any of the gig's inputs, and midi: when "
       "the MIDI port is open (a channel had a midi: key at start)", modes=GAIN_MODES),
    _p("threshold_db", "float", "dBFS", -30.0, "key level where the curve bends", lo=-120.0, hi=0.0,
       step=1.0, modes=GAIN_MODES, flag="--threshold,-t"),
    _p("ratio", "float", "", 10.0, "expansion (gate) or compression (duck) ratio; inf: hard gate",
       lo=1.0, hi=MAX_RATIO, allow_inf=True, step=1.0, modes=GAIN_MODES, flag="--ratio,-r"),
    _p("knee_db", "float", "dB", 6.0, "soft-knee width (0: hard knee)", lo=0.0, hi=48.0, step=1.0, modes=GAIN_MODES, flag="--knee"),
    _p("range_db", "float", "dB", -60.0, "maximum attenuation (a live change is ramped)", lo=-120.0, hi=0.0, step=1.0,
       modes=GAIN_MODES, flag="--range"),
    _p("hysteresis_db", "float", "dB", 0.0, "once open (ducking), the threshold drops by this much until the key falls below it",
       lo=-48.0, hi=0.0, step=1.0, modes=GAIN_MODES, keys=AUDIO_KEYS),
    _p("attack_ms", "float", "ms", 1.0, "time to act (open the gate / duck): 63 % of the way in dB after this time",
       lo=0.0, hi=1000.0, modes=GAIN_MODES, flag="--attack", **_MS_STEP),
    _p("hold_ms", "float", "ms", 20.0, "the action is held this long after the key lets go (MIDI and trigger keys: the opening length)", lo=0.0, hi=5000.0,
       modes=GAIN_MODES, flag="--hold", **_MS_STEP),
    _p("release_ms", "float", "ms", 100.0, "time to return: 63 % of the way in dB after this time",
       lo=0.0, hi=10000.0, modes=GAIN_MODES, flag="--release", **_MS_STEP),
    _p("lookahead_ms", "float", "ms", 0.0, "delays the audio so the gain acts before the hit; reported as latency", lo=0.0, hi=100.0, flag="--lookahead", **_MS_STEP,
       live=False, restart_reason="it changes the channel's latency: a live change would move this mic "
       "against the others in the mix mid-song and hosts only re-read latency on a graph change"),
    _p("dry_wet", "float", "", 1.0, "1: fully processed; 0: dry (delayed by the lookahead); a live change is ramped",
       lo=0.0, hi=1.0, step=0.05, modes=GAIN_MODES, flag="--dry-wet"),
    _p("detector", "choice", "", "peak", "key level detector for mic keys",
       choices=("peak", "rms"), modes=GAIN_MODES, keys=AUDIO_KEYS),
    _p("rms_ms", "float", "ms", 10.0, "time constant of the RMS detector", lo=0.0, hi=1000.0, lo_open=True,
       modes=GAIN_MODES, keys=AUDIO_KEYS, **_MS_STEP),
    _p("key_hpf_hz", "float", "Hz", 0.0, "high-pass on a mic key, 0 = off (2nd order Butterworth, RBJ cookbook; an error on trigger: and midi: keys, and at or above Nyquist)",
       lo=0.0, hi=96000.0, step=1.25, log_step=True, modes=GAIN_MODES, keys=AUDIO_KEYS),
    _p("key_lpf_hz", "float", "Hz", 0.0, "low-pass on a mic key, 0 = off (as key_hpf_hz)",
       lo=0.0, hi=96000.0, step=1.25, log_step=True, modes=GAIN_MODES, keys=AUDIO_KEYS),
    _p("trigger_threshold_db", "float", "dBFS", -20.0, "piezo level that counts as a hit", lo=-120.0, hi=0.0,
       step=1.0, modes=GAIN_MODES, keys=("trigger",)),
    _p("retrigger_ms", "float", "ms", 30.0, "after a hit, the ringing piezo cannot trigger again for this long",
       lo=0.0, hi=1000.0, modes=GAIN_MODES, keys=("trigger",), **_MS_STEP),
    _p("midi_channel", "int", "", 0, "MIDI channel of the notes, 0 = any", lo=0, hi=16, step=1, modes=GAIN_MODES,
       keys=("midi",)),
    _p("velocity_depth", "bool", "", False, "scale the opening (gate) or depth (duck) by velocity / 127 (an error on other keys)",
       modes=GAIN_MODES, keys=("midi",)),
    _p("denoise", "bool", "", False, "run the channel's input through the snare de-bleed denoiser before its gate (and self key), inside the audio callback; adds the model's latency, 63 samples (1.3 ms at 48 kHz), whatever the period (an informed model that hears the channel's midi: or trigger: key adds its key lead: see denoise_refs). Other keys (trigger:, midi:, input:) are not delayed with it: they reach the gate that much before the audio",
       live=False, restart_reason="the denoiser's weights and state are loaded and allocated at start", target="engine"),
    _p("denoise_model", "path", "", None, "ONNX denoiser to load instead of the shipped one (with denoise = true only)",
       live=False, restart_reason="the model is loaded and warmed up at start", target="engine"),
    _p("denoise_refs", "inputs", "", (), "reference mics the denoiser hears besides the channel's input (e.g. [\"hihat\", \"oh\"]), for a model that takes them (an informed model); the channel's midi: or trigger: key reaches such a model too, ahead of the audio by the model's key lead (7 ms for the shipped informed models; the mic and refs are delayed that much, which adds to the channel's latency and to the key's lead at the gate)",
       hi=4, live=False, restart_reason="the denoiser's inputs are routed at start", target="engine"),
    _p("denoise_limit_db", "float", "dB", -30.0, "deepest attenuation the denoiser may apply (attenuation limit)",
       lo=-100.0, hi=0.0, step=1.0, target="denoiser"),
    _p("denoise_mix", "float", "", 1.0, "mix of the denoised signal: 1 denoised, 0 the raw input", lo=0.0, hi=1.0,
       step=0.05, target="denoiser"),
)}

#: Parameters that only apply with ``denoise = true``.
DENOISE_PARAMS = ("denoise_model", "denoise_refs", "denoise_limit_db", "denoise_mix")
#: Parameters a :class:`~debleed.dsp.chain.ChannelSpec` carries (the chain's own).
SPEC_PARAMS = tuple(n for n, p in PARAMS.items() if p.target == "chain" and p.kind != "key")


def get(name: str) -> Param:
    """The parameter called ``name``.

    Raises
    ------
    ParameterError
        If there is none; the message lists the parameters.
    """
    try:
        return PARAMS[name]
    except KeyError:
        raise ParameterError(f"unknown parameter {name!r} (parameters: {', '.join(PARAMS)})") from None


def defaults(names=None) -> dict:
    """``{name: default}`` of ``names`` (all parameters if None)."""
    return {n: PARAMS[n].default for n in (names or PARAMS)}


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def markdown_table() -> str:
    """The README's table of channel parameters (between the ``params`` markers)."""
    rows = ["| key | unit | range | default | step | live | meaning |", "|---|---|---|---|---|---|---|"]
    for p in PARAMS.values():
        step = "" if not p.is_number else (f"x{p.step:g}" if p.log_step else f"{p.step:g}")
        live = "yes" if p.live else f"restart: {p.restart_reason}"
        applies = []
        if p.modes != ALL_MODES:
            applies.append("/".join(p.modes))
        if p.keys != ALL_KEYS:
            applies.append("/".join(p.keys) + " keys")
        doc = p.doc + (f" ({'; '.join(applies)})" if applies else "")
        rng = p.range_text().replace("|", "\\|")
        rows.append(f"| `channel.{p.name}` | {p.unit} | {rng} | {_fmt(p.default)} | {step} | {live} | "
                    f"{doc.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - used to refresh README.md
    print(markdown_table())
