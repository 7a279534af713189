"""The PortAudio backend: the same chain on a sound-card device, MIDI through python-rtmidi.

For machines without a JACK graph. The chain's inputs are the device's capture channels in
``[inputs]`` order (input 1 = capture channel 1, ...), the channels are its playback channels
in ``[[channel]]`` order; the ``connect`` lists of a config are JACK port names and are not used
here. The callback is a sounddevice (PortAudio) Python callback calling the same
:func:`debleed.dsp.chain.run_block`, so a PortAudio run is bit-identical to a JACK run at the same
block size apart from MIDI timing: rtmidi delivers notes between callbacks, so a MIDI key is
block-accurate here (it opens at the first frame of the block after the note arrives) where
JACK MIDI is sample-accurate.
"""

from __future__ import annotations

import collections
import time


from debleed.errors import EngineError
from debleed.rt.config import GigConfig
from debleed.rt.engine import MIN_MAX_BLOCK, EngineBase
from debleed.rt.stats import C_XRUNS


class PortAudioEngine(EngineBase):
    """Run a gig config on a PortAudio device.

    Parameters
    ----------
    config : GigConfig
    device : str or int, optional
        sounddevice device (name substring or index); default: the default device.
    sample_rate : int
        Hz, default 48000.
    period_frames : int
        Frames per callback, 16 to 4096; default 128.
    midi_in : str, optional
        Name substring of a MIDI input port (python-rtmidi) for ``midi:`` keys; default the first
        port when a channel has a MIDI key.

    Raises
    ------
    EngineError
        From :meth:`start` when the device does not exist or has too few channels, or no MIDI
        input exists for a MIDI key.
    """

    backend = "portaudio"

    def __init__(self, config: GigConfig, *, device=None, sample_rate: int = 48000, period_frames: int = 128,
                 midi_in: str | None = None):
        super().__init__(config, engine="python")
        if not 16 <= int(period_frames) <= 4096:
            raise EngineError(f"period_frames must be 16-4096 frames, got {period_frames!r}")
        self.device, self.midi_name = device, midi_in
        self.sample_rate, self.period_frames = int(sample_rate), int(period_frames)
        self.max_block = max(MIN_MAX_BLOCK, self.period_frames)
        self._midi_queue = collections.deque(maxlen=1024)
        self.stream = None
        self.midi = None

    def start(self) -> None:
        """Open the device and MIDI port, start the stream."""
        import sounddevice as sd

        n_in, n_out = len(self.config.inputs), len(self.config.channel)
        try:
            if self.device is None:
                in_info, out_info = sd.query_devices(kind="input"), sd.query_devices(kind="output")
            else:
                in_info = out_info = sd.query_devices(self.device)
        except (ValueError, sd.PortAudioError) as e:
            raise EngineError(f"PortAudio device {self.device!r} not found: {e} (see `python -m sounddevice`)") from None
        info = out_info
        if in_info["max_input_channels"] < n_in or out_info["max_output_channels"] < n_out:
            raise EngineError(
                f"PortAudio device {info['name']!r} has {in_info['max_input_channels']} inputs and "
                f"{out_info['max_output_channels']} outputs; the config needs {n_in} inputs and {n_out} outputs")
        self._prepare_buffers()
        if self.config.uses_midi:
            self._open_midi()
        try:
            self.stream = sd.Stream(device=self.device, samplerate=self.sample_rate, blocksize=self.period_frames,
                                    channels=(n_in, n_out), dtype="float32", latency="low",
                                    callback=self._callback, finished_callback=self._finished)
            self.stream.start()
        except sd.PortAudioError as e:
            raise EngineError(f"cannot open PortAudio device {info['name']!r} at {self.sample_rate} Hz, "
                              f"{self.period_frames} frames: {e}") from None
        self.client_name = f"{info['name']} (PortAudio)"
        self.started_at = time.monotonic()

    def _open_midi(self) -> None:
        import rtmidi

        midi = rtmidi.MidiIn()
        ports = midi.get_ports()
        idx = next((i for i, p in enumerate(ports) if self.midi_name is None or self.midi_name in p), None)
        if idx is None:
            raise EngineError(f"no MIDI input port matching {self.midi_name!r} (ports: {', '.join(ports) or 'none'})")
        midi.open_port(idx)
        midi.set_callback(lambda msg, _data: self._midi_queue.append(msg[0]))
        self.midi = midi

    def _callback(self, indata, outdata, frames, _time, status):
        t0 = time.perf_counter_ns()
        if status.input_overflow or status.output_underflow:
            self.counters[C_XRUNS] += 1
        n_in = indata.shape[1]
        self.inputs[:n_in, :frames] = indata.T
        midi = []
        while self._midi_queue:
            midi.append((0, self._midi_queue.popleft()))
        self._run_python_block(frames, midi)
        outdata[:] = self.outputs[:, :frames].T
        self._count_callback(frames, time.perf_counter_ns() - t0)

    def _finished(self):
        if not self.closed and self.shutdown_reason is None:
            self.shutdown_reason = "PortAudio stream stopped"
        self.stopped.set()

    def dsp_load(self) -> float:
        """PortAudio's CPU load of the stream, percent."""
        return 100.0 * float(self.stream.cpu_load) if self.stream is not None and not self.closed else 0.0

    def stop(self) -> None:
        """Stop the stream and the MIDI port."""
        self.closed = True
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
        if self.midi is not None:
            self.midi.close_port()
        self.stopped.set()
