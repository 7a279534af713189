"""The JACK process callback as a numba ``@cfunc``: the audio thread never takes the GIL.

:func:`process_cfunc` returns a C function ``int process(jack_nframes_t nframes, void *arg)``
to register with ``jack_set_process_callback``. Everything it touches is reached through
``arg``: the address of an int64 *header* array (layout: the ``H_*`` and ``A_*`` indices) that
holds sizes and the addresses of preallocated numpy arrays and of the JACK ports. Nothing is
read from globals but constants and the libjack and libc functions it calls, so the compiled
function is reusable for any config. libjack and libc are called by symbol name (:func:`_external`), never
through a ctypes function pointer, so the compiled code holds no address of this process and is
cached on disk: the first ``debleed live`` compiles it (about 20 s on 2 cores), later ones load it
(:func:`process_cfunc`). A cached function keeps the code of every function it calls, and numba's
cache only sees the caller's own file change; so the cached source carries a fingerprint of
every module of debleed.dsp, debleed.models and debleed.rt, and any edit there recompiles.

Per callback it: reads the clock; gets each input port's buffer and copies it into the chain's
input array; reads JACK MIDI events with their frame offsets into the events array; runs the
denoiser stage (:func:`debleed.models.streaming.denoise_block`: the denoised channels' network,
hop by hop, into their virtual input rows) and :func:`debleed.dsp.chain.run_block`; copies the outputs to the output ports; and updates the
counters and the callback-time histogram (:mod:`debleed.rt.stats`). It allocates nothing, takes
no lock and calls no Python.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import inspect
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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


def _external(symbol: str, restype, *argtypes):
    """An intrinsic calling the C function ``symbol`` by name (pointer results as int64).

    The call is a relocation against the symbol, resolved when the code is loaded, so the
    compiled code stays valid in another process (numba treats a ctypes function pointer as a
    constant address, which would tie a cached cfunc to the process that compiled it)."""

    def typer(typingctx, args):
        def codegen(context, builder, signature, llargs):
            ptr_result = restype is types.voidptr
            ret = cgutils.voidptr_t if ptr_result else context.get_value_type(restype)
            fnty = ir.FunctionType(ret, [context.get_value_type(a) for a in argtypes])
            fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
            out = builder.call(fn, [context.cast(builder, v, t, a)
                                    for v, t, a in zip(llargs, signature.args, argtypes)])
            return builder.ptrtoint(out, ir.IntType(64)) if ptr_result else out

        return (types.int64 if restype is types.voidptr else restype)(*args), codegen

    # numba types an intrinsic by its Python signature: one named parameter per C argument
    names = ", ".join(f"a{i}" for i in range(len(argtypes)))
    ns = {"typer": typer}
    exec(f"def _c_{symbol}(typingctx, {names}):\n    return typer(typingctx, ({names},))\n", ns)
    return intrinsic(ns[f"_c_{symbol}"])


# the same libjack instance JACK-Client opened, visible to the JIT's symbol resolution
llvm.load_library_permanently(ctypes.util.find_library("jack") or "libjack.so.0")
#: see rt/_jackptr.py for the C signatures
_get_buffer = _external("jack_port_get_buffer", types.voidptr, types.voidptr, types.uint32)
_event_count = _external("jack_midi_get_event_count", types.uint32, types.voidptr)
_event_get = _external("jack_midi_event_get", types.intc, types.voidptr, types.voidptr, types.uint32)
_clock = _external("clock_gettime", types.intc, types.intc, types.voidptr)
_frame_time = _external("jack_last_frame_time", types.uint32, types.voidptr)
_CLOCK = _jackptr.CLOCK_MONOTONIC


def _runner_source(name: str, base: int, fields, head: str, fn: str) -> str:
    """Source of ``name(<head>, h)``: ``fn(<head>, *arrays)`` over the arrays the header points at
    from slot ``base``, the argument list generated from ``fields`` (``(name, dtype, ndim)``)."""
    args = []
    for k, (_, dtype, ndim) in enumerate(fields):
        at = base + _SLOTS * k
        dims = ", ".join(f"h[{at + 1 + d}]" for d in range(ndim)) + ("," if ndim == 1 else "")
        args.append(f"carray(_voidptr(h[{at}]), ({dims}), np.{np.dtype(dtype).name})")
    return (f"@njit\n"
            f"def {name}({head}, h):\n"
            f"    {fn}({head}, {', '.join(args)})\n")


#: run_block over the chain's arrays; denoise_block over the denoiser stage's
_RUNNERS = (_runner_source("_run_chain", H_CHAIN, ChainArrays.FIELDS, "n, inputs, outputs, events, n_ev", "run_block")
            + "\n\n" + _runner_source("_run_denoise", H_DN, StreamingStage.FIELDS, "n, inputs, events, n_ev",
                                        "denoise_block"))
_ns = {"njit": njit, "carray": carray, "_voidptr": _voidptr, "np": np, "run_block": run_block,
       "denoise_block": denoise_block}
exec(compile(_RUNNERS, "<debleed.rt.jack_cfunc runners>", "exec"), _ns)
_run_chain, _run_denoise = _ns["_run_chain"], _ns["_run_denoise"]


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


_SIGNATURE = types.intc(types.uint32, types.voidptr)
_compiled: dict = {}


def fingerprint_files() -> list[Path]:
    """The sources the callback is compiled from: every module of debleed.dsp, debleed.models
    and debleed.rt (a cached cfunc holds the code of all of them)."""
    import debleed.dsp
    import debleed.models

    pkgs = (Path(debleed.dsp.__file__), Path(debleed.models.__file__), Path(__file__))
    return [f for pkg in pkgs for f in sorted(pkg.resolve().parent.rglob("*.py")) if "__pycache__" not in f.parts]


def fingerprint() -> str:
    """SHA-256 over :func:`fingerprint_files` (names and contents), Python's and numpy's versions."""
    h = hashlib.sha256(f"{sys.version} {np.__version__}".encode())
    for f in fingerprint_files():
        h.update(f"{f.parent.name}/{f.name}".encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _cache_source_path(text: str) -> Path | None:
    """Write ``text`` (atomically, only when it changed) to the source file the cached cfunc is
    keyed on: ``rt/__pycache__/jack_process.py`` beside this module, or under
    ``$XDG_CACHE_HOME/debleed`` (``~/.cache/debleed``) when the package is read-only. None when
    neither is writable (the cfunc is then compiled without a cache)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for d in (Path(__file__).resolve().parent / "__pycache__", Path(xdg) / "debleed"):
        path = d / "jack_process.py"
        try:
            if path.is_file() and path.read_text() == text:
                return path
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".jack_process.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
            return path
        except OSError:
            continue
    return None


def process_cfunc(*, cache: bool = True):
    """Return the numba cfunc (``.address`` is the C pointer), compiled once per process.

    With ``cache`` (the engine's default) it is loaded from numba's on-disk cache when the
    sources are unchanged (:func:`fingerprint`), else compiled and stored. ``cache=False``
    always compiles, which keeps the LLVM IR for :meth:`inspect_llvm` (a cache hit has none).
    """
    if cache not in _compiled:
        path = _cache_source_path(f"# debleed JACK process callback, cached by numba; fingerprint {fingerprint()}\n"
                                  + _RUNNERS + "\n\n" + inspect.getsource(_process)) if cache else None
        if path is None:
            _compiled[cache] = cfunc(_SIGNATURE, nopython=True)(_process)
        else:
            ns = dict(globals())
            exec(compile(path.read_text(), str(path), "exec"), ns)
            _compiled[cache] = cfunc(_SIGNATURE, nopython=True, cache=True)(ns["_process"])
    return _compiled[cache]
