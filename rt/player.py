"""Play arrays into JACK ports and record others, sample-aligned (demo, tests, benchmarks).

Two clients in this process: ``<name>-play`` (one audio output per source, plus a MIDI output)
and ``<name>-rec`` (one audio input per captured port). JACK runs them in graph order within
each cycle (play -> the clients under test -> rec), so frame ``k`` recorded is the response to
frame ``k`` played: a zero-latency insert gives outputs aligned with its inputs.

In freewheel mode (``freewheel=True``) the server runs cycles as fast as the clients allow:
fast and deterministic, which the end-to-end tests use. Without it the run takes real time.
Playback starts only once the server reports freewheeling and a few cycles have run with the
new connections: a connection, like the switch to freewheel, takes effect at a later cycle, and
a real-time cycle on a loaded machine may miss a client.

In real time, a cycle that a client (this one, the one under test, or the recorder) was
scheduled too late for (an xrun) cuts the stream: a block recorded twice, or left silent, or
the one under test hearing one block twice. Run the clients at a lower nice value (``nice``),
or compare against a bypassed channel to see where it happened.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import jack
import numpy as np

from debleed.errors import EngineError


#: Real time: seconds between the last connection and the first frame played.
SETTLE_S = 1.0


def play_record(sources: dict[str, np.ndarray], capture: list[str], *, midi: list | None = None,
                midi_dest: list[str] | None = None, server_name: str | None = None,
                freewheel: bool = True, tail_frames: int = 0, timeout_s: float = 120.0,
                name: str = "dbtest", info: dict | None = None, midi_capture: list[str] | None = None,
                nice: int | None = None) -> np.ndarray:
    """Play ``sources`` and record ``capture``.

    Parameters
    ----------
    sources : dict
        Destination port name -> float32 1-D signal. All signals have the same length.
    capture : list of str
        Output ports to record.
    midi : list of (frame, bytes), optional
        MIDI messages, frames counted from the first played frame.
    midi_dest : list of str, optional
        MIDI input ports to send ``midi`` to.
    server_name : str, optional
        JACK server.
    freewheel : bool
        Run in freewheel mode (default True).
    tail_frames : int
        Frames of silence played after the signals (to catch latency and release tails).
    timeout_s : float
        Give up after this long.
    info : dict, optional
        Filled while it runs: ``"first_frame_time"``, the JACK frame time of the cycle that
        played the first frame (set as soon as it is played, so another thread can wait for it);
        with ``midi_capture``, ``"midi"``: the MIDI events received, ``(frame, bytes)`` with
        frames counted like the recording's.
    midi_capture : list of str, optional
        MIDI output ports to record (into ``info["midi"]``).
    nice : int, optional
        Run the two clients' process threads at this nice value, -20 to 19 (set on the threads
        that activating them started; without the permission they keep theirs). Default: leave
        them as they are. The demo passes its gig's ``[client] process_nice``: a recorder
        scheduled late loses the cycle it was late for. With ``info``, ``info["reniced_threads"]``
        is ``{thread id: nice value}`` of the threads it set.

    Returns
    -------
    ndarray, float32, shape (len(capture), n_frames + tail_frames)

    Raises
    ------
    EngineError
        On a timeout or when a port cannot be connected.
    """
    signals = [np.asarray(v, np.float32) for v in sources.values()]
    n = signals[0].size if signals else 0
    if any(s.ndim != 1 or s.size != n for s in signals):
        raise EngineError("play_record: every source must be a 1-D signal of the same length")
    total = n + int(tail_frames)
    data = np.zeros((len(signals), total), np.float32)
    for i, s in enumerate(signals):
        data[i, :n] = s
    # written through now (np.zeros maps untouched pages): no page faults in the callbacks
    rec = np.full((len(capture), total), 0.0, np.float32)
    events = sorted(midi or [], key=lambda e: e[0])
    done = threading.Event()
    st = {"armed": False, "pos": 0, "cur": -1, "cycles": 0, "finished": False}
    freewheeling = threading.Event()

    play = jack.Client(f"{name}-play", no_start_server=True, servername=server_name)
    recc = jack.Client(f"{name}-rec", no_start_server=True, servername=server_name)
    outs = [play.outports.register(f"out_{i}") for i in range(len(signals))]
    mout = play.midi_outports.register("midi_out") if events else None
    ins = [recc.inports.register(f"in_{i}") for i in range(len(capture))]
    min_ = recc.midi_inports.register("midi_in") if midi_capture else None
    got_midi = []
    if info is not None and midi_capture:
        info["midi"] = got_midi

    def play_cb(frames):
        st["cycles"] += 1
        if mout is not None:
            mout.clear_buffer()
        if not st["armed"] or st["pos"] >= total:
            for p in outs:
                p.get_array().fill(0.0)
            st["cur"] = -1
            st["finished"] = st["armed"]  # the recorder ends the run once it has seen this
            return
        pos = st["pos"]
        if pos == 0 and info is not None:
            info["first_frame_time"] = play.last_frame_time
        m = min(frames, total - pos)
        for i, p in enumerate(outs):
            a = p.get_array()
            a[:m] = data[i, pos:pos + m]
            a[m:] = 0.0
        if mout is not None:
            for frame, msg in events:
                if pos <= frame < pos + m:
                    mout.write_midi_event(frame - pos, bytes(msg))
        st["cur"] = pos
        st["pos"] = pos + m

    def rec_cb(frames):
        pos = st["cur"]
        if pos < 0:
            if st["finished"]:
                done.set()
            return
        m = min(frames, total - pos)
        for i, p in enumerate(ins):
            rec[i, pos:pos + m] = p.get_array()[:m]
        if min_ is not None:
            for offset, data in min_.incoming_midi_events():
                if offset < m:
                    got_midi.append((pos + offset, bytes(data)))

    def settle(n_cycles: int, deadline: float) -> None:
        start = st["cycles"]
        while st["cycles"] < start + n_cycles:
            if time.monotonic() > deadline:
                raise EngineError(f"play_record: the JACK server ran fewer than {n_cycles} cycles in {timeout_s} s")
            time.sleep(0.001)

    play.set_process_callback(play_cb)
    play.set_freewheel_callback(lambda starting: freewheeling.set() if starting else freewheeling.clear())
    recc.set_process_callback(rec_cb)
    try:
        before = _thread_ids()
        play.activate()
        recc.activate()
        if nice is not None:
            reniced = _renice(_thread_ids() - before, nice)
            if info is not None:
                info["reniced_threads"] = reniced
        try:
            for p, dst in zip(outs, sources):
                play.connect(p, dst)
            if mout is not None:
                for dst in midi_dest or []:
                    play.connect(mout, dst)
            for p, src in zip(ins, capture):
                recc.connect(src, p)
            for src in midi_capture or []:
                recc.connect(src, min_)
        except jack.JackError as e:
            raise EngineError(f"play_record: cannot connect ports: {e}") from None
        deadline = time.monotonic() + timeout_s
        if freewheel:
            play.set_freewheel(True)
            # the callback comes when freewheeling starts; if another client had it on already
            # none comes, so wait a bounded time and go on
            freewheeling.wait(min(timeout_s, 10.0))
        settle(4, deadline)
        if not freewheel:
            # in real time, the graph changes (activations, connections) cost late cycles of
            # their own; let them pass before the first frame is played
            time.sleep(SETTLE_S)
        st["armed"] = True
        ok = done.wait(timeout_s)
        if freewheel:
            play.set_freewheel(False)
        if not ok:
            raise EngineError(f"play_record: timed out after {timeout_s} s at frame {st['pos']} of {total}")
    finally:
        for c in (play, recc):
            try:
                c.deactivate()
                c.close()
            except jack.JackError:
                pass
    return rec


def _thread_ids() -> set[int]:
    """Ids of this process's threads (Linux /proc; empty elsewhere)."""
    try:
        return {int(t.name) for t in Path("/proc/self/task").iterdir()}
    except OSError:
        return set()


def _renice(tids, nice: int) -> dict[int, int]:
    """Set each thread's nice value; one that ended or that may not be lowered is left as it is.
    Returns ``{thread id: nice value read back}`` for the threads it set."""
    done = {}
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            done[tid] = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError:
            pass
    return done
