"""`debleed devices` and `debleed midi-ports`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from debleed.cli import devices


def debleed(*args, env=None):
    return subprocess.run([sys.executable, "-m", "debleed.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


class FakeSd:
    """sounddevice's query functions for a machine with two cards."""

    class PortAudioError(Exception):
        pass

    class default:
        device = [1, 0]

    @staticmethod
    def query_hostapis():
        return ({"name": "ALSA", "devices": [0, 1], "default_input_device": 1, "default_output_device": 0},
                {"name": "JACK Audio Connection Kit", "devices": [2], "default_input_device": 2,
                 "default_output_device": 2})

    @staticmethod
    def query_devices():
        return [
            {"name": "HDA Intel PCH: ALC3246 (hw:0,0)", "hostapi": 0, "max_input_channels": 2,
             "max_output_channels": 4, "default_samplerate": 44100.0},
            {"name": "Scarlett 18i20 USB (hw:1,0)", "hostapi": 0, "max_input_channels": 18,
             "max_output_channels": 20, "default_samplerate": 48000.0},
            {"name": "system", "hostapi": 1, "max_input_channels": 8, "max_output_channels": 8,
             "default_samplerate": 96000.0},
        ]


def test_devices_lists_host_apis_and_devices_with_channels_and_rates(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSd)
    info = devices.list_devices()
    assert [a["name"] for a in info["host_apis"]] == ["ALSA", "JACK Audio Connection Kit"]
    assert info["host_apis"][0]["default_input"] == 1
    scarlett = info["devices"][1]
    assert scarlett == {"index": 1, "name": "Scarlett 18i20 USB (hw:1,0)", "host_api": "ALSA", "inputs": 18,
                        "outputs": 20, "default_samplerate_hz": 48000.0, "default_input": True,
                        "default_output": False}
    assert info["devices"][2]["host_api"] == "JACK Audio Connection Kit"
    assert devices.cmd_devices(type("A", (), {"json": False})()) == 0
    out = capsys.readouterr().out
    row = {name: line.split() for line in out.splitlines()
           for name in ("ALC3246", "Scarlett", "system") if line.rstrip().endswith(name) or name + " " in line}
    assert row["Scarlett"][:6] == [">", "1", "ALSA", "18", "20", "48000"], out
    assert row["ALC3246"][:6] == ["<", "0", "ALSA", "2", "4", "44100"], out
    assert row["system"][:2] == ["2", "JACK"] and row["system"][-3:] == ["8", "96000", "system"], out


def test_devices_command_runs_on_this_machine_and_prints_json():
    import sounddevice as sd

    r = debleed("devices", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert [a["name"] for a in info["host_apis"]] == [a["name"] for a in sd.query_hostapis()]
    assert len(info["devices"]) == len(sd.query_devices())
    r = debleed("devices")
    assert r.returncode == 0 and "PortAudio host APIs:" in r.stdout


@pytest.mark.jack
def test_midi_ports_lists_jack_midi_sources(jack_server):
    import jack

    src = jack.Client("midisrc", servername=jack_server.name)
    src.midi_outports.register("pads")
    src.activate()
    try:
        r = debleed("midi-ports", "--json", env=jack_server.env)
    finally:
        src.deactivate()
        src.close()
    assert r.returncode == 0, r.stderr
    apis = {a["api"]: a for a in json.loads(r.stdout)}
    assert apis["jack"]["error"] is None
    assert "midisrc:pads" in apis["jack"]["ports"]


def test_midi_ports_without_a_server_says_so_and_starts_none(tmp_path):
    env = {**os.environ, "JACK_DEFAULT_SERVER": "no-such-server-midi"}
    env.pop("JACK_NO_START_SERVER", None)
    r = debleed("midi-ports", env=env)
    assert r.returncode == 0, r.stderr
    assert "Jack (jack):\n  not available:" in r.stdout
    assert "not running" in r.stdout
    from debleed.rt.server import registered_servers

    assert "no-such-server-midi" not in {n for _, n, _ in registered_servers()}
