"""The live control plane: change, watch and recall every channel parameter while the gig runs.

:class:`LiveControl` is what the surfaces (terminal UI :mod:`debleed.rt.control.tui`, OSC
:mod:`debleed.rt.control.osc`, NSM :mod:`debleed.rt.control.nsm`) call. It never touches the audio thread
directly:

- a change is validated against :data:`debleed.dsp.params.PARAMS`, written into the chain's
  spare table bank and published with :meth:`~debleed.dsp.chain.Chain.set_params`; the audio
  thread swaps to it at the next block boundary (no lock, no allocation there) and records the
  frame; :meth:`LiveControl.set` waits for that and logs the change with the frame at which it
  took effect (``frame``: frames the chain had run since it started; ``clock``: the JACK frame
  time of that cycle, 0 where the engine has none, null when the audio thread did not confirm
  it in time, and for denoiser settings);
- denoiser settings (``denoise_limit_db``, ``denoise_mix``) go to the denoiser stage, which the
  audio thread reads at its next block and ramps to;
- meters (key level, gain reduction, gate open) are read by one thread at :data:`METER_HZ` and
  shared by every surface.

The change log is JSON lines: a header ``{"debleed_changes": 1, "sample_rate", "period",
"config"}``, then one ``{"frame", "clock", "channel", "param", "value"}`` per change.
``debleed render --changes LOG`` replays it (:func:`load_changes`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np

from debleed.dsp.chain import I_MODE, K_DONE_CLOCK, K_DONE_FRAME, K_FRAMES, K_REQ, M_GAIN, M_GR, M_KEY, MODE_DUCK
from debleed.dsp.params import PARAMS, get
from debleed.dsp.units import FLOOR_DB
from debleed.errors import ConfigError, DebleedError, EngineError, ParameterError
from debleed.fileio import atomic_write_text

#: Meter refresh rate of the surfaces, Hz.
METER_HZ = 30.0
#: How long :meth:`LiveControl.set` waits for the audio thread to take a change, s.
APPLY_TIMEOUT_S = 2.0
CHANGES_FORMAT = 1


def _jsonable(v):
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return v


def _from_json(name: str, v):
    if v == "inf" and get(name).allow_inf:
        return math.inf
    return v


class LiveControl:
    """Change and read a running engine's channel parameters; log, save and meter.

    Parameters
    ----------
    engine : EngineBase
        A prepared engine (:class:`~debleed.rt.engine.JackEngine` or the PortAudio one);
        its chain runs the blocks that take the changes.
    config_path : str or Path, optional
        The gig file :meth:`save` writes back to (keeping its comments and layout).
    changes_log : str or Path, optional
        Append every change to this JSON-lines file as it takes effect.
    apply_timeout_s : float
        How long :meth:`set` waits for the audio thread; default :data:`APPLY_TIMEOUT_S`.

    Notes
    -----
    Thread safe on the control plane (the terminal UI, the OSC server and NSM call it from
    their own threads); one lock serialises changes, none is ever taken by the audio thread.
    """

    def __init__(self, engine, config_path=None, *, changes_log=None, apply_timeout_s: float = APPLY_TIMEOUT_S):
        self.engine = engine
        self.chain = engine.chain
        self.config = engine.config
        self.config_path = Path(config_path) if config_path else None
        self.apply_timeout_s = float(apply_timeout_s)
        self.changes: list[dict] = []
        self._lock = threading.RLock()
        self.names = [ch.name for ch in self.config.channel]
        # denoiser settings live here (the chain does not own them)
        self._dn = {c: {n: getattr(ch, n) for n, p in PARAMS.items() if p.target == "denoiser"}
                    for c, ch in enumerate(self.config.channel)}
        self._changed: dict[int, set] = {}
        self._keys = {c: ch.key for c, ch in enumerate(self.config.channel)}
        self._has_midi = self.config.uses_midi  # the MIDI port opens at start only
        self._log_fh = None
        if changes_log is not None:
            self._log_fh = open(changes_log, "w", buffering=1)
            self._log_fh.write(json.dumps(self.log_header()) + "\n")
        n = len(self.names)
        self.key_db = np.full(n, FLOOR_DB)
        self.gr_db = np.zeros(n)
        self.gain_db = np.zeros(n)
        self._status_gr = np.zeros(n)
        self._listeners: list = []
        self._meter_thread = None
        self._meter_stop = threading.Event()

    # --- parameters ------------------------------------------------------------------------
    def channel_index(self, channel) -> int:
        """Index of a channel given by name or index (:class:`ParameterError` if none)."""
        return self.chain.channel_index(channel)

    def get(self, channel, name: str):
        """The value of parameter ``name`` of ``channel`` now.

        Raises
        ------
        ParameterError
            On an unknown channel or parameter.
        """
        c = self.channel_index(channel)
        p = get(name)
        if p.target == "denoiser":
            return self._dn[c][name]
        if p.kind == "key":
            return self._keys[c]
        if p.target == "engine":
            return getattr(self.config.channel[c], name)
        return getattr(self.chain.channels[c], name)

    def check(self, channel, name: str, value):
        """Validate a change without making it; return ``(channel index, value)``.

        Raises
        ------
        ParameterError
            Unknown channel or parameter, one that cannot change live (the message says why),
            a value out of range (named with what is allowed), or a denoiser setting on a
            channel without ``denoise = true``.
        """
        c = self.channel_index(channel)
        p = get(name)
        if p.target == "denoiser":
            if not self.config.channel[c].denoise:
                raise ParameterError(f"channel {self.names[c]!r} has no denoiser (denoise = true is set at start), "
                                     f"so {name} = {value!r} would do nothing")
            try:
                return c, p.check(value)
            except ParameterError as e:
                raise ParameterError(f"channel {self.names[c]!r}: {e}") from None
        if p.kind == "key":
            try:
                route = self.config.resolve_key(value)
            except ConfigError as e:
                raise ParameterError(f"channel {self.names[c]!r}: {e}") from None
            if route.kind == "midi" and not self._has_midi:
                raise ParameterError(f"channel {self.names[c]!r}: key {value!r} needs the MIDI port, which opens at "
                                     "start only when a channel has a midi: key (restart with one)")
            self.chain.check_param(c, name, route)
            return c, value.strip()
        return self.chain.check_param(c, name, value)

    def set(self, channel, name: str, value) -> dict:
        """Change one parameter; return the log entry once the audio thread has taken it.

        Raises
        ------
        ParameterError
            See :meth:`check`; nothing changes then.
        EngineError
            If the audio thread did not take the change within ``apply_timeout_s`` (the engine
            stopped, or the server is stuck); the change stays published and takes effect with
            the next block.
        """
        return self.set_many([(channel, name, value)])[0]

    def _check_saved_form(self, checked) -> None:
        """The channels as they would be saved after ``checked`` must still load: the config's
        rules between keys (a key filter on a trigger key, velocity depth off a MIDI key) apply
        to live changes too.

        Raises
        ------
        ParameterError
            Naming the channel and the rule.
        """
        from pydantic import ValidationError

        from debleed.rt.config import ChannelConfig

        by_channel: dict[int, dict] = {}
        for c, v, name in checked:
            by_channel.setdefault(c, {})[name] = v
        for c, new in by_channel.items():
            ch = self.config.channel[c]
            data = ch.model_dump(exclude_unset=True)
            data.update({n: self.get(c, n) for n in self._changed.get(c, ())})
            data.update(new)
            try:
                ChannelConfig.model_validate(data)
            except ValidationError as e:
                msg = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
                raise ParameterError(f"channel {self.names[c]!r}: {msg}") from None

    def set_many(self, changes) -> list[dict]:
        """Change several parameters at the same block boundary; return their log entries.

        Raises
        ------
        ParameterError
            See :meth:`check`, and when the channel would break a rule between keys (nothing
            changes then).
        EngineError
            The changes are published but the audio thread did not take them in time: they are
            logged at the frame where they take effect (the next block) and saved with the rest.
        """
        with self._lock:
            checked = [(*self.check(ch, name, value), name) for ch, name, value in changes]
            self._check_saved_form(checked)
            chain_changes = [(c, name, self.config.resolve_key(v) if get(name).kind == "key" else v)
                             for c, v, name in checked if get(name).target == "chain"]
            frame = clock = None
            late = None
            if chain_changes:
                self._wait_idle()
                serial = self.chain.set_params(chain_changes)
                try:
                    frame, clock = self._wait_applied(serial)
                except EngineError as e:
                    # published: the next block takes it, at the frame count where the chain stopped
                    late = e
                    frame, clock = int(self.chain.ctl[K_FRAMES]), None
            stage = getattr(self.engine, "stage", None)
            for c, v, name in checked:
                if get(name).target == "denoiser":
                    self._dn[c][name] = v
                    if stage is not None and hasattr(stage, "set_param"):
                        stage.set_param(c, name, v)
            for c, v, name in checked:
                if get(name).kind == "key":
                    self._keys[c] = v
            if frame is None:  # denoiser settings only: the audio thread takes them at its next block
                frame, clock = int(self.chain.ctl[K_FRAMES]), None
            entries = []
            for c, v, name in checked:
                e = {"frame": frame, "clock": clock, "channel": self.names[c], "param": name, "value": _jsonable(v)}
                entries.append(e)
                self.changes.append(e)
                self._changed.setdefault(c, set()).add(name)
                if self._log_fh is not None:
                    self._log_fh.write(json.dumps(e) + "\n")
            for fn in list(self._listeners):
                fn(entries)
            if late is not None:
                raise EngineError(f"{late}; logged at frame {frame}") from None
            return entries

    def step(self, channel, name: str, direction: int) -> dict:
        """Move a parameter by ``direction`` steps (its ``step``; x1.25 per step for times)."""
        p = get(name)
        with self._lock:  # read and write as one: a key press and an OSC step cannot lose one
            return self.set(channel, name, p.stepped(self.get(channel, name), direction))

    def on_change(self, fn) -> None:
        """Call ``fn(entries)`` after every change (from the thread that made it)."""
        self._listeners.append(fn)

    def _running(self) -> bool:
        eng = self.engine
        return eng.started_at is not None and not eng.stopped.is_set() and not eng.closed

    def _wait_idle(self) -> None:
        """Wait until no earlier change is pending (the audio thread has taken it)."""
        if self.chain.pending:
            self._wait_applied(int(self.chain.ctl[K_REQ]))

    def _wait_applied(self, serial: int) -> tuple[int, int]:
        t_end = time.monotonic() + self.apply_timeout_s
        while not self.chain.applied(serial):
            if not self._running():
                raise EngineError("the audio engine is not running: the change is published and takes effect "
                                  "when it runs its next block")
            if time.monotonic() > t_end:
                raise EngineError(f"the audio thread did not take the change within {self.apply_timeout_s:g} s "
                                  "(is the JACK server stuck?); it is published and takes effect with the next block")
            time.sleep(0.0005)
        return int(self.chain.ctl[K_DONE_FRAME]), int(self.chain.ctl[K_DONE_CLOCK])

    # --- log and save ------------------------------------------------------------------------
    def log_header(self) -> dict:
        return {"debleed_changes": CHANGES_FORMAT, "sample_rate": self.engine.sample_rate,
                "period": self.engine.period_frames, "config": str(self.config_path) if self.config_path else None}

    def write_log(self, path) -> None:
        """Write the header and every change so far to ``path`` (JSON lines), atomically."""
        lines = [json.dumps(self.log_header())] + [json.dumps(e) for e in self.changes]
        atomic_write_text(Path(path), "\n".join(lines) + "\n")

    def current_values(self, c: int) -> dict:
        """Every live-changeable parameter of channel ``c`` with its value now."""
        return {n: self.get(c, n) for n, p in PARAMS.items() if p.live}

    def save(self, path=None) -> Path:
        """Write the parameters changed so far into the gig file, keeping its comments and layout.

        Only the keys that were changed are written (a preset stays a preset for the others).
        The file is replaced atomically.

        Raises
        ------
        ConfigError
            If there is no gig file to write or it cannot be read or parsed.
        """
        import tomlkit

        with self._lock:
            path = Path(path) if path else self.config_path
            if path is None:
                raise ConfigError("no gig file to save to (start with --config FILE)")
            src = self.config_path if self.config_path and self.config_path.exists() else path
            try:
                doc = tomlkit.parse(Path(src).read_text())
            except (OSError, tomlkit.exceptions.ParseError) as e:
                raise ConfigError(f"{src}: cannot read the gig file to save into it: {e}") from None
            tables = {t.get("name"): t for t in doc.get("channel", [])}
            for c, names in sorted(self._changed.items()):
                table = tables.get(self.names[c])
                if table is None:
                    raise ConfigError(f"{src}: channel {self.names[c]!r} is not in the file any more")
                for name in sorted(names):
                    v = self.get(c, name)
                    _set_in_table(table, name, float(v) if isinstance(v, float) else v)
            atomic_write_text(path, tomlkit.dumps(doc))
            return path

    def close(self) -> None:
        self.stop_metering()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    # --- meters ------------------------------------------------------------------------------
    def poll_meters(self) -> None:
        """Read and restart the chain's meter interval (one reader: the meter thread)."""
        m = self.chain.meters
        n = len(self.names)
        key = m[:n, M_KEY].copy()
        gr = m[:n, M_GR].copy()
        self.chain.reset_meters()
        self.key_db, self.gr_db, self.gain_db = key, gr, m[:n, M_GAIN].copy()
        np.minimum(self._status_gr, gr, out=self._status_gr)

    def take_status_gr(self) -> np.ndarray:
        """Deepest gain reduction per channel since the last call (for the status line)."""
        gr = self._status_gr.copy()
        self._status_gr[:] = 0.0
        return gr

    def meter_rows(self) -> list[dict]:
        """Per channel: key level (dBFS, -inf when silent), gain reduction (dB, <= 0), gain now,
        open (gate open / ducker ducking), bypass, latency (samples)."""
        lat = self.engine.channel_latency_samples()
        itab = self.chain.itab
        rows = []
        for c, name in enumerate(self.names):
            spec = self.chain.channels[c]
            duck = itab[c, I_MODE] == MODE_DUCK
            g = float(self.gain_db[c])
            is_open = g < -1.0 if duck else (g > spec.range_db / 2.0 if spec.range_db < 0.0 else True)
            rows.append({"channel": name, "key_db": float(self.key_db[c]) if self.key_db[c] > FLOOR_DB else -math.inf,
                         "gr_db": float(self.gr_db[c]), "gain_db": g, "open": bool(is_open),
                         "bypass": bool(spec.bypass or spec.mode == "bypass"), "mode": spec.mode,
                         "threshold_db": spec.threshold_db, "latency_samples": int(lat[c])})
        return rows

    def start_metering(self, rate_hz: float = METER_HZ, on_meters=None) -> None:
        """Start the meter thread (``on_meters(rows)`` is called after each read)."""
        if self._meter_thread is not None:
            return
        if on_meters is not None:
            self._meter_callbacks = [on_meters]
        period = 1.0 / rate_hz

        def loop():
            while not self._meter_stop.wait(period):
                self.poll_meters()
                for fn in getattr(self, "_meter_callbacks", []):
                    try:
                        fn(self.meter_rows())
                    except Exception:  # a surface's error must not stop the meters
                        pass

        self._meter_thread = threading.Thread(target=loop, name="debleed-meters", daemon=True)
        self._meter_thread.start()

    def add_meter_callback(self, fn) -> None:
        self._meter_callbacks = [*getattr(self, "_meter_callbacks", []), fn]

    def stop_metering(self) -> None:
        self._meter_stop.set()
        if self._meter_thread is not None:
            self._meter_thread.join(timeout=1.0)
            self._meter_thread = None


def _set_in_table(table, name: str, value) -> None:
    """Set ``name`` in a tomlkit table; a new key goes after the table's last key, before the
    blank lines and comments that end it (in a file they belong to what follows)."""
    if name in table:
        table[name] = value
        return
    body = table.value.body
    trailing = []
    while body and body[-1][0] is None:  # whitespace and comment items have no key
        trailing.insert(0, body.pop())
    table[name] = value
    body.extend(trailing)


def load_changes(path, *, origin: int = 0) -> list[dict]:
    """Read a change log (see the module docs) for replay.

    Parameters
    ----------
    path : str or Path
    origin : int
        Chain frame that becomes frame 0 of the replay (the frame at which the recorded takes
        start); entries before it are applied at frame 0.

    Returns
    -------
    list of dict
        ``{"frame", "channel", "param", "value"}`` sorted by frame (stable), values converted.

    Raises
    ------
    DebleedError
        If the file is missing or not a change log, naming the line.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DebleedError(f"change log {path}: cannot read it ({e})") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as err:
            raise DebleedError(f"change log {path}, line {i}: not JSON ({err})") from None
        if "debleed_changes" in e:
            continue
        if not all(k in e for k in ("frame", "channel", "param", "value")):
            raise DebleedError(f"change log {path}, line {i}: needs frame, channel, param and value, got {line!r}")
        if not isinstance(e["frame"], int) or isinstance(e["frame"], bool) or e["frame"] < 0:
            raise DebleedError(f"change log {path}, line {i}: frame must be an integer >= 0, got {e['frame']!r}")
        try:
            get(e["param"])
        except ParameterError as err:
            raise DebleedError(f"change log {path}, line {i}: {err}") from None
        out.append({"frame": max(e["frame"] - origin, 0), "channel": e["channel"], "param": e["param"],
                    "value": _from_json(e["param"], e["value"])})
    out.sort(key=lambda e: e["frame"])
    return out
