"""What ``debleed live --backend portaudio`` can open: PortAudio devices and MIDI inputs
(the ``debleed devices`` and ``debleed midi-ports`` commands print them, :mod:`debleed.cli.devices`).

``devices`` lists PortAudio's host APIs and devices (sounddevice): index, host API, input and
output channel counts, default sample rate, and which devices are the defaults. The index or a
substring of the name is what ``--device`` takes. PortAudio lists JACK as a host API only when
a JACK server runs while it starts.

``midi-ports`` lists MIDI inputs (python-rtmidi) for every MIDI API rtmidi was built with
(ALSA sequencer, JACK MIDI), saying why an API is unavailable (no ``/dev/snd/seq``, no JACK
server). ``--midi-in NAME`` of the PortAudio backend matches a substring of a name shown;
rtmidi's default input opens the first API that has ports.
"""

from __future__ import annotations

import os

from debleed.errors import EngineError


def list_devices() -> dict:
    """PortAudio's host APIs and devices.

    Returns
    -------
    dict
        ``{"host_apis": [{"index", "name", "default_input", "default_output"}],
        "devices": [{"index", "name", "host_api", "inputs", "outputs", "default_samplerate_hz",
        "default_input", "default_output"}]}``; default device indices are None when there is
        none.

    Raises
    ------
    EngineError
        PortAudio (``libportaudio2``) cannot be loaded or initialised.
    """
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise EngineError(f"cannot load PortAudio through sounddevice: {e} (install Debian's libportaudio2)") from None
    try:
        apis = sd.query_hostapis()
        devs = sd.query_devices()
    except sd.PortAudioError as e:
        raise EngineError(f"PortAudio cannot list devices: {e}") from None
    host_apis = []
    for i, a in enumerate(apis):
        host_apis.append({"index": i, "name": a["name"],
                          "default_input": a["default_input_device"] if a["default_input_device"] >= 0 else None,
                          "default_output": a["default_output_device"] if a["default_output_device"] >= 0 else None})
    dflt_in, dflt_out = (None, None)
    try:
        d = sd.default.device
        dflt_in, dflt_out = (d[0] if d[0] is not None and d[0] >= 0 else None,
                             d[1] if d[1] is not None and d[1] >= 0 else None)
    except (TypeError, IndexError):
        pass
    devices = []
    for i, d in enumerate(devs):
        devices.append({"index": i, "name": d["name"], "host_api": apis[d["hostapi"]]["name"],
                        "inputs": int(d["max_input_channels"]), "outputs": int(d["max_output_channels"]),
                        "default_samplerate_hz": float(d["default_samplerate"]),
                        "default_input": i == dflt_in, "default_output": i == dflt_out})
    return {"host_apis": host_apis, "devices": devices}


def list_midi_inputs() -> list[dict]:
    """MIDI input ports per rtmidi API.

    Returns
    -------
    list of dict
        ``{"api": "alsa"|"jack"|..., "name": display name, "ports": [str] or None, "error": str or
        None}`` per compiled API, in rtmidi's order.

    Raises
    ------
    EngineError
        python-rtmidi is not installed.
    """
    try:
        import rtmidi
    except ImportError as e:
        raise EngineError(f"python-rtmidi is not installed: {e}") from None
    # libjack would otherwise start a jackd of its own to list JACK MIDI ports, and leave it running
    os.environ["JACK_NO_START_SERVER"] = "1"
    out = []
    for api in rtmidi.get_compiled_api():
        if api == rtmidi.API_RTMIDI_DUMMY:
            continue
        entry = {"api": rtmidi.get_api_name(api), "name": rtmidi.get_api_display_name(api), "ports": None,
                 "error": None}
        try:
            m = rtmidi.MidiIn(api, name="debleed-midi-ports")
            try:
                entry["ports"] = list(m.get_ports())
            finally:
                m.delete()
        except Exception as e:  # noqa: BLE001 - rtmidi raises its own types; reported per API
            msg = str(e).strip() or type(e).__name__
            if api == rtmidi.API_LINUX_ALSA and "sequencer" in msg:
                msg += " (no ALSA sequencer here: /dev/snd/seq missing or not permitted)"
            if api == rtmidi.API_UNIX_JACK and "not running" not in msg:
                msg += " (is a JACK server running?)"
            entry["error"] = msg
        out.append(entry)
    return out
