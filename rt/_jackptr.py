"""The one place that reaches below JACK-Client: raw pointers and libjack calls it does not wrap.

JACK-Client (pinned to ``>=0.5.4,<0.6`` in pyproject.toml) keeps the ``jack_client_t *`` and
``jack_port_t *`` pointers in the private attribute ``_ptr`` and its cffi handles in
``jack._ffi``. The cfunc engine needs those pointers as integers, and libjack's latency API
(``jack_set_latency_callback``, ``jack_port_{get,set}_latency_range``) and
``jack_set_process_callback`` with a C function, neither of which JACK-Client offers. Keep every
such use here so a JACK-Client upgrade breaks in one place (tests/rt/test_engine.py).

libjack is opened with ctypes under the same soname JACK-Client opened, so the dynamic loader
returns the same library instance: pointers from one are valid in the other.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import jack

from debleed.errors import EngineError

_name = ctypes.util.find_library("jack") or "libjack.so.0"
try:
    libjack = ctypes.CDLL(_name)
except OSError as e:  # pragma: no cover - JACK-Client would have failed first
    raise EngineError(f"cannot load libjack ({_name}): {e}; install jackd2 (Debian) or JACK") from e

# Called from the cfunc by symbol name (rt/jack_cfunc.py: _external), not through ctypes:
#   void *jack_port_get_buffer(jack_port_t *, jack_nframes_t)
#   uint32_t jack_midi_get_event_count(void *port_buffer)
#   int jack_midi_event_get(jack_midi_event_t *event, void *port_buffer, uint32_t index): the event
#     is 24 bytes on 64-bit (uint32 time + 4 padding, size_t size, uint8 *buffer); a preallocated
#     uint64[3] array receives it
#   jack_nframes_t jack_last_frame_time(const jack_client_t *): the server's frame time at the
#     start of this cycle; parameter changes are logged with it
#   libc int clock_gettime(clockid_t, struct timespec *): the cfunc times itself with it
CLOCK_MONOTONIC = 1

_set_process_callback = libjack.jack_set_process_callback
_set_process_callback.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_set_process_callback.restype = ctypes.c_int

#: ``void (*JackLatencyCallback)(jack_latency_callback_mode_t mode, void *arg)``
LatencyCallback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)
CAPTURE_LATENCY, PLAYBACK_LATENCY = 0, 1


class LatencyRange(ctypes.Structure):
    """``jack_latency_range_t``: min and max latency in frames."""

    _fields_ = [("min", ctypes.c_uint32), ("max", ctypes.c_uint32)]


#: ``void (*JackThreadInitCallback)(void *arg)``: called once in the new process thread.
ThreadInitCallback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_set_thread_init_callback = libjack.jack_set_thread_init_callback
_set_thread_init_callback.argtypes = [ctypes.c_void_p, ThreadInitCallback, ctypes.c_void_p]
_set_thread_init_callback.restype = ctypes.c_int

_set_latency_callback = libjack.jack_set_latency_callback
_set_latency_callback.argtypes = [ctypes.c_void_p, LatencyCallback, ctypes.c_void_p]
_set_latency_callback.restype = ctypes.c_int

_port_get_latency_range = libjack.jack_port_get_latency_range
_port_get_latency_range.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(LatencyRange)]
_port_get_latency_range.restype = None

_port_set_latency_range = libjack.jack_port_set_latency_range
_port_set_latency_range.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(LatencyRange)]
_port_set_latency_range.restype = None

_recompute_total_latencies = libjack.jack_recompute_total_latencies
_recompute_total_latencies.argtypes = [ctypes.c_void_p]
_recompute_total_latencies.restype = ctypes.c_int

def address(obj) -> int:
    """Integer address of a JACK-Client ``Client`` or ``Port`` (its private ``_ptr``).

    Raises
    ------
    EngineError
        If the object has no open pointer (closed client, unregistered port, or a JACK-Client
        version whose internals moved).
    """
    ptr = getattr(obj, "_ptr", None)
    if ptr is None:
        raise EngineError(f"{type(obj).__name__} has no '_ptr': JACK-Client {jack.__version__} "
                          "is outside the supported range >=0.5.4,<0.6")
    addr = int(jack._ffi.cast("uintptr_t", ptr))
    if addr == 0:
        raise EngineError(f"{type(obj).__name__} is closed (null pointer)")
    return addr


def set_process_callback(client: jack.Client, cfunc_address: int, arg_address: int) -> None:
    """Register a C process callback ``int (*)(jack_nframes_t, void *)`` on ``client`` (before activate)."""
    err = _set_process_callback(address(client), cfunc_address, arg_address)
    if err:
        raise EngineError(f"jack_set_process_callback failed with error {err}")


def get_latency_range(port: jack.Port, mode: int) -> tuple[int, int]:
    """``(min, max)`` latency in frames of ``port`` for CAPTURE_LATENCY or PLAYBACK_LATENCY."""
    r = LatencyRange()
    _port_get_latency_range(address(port), mode, ctypes.byref(r))
    return r.min, r.max


def set_latency_range(port: jack.Port, mode: int, lo: int, hi: int) -> None:
    """Set ``port``'s latency range (call from the latency callback)."""
    r = LatencyRange(int(lo), int(hi))
    _port_set_latency_range(address(port), mode, ctypes.byref(r))


def set_latency_callback(client: jack.Client, callback) -> object:
    """Register ``callback(mode)`` as the latency callback; returns the ctypes object to keep alive."""
    cb = LatencyCallback(lambda mode, _arg: callback(mode))
    err = _set_latency_callback(address(client), cb, None)
    if err:
        raise EngineError(f"jack_set_latency_callback failed with error {err}")
    return cb


def recompute_total_latencies(client: jack.Client) -> None:
    """Ask the server to recompute latencies after ours changed."""
    _recompute_total_latencies(address(client))


_client_real_time_priority = libjack.jack_client_real_time_priority
_client_real_time_priority.argtypes = [ctypes.c_void_p]
_client_real_time_priority.restype = ctypes.c_int


def set_thread_init_callback(client: jack.Client, callback) -> object:
    """Have JACK call ``callback()`` once in ``client``'s process thread when it starts (before
    activation; ``jack_set_thread_init_callback``). Returns the ctypes function, which the caller
    must keep alive while the client lives."""
    fn = ThreadInitCallback(lambda _arg: callback())
    err = _set_thread_init_callback(address(client), fn, None)
    if err:
        raise EngineError(f"jack_set_thread_init_callback failed with error {err}")
    return fn


def client_real_time_priority(client: jack.Client) -> int | None:
    """SCHED_FIFO priority of ``client``'s process thread (``jack_client_real_time_priority``);
    None when the server does not run real time."""
    prio = _client_real_time_priority(address(client))
    return int(prio) if prio >= 0 else None
