"""Streaming onnxruntime wrapper of the snare de-bleed denoiser.

The shipped models (``snare_denoiser_48k.onnx``, ``snare_denoiser_44k1.onnx``, next to this
file) are causal streaming graphs: one call takes a chunk of whole hops (32 samples) plus the
state (``enc_state``, ``gru_state``, ``ola_state``) and returns the denoised chunk plus the new
state. :class:`Denoiser` buffers blocks of any length into hops, so a JACK period of 16 to 1024
frames (or any length from 0 to ``max_block``) works, and streaming output equals one-shot
output. See ``models/README.md`` (the model card) for data, latency, compute and evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numba import njit

from debleed.dsp.processor import ProcessSpec, Processor, check_channels
from debleed.errors import DebleedError, ParameterError
from debleed.models.graph import key_lead_samples, state_names

MODELS_DIR = Path(__file__).resolve().parent
#: Shipped model file per supported sample rate (Hz).
SHIPPED = {48000: MODELS_DIR / "snare_denoiser_48k.onnx", 44100: MODELS_DIR / "snare_denoiser_44k1.onnx"}
#: The shipped informed models (reference mics and the key; a ``denoise_model`` to name), per rate.
SHIPPED_INFORMED = {48000: MODELS_DIR / "snare_denoiser_48k_informed.onnx",
                    44100: MODELS_DIR / "snare_denoiser_44k1_informed.onnx"}
STATE_NAMES = state_names()
#: The extra inputs of an informed model (reference mics, key) and its extra state; the
#: onnxruntime wrapper feeds zeros to ``refs`` and ``key`` (a mic-only channel).
INFORMED_INPUTS = ("refs", "key")
INFORMED_STATE = tuple(sorted(set(state_names(1, True)) - set(STATE_NAMES)))


#: Providers whose shared library onnxruntime loads on first use (file name in onnxruntime/capi/).
_PROVIDER_LIBS = {"CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
                  "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so"}


def usable_providers() -> list[str]:
    """onnxruntime execution providers that can actually start here, in onnxruntime's order.

    ``onnxruntime.get_available_providers()`` lists every provider the package was built with
    (onnxruntime-gpu lists CUDA and TensorRT on a machine without CUDA); creating a session on
    one whose libraries are missing prints loader errors and falls back to the CPU. Here a
    GPU provider is kept only when its provider library and everything it links (CUDA driver,
    cudart, cuBLAS, cuDNN, ...) load with ``dlopen``, so no session is made to find out.

    Returns
    -------
    list of str
        e.g. ``["CPUExecutionProvider"]`` on a machine without CUDA.
    """
    import ctypes

    import onnxruntime as ort

    capi = Path(ort.__file__).resolve().parent / "capi"
    out = []
    for p in ort.get_available_providers():
        lib = _PROVIDER_LIBS.get(p)
        if lib is not None:
            try:
                ctypes.CDLL(str(capi / lib))
            except OSError:
                continue
        out.append(p)
    return out


def _load_session(path: Path, providers, intra_op_threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise DebleedError(f"denoiser model {path} does not exist (reinstall debleed, or train it: make train)")
    available = usable_providers()
    for p in providers:
        if p not in available:
            raise DebleedError(f"onnxruntime provider {p!r} is not available here (available: "
                               f"{', '.join(available)}); for CUDA install onnxruntime-gpu with a "
                               "working CUDA runtime, or use CPUExecutionProvider")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(intra_op_threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting intra/inter-op threads (with one intra-op thread there are none; with more
    # they would spin on the cores JACK needs)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # no "session.set_denormal_as_zero": it sets the calling thread's FTZ/DAZ flags, which then
    # stay set for everything else that thread runs (numpy, the chain's kernels)
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise DebleedError(f"cannot load denoiser model {path}: {str(e).strip().splitlines()[0][:300]}") from None
    for p in providers:
        if p not in sess.get_providers():
            raise DebleedError(f"onnxruntime provider {p!r} was requested but could not be initialised "
                               f"for {path} (active: {', '.join(sess.get_providers())}); check the CUDA "
                               "driver and libraries, or use CPUExecutionProvider")
    names = {i.name for i in sess.get_inputs()}
    if not ({"audio", *STATE_NAMES} <= names <= {"audio", *STATE_NAMES, *INFORMED_INPUTS, *INFORMED_STATE}):
        raise DebleedError(f"denoiser model {path} has inputs {sorted(names)}; expected "
                           f"{['audio', *STATE_NAMES]} (not a debleed streaming denoiser)")
    meta = sess.get_modelmeta().custom_metadata_map
    try:
        hop = int(meta["hop"])
        window = int(meta["window"])
        rate = int(meta["sample_rate"])
    except (KeyError, ValueError):
        raise DebleedError(f"denoiser model {path} lacks the hop/window/sample_rate metadata") from None
    return sess, hop, window, rate


class Denoiser(Processor):
    """Causal snare de-bleed denoiser, block by block, on onnxruntime.

    Parameters
    ----------
    model_path : str or Path, optional
        An exported streaming model. Default None: the shipped model for the rate given to
        :meth:`prepare` (44100 or 48000 Hz).
    providers : list of str, optional
        onnxruntime execution providers; default ``["CPUExecutionProvider"]``. Asking for one
        that is not available (e.g. ``"CUDAExecutionProvider"`` without a GPU) raises.
    intra_op_threads : int
        onnxruntime intra-op threads, >= 1; default 1.

    Raises
    ------
    DebleedError
        A missing or unreadable model file (the message names the path), or a provider that is
        not available.
    ParameterError
        ``intra_op_threads`` not an integer >= 1; ``providers`` a string or empty.

    Notes
    -----
    Latency: ``window - 1`` samples (63 at hop 32): ``hop`` from the overlap-add, ``hop - 1``
    from buffering blocks into whole hops. After :meth:`reset`, digital silence (exact zeros)
    before the first sound is not run: it gives zeros and leaves the state as it was reset (the
    model's recurrent state would otherwise drift on silence), and the hop phase starts at the
    first non-zero sample. So a run that starts with silence of any length equals one that starts
    with the first sound, at any block size, and this wrapper gives what the data-plane kernels
    (:mod:`debleed.models.streaming`) give, to float rounding. ``process`` runs onnxruntime,
    which allocates its outputs: the batch path (``debleed denoise``, evaluation), never the
    audio callback (the live engines run the kernels). Non-finite
    input samples are treated as 0 and a non-finite model output resets the state, so a NaN
    never poisons later blocks.

    Examples
    --------
    >>> d = Denoiser()
    >>> d.prepare(ProcessSpec(48000, 128))
    >>> x = np.zeros(128, np.float32); y = np.empty_like(x)
    >>> d.process(x, y)
    """

    def __init__(self, model_path=None, *, providers=None, intra_op_threads: int = 1):
        if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, (int, np.integer)) \
                or intra_op_threads < 1:
            raise ParameterError(f"intra_op_threads must be an integer >= 1, got {intra_op_threads!r}")
        if isinstance(providers, str):
            raise ParameterError(f"providers must be a list of onnxruntime provider names, got the string "
                                 f"{providers!r} (write [{providers!r}])")
        self._providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        if not self._providers:
            raise ParameterError("providers must name at least one onnxruntime provider (e.g. CPUExecutionProvider)")
        self._threads = int(intra_op_threads)
        self._explicit = Path(model_path) if model_path is not None else None
        self._sess = None
        self._path = None
        self._hop = 32
        self._window = 64
        self._rate = None
        if self._explicit is not None:
            self._sess, self._hop, self._window, self._rate = _load_session(self._explicit, self._providers, self._threads)
            self._path = self._explicit

    @property
    def latency_samples(self) -> int:
        """Total algorithmic latency, samples: ``window - 1`` (overlap-add plus hop buffering)."""
        return self._window - 1

    @property
    def model_rate(self) -> int | None:
        """Hz the given model was trained at; None when using the shipped models (44100 and 48000)."""
        return self._rate if self._explicit is not None else None

    @property
    def model_path(self):
        """The model file in use (None before :meth:`prepare` when using the shipped models)."""
        return self._path

    def _allocate(self, spec: ProcessSpec) -> None:
        """Load the model for ``spec.sample_rate`` and allocate buffers for ``spec.max_block``.

        ``spec.sample_rate``: 44100 or 48000 for the shipped models, an explicit model's own
        rate; ``spec.n_channels`` must be 1 (the denoiser is mono).

        Raises
        ------
        ParameterError
            Another sample rate (the message lists the allowed ones) or more than one channel.
        DebleedError
            The model for the rate is missing or unreadable (names the path).
        """
        check_channels(self, spec, 1, "the denoiser is mono")
        sample_rate = spec.sample_rate
        if self._explicit is None:
            if sample_rate not in SHIPPED:
                raise ParameterError(f"the denoiser runs at 44100 or 48000 Hz, got sample_rate={sample_rate:g} "
                                     "(resample offline with `debleed denoise`, or run JACK at 44100/48000)")
            path = SHIPPED[int(sample_rate)]
            if self._path != path or self._sess is None:
                self._sess, self._hop, self._window, self._rate = _load_session(path, self._providers, self._threads)
                self._path = path
        elif sample_rate != self._rate:
            raise ParameterError(f"model {self._path} was trained at {self._rate} Hz, got sample_rate={sample_rate:g} "
                                 f"(allowed: {self._rate})")
        hop = self._hop
        shapes = {i.name: i.shape for i in self._sess.get_inputs()}
        # state inputs in graph order; the outputs after ``denoised`` are their next values
        self._state_names = tuple(i.name for i in self._sess.get_inputs() if i.name.endswith("_state"))
        self._state = {k: np.zeros([1 if not isinstance(d, int) else d for d in shapes[k]], np.float32)
                       for k in self._state_names}
        # an informed model run mic-only: its reference mics and key read as not connected (zeros)
        n_refs = shapes["refs"][1] if "refs" in shapes else 0
        chunk = (self.max_block // hop + 2) * hop
        self._zeros = {"refs": np.zeros((1, n_refs, chunk), np.float32), "key": np.zeros((1, chunk), np.float32)}
        self._zeros = {k: v for k, v in self._zeros.items() if k in shapes}
        self._in = np.zeros(hop, np.float32)
        self._scratch = np.zeros(self.max_block, np.float32)
        self._chunk = np.zeros((1, (self.max_block // hop + 2) * hop), np.float32)
        self._pend = np.zeros(self.max_block + 2 * hop, np.float32)

    def _clear(self) -> None:
        """Clear the streaming state (model state and hop buffers); the model stays loaded."""
        for v in self._state.values():
            v.fill(0.0)
        self._feed = {"audio": None, **self._state}
        self._in.fill(0.0)
        self._fill = 0
        self._pend.fill(0.0)
        self._n_pend = self._hop - 1
        self._fresh = True

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Denoise one block.

        Parameters
        ----------
        x : ndarray, float32 (n,)
            Mono snare-mic samples, 0 <= n <= ``max_block``.
        out : ndarray, float32 (n,) or longer
            Receives the denoised block in ``out[:n]`` (may be ``x`` itself), delayed by
            :attr:`latency_samples`.

        Raises
        ------
        DebleedError
            Called before :meth:`prepare`.
        ParameterError
            ``x`` not 1-D or longer than ``max_block``; ``out`` not a 1-D float array or too short.
        """
        self.check_prepared("process")
        if x.ndim != 1:
            raise ParameterError(f"x must be mono (n,), got shape {x.shape}")
        n = x.shape[0]
        if n > self.max_block:
            raise ParameterError(f"block of {n} frames is longer than max_block={self.max_block} given to prepare")
        if out.ndim != 1 or out.shape[0] < n or out.dtype.kind != "f":
            raise ParameterError(f"out must be a 1-D float array with at least {n} frames, got shape "
                                 f"{out.shape}, dtype {out.dtype}")
        if n == 0:
            return
        hop = self._hop
        s = self._scratch[:n]
        first = _sanitize(x, s)  # non-finite samples read as 0; index of the first non-zero one
        if self._fresh:
            # whole hops of digital silence before the first sound since reset are not run
            # (their output is 0 and the state stays as reset); the hop phase is kept
            if first < 0:
                out[:n] = 0.0
                return
            # the hop phase starts at the first non-zero sample, as in the data-plane kernels
            # (debleed.models.streaming), so both give the same output for any leading silence
            self._fresh = False
            q = int(first)
            self._fill = 0
            self._n_pend = hop - 1
            out[:q] = 0.0
            s, out, n = s[q:], out[q:], n - q
        total = self._fill + n
        nh = total // hop
        if nh:
            m = nh * hop
            c = self._chunk[:, :m]
            c[0, :self._fill] = self._in[:self._fill]
            used = m - self._fill
            c[0, self._fill:] = s[:used]
            feed = self._feed
            feed["audio"] = c
            for k, z in self._zeros.items():
                feed[k] = z[..., :m]
            res = self._sess.run(None, feed)
            y = res[0][0]
            ok = all(_all_finite(r) for r in res)
            if ok:
                for k, v in zip(self._state_names, res[1:]):  # the outputs become the next state
                    self._state[k] = feed[k] = v
            else:
                y = np.zeros(m, np.float32)
                for v in self._state.values():
                    v.fill(0.0)
            self._pend[self._n_pend:self._n_pend + m] = y
            self._n_pend += m
            rest = n - used
            self._in[:rest] = s[used:]
            self._fill = rest
        else:
            self._in[self._fill:total] = s
            self._fill = total
        out[:n] = self._pend[:n]
        k = self._n_pend - n
        self._pend[:k] = self._pend[n:self._n_pend]  # numpy handles the overlap
        self._n_pend = k


@njit(cache=True)
def _sanitize(x, s):
    """Copy ``x`` into ``s`` with non-finite samples as 0; the index of the first non-zero sample
    (-1: all zero)."""
    first = -1
    for i in range(x.shape[0]):
        v = x[i]
        if not np.isfinite(v):
            v = np.float32(0.0)
        s[i] = v
        if first < 0 and v != 0.0:
            first = i
    return first


@njit(cache=True)
def _all_finite(a):
    for v in a.ravel():
        if not np.isfinite(v):
            return False
    return True


#: ``denoise_limit_db`` at or below this is "no limit": the denoised signal passes unchanged.
LIMIT_OFF_DB = -100.0


def limit_mix_gain(limit_db: float, mix: float) -> float:
    """Weight of the denoised signal for an attenuation limit and a mix: ``mix * (1 - lim)``.

    ``lim = 10 ** (limit_db / 20)`` (0 at or below :data:`LIMIT_OFF_DB`, -100 dB). The output is
    ``dry + g * (denoised - dry)``: with ``mix = 1`` that is DeepFilterNet's attenuation limit
    ``dry * lim + denoised * (1 - lim)``; ``mix`` then blends with the dry signal.

    Raises
    ------
    ParameterError
        ``limit_db`` outside -100 to 0 dB, or ``mix`` outside 0 to 1 (or NaN).
    """
    if not -100.0 <= float(limit_db) <= 0.0:
        raise ParameterError(f"denoise_limit_db must be -100 to 0 dB, got {limit_db!r}")
    if not 0.0 <= float(mix) <= 1.0:
        raise ParameterError(f"denoise_mix must be 0 to 1, got {mix!r}")
    lim = 0.0 if float(limit_db) <= LIMIT_OFF_DB else 10.0 ** (float(limit_db) / 20.0)
    return float(mix) * (1.0 - lim)


class LimitMix:
    """Attenuation limit and dry/denoised mix of a denoiser's output, block by block.

    The ONNX graph does not expose the model's spectral mask, so the limit cannot be a floor on
    the mask (DeepFilterNet's first form); it is DeepFilterNet's second form, a mix with the
    unprocessed input: ``out = dry * lim + denoised * (1 - lim)``, ``lim = 10 ** (limit_db /
    20)``, which bounds the attenuation of any component to about ``limit_db`` wherever the
    denoised signal is small against the dry one. ``mix`` blends the result with the dry input.
    The dry input is delayed by the denoiser's latency so both line up.

    Parameters
    ----------
    latency_samples : int
        The denoiser's latency (>= 0); the dry path is delayed by as much.

    Notes
    -----
    :meth:`process` allocates nothing. When the weight ``g = mix * (1 - lim)`` changes between
    calls it ramps linearly over the block (no step); with ``g = 1`` the denoised samples pass
    bit for bit.
    """

    def __init__(self, latency_samples: int):
        self.latency = int(latency_samples)
        self._hist = np.zeros(self.latency + 1, np.float32)
        self._g = None

    def reset(self) -> None:
        """Clear the dry delay line (the weight is kept)."""
        self._hist.fill(0.0)

    def process(self, x: np.ndarray, y: np.ndarray, limit_db: float, mix: float) -> None:
        """Blend ``y[:n]`` (denoised, ``n = x.size``) in place with ``x`` delayed by the latency."""
        g = limit_mix_gain(limit_db, mix)
        g0 = g if self._g is None else self._g
        self._g = g
        _limit_mix(x, y, self._hist, self.latency, g0, g)


@njit(cache=True)
def _limit_mix(x, y, hist, lat, g0, g1):
    n = x.shape[0]
    ramp = g0 != g1
    for i in range(n):
        v = x[i]
        if not np.isfinite(v):
            v = np.float32(0.0)
        # dry sample lat samples ago: hist holds the last lat inputs, oldest first
        if lat == 0:
            d = v
        else:
            d = hist[0]
            for j in range(lat - 1):
                hist[j] = hist[j + 1]
            hist[lat - 1] = v
        g = g0 + (g1 - g0) * (i + 1) / n if ramp else g1
        if g != 1.0:
            y[i] = np.float32(d + g * (y[i] - d))


def denoise_signal(x: np.ndarray, sample_rate: int, *, denoiser: Denoiser | None = None,
                   block: int = 1024, compensate: bool = True, limit_db: float = LIMIT_OFF_DB,
                   mix: float = 1.0) -> np.ndarray:
    """Denoise a whole mono or multichannel signal offline, at any sample rate.

    Parameters
    ----------
    x : ndarray, float (n,) or (n, channels)
        Audio (soundfile's layout), each channel denoised on its own.
    sample_rate : int
        Hz, > 0. With the shipped models, rates other than 44100 and 48000 are resampled with soxr
        to 48000 and back; a denoiser built on a given model file works at that model's rate,
        and other rates are resampled to it and back.
    denoiser : Denoiser, optional
        Reused if given (its shipped models are picked per rate).
    block : int
        Processing block, frames, 1 to 1048576; default 1024.
    compensate : bool
        Remove the model latency so the output lines up with the input; default True.
    limit_db : float
        Attenuation limit, dB, -100 to 0; default -100 (no limit). See :class:`LimitMix`.
    mix : float
        Denoised share, 0 to 1; default 1.

    Returns
    -------
    ndarray, float32, same shape as ``x``.

    Raises
    ------
    ParameterError
        ``sample_rate`` not > 0, or ``block`` out of range.
    DebleedError
        The model cannot be loaded (names the path).
    """
    import soxr

    if not sample_rate > 0:
        raise ParameterError(f"sample_rate must be > 0 Hz, got {sample_rate!r}")
    x = np.asarray(x)
    mono = x.ndim == 1
    xs = x[:, None] if mono else x
    d = denoiser or Denoiser()
    if d.model_rate is not None:
        rate = d.model_rate
    else:
        rate = int(sample_rate) if int(sample_rate) in SHIPPED else 48000
    limit_mix_gain(limit_db, mix)  # validate before any work
    d.prepare(ProcessSpec(rate, block))
    lm = LimitMix(d.latency_samples)
    lat = d.latency_samples if compensate else 0
    out = np.zeros(xs.shape, np.float32)
    buf = np.zeros(block, np.float32)
    for ch in range(xs.shape[1]):
        sig = np.asarray(xs[:, ch], np.float32)
        if rate != sample_rate:
            sig = soxr.resample(sig, sample_rate, rate).astype(np.float32)
        sig = np.concatenate([sig, np.zeros(lat, np.float32)])
        y = np.zeros(sig.size, np.float32)
        d.reset()
        lm.reset()
        for i in range(0, sig.size, block):
            seg = sig[i:i + block]
            d.process(seg, buf)
            lm.process(seg, buf[:seg.size], limit_db, mix)
            y[i:i + seg.size] = buf[:seg.size]
        y = y[lat:]
        if rate != sample_rate:
            y = soxr.resample(y, rate, sample_rate).astype(np.float32)
        m = min(y.size, out.shape[0])
        out[:m, ch] = y[:m]
    return out[:, 0] if mono else out


def model_latency_samples(path, keyed: bool = False) -> int:
    """Latency of a streaming model file in the denoiser stage, samples: ``window - 1`` (63 for
    the shipped models), plus, for a channel whose ``midi:`` or ``trigger:`` key reaches the model
    (``keyed``), the model's key lead (``key_lead_ms`` of its config, at its sample rate).

    Raises
    ------
    DebleedError
        ``path`` missing or not a loadable model.
    """
    info = model_info(path)
    lead = key_lead_samples(info.get("config") or {}, int(info["sample_rate"])) if keyed else 0
    return int(info["window"]) - 1 + lead


def model_info(path) -> dict:
    """Metadata of an exported model: ``hop``, ``window``, ``sample_rate`` (strings, as stored)
    and ``config`` (the constructor arguments, a dict).

    Raises
    ------
    DebleedError
        ``path`` missing or not a loadable ONNX model (the message names the path).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DebleedError(f"denoiser model {path} does not exist")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise DebleedError(f"cannot load denoiser model {path}: {str(e).strip().splitlines()[0][:300]}") from None
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    if "config" in meta:
        meta["config"] = json.loads(meta["config"])
    return meta
