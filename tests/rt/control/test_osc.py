"""The OSC surface over a running chain (no JACK): value conversion and error replies."""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import time

import pytest
from pythonosc import osc_message
from pythonosc.osc_message_builder import OscMessageBuilder

from debleed.rt.control.osc import MAX_SUBSCRIBERS, OscServer, _from_osc
from tests.rt._blockengine import running_control

GIG = """\
[inputs]
snare = []
[midi]
connect = []
[[channel]]
name = "snare"
input = "snare"
[[channel]]
name = "m"
input = "snare"
key = "midi:38"
"""


def _dgram(address, *args) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


@pytest.fixture
def osc_raw(tmp_path, request):
    """``(send(bytes), recv() -> (address, args), control, server)``; the engine runs a block every
    ``interval_s`` (param, default 0.5 ms)."""
    path = tmp_path / "gig.toml"
    path.write_text(GIG)
    with running_control(path, interval_s=getattr(request, "param", 0.0005)) as ctl:
        srv = OscServer(ctl, port=0).start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)

        def send(data):
            sock.sendto(data, ("127.0.0.1", srv.port))

        def recv():
            m = osc_message.OscMessage(sock.recvfrom(65536)[0])
            return m.address, list(m.params)

        try:
            yield send, recv, ctl, srv
        finally:
            srv.close()
            sock.close()


@pytest.fixture
def osc(osc_raw):
    send, recv, ctl, _ = osc_raw

    def ask(address, *args):
        send(_dgram(address, *args))
        return recv()

    return ask, ctl


def test_controllers_that_send_only_floats_are_understood(osc):
    ask, ctl = osc
    assert ask("/debleed/m/midi_channel", 2.0) == ("/debleed/m/midi_channel", [2])
    assert ask("/debleed/m/velocity_depth", 1.0) == ("/debleed/m/velocity_depth", [True])
    assert ask("/debleed/snare/bypass", 0.0) == ("/debleed/snare/bypass", [False])
    ask("/debleed/snare/dry_wet", 0.3)  # sent as float32
    assert ctl.get("snare", "dry_wet") == 0.3
    assert ask("/debleed/snare/ratio", "inf")[1] == [math.inf]


@pytest.mark.parametrize("address, args, expect", [
    ("/debleed/m/midi_channel", [2.5], "midi_channel must be an integer in [0, 16], got 2.5"),
    ("/debleed/snare/threshold_db", ["-25"], "threshold_db must be a number in [-120, 0] dBFS, got '-25'"),
    ("/debleed/snare/bypass", [0.5], "bypass must be true or false, got 0.5"),
    ("/debleed/snare/threshold_db", [b"-25"], "an OSC blob is not a value"),
    ("/debleed/snare/threshold_db", [1.0, 2.0], "takes one value, got 2"),
    ("/debleed/meters/subscribe", [True], "needs one int argument"),
    ("/debleed/snare", [1.0], "unknown address '/debleed/snare'"),
    ("/other/thing", [], "addresses start with /debleed/"),
])
def test_bad_messages_are_answered_on_error_and_change_nothing(osc, address, args, expect):
    ask, ctl = osc
    reply = ask(address, *args)
    assert reply[0] == "/debleed/error" and expect in reply[1][0], reply
    assert ctl.changes == []


def test_from_osc_keeps_types_it_cannot_convert():
    assert _from_osc("mode", "duck") == "duck"
    assert _from_osc("threshold_db", -3) == -3.0 and _from_osc("release_ms", 0.1) == 0.1
    assert _from_osc("nonexistent", 1.5) == 1.5


def _bundle(timetag: int, *messages: bytes) -> bytes:
    return b"#bundle\0" + struct.pack(">Q", timetag) + b"".join(struct.pack(">i", len(m)) + m for m in messages)


def test_a_bundle_is_applied_at_once_whatever_its_timetag_and_never_delays_close(osc_raw):
    send, recv, ctl, srv = osc_raw
    send(_bundle(0xFFFFFFFF_00000000, _dgram("/debleed/snare/threshold_db", -33.0),
                 _bundle(0xFFFFFFFF_FFFFFFFF, _dgram("/debleed/snare/dry_wet", 0.5))))
    assert recv() == ("/debleed/snare/threshold_db", [-33.0])
    assert recv() == ("/debleed/snare/dry_wet", [0.5])
    assert ctl.get("snare", "threshold_db") == -33.0
    send(_bundle(0xFFFFFFFF_00000000, _dgram("/debleed/snare/threshold_db", -34.0)))
    t0 = time.monotonic()
    srv.close()
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("data, what", [
    (_dgram("/debleed/snare/threshold_db")[:-4] + b",f\0\0", "type tag 'f' has no data"),
    (_dgram("/debleed/snare/threshold_db", -20.0) + b"\0\0\0\0", "after the last argument"),
    (_dgram("/debleed/snare/threshold_db")[:-4] + b",x\0\0", "unsupported OSC type tag 'x'"),
    (b"/debleed/snare/threshold_db", "no terminating NUL"),
    (_bundle(1, _dgram("/debleed/snare/threshold_db", -20.0))[:-2], "runs past|has size"),
])
def test_a_malformed_packet_changes_nothing_and_is_answered_on_error(osc_raw, data, what):
    import re

    send, recv, ctl, _ = osc_raw
    before = ctl.get("snare", "threshold_db")
    send(data)
    address, args = recv()
    assert address == "/debleed/error" and "malformed OSC packet" in args[0] and re.search(what, args[0]), args
    assert ctl.get("snare", "threshold_db") == before and ctl.changes == []


@pytest.mark.parametrize("osc_raw", [0.003], indirect=True)  # a block every 3 ms: a set waits for one
def test_a_burst_of_sets_ends_at_the_last_value_sent(osc_raw):
    send, recv, ctl, srv = osc_raw
    values = [-60.0 + 0.05 * i for i in range(1000)]
    for v in values:
        send(_dgram("/debleed/snare/threshold_db", v))
    assert srv.wait_idle(10.0)
    last = float(str(struct.unpack(">f", struct.pack(">f", values[-1]))[0]))
    assert ctl.get("snare", "threshold_db") == pytest.approx(values[-1], abs=1e-4)
    assert ctl.changes[-1]["value"] == ctl.get("snare", "threshold_db")
    assert srv.coalesced > 0 and len(ctl.changes) + srv.coalesced == len(values)
    replies = []
    with contextlib.suppress(socket.timeout):
        while True:
            replies.append(recv())
    assert replies[-1][0] == "/debleed/snare/threshold_db" and replies[-1][1][0] == pytest.approx(last, abs=1e-4)


def test_meter_subscribers_are_capped(osc_raw):
    send, recv, _, srv = osc_raw
    for port in range(20000, 20000 + MAX_SUBSCRIBERS + 1):
        send(_dgram("/debleed/meters/subscribe", port))  # no reply when taken
    address, args = recv()
    assert address == "/debleed/error" and f"already {MAX_SUBSCRIBERS} meter subscribers" in args[0]
    assert len(srv.subscribers) == MAX_SUBSCRIBERS
    send(_dgram("/debleed/meters/unsubscribe", 20000))
    send(_dgram("/debleed/meters/subscribe", 30000))
    send(_dgram("/debleed/snare/threshold_db"))  # a query, answered after both
    assert recv()[0] == "/debleed/snare/threshold_db"
    assert ("127.0.0.1", 30000) in srv.subscribers and len(srv.subscribers) == MAX_SUBSCRIBERS


def test_a_reply_too_long_for_one_datagram_is_shortened_not_dropped(osc_raw):
    send, recv, _, srv = osc_raw
    # the error names the values it got: 10,000 of them would not fit one datagram
    send(_dgram("/debleed/snare/threshold_db", *([-20.0] * 10000)))
    address, args = recv()
    assert address == "/debleed/error" and "takes one value, got 10000" in args[0] and len(args[0]) < 1000
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    try:
        srv._error(sock.getsockname(), "y" * 100_000)
        m = osc_message.OscMessage(sock.recvfrom(65536)[0])
        assert m.address == "/debleed/error" and m.params[0].endswith("(shortened to fit one UDP datagram)")
        srv._send(sock.getsockname(), "/debleed/snare/key", "z" * 100_000)
        m = osc_message.OscMessage(sock.recvfrom(65536)[0])
        assert m.address == "/debleed/error" and "over the 65507 bytes of one UDP datagram" in m.params[0]
    finally:
        sock.close()
