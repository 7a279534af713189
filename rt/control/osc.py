"""OSC control of a running gig (OSC 1.0 over UDP; python-osc builds the replies).

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

How packets are taken (no packet can stall control or delay shutdown):

- one thread only reads the socket (a receive buffer of :data:`RCVBUF_BYTES` requested) and
  queues what it read; another applies it. A set waits for the audio thread (a block or two),
  so while one is applied, later sets of the same address replace the queued one: a burst of
  fader moves ends at its last value, answered once with the value in force;
- bundles are taken apart and their messages applied at once, whatever their timetag (a
  timetag in the future is not waited for);
- a packet that is not well-formed OSC (a type tag without its data, an unknown type, bytes
  left over) changes nothing and is answered with ``/debleed/error``;
- at most :data:`MAX_SUBSCRIBERS` meter subscribers; a reply that does not fit one UDP
  datagram is answered with ``/debleed/error`` instead (an error text is shortened to fit).
"""

from __future__ import annotations

import math
import select
import socket
import struct
import threading
from collections import OrderedDict

import numpy as np

from pythonosc.osc_message_builder import OscMessageBuilder

from debleed.dsp.params import PARAMS
from debleed.dsp.units import FLOOR_DB
from debleed.errors import DebleedError, EngineError

#: Default UDP port and host.
DEFAULT_PORT = 9000
DEFAULT_HOST = "127.0.0.1"
PREFIX = "/debleed"
#: Receive buffer asked for, bytes (the kernel caps it at net.core.rmem_max).
RCVBUF_BYTES = 4 << 20
#: Meter subscribers at most (each gets every channel's meters at 30 Hz).
MAX_SUBSCRIBERS = 16
#: Largest UDP payload over IPv4, bytes: a reply must fit one datagram.
MAX_DATAGRAM = 65507
#: How often the threads look at the stop flag, s (the bound on :meth:`OscServer.close`).
POLL_S = 0.05


class OscParseError(DebleedError):
    """A packet that is not well-formed OSC 1.0/1.1."""


def _osc_string(data: bytes, i: int, what: str) -> tuple[str, int]:
    end = data.find(b"\0", i)
    if end < 0:
        raise OscParseError(f"{what} at byte {i} has no terminating NUL")
    nxt = (end + 4) & ~3
    if nxt > len(data):
        raise OscParseError(f"{what} at byte {i} is not padded to 4 bytes")
    try:
        return data[i:end].decode("utf-8"), nxt
    except UnicodeDecodeError:
        raise OscParseError(f"{what} at byte {i} is not UTF-8") from None


_FIXED = {"i": (">i", 4), "f": (">f", 4), "h": (">q", 8), "d": (">d", 8), "t": (">Q", 8), "c": (">I", 4),
          "r": (">I", 4), "m": (">I", 4)}
_NODATA = {"T": True, "F": False, "N": None, "I": math.inf}


def parse_message(data: bytes) -> tuple[str, list]:
    """Strictly parse one OSC message: ``(address, args)``.

    Unlike python-osc's parser, a type tag without its data, an unknown type tag or bytes after
    the last argument are errors (python-osc reads ``,f`` without data as 0.0).

    Raises
    ------
    OscParseError
        Naming what is wrong and where.
    """
    address, i = _osc_string(data, 0, "address")
    if not address.startswith("/"):
        raise OscParseError(f"address {address[:64]!r} does not start with '/'")
    if i == len(data):  # OSC 1.0: a message without a type tag string has no arguments
        return address, []
    tags, i = _osc_string(data, i, "type tag string")
    if not tags.startswith(","):
        raise OscParseError(f"{address}: type tag string {tags[:32]!r} does not start with ','")
    args = []
    for t in tags[1:]:
        if t in _NODATA:
            args.append(_NODATA[t])
        elif t in _FIXED:
            fmt, n = _FIXED[t]
            if i + n > len(data):
                raise OscParseError(f"{address}: type tag {t!r} has no data ({len(data) - i} byte(s) left, "
                                    f"needs {n})")
            args.append(struct.unpack_from(fmt, data, i)[0])
            i += n
        elif t in "sS":
            v, i = _osc_string(data, i, f"{address}: string argument")
            args.append(v)
        elif t == "b":
            if i + 4 > len(data):
                raise OscParseError(f"{address}: type tag 'b' has no size")
            (n,) = struct.unpack_from(">i", data, i)
            end = i + 4 + n
            if n < 0 or end > len(data):
                raise OscParseError(f"{address}: blob of {n} byte(s) runs past the packet")
            args.append(data[i + 4:end])
            i = (end + 3) & ~3
        else:
            raise OscParseError(f"{address}: unsupported OSC type tag {t!r} (in {tags[:32]!r})")
    if i != len(data):
        raise OscParseError(f"{address}: {len(data) - i} byte(s) after the last argument (type tags {tags[:32]!r})")
    return address, args


def parse_packet(data: bytes, depth: int = 0) -> list[tuple[str, list]]:
    """Every message of a packet (a message, or a bundle, nested bundles included) in order.

    A bundle's timetag is ignored: its messages are for now (see the module docs).

    Raises
    ------
    OscParseError
        If any part of the packet is malformed (then none of it is used).
    """
    if not data.startswith(b"#bundle\0"):
        return [parse_message(data)]
    if depth > 8:
        raise OscParseError("bundles nested deeper than 8 levels")
    if len(data) < 16:
        raise OscParseError("bundle without its timetag")
    out, i = [], 16
    while i < len(data):
        if i + 4 > len(data):
            raise OscParseError(f"bundle element at byte {i} has no size")
        (n,) = struct.unpack_from(">i", data, i)
        if n <= 0 or n % 4 or i + 4 + n > len(data):
            raise OscParseError(f"bundle element at byte {i} has size {n}, {len(data) - i - 4} byte(s) left")
        out += parse_packet(data[i + 4:i + 4 + n], depth + 1)
        i += 4 + n
    return out


def _message(address: str, *args) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def _osc_value(v):
    """A parameter value as an OSC argument: None (an unset path) becomes an empty string."""
    return "" if v is None else v


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

    Notes
    -----
    Two threads: a receiver that only reads datagrams and queues their messages (a set
    replaces the queued set of the same address), and a worker that applies them in order.
    :meth:`close` returns within about :data:`POLL_S` plus the change being applied (bounded by
    the control's apply timeout).
    """

    def __init__(self, control, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise DebleedError(f"--osc-port must be an integer in [0, 65535], got {port!r}")
        self.control = control
        self.subscribers: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: OrderedDict = OrderedDict()
        self._serial = 0
        self._busy = False
        self._stop = threading.Event()
        self.coalesced = 0  # sets replaced by a later one of the same address before being applied
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise EngineError(f"cannot listen for OSC on {host}:{port}: {e.strerror or e}") from None
        self.socket = sock
        self.host, self.port = sock.getsockname()[:2]
        self._threads = [threading.Thread(target=self._receive_loop, name="debleed-osc-rx", daemon=True),
                         threading.Thread(target=self._work_loop, name="debleed-osc", daemon=True)]
        control.add_meter_callback(self._send_meters)

    def start(self) -> "OscServer":
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        """Stop both threads and close the socket (never waits for a timetag)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5.0)
        self.socket.close()

    # --- receiving ---------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.socket], [], [], POLL_S)
                if not ready:
                    continue
                data, client = self.socket.recvfrom(65536)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                continue
            self.receive(data, client)

    def receive(self, data: bytes, client) -> None:
        """Queue the messages of one packet from ``client`` (or answer an error for a bad one)."""
        if client == (self.host, self.port):
            return  # our own reply looped back: answering it would never end
        try:
            messages = parse_packet(data)
        except OscParseError as e:
            self._error(client, f"malformed OSC packet ({len(data)} bytes), ignored: {e}")
            return
        with self._cond:
            for address, args in messages:
                if args and len(address.strip("/").split("/")) == 3 and address.split("/")[2] != "meters":
                    key = ("set", address)  # a later set of this address replaces a queued one
                    if self._pending.pop(key, None) is not None:
                        self.coalesced += 1
                else:
                    self._serial += 1
                    key = ("msg", self._serial)
                self._pending[key] = (client, address, args)
            self._cond.notify()

    def _work_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop.is_set():
                    self._cond.wait(POLL_S)
                if self._stop.is_set():
                    return
                _, (client, address, args) = self._pending.popitem(last=False)
                self._busy = True
            try:
                self._handle(client, address, *args)
            finally:
                with self._cond:
                    self._busy = False

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued message was applied (for tests and tools); True if so."""
        import time

        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            with self._cond:
                if not self._pending and not self._busy:
                    return True
            time.sleep(0.005)
        return False

    # --- replies -----------------------------------------------------------------------------
    def _send(self, to, address: str, *args) -> None:
        msg = _message(address, *args)
        if len(msg) > MAX_DATAGRAM:
            if address == f"{PREFIX}/error" and args and isinstance(args[0], str):
                text = args[0].encode()[:MAX_DATAGRAM - 256].decode(errors="ignore")
                msg = _message(address, text + " ... (shortened to fit one UDP datagram)")
            else:
                msg = _message(f"{PREFIX}/error", f"the reply to {address[:200]} is {len(msg)} bytes, over the "
                                                  f"{MAX_DATAGRAM} bytes of one UDP datagram: not sent")
        try:
            self.socket.sendto(msg, to)
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
            raise DebleedError(f"unknown address {address[:200]!r} (addresses start with {PREFIX}/)")
        if parts[1:] == ["save"]:
            path = self.control.save()
            self._send(client, f"{PREFIX}/saved", str(path))
            return
        if parts[1] == "meters" and len(parts) == 3 and parts[2] in ("subscribe", "unsubscribe"):
            if (len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], int)
                    or not 1 <= args[0] <= 65535):
                raise DebleedError(f"{address} needs one int argument, the UDP port 1-65535 to send to, "
                                   f"got {_short(args)}")
            to = (client[0], int(args[0]))
            with self._lock:
                if parts[2] == "unsubscribe":
                    self.subscribers.discard(to)
                elif to not in self.subscribers:
                    if len(self.subscribers) >= MAX_SUBSCRIBERS:
                        raise DebleedError(f"{address}: already {MAX_SUBSCRIBERS} meter subscribers (the most "
                                           f"allowed); unsubscribe one first")
                    self.subscribers.add(to)
            return
        if len(parts) != 3:
            raise DebleedError(f"unknown address {address[:200]!r} (use {PREFIX}/<channel>/<parameter>, "
                               f"{PREFIX}/save or {PREFIX}/meters/subscribe)")
        channel, name = parts[1], parts[2]
        if not args:
            value = self.control.get(channel, name)
            self._send(client, address, _osc_value(value))
            return
        if len(args) != 1:
            raise DebleedError(f"{address} takes one value, got {len(args)}: {_short(args)}")
        if args[0] is None:
            raise DebleedError(f"{address}: OSC nil is not a value")
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
                    self.socket.sendto(msg, to)
                except OSError:
                    pass


def _short(args, limit: int = 200) -> str:
    """``list(args)`` as text, at most ``limit`` characters (a reply must fit a datagram)."""
    text = repr(list(args))
    return text if len(text) <= limit else text[:limit] + f"... ({len(args)} values)"


def address_table() -> str:
    """Markdown: every OSC address of a channel parameter (for the README)."""
    rows = ["| address | value | unit | range |", "|---|---|---|---|"]
    for p in PARAMS.values():
        if not p.live:
            continue
        kind = {"float": "float", "int": "int", "bool": "true/false or 0/1", "choice": "string", "key": "string"}[p.kind]
        rows.append(f"| `/debleed/<channel>/{p.name}` | {kind} | {p.unit} | {p.range_text().replace('|', chr(92) + '|')} |")
    return "\n".join(rows)
