"""Live control end to end on a private dummy jackd: OSC changes a running `debleed live`, the
recording follows at the logged frame, render --changes replays it bit for bit; NSM."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from pythonosc import osc_message
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import ThreadingOSCUDPServer

from debleed.rt.config import load_config
from debleed.rt.control import load_changes
from debleed.rt.player import play_record
from debleed.offline.render import render_arrays
from tests.conftest import read_json

pytestmark = pytest.mark.jack

SR, PERIOD = 48000, 128
GIG = """\
# live-control test gig
[client]
name = "dblctl"
[inputs]
snare = []
other = []
[[channel]]
name = "snare"
input = "snare"
threshold_db = -30.0    # by ear
range_db = -60.0
attack_ms = 0.3
hold_ms = 20.0
release_ms = 30.0
[[channel]]
name = "duck"
input = "snare"
mode = "duck"
key = "input:other"
threshold_db = -30.0
range_db = -20.0
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OscClient:
    """A real OSC client: sends from its own socket and reads the replies."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10.0)
        self.to = ("127.0.0.1", port)

    def ask(self, address, *args):
        b = OscMessageBuilder(address=address)
        for a in args:
            b.add_arg(a)
        self.sock.sendto(b.build().dgram, self.to)
        m = osc_message.OscMessage(self.sock.recvfrom(65536)[0])
        return m.address, list(m.params)


def scene(seconds, seed=1):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(int(0.06 * SR)) / SR
    snare = (0.02 * rng.standard_normal(n)).astype(np.float32)  # -34 dBFS wash
    other = np.zeros(n, np.float32)
    for h in range(2000, n - t.size, 9000):
        hit = (0.5 * rng.standard_normal(t.size) * np.exp(-t / 0.015)).astype(np.float32)
        snare[h:h + t.size] += hit
        other[h:h + t.size] += hit
    return {"snare": snare, "other": other}


def start(cfg_path, server, *args, env=None):
    cmd = [sys.executable, "-m", "debleed.cli", "live", "--config", str(cfg_path), "--quiet", *args]
    proc = subprocess.Popen(cmd, env=env or server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t_end = time.monotonic() + 120
    while time.monotonic() < t_end:
        line = proc.stdout.readline()
        if "engine running" in line:
            return proc, line
        if not line and proc.poll() is not None:
            raise AssertionError(f"debleed live exited: {proc.stderr.read()[-2000:]}")
    proc.kill()
    raise AssertionError("debleed live did not start")


def stop(proc):
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out + err


#: The replay test's gig: GIG plus a bypassed copy of the snare, which shows whether a cycle was
#: dropped (a loaded machine can time a client out even in freewheel; such a run proves nothing
#: about the chain and is repeated).
GIG_RAW = GIG + '[[channel]]\nname = "raw"\ninput = "snare"\nmode = "bypass"\n'


def _osc_session(server, tmp_path, takes):
    """One `debleed live` run: playback in freewheel, OSC changes (good and bad) during it."""
    gig = tmp_path / "gig.toml"
    gig.write_text(GIG_RAW)
    log = tmp_path / "changes.jsonl"
    port = free_port()
    proc, _ = start(gig, server, "--osc-port", str(port), "--changes-log", str(log),
                    "--stats-json", str(tmp_path / "stats.json"))
    osc = OscClient(port)
    info, result = {}, {}

    def play():
        result["rec"] = play_record({f"dblctl:in_{k}": v for k, v in takes.items()},
                                    ["dblctl:out_snare", "dblctl:out_duck", "dblctl:out_raw"],
                                    server_name=server.name, tail_frames=0, name="tctl", info=info,
                                    timeout_s=300)

    th = threading.Thread(target=play)
    try:
        th.start()
        t_end = time.monotonic() + 60
        while "first_frame_time" not in info and time.monotonic() < t_end:
            time.sleep(0.001)
        assert "first_frame_time" in info, "playback did not start"
        good = [("/debleed/snare/threshold_db", -12.0), ("/debleed/duck/range_db", -6.0),
                ("/debleed/snare/mode", "duck")]
        replies = [osc.ask(*good[0])]
        # bad ones in between: each answered on /debleed/error, nothing changes
        errors = [osc.ask("/debleed/snare/threshold_db", 12.0), osc.ask("/debleed/snare/nonsense", 1.0),
                  osc.ask("/debleed/tom/threshold_db", -3.0), osc.ask("/debleed/snare/lookahead_ms", 3.0),
                  osc.ask("/nope", 1)]
        replies += [osc.ask(*g) for g in good[1:]]
        query = osc.ask("/debleed/snare/threshold_db")
        th.join(timeout=300)
    finally:
        rc, out = stop(proc)
    return dict(gig=gig, log=log, rc=rc, out=out, info=info, rec=result.get("rec"), good=good, replies=replies,
                errors=errors, query=query)


def test_osc_changes_follow_at_the_logged_frame_and_render_replays_them(jack_server, tmp_path):
    takes = scene(20.0)
    n = takes["snare"].size
    for attempt in range(3):
        (tmp_path / f"run{attempt}").mkdir()
        run = _osc_session(jack_server, tmp_path / f"run{attempt}", takes)
        assert run["rc"] == 0, run["out"]
        if run["rec"] is not None and np.array_equal(run["rec"][2], takes["snare"]):
            break
    else:
        pytest.fail("every run dropped a cycle (the bypassed channel differs from its input)")
    gig, log, rc, out, info = run["gig"], run["log"], run["rc"], run["out"], run["info"]
    errors, replies, good, query = run["errors"], run["replies"], run["good"], run["query"]
    tmp_path = gig.parent
    assert rc == 0, out
    assert [r[0] for r in errors] == ["/debleed/error"] * 5
    assert "threshold_db must be in [-120, 0] dBFS, got 12.0" in errors[0][1][0]
    assert "unknown parameter 'nonsense'" in errors[1][1][0] and "unknown channel 'tom'" in errors[2][1][0]
    assert "cannot change while running" in errors[3][1][0]
    assert replies == [(a, [v]) for a, v in good] and query == ("/debleed/snare/threshold_db", [-12.0])
    entries = [json.loads(x) for x in log.read_text().splitlines()][1:]
    assert [(e["channel"], e["param"]) for e in entries] == [("snare", "threshold_db"), ("duck", "range_db"),
                                                             ("snare", "mode")]
    assert read_json(tmp_path / "stats.json")["changes"] == entries
    # the log's frames are chain frames; JACK's frame time says where the takes began
    origins = {e["frame"] - (e["clock"] - info["first_frame_time"]) for e in entries}
    assert len(origins) == 1, f"chain frames and JACK frame times disagree: {entries}"
    origin = origins.pop()
    rel = [e["frame"] - origin for e in entries]
    assert all(0 < f < n and f % PERIOD == 0 for f in rel), (rel, n)
    rec = run["rec"][:2]
    cfg = load_config(gig)
    x = np.stack([takes["snare"], takes["other"]])
    replay = render_arrays(cfg, x, SR, PERIOD, changes=load_changes(log, origin=origin))
    assert replay["changes_moved"] == 0
    assert np.array_equal(rec, replay["outputs"][:2]), "render --changes differs from the live run"
    plain = render_arrays(cfg, x, SR, PERIOD)["outputs"][:2]
    # the output follows at the logged frame: the same up to it, different after it
    assert np.array_equal(plain[0, :rel[0]], rec[0, :rel[0]])
    assert not np.array_equal(plain[0, rel[0]:rel[0] + 9000 * 4], rec[0, rel[0]:rel[0] + 9000 * 4])
    assert np.array_equal(plain[1, :rel[1]], rec[1, :rel[1]])
    assert not np.array_equal(plain[1, rel[1]:], rec[1, rel[1]:])
    # the CLI replays the same log into files
    from debleed.cli import main
    import soundfile as sf

    takes_dir = tmp_path / "takes"
    takes_dir.mkdir()
    for k, v in takes.items():
        sf.write(str(takes_dir / f"{k}.wav"), v, SR, subtype="FLOAT")
    assert main(["render", "--config", str(gig), "--input-dir", str(takes_dir), "--output-dir",
                 str(tmp_path / "out"), "--no-plots", "--changes", str(log), "--changes-origin", str(origin)]) == 0
    assert np.array_equal(sf.read(str(tmp_path / "out" / "snare.wav"), dtype="float32")[0], rec[0])


@contextlib.contextmanager
def osc_live(server, tmp_path):
    """`debleed live` on GIG with OSC on a free port; yields {"gig", "osc"}, then "rc" and "out"."""
    gig = tmp_path / "gig.toml"
    gig.write_text(GIG)
    port = free_port()
    # the control plane is the same for both engines; the Python one starts without compiling the
    # cfunc (the cfunc's live changes are tested by the render-replay test above)
    proc, _ = start(gig, server, "--osc-port", str(port), "--engine", "python")
    info = {"gig": gig, "osc": OscClient(port)}
    try:
        yield info
    finally:
        info["rc"], info["out"] = stop(proc)


def test_osc_save_keeps_comments(jack_server, tmp_path):
    with osc_live(jack_server, tmp_path) as run:
        osc, gig = run["osc"], run["gig"]
        assert osc.ask("/debleed/snare/release_ms", 45.0) == ("/debleed/snare/release_ms", [45.0])
        assert osc.ask("/debleed/snare/bypass", 1) == ("/debleed/snare/bypass", [True])
        assert osc.ask("/debleed/save") == ("/debleed/saved", [str(gig)])
    assert run["rc"] == 0, run["out"]
    text = gig.read_text()
    assert "# live-control test gig" in text and "threshold_db = -30.0    # by ear" in text
    assert "release_ms = 45.0" in text and "bypass = true" in text
    assert load_config(gig).channel[0].bypass is True


def test_meters_stream_to_a_subscriber(jack_server, tmp_path):
    with osc_live(jack_server, tmp_path) as run:
        osc = run["osc"]
        got = []
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(5.0)
        b = OscMessageBuilder(address="/debleed/meters/subscribe")
        b.add_arg(sink.getsockname()[1])
        osc.sock.sendto(b.build().dgram, osc.to)
        t0 = time.monotonic()
        while len(got) < 20:
            got.append(osc_message.OscMessage(sink.recvfrom(65536)[0]))
        rate = len(got) / 2 / (time.monotonic() - t0)  # two channels per meter tick
    assert run["rc"] == 0, run["out"]
    assert {m.address for m in got} == {"/debleed/meters/snare", "/debleed/meters/duck"}
    key, gr, is_open = got[0].params
    assert key <= 0.0 and gr <= 0.0 and is_open in (0, 1)
    assert rate > 5.0  # streams (30 Hz nominal), not a single reply


class FakeNsm:
    """A minimal NSM server: records messages, sends open and save, collects replies."""

    def __init__(self):
        self.msgs = []
        self.client = None
        self.event = threading.Condition()
        d = Dispatcher()
        d.set_default_handler(self._any, needs_reply_address=True)
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), d)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"osc.udp://127.0.0.1:{self.server.server_address[1]}/"

    def _any(self, client, address, *args):
        with self.event:
            self.client = client
            self.msgs.append((address, list(args)))
            self.event.notify_all()

    def send(self, address, *args):
        b = OscMessageBuilder(address=address)
        for a in args:
            b.add_arg(a)
        self.server.socket.sendto(b.build().dgram, self.client)

    def wait_for(self, pred, timeout=60):
        with self.event:
            assert self.event.wait_for(lambda: any(pred(m) for m in self.msgs), timeout), self.msgs
            return [m for m in self.msgs if pred(m)][0]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_nsm_announce_open_save_and_quit(jack_server, tmp_path):
    template = tmp_path / "template.toml"
    template.write_text(GIG)
    session = tmp_path / "session" / "debleed.nABCD"
    nsm = FakeNsm()
    port = free_port()
    env = {**jack_server.env, "NSM_URL": nsm.url}
    cmd = [sys.executable, "-m", "debleed.cli", "live", "--config", str(template), "--quiet", "--engine", "python",
           "--osc-port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addr, args = nsm.wait_for(lambda m: m[0] == "/nsm/server/announce")
        assert args[0] == "debleed" and args[3:5] == [1, 2] and args[5] == proc.pid
        nsm.send("/reply", "/nsm/server/announce", "hi", "fake-nsm", ":server-control:")
        nsm.send("/nsm/client/open", str(session), "debleed", "nABCD")
        nsm.wait_for(lambda m: m[0] == "/reply" and m[1][:2] == ["/nsm/client/open", "OK"], timeout=120)
        gig = session / "gig.toml"
        assert gig.read_text() == GIG  # copied from the template into the session folder
        import jack

        probe = jack.Client("nsmprobe", servername=jack_server.name)
        try:
            assert probe.get_ports("nABCD:out_snare"), "the JACK client is not named by the client id"
        finally:
            probe.close()
        assert OscClient(port).ask("/debleed/snare/threshold_db", -18.0)[1] == [-18.0]
        nsm.send("/nsm/client/save")
        nsm.wait_for(lambda m: m[0] == "/reply" and m[1][:2] == ["/nsm/client/save", "OK"])
        assert "threshold_db = -18.0    # by ear" in gig.read_text()
        assert template.read_text() == GIG  # the template is never written
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        nsm.close()
    assert proc.returncode == 0, out + err
    assert "stopped after" in out


def test_a_burst_of_changes_is_taken_in_order(jack_server, tmp_path):
    """A fader sends values faster than the audio thread takes them: the last one sent stays."""
    values = [-40.0 + 0.5 * i for i in range(40)]
    with osc_live(jack_server, tmp_path) as run:
        osc = run["osc"]
        for v in values:
            b = OscMessageBuilder(address="/debleed/snare/threshold_db")
            b.add_arg(v)
            osc.sock.sendto(b.build().dgram, osc.to)
        # sets replaced before the audio thread took them are coalesced (no reply); the ones
        # applied are echoed in the order sent, ending with the last value
        echoed = []
        while not echoed or echoed[-1] != values[-1]:
            echoed.append(osc_message.OscMessage(osc.sock.recvfrom(65536)[0]).params[0])
        final = osc.ask("/debleed/snare/threshold_db")
    assert run["rc"] == 0, run["out"]
    assert echoed == sorted(echoed) and set(echoed) <= set(values)
    assert final == ("/debleed/snare/threshold_db", [values[-1]])
