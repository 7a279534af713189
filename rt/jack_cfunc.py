"""The JACK process callback as a numba ``@cfunc``: the audio thread never takes the GIL.

:func:`process_cfunc` returns a C function ``int process(jack_nframes_t nframes, void *arg)``
to register with ``jack_set_process_callback``. Everything it touches is reached through
``arg``: the address of an int64 *header* array (layout: the ``H_*`` and ``A_*`` indices) that
holds sizes and the addresses of preallocated numpy arrays and of the JACK ports. Nothing is
read from globals except the libjack and libc function pointers, so the compiled function is
reusable for any config; it is deliberately not cached on disk, because a cached cfunc would
keep this process's function addresses, and a cached cfunc keeps every global it read as a constant.

Per callback it: reads the clock; gets each input port's buffer and copies it into the chain's
input array; reads JACK MIDI events with their frame offsets into the events array; runs the
denoiser stage (:func:`debleed.models.streaming.denoise_block`: the denoised channels' network,
hop by hop, into their virtual input rows) and :func:`debleed.dsp.chain.run_block`; copies the outputs to the output ports; and updates the
counters and the callback-time histogram (:mod:`debleed.rt.stats`). It allocates nothing, takes
no lock and calls no Python.
"""

from __future__ import annotations

import numpy as np
from numba import carray, cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic

from numba import njit

from debleed.dsp.chain import K_CLOCK, NK, ChainArrays, run_block
from debleed.models.streaming import StreamingStage, denoise_block
from debleed.rt import _jackptr
from debleed.rt.stats import (C_CALLBACKS, C_FRAMES, C_LAST_NS, C_MAX_NS, C_MIDI_DROPPED,
                              C_OVERSIZE, C_SUM_NS, HIST_BIN_NS)

(H_NIN, H_NCH, H_MAXBLOCK, H_HASMIDI, H_MAXEV, H_HISTBINS, H_NCOUNTERS, H_NROWS,
 A_INPUTS, A_OUTPUTS, A_EVENTS, A_COUNTERS, A_HIST, A_EVBUF, A_TS, A_INPORTS, A_OUTPORTS, A_MIDIPORT,
 A_CLIENT,
 # number of denoised channels (0: the denoiser stage is not run)
 H_NDN, H_DN) = range(21)
# From H_DN on: the denoiser stage's arrays (StreamingStage.FIELDS, in denoise_block's order),
# then from H_CHAIN on the chain's (ChainArrays.FIELDS, in run_block's order); four slots each:
# address and up to three dimensions.
_SLOTS = 4
H_CHAIN = H_DN + _SLOTS * len(StreamingStage.FIELDS)
H_LEN = H_CHAIN + _SLOTS * len(ChainArrays.FIELDS)
_CTL_SLOT = H_CHAIN + _SLOTS * [f[0] for f in ChainArrays.FIELDS].index("ctl")


def fill_header(h: np.ndarray, base: int, fields, arrays) -> None:
    """Write the address and shape of each array named in ``fields`` (``(name, dtype, ndim)``,
    read as attributes of ``arrays``) into header ``h`` from slot ``base`` on."""
    for k, (name, _, _) in enumerate(fields):
        a = getattr(arrays, name)
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous for the JACK cfunc")
        at = base + _SLOTS * k
        h[at] = a.ctypes.data
        h[at + 1:at + 1 + a.ndim] = a.shape


@intrinsic
def _voidptr(typingctx, addr):
    """Turn an integer address into a ``void *`` (LLVM ``inttoptr``)."""
    sig = types.voidptr(addr)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


_get_buffer = _jackptr.port_get_buffer
_event_count = _jackptr.midi_get_event_count
_event_get = _jackptr.midi_event_get
_clock = _jackptr.clock_gettime
_write = _jackptr.libc_write
_CLOCK = _jackptr.CLOCK_MONOTONIC
_frame_time = _jackptr.last_frame_time


def _make_runner(name: str, fn, base: int, fields, head: str):
    """``name(<head>, h)``: ``fn(<head>, *arrays)`` over the arrays the header points at from
    slot ``base``, the argument list generated from ``fields`` (``(name, dtype, ndim)``)."""
    args = []
    for k, (_, dtype, ndim) in enumerate(fields):
        at = base + _SLOTS * k
        dims = ", ".join(f"h[{at + 1 + d}]" for d in range(ndim)) + ("," if ndim == 1 else "")
        args.append(f"carray(_voidptr(h[{at}]), ({dims}), np.{np.dtype(dtype).name})")
    src = (f"def {name}({head}, h):\n"
           f"    fn({head}, {', '.join(args)})\n")
    ns = {"fn": fn, "carray": carray, "_voidptr": _voidptr, "np": np}
    exec(compile(src, f"<debleed.rt.jack_cfunc {name}>", "exec"), ns)
    return njit(ns[name])


#: run_block over the chain's arrays; denoise_block over the denoiser stage's
_run_chain = _make_runner("_run_chain", run_block, H_CHAIN, ChainArrays.FIELDS, "n, inputs, outputs, events, n_ev")
_run_denoise = _make_runner("_run_denoise", denoise_block, H_DN, StreamingStage.FIELDS, "n, inputs, events, n_ev")


def _process(nframes, arg):
    h = carray(arg, (H_LEN,), np.int64)
    ts = carray(_voidptr(h[A_TS]), (2,), np.int64)
    _clock(_CLOCK, _voidptr(h[A_TS]))
    t0 = ts[0] * 1000000000 + ts[1]
    n_in, n_ch, max_block = h[H_NIN], h[H_NCH], h[H_MAXBLOCK]
    counters = carray(_voidptr(h[A_COUNTERS]), (h[H_NCOUNTERS],), np.int64)
    hist = carray(_voidptr(h[A_HIST]), (h[H_HISTBINS],), np.int64)
    inports = carray(_voidptr(h[A_INPORTS]), (n_in,), np.int64)
    outports = carray(_voidptr(h[A_OUTPORTS]), (n_ch,), np.int64)
    n = np.int64(nframes)
    if n > max_block:
        for c in range(n_ch):
            out = carray(_voidptr(_get_buffer(_voidptr(outports[c]), nframes)), (n,), np.float32)
            for i in range(n):
                out[i] = 0.0
        counters[C_OVERSIZE] += 1
    else:
        inputs = carray(_voidptr(h[A_INPUTS]), (h[H_NROWS], max_block), np.float32)
        outputs = carray(_voidptr(h[A_OUTPUTS]), (n_ch, max_block), np.float32)
        for j in range(n_in):
            buf = carray(_voidptr(_get_buffer(_voidptr(inports[j]), nframes)), (n,), np.float32)
            for i in range(n):
                inputs[j, i] = buf[i]
        max_ev = h[H_MAXEV]
        events = carray(_voidptr(h[A_EVENTS]), (max_ev, 4), np.int32)
        n_ev = 0
        if h[H_HASMIDI] != 0:
            mbuf = _get_buffer(_voidptr(h[A_MIDIPORT]), nframes)
            evbuf = carray(_voidptr(h[A_EVBUF]), (3,), np.uint64)
            count = _event_count(_voidptr(mbuf))
            for k in range(count):
                if n_ev >= max_ev:
                    counters[C_MIDI_DROPPED] += 1
                    continue
                if _event_get(_voidptr(h[A_EVBUF]), _voidptr(mbuf), k) != 0:
                    continue
                size = np.int64(evbuf[1])
                if size < 2:
                    continue
                data = carray(_voidptr(np.int64(evbuf[2])), (size,), np.uint8)
                events[n_ev, 0] = np.int32(evbuf[0] & np.uint64(0xFFFFFFFF))
                events[n_ev, 1] = data[0]
                events[n_ev, 2] = data[1]
                events[n_ev, 3] = data[2] if size > 2 else 0
                n_ev += 1
        if h[H_NDN] > 0:
            _run_denoise(n, inputs, events, n_ev, h)
        ctl = carray(_voidptr(h[_CTL_SLOT]), (NK,), np.int64)
        ctl[K_CLOCK] = np.int64(_frame_time(_voidptr(h[A_CLIENT])))
        _run_chain(n, inputs, outputs, events, n_ev, h)
        for c in range(n_ch):
            out = carray(_voidptr(_get_buffer(_voidptr(outports[c]), nframes)), (n,), np.float32)
            for i in range(n):
                out[i] = outputs[c, i]
    _clock(_CLOCK, _voidptr(h[A_TS]))
    dt = ts[0] * 1000000000 + ts[1] - t0
    counters[C_CALLBACKS] += 1
    counters[C_FRAMES] += n
    counters[C_LAST_NS] = dt
    counters[C_SUM_NS] += dt
    if dt > counters[C_MAX_NS]:
        counters[C_MAX_NS] = dt
    b = dt // HIST_BIN_NS
    nb = h[H_HISTBINS]
    hist[b if b < nb else nb - 1] += 1
    return 0


_compiled = None


def process_cfunc():
    """Compile (once per process) and return the numba cfunc; ``.address`` is the C pointer."""
    global _compiled
    if _compiled is None:
        _compiled = cfunc(types.intc(types.uint32, types.voidptr), nopython=True)(_process)
    return _compiled
