"""The OSC surface over a running chain (no JACK): value conversion and error replies."""

from __future__ import annotations

import math
import socket

import pytest
from pythonosc import osc_message
from pythonosc.osc_message_builder import OscMessageBuilder

from debleed.rt.control.osc import OscServer, _from_osc
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


@pytest.fixture
def osc(tmp_path):
    path = tmp_path / "gig.toml"
    path.write_text(GIG)
    with running_control(path) as ctl:
        srv = OscServer(ctl, port=0).start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)

        def ask(address, *args):
            b = OscMessageBuilder(address=address)
            for a in args:
                b.add_arg(a)
            sock.sendto(b.build().dgram, ("127.0.0.1", srv.port))
            m = osc_message.OscMessage(sock.recvfrom(65536)[0])
            return m.address, list(m.params)

        try:
            yield ask, ctl
        finally:
            srv.close()
            sock.close()


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
