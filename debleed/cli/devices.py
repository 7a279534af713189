"""``debleed devices`` and ``debleed midi-ports``: what ``debleed live --backend portaudio`` can
open (:mod:`debleed.rt.devices`)."""

from __future__ import annotations

import json

from debleed.rt.devices import list_devices, list_midi_inputs


def cmd_devices(args) -> int:
    info = list_devices()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("PortAudio host APIs:")
    for a in info["host_apis"]:
        di = "-" if a["default_input"] is None else a["default_input"]
        do = "-" if a["default_output"] is None else a["default_output"]
        print(f"  {a['index']:2d}  {a['name']:24s} default input {di}, default output {do}")
    print("devices (> default input, < default output):")
    if not info["devices"]:
        print("  none")
    else:
        print(f"  {'':2s} {'idx':>3s}  {'host API':16s} {'in':>3s} {'out':>4s} {'rate Hz':>8s}  name")
        for d in info["devices"]:
            mark = (">" if d["default_input"] else " ") + ("<" if d["default_output"] else " ")
            print(f"  {mark} {d['index']:3d}  {d['host_api'][:16]:16s} {d['inputs']:3d} {d['outputs']:4d} "
                  f"{d['default_samplerate_hz']:8.0f}  {d['name']}")
    if not any(a["name"] == "JACK Audio Connection Kit" for a in info["host_apis"]):
        print("(JACK appears as a host API only when a JACK server runs while PortAudio starts)")
    return 0


def cmd_midi_ports(args) -> int:
    apis = list_midi_inputs()
    if args.json:
        print(json.dumps(apis, indent=2))
        return 0
    if not apis:
        print("python-rtmidi was built without a MIDI API")
        return 1
    for a in apis:
        print(f"{a['name']} ({a['api']}):")
        if a["error"] is not None:
            print(f"  not available: {a['error']}")
        elif not a["ports"]:
            print("  no MIDI inputs")
        else:
            for i, p in enumerate(a["ports"]):
                print(f"  {i:3d}  {p}")
    print("(--midi-in NAME matches a substring of a port name; rtmidi opens the first API that has ports)")
    return 0


def register(subparsers) -> None:
    """Add ``debleed devices`` and ``debleed midi-ports`` to the CLI."""
    p = subparsers.add_parser("devices", help="list PortAudio host APIs and devices (channels, default rate)",
                              description="List PortAudio host APIs and devices: index (for --device), host "
                                          "API, input and output channels, default sample rate in Hz.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_devices)
    m = subparsers.add_parser("midi-ports", help="list MIDI input ports (python-rtmidi: ALSA, JACK)",
                              description="List MIDI input ports per rtmidi API; --midi-in NAME of the "
                                          "PortAudio backend matches a substring of a port name.")
    m.add_argument("--json", action="store_true", help="print JSON instead of a list")
    m.set_defaults(func=cmd_midi_ports)
