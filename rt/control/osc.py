"""OSC control of a running gig (python-osc over UDP).

Addresses (every channel parameter of :data:`debleed.dsp.params.PARAMS` that can change live):

========================================  ===================================================
``/debleed/<channel>/<param> <value>``    set; the new value is echoed back to the sender
``/debleed/<channel>/<param>``            (no argument) reply ``/debleed/<channel>/<param> <value>``
``/debleed/save``                         write the changes into the gig file; reply ``/debleed/saved <path>``
``/debleed/meters/subscribe <port>``      stream ``/debleed/meters/<channel> <key dBFS> <gain
                                          reduction dB> <open 0/1>`` at 30 Hz to the sender's
                                          host, UDP ``<port>`` (key level ``FLOOR_DB`` = silence)
``/debleed/meters/unsubscribe <port>``    stop that stream
========================================  ===================================================

Replies go to the address and port the request came from. A value out of range, an unknown
channel or parameter, or one that cannot change live is answered with ``/debleed/error
<message>`` (the message names the value and what is allowed) and changes nothing. Values:
numbers as OSC int or float (``inf`` as a float or the string ``"inf"`` for ``ratio``), choices
as strings, booleans as OSC true/false or 0/1.

The server binds to 127.0.0.1 unless told otherwise: OSC has no authentication, so listening on
the network lets anyone there change the gig.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer

from debleed.dsp.params import PARAMS
from debleed.dsp.units import FLOOR_DB
from debleed.errors import DebleedError, EngineError

#: Default UDP port and host.
DEFAULT_PORT = 9000
DEFAULT_HOST = "127.0.0.1"
PREFIX = "/debleed"


def _message(address: str, *args) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def _osc_value(v):
    """A parameter value as an OSC argument (None becomes an empty string)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        return v
    return v


def _from_osc(name: str, v):
    """Convert an OSC argument to the parameter's type where OSC has none.

    Many controllers send every value as float32: an integral float is taken for an int
    parameter, 0.0/1.0 for a boolean, and a float32 is read as the shortest decimal that is the
    same float32 (0.3f is 0.3, not 0.30000001192092896). Numbers given as strings are refused,
    except ``"inf"``; a string is only taken by choice and key parameters.
    """
    p = PARAMS.get(name)
    if p is None:
        return v
    if isinstance(v, (bytes, bytearray)):
        raise DebleedError(f"{name}: an OSC blob is not a value, got {bytes(v)[:16]!r}")
    if p.kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)) and v in (0, 1):
            return bool(v)
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        return v  # refused by the parameter's check, which names it
    if p.kind == "int" and isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if p.kind == "float":
        if isinstance(v, str):
            if v.strip().lower() in ("inf", "+inf") and p.allow_inf:
                return math.inf
            return v  # refused by the check: numbers are OSC numbers
        if isinstance(v, float) and math.isfinite(v):
            return float(str(np.float32(v)))
        if isinstance(v, int) and not isinstance(v, bool):
            return float(v)
    return v


class OscServer:
    """The OSC surface of a :class:`~debleed.rt.control.LiveControl`.

    Parameters
    ----------
    control : LiveControl
    host : str
        Address to bind, default 127.0.0.1 (loopback only).
    port : int
        UDP port, 1-65535 (0: any free port, see :attr:`port`); default 9000.

    Raises
    ------
    EngineError
        If the port cannot be bound (in use, or not allowed); the message names host and port.
    """

    def __init__(self, control, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise DebleedError(f"--osc-port must be an integer in [0, 65535], got {port!r}")
        self.control = control
        self.subscribers: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        disp = Dispatcher()
        disp.set_default_handler(self._handle, needs_reply_address=True)
        try:
            # one thread, messages in arrival order: a fader's last value is the one that stays
            self.server = BlockingOSCUDPServer((host, port), disp)
        except OSError as e:
            raise EngineError(f"cannot listen for OSC on {host}:{port}: {e.strerror or e}") from None
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, name="debleed-osc", daemon=True)
        control.add_meter_callback(self._send_meters)

    def start(self) -> "OscServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _send(self, to, address: str, *args) -> None:
        try:
            self.server.socket.sendto(_message(address, *args), to)
        except OSError:
            pass  # a client that went away must not stop the server

    def _error(self, to, msg: str) -> None:
        self._send(to, f"{PREFIX}/error", msg)

    def _handle(self, client, address: str, *args) -> None:
        try:
            self._dispatch(client, address, args)
        except DebleedError as e:
            self._error(client, str(e))
        except Exception as e:  # an odd message must never stop the server
            self._error(client, f"{address}: {type(e).__name__}: {e}")

    def _dispatch(self, client, address: str, args) -> None:
        parts = address.strip("/").split("/")
        if not parts or parts[0] != PREFIX.strip("/") or len(parts) < 2:
            raise DebleedError(f"unknown address {address!r} (addresses start with {PREFIX}/)")
        if parts[1:] == ["save"]:
            path = self.control.save()
            self._send(client, f"{PREFIX}/saved", str(path))
            return
        if parts[1] == "meters" and len(parts) == 3 and parts[2] in ("subscribe", "unsubscribe"):
            if (len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], int)
                    or not 1 <= args[0] <= 65535):
                raise DebleedError(f"{address} needs one int argument, the UDP port 1-65535 to send to, got {list(args)!r}")
            to = (client[0], int(args[0]))
            with self._lock:
                (self.subscribers.add if parts[2] == "subscribe" else self.subscribers.discard)(to)
            return
        if len(parts) != 3:
            raise DebleedError(f"unknown address {address!r} (use {PREFIX}/<channel>/<parameter>, {PREFIX}/save or "
                               f"{PREFIX}/meters/subscribe)")
        channel, name = parts[1], parts[2]
        if not args:
            value = self.control.get(channel, name)
            self._send(client, address, _osc_value(value))
            return
        if len(args) != 1:
            raise DebleedError(f"{address} takes one value, got {len(args)}: {list(args)!r}")
        self.control.set(channel, name, _from_osc(name, args[0]))
        self._send(client, address, _osc_value(self.control.get(channel, name)))

    def _send_meters(self, rows) -> None:
        with self._lock:
            subs = list(self.subscribers)
        if not subs:
            return
        for r in rows:
            key = r["key_db"] if math.isfinite(r["key_db"]) else FLOOR_DB
            msg = _message(f"{PREFIX}/meters/{r['channel']}", float(key), float(r["gr_db"]), int(r["open"]))
            for to in subs:
                try:
                    self.server.socket.sendto(msg, to)
                except OSError:
                    pass


def address_table() -> str:
    """Markdown: every OSC address of a channel parameter (for the README)."""
    rows = ["| address | value | unit | range |", "|---|---|---|---|"]
    for p in PARAMS.values():
        if not p.live:
            continue
        kind = {"float": "float", "int": "int", "bool": "true/false or 0/1", "choice": "string", "key": "string"}[p.kind]
        rows.append(f"| `/debleed/<channel>/{p.name}` | {kind} | {p.unit} | {p.range_text().replace('|', chr(92) + '|')} |")
    return "\n".join(rows)
