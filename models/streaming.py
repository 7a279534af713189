"""The snare denoiser in the data plane: numba streaming kernels over preallocated state.

The shipped ``.onnx`` file is the model's one artifact. :func:`load_weights` reads its
initializers with the ``onnx`` package (mapped by name and by the node that consumes them, every
shape checked against the model's ``config`` metadata) and packs them into one flat float32
array. :func:`denoise_block` runs one block of every denoised channel of a gig, a hop at a time,
inside the audio callback: the JACK cfunc, the Python engine, the PortAudio engine and every
offline command call it before :func:`debleed.dsp.chain.run_block`, so a bounce equals an
offline render by construction. onnxruntime runs the same file for the batch ``debleed denoise``
and as the reference the kernels are tested against (:mod:`debleed.models.denoiser`).

The network (:mod:`debleed.models.net`), per hop of ``hop`` samples, as the layers of RTNeural
read (each a small kernel with its state passed in, nothing allocated):

1. ``_push_hop``: the last ``context`` input samples (a linear history, shifted by one hop);
2. ``_encode``: the learned filterbank frame ``f = E x[-window:]`` (E: ``(n_filters, window)``),
   and the causal constant-Q context ``c = C x[-context:]`` (C: ``(2 cq_bins, context)``; each
   row is zero before its window, so each panel of rows is summed from its first non-zero column);
3. features ``0.1 log(f^2 + 1e-9)`` and ``0.1 log(c_re^2 + c_im^2 + 1e-9)``, ``relu(W_in . + b)``;
4. ``_gru_cell`` per layer (PyTorch's GRU, ONNX gate order z, r, h, ``linear_before_reset``);
5. mask ``sigmoid(W_out z + b)`` and, with ``taps > 1``, the multi-frame filter coefficients;
6. ``_decode``: ``D^T (mask * f + sum_k c_k f_{t-k})`` (D: ``(n_filters, window)``), overlap-add.

Latency: ``window - 1`` samples (63 at hop 32): ``hop`` from the overlap-add, ``hop - 1`` from
collecting a hop (a hop is run on the sample that completes it). It does not depend on the
period: a denoised channel is never late, whatever the block size.

Bounded harm: the output is ``dry + g * (denoised - dry)`` with ``dry`` the input delayed by the
latency and ``g = mix * (1 - 10 ** (limit_db / 20))`` (DeepFilterNet's attenuation limit,
:func:`debleed.models.denoiser.limit_mix_gain`); a change of ``g`` ramps over
:data:`GAIN_RAMP_MS`.

Robustness: a non-finite input sample reads as 0; a hop whose output or state is not finite
resets that channel (zeros out, fresh state). After a reset the channel is *fresh*: digital
silence (exact zeros) before the first sound is not run (output 0, the state stays as reset, the
hop phase starts at the first non-zero sample), so a live run started long before the music, or a
JACK bounce, equals the offline render of the same take.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from numba import njit

from debleed.dsp._common import MAX_BLOCK, check_int
from debleed.dsp.keys import MAX_MIDI_EVENTS
from debleed.dsp.processor import ProcessSpec, Processor, check_channels
from debleed.errors import DebleedError, ParameterError
from debleed.models.graph import KEY_IDLE, KEY_POWER_RANGE, input_names, key_lead_samples
from debleed.models._simd import (LANES, fma, load, vadd, vbroadcast, vdiv, vfma, vload, vmax, vmin, vmul,
                                  vselect_lt, vsplat, vsplitexp, vstore, vsub, vzero)

#: Operators of the exported streaming graph that the kernels implement (anything else is refused).
SUPPORTED_OPS = frozenset({"Concat", "Constant", "Slice", "Unsqueeze", "Squeeze", "Conv", "ConvTranspose",
                           "Mul", "Add", "Log", "Transpose", "MatMul", "Relu", "GRU", "Sigmoid", "Shape",
                           "Gather", "Reshape", "ReduceMax", "Pow", "Clip", "Sub"})
#: Reference mics a model can take (``n_refs`` of its config).
MAX_REFS = 4
#: A trigger key's velocity is the piezo's peak over this long after it crosses its threshold, ms.
TRIGGER_SCAN_MS = 1.0
# Kernel options: ``error_model="numpy"`` (a division by zero gives inf or NaN, never a raise
# that would take the GIL in the audio thread) and, for the element-wise loops of the network,
# fast-math flags that keep NaN and Inf semantics (no ``nnan``/``ninf``: the non-finite checks
# below must stay). The matrix products and activations do without: they are written with
# explicit vectors (:mod:`debleed.models._simd`), so their rounding does not depend on what LLVM
# makes of a loop.
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}
_KW = {"cache": True, "error_model": "numpy"}

#: The gain of the denoised signal (limit and mix) ramps over this long after a change, ms.
GAIN_RAMP_MS = 5.0

# ``lay`` columns (int64, one row per denoised channel): rows of ``inputs`` read and written,
# the model's dimensions, the base offsets of its weights in ``w`` and of its state in ``s``,
# its latency, the most hops a block can complete (scratch rows); an informed model's inputs:
# reference mics (count, then MAX_REFS input rows, -1 not connected), whether it takes a key,
# the key's kind (KEY_NONE, KEY_MIDI, KEY_TRIGGER), a trigger key's input row, a MIDI key's
# notes (two 64-bit masks) and channel (0 any), a trigger's retrigger and scan lengths (samples),
# the key filter's length (frames) and outputs (an old-style key: length 1, one output of weight 1),
# the key's lead: samples the mic and reference mics are delayed before the model, so the key
# reaches it that much ahead (the model's ``key_lead_ms`` where a key is connected, else 0),
# whether the key features also reach the mask directly (``key_mask``), whether the last key
# feature is the model's "key connected" one (``key_connected``; ``L_KBINS`` counts it)
(L_SRC, L_DST, L_HOP, L_WIN, L_N, L_H, L_LAYERS, L_CTX, L_K, L_TAPS, L_IN, L_W, L_S, L_LAT, L_JM) = range(15)
L_NREFS = 15
L_REF = 16  # MAX_REFS columns
(L_KEYIN, L_KEYKIND, L_KEYSRC, L_NOTES_LO, L_NOTES_HI, L_MIDICH, L_RETRIG, L_SCAN, L_KCTX,
 L_KBINS, L_LEAD, L_KMASK, L_KCONN) = range(L_REF + MAX_REFS, L_REF + MAX_REFS + 13)
NL = L_REF + MAX_REFS + 13
KEY_NONE, KEY_MIDI, KEY_TRIGGER = 0, 1, 2

# ``ist`` columns (int64 state): samples collected in the current hop, fresh flag, dry ring write
# index, hops run, resets after a non-finite hop; a trigger key's retrigger mask and scan left;
# the key lead's delay rings' write index
(I_FILL, I_FRESH, I_DRYW, I_HOPS, I_RESETS, I_TMASK, I_TSCAN, I_LEADW) = range(8)
NIS = 8
# ``par`` columns (float64): target weight g of the denoised signal, the weight now, ramp step
# per sample, a trigger key's threshold (linear) and the peak of the hit being scanned, the
# power the key's values are raised to (the model's ``key_power``; 1 leaves them)
(P_G, P_GNOW, P_STEP, P_TRIGTHR, P_PEAK, P_KPOW) = range(6)
NPAR = 6
# ``ctl`` columns (int64): reset requests raised by the control plane, the last one honoured
(C_REQ, C_DONE) = range(2)
NCTL = 2


def weight_size(hop, win, n, h, layers, ctx, k, taps, n_in, kc=1, kb=0, km=0, kconn=0) -> int:
    """Float32 count of one model's packed weights (the layout of :func:`_offsets`); ``kc``, ``kb``
    the key filter's length (frames) and key features (0: no key), ``km`` 1 with the key's mask
    weights, ``kconn`` 1 when the last key feature is "key connected" (no filter row)."""
    # every GRU layer takes h inputs (layer 0 reads the input layer's output)
    return (n * win + 2 * k * ctx + 2 * k + h * n_in + h + layers * (6 * h * h + 6 * h)
            + n * h + n + n * (taps - 1) * h + n * (taps - 1) + win * n + (kb - kconn) * kc + km * kb * n)


def max_hops(hop: int, max_block: int) -> int:
    """Hops a block of up to ``max_block`` frames can complete (a partial hop may be pending)."""
    return max_block // hop + 1


def state_size(hop, win, n, h, layers, ctx, k, taps, n_in, lat, jm, nr=0, kin=0, kc=1, lead=0) -> int:
    """Float32 count of one channel's streaming state and scratch for up to ``jm`` hops per
    block, ``nr`` reference mics and a key when ``kin`` with a key filter of ``kc`` frames and a
    lead of ``lead`` samples (the layout of :func:`_soffsets`)."""
    return ((ctx + jm * hop) + (taps - 1 + jm) * n + layers * h + (win - hop) + (jm + 1) * hop
            + (lat + 1) + nr * (win + jm * hop) + kin * (jm + 1) * hop + kin * (kc - 1 + jm)
            + (1 + nr) * lead + jm * hop
            + jm * 2 * k + jm * n_in + 2 * jm * h + jm * 3 * h + 3 * h + 2 * jm * n + jm * win)


@njit(inline="always", **_KW)
def _offsets(win, n, h, layers, ctx, k, taps, n_in):
    """Offsets of the weight tensors inside one model's block of ``w`` (relative to ``L_W``).

    Order: encoder (n, win); constant-Q (2k, ctx); per constant-Q row, the first non-zero column
    of its panel's rows (2k, stored as float); W_in (h, n_in); b_in (h); per GRU layer W_ih
    (3h, h), W_hh (3h, h), b_ih (3h), b_hh (3h); W_out (n, h); b_out (n); W_taps (taps - 1
    matrices (n, h)); b_taps; decoder transposed (win, n); then the key filter (outputs,
    frames), row-major, newest frame last, as the ONNX ``Conv`` holds it; then the key's mask
    weights (n, key outputs), row-major (``key_mask`` models). Every matrix but the key's is stored
    in panels (:func:`pack_panels`). Returns (enc, cq, cqs, win_, bin_, gru, wout, bout, wtap,
    btap, dec, key); the key's mask weights follow the key filter.
    """
    o_enc = 0
    o_cq = o_enc + n * win
    o_cqs = o_cq + 2 * k * ctx
    o_inw = o_cqs + 2 * k
    o_inb = o_inw + h * n_in
    o_gru = o_inb + h
    o_wout = o_gru + layers * (6 * h * h + 6 * h)
    o_bout = o_wout + n * h
    o_wtap = o_bout + n
    o_btap = o_wtap + n * (taps - 1) * h
    o_dec = o_btap + n * (taps - 1)
    o_key = o_dec + win * n
    return o_enc, o_cq, o_cqs, o_inw, o_inb, o_gru, o_wout, o_bout, o_wtap, o_btap, o_dec, o_key


@njit(inline="always", **_KW)
def _soffsets(hop, win, n, h, layers, ctx, k, taps, n_in, lat, jm, nr, kin, kc, lead):
    """Offsets inside one channel's block of ``s`` (relative to ``L_S``); ``jm`` hops per block.

    State (kept across blocks; :func:`_reset_channel` zeroes it): the input history, then this
    block's samples (``ctx + jm hop``: the previous ``ctx - hop`` samples, then the pending part
    of a hop and the block's samples, up to ``jm`` whole hops and a partial one); frames (``(taps - 1 + jm) n``: the previous ``taps - 1``
    frames, then this block's); GRU state (``layers h``); overlap-add tail (``win - hop``); hop
    outputs (``(jm + 1) hop``: the last hop of the previous block, then this block's); dry delay
    ring (``lat + 1``); each reference mic's samples (``win + jm hop``: its previous ``win - hop``,
    then as the input's); the key's samples (``(jm + 1) hop``, when the model takes one) and its
    frame values (``kc - 1 + jm``: the previous ``kc - 1``, then this block's); the key lead's
    delay rings (``lead`` each: the mic, then each reference mic). Scratch, one row per hop: constant-Q (2k), features (n_in), two layer
    buffers (h each), input gates (3h); recurrent gates (3h, one hop); mask or taps coefficients
    (n), filtered frame (n), decoded frame (win); and the block's mic samples as the model hears
    them (``jm hop``: after the lead's delay, non-finite ones as 0). Returns the offsets in that
    order, except the key's frame values, the lead's rings and the mic samples, which come last
    in that order (element 8, the constant-Q scratch, is where the scratch starts).
    """
    o_x = 0
    o_fr = o_x + ctx + jm * hop
    o_h = o_fr + (taps - 1 + jm) * n
    o_ola = o_h + layers * h
    o_out = o_ola + win - hop
    o_dry = o_out + (jm + 1) * hop
    o_ref = o_dry + lat + 1
    o_kb = o_ref + nr * (win + jm * hop)
    o_kf = o_kb + kin * (jm + 1) * hop
    o_lead = o_kf + kin * (kc - 1 + jm)
    o_cq = o_lead + (1 + nr) * lead
    o_feat = o_cq + jm * 2 * k
    o_a = o_feat + jm * n_in
    o_b = o_a + jm * h
    o_gi = o_b + jm * h
    o_gh = o_gi + jm * 3 * h
    o_mask = o_gh + 3 * h
    o_filt = o_mask + jm * n
    o_yfr = o_filt + jm * n
    o_xd = o_yfr + jm * win
    return (o_x, o_fr, o_h, o_ola, o_out, o_dry, o_ref, o_kb, o_cq, o_feat, o_a, o_b, o_gi, o_gh, o_mask, o_filt,
            o_yfr, o_kf, o_lead, o_xd)


@njit(inline="always", **_KW)
def _chan_soffsets(lay, c):
    """:func:`_soffsets` of channel ``c``, from its ``lay`` row."""
    return _soffsets(lay[c, L_HOP], lay[c, L_WIN], lay[c, L_N], lay[c, L_H], lay[c, L_LAYERS], lay[c, L_CTX],
                     lay[c, L_K], lay[c, L_TAPS], lay[c, L_IN], lay[c, L_LAT], lay[c, L_JM], lay[c, L_NREFS],
                     lay[c, L_KEYIN], lay[c, L_KCTX], lay[c, L_LEAD])


# --- matrix products -------------------------------------------------------------------------
# A weight matrix W (rows, cols) is stored in panels of PANEL rows: panel q is
# W[PANEL q:PANEL q + p].T, row-major (cols, p), at ``PANEL q cols`` (p = PANEL, the last panel
# narrower when PANEL does not divide rows; :func:`pack_panels`). The kernels keep a panel's
# outputs for several frames in vector registers and add one column of W times one input at a
# time: every output element is ``fma(w_i, x_i, acc)`` for ``i`` rising from its first column,
# then ``+ b``, the same order and rounding whichever kernel computes it and however many frames
# a call batches. So the output does not depend on the block size, with no fast-math
# reassociation, and nothing is summed across vector lanes at the end (the dot-product form spent
# as long on those horizontal sums as on the products for the model's 192-wide layers).

#: Rows per weight panel (two :data:`~debleed.models._simd.LANES`-wide vectors).
PANEL = 2 * LANES


def pack_panels(m: np.ndarray) -> np.ndarray:
    """A matrix ``m`` (rows, cols) in the panel layout the matrix kernels read (same size).

    Panel ``q`` holds rows ``PANEL q`` to ``PANEL q + p`` (``p = PANEL``, the last panel
    ``rows % PANEL`` when that is not 0), transposed: ``(cols, p)`` row-major.
    """
    m = np.asarray(m, np.float32)
    return np.concatenate([np.ascontiguousarray(m[r:r + PANEL].T).ravel() for r in range(0, m.shape[0], PANEL)]
                          or [np.zeros(0, np.float32)])


@njit(inline="always", **_KW)
def _put(y, yo, a0, a1, b, bo):
    """``y[yo:yo + PANEL] = (a0, a1) (+ b[bo:bo + PANEL] when bo >= 0)``."""
    if bo >= 0:
        a0 = vadd(a0, vload(b, bo))
        a1 = vadd(a1, vload(b, bo + LANES))
    vstore(y, yo, a0)
    vstore(y, yo + LANES, a1)


@njit(inline="always", **_KW)
def _mk6(w, pw, i0, cols, x, xo, xs, y, yo, ys, b, bo):
    """One panel (at ``w[pw:]``) times six frames (``x[xo + f xs + i]``), outputs at ``y[yo + f ys:]``
    (twelve accumulators: the FMA units stay busy and AVX2's sixteen registers suffice)."""
    a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero(); a20 = vzero(); a21 = vzero()
    a30 = vzero(); a31 = vzero(); a40 = vzero(); a41 = vzero(); a50 = vzero(); a51 = vzero()
    for i in range(i0, cols):
        w0 = vload(w, pw + i * PANEL)
        w1 = vload(w, pw + i * PANEL + LANES)
        v = vbroadcast(x, xo + i)
        a00 = vfma(w0, v, a00); a01 = vfma(w1, v, a01)
        v = vbroadcast(x, xo + xs + i)
        a10 = vfma(w0, v, a10); a11 = vfma(w1, v, a11)
        v = vbroadcast(x, xo + 2 * xs + i)
        a20 = vfma(w0, v, a20); a21 = vfma(w1, v, a21)
        v = vbroadcast(x, xo + 3 * xs + i)
        a30 = vfma(w0, v, a30); a31 = vfma(w1, v, a31)
        v = vbroadcast(x, xo + 4 * xs + i)
        a40 = vfma(w0, v, a40); a41 = vfma(w1, v, a41)
        v = vbroadcast(x, xo + 5 * xs + i)
        a50 = vfma(w0, v, a50); a51 = vfma(w1, v, a51)
    _put(y, yo, a00, a01, b, bo)
    _put(y, yo + ys, a10, a11, b, bo)
    _put(y, yo + 2 * ys, a20, a21, b, bo)
    _put(y, yo + 3 * ys, a30, a31, b, bo)
    _put(y, yo + 4 * ys, a40, a41, b, bo)
    _put(y, yo + 5 * ys, a50, a51, b, bo)


@njit(inline="always", **_KW)
def _mk4(w, pw, i0, cols, x, xo, xs, y, yo, ys, b, bo):
    """One panel times four frames (as :func:`_mk6`)."""
    a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero(); a20 = vzero(); a21 = vzero()
    a30 = vzero(); a31 = vzero()
    for i in range(i0, cols):
        w0 = vload(w, pw + i * PANEL)
        w1 = vload(w, pw + i * PANEL + LANES)
        v = vbroadcast(x, xo + i)
        a00 = vfma(w0, v, a00); a01 = vfma(w1, v, a01)
        v = vbroadcast(x, xo + xs + i)
        a10 = vfma(w0, v, a10); a11 = vfma(w1, v, a11)
        v = vbroadcast(x, xo + 2 * xs + i)
        a20 = vfma(w0, v, a20); a21 = vfma(w1, v, a21)
        v = vbroadcast(x, xo + 3 * xs + i)
        a30 = vfma(w0, v, a30); a31 = vfma(w1, v, a31)
    _put(y, yo, a00, a01, b, bo)
    _put(y, yo + ys, a10, a11, b, bo)
    _put(y, yo + 2 * ys, a20, a21, b, bo)
    _put(y, yo + 3 * ys, a30, a31, b, bo)


@njit(inline="always", **_KW)
def _mk3(w, pw, i0, cols, x, xo, xs, y, yo, ys, b, bo):
    """One panel times three frames (as :func:`_mk6`)."""
    a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero(); a20 = vzero(); a21 = vzero()
    for i in range(i0, cols):
        w0 = vload(w, pw + i * PANEL)
        w1 = vload(w, pw + i * PANEL + LANES)
        v = vbroadcast(x, xo + i)
        a00 = vfma(w0, v, a00); a01 = vfma(w1, v, a01)
        v = vbroadcast(x, xo + xs + i)
        a10 = vfma(w0, v, a10); a11 = vfma(w1, v, a11)
        v = vbroadcast(x, xo + 2 * xs + i)
        a20 = vfma(w0, v, a20); a21 = vfma(w1, v, a21)
    _put(y, yo, a00, a01, b, bo)
    _put(y, yo + ys, a10, a11, b, bo)
    _put(y, yo + 2 * ys, a20, a21, b, bo)


@njit(inline="always", **_KW)
def _mk2x2(w, pw, ps, i0, cols, x, xo, xs, y, yo, ys, b, bo):
    """Two consecutive panels (``w[pw:]``, ``w[pw + ps:]``) times two frames."""
    a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()
    a4 = vzero(); a5 = vzero(); a6 = vzero(); a7 = vzero()
    p1 = pw + ps
    for i in range(i0, cols):
        w0 = vload(w, pw + i * PANEL)
        w1 = vload(w, pw + i * PANEL + LANES)
        w2 = vload(w, p1 + i * PANEL)
        w3 = vload(w, p1 + i * PANEL + LANES)
        v = vbroadcast(x, xo + i)
        a0 = vfma(w0, v, a0); a1 = vfma(w1, v, a1); a2 = vfma(w2, v, a2); a3 = vfma(w3, v, a3)
        v = vbroadcast(x, xo + xs + i)
        a4 = vfma(w0, v, a4); a5 = vfma(w1, v, a5); a6 = vfma(w2, v, a6); a7 = vfma(w3, v, a7)
    b1 = bo + PANEL if bo >= 0 else bo
    _put(y, yo, a0, a1, b, bo)
    _put(y, yo + PANEL, a2, a3, b, b1)
    _put(y, yo + ys, a4, a5, b, bo)
    _put(y, yo + ys + PANEL, a6, a7, b, b1)


@njit(inline="always", **_KW)
def _mk1x4(w, pw, ps, i0, cols, x, xo, y, yo, b, bo):
    """Four consecutive panels (``w[pw + q ps:]``, 4 PANEL rows) times one frame: the
    matrix-vector product of the recurrence, eight accumulators over four weight streams."""
    a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()
    a4 = vzero(); a5 = vzero(); a6 = vzero(); a7 = vzero()
    p1 = pw + ps
    p2 = p1 + ps
    p3 = p2 + ps
    for i in range(i0, cols):
        v = vbroadcast(x, xo + i)
        a0 = vfma(vload(w, pw + i * PANEL), v, a0); a1 = vfma(vload(w, pw + i * PANEL + LANES), v, a1)
        a2 = vfma(vload(w, p1 + i * PANEL), v, a2); a3 = vfma(vload(w, p1 + i * PANEL + LANES), v, a3)
        a4 = vfma(vload(w, p2 + i * PANEL), v, a4); a5 = vfma(vload(w, p2 + i * PANEL + LANES), v, a5)
        a6 = vfma(vload(w, p3 + i * PANEL), v, a6); a7 = vfma(vload(w, p3 + i * PANEL + LANES), v, a7)
    _put(y, yo, a0, a1, b, bo)
    _put(y, yo + PANEL, a2, a3, b, bo + PANEL if bo >= 0 else bo)
    _put(y, yo + 2 * PANEL, a4, a5, b, bo + 2 * PANEL if bo >= 0 else bo)
    _put(y, yo + 3 * PANEL, a6, a7, b, bo + 3 * PANEL if bo >= 0 else bo)


@njit(inline="always", **_KW)
def _mk1x2(w, pw, ps, i0, cols, x, xo, y, yo, b, bo):
    """Two consecutive panels times one frame."""
    a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()
    p1 = pw + ps
    for i in range(i0, cols):
        v = vbroadcast(x, xo + i)
        a0 = vfma(vload(w, pw + i * PANEL), v, a0); a1 = vfma(vload(w, pw + i * PANEL + LANES), v, a1)
        a2 = vfma(vload(w, p1 + i * PANEL), v, a2); a3 = vfma(vload(w, p1 + i * PANEL + LANES), v, a3)
    _put(y, yo, a0, a1, b, bo)
    _put(y, yo + PANEL, a2, a3, b, bo + PANEL if bo >= 0 else bo)


@njit(inline="always", **_KW)
def _mk1(w, pw, i0, cols, x, xo, y, yo, b, bo):
    """One panel times one frame."""
    a0 = vzero()
    a1 = vzero()
    for i in range(i0, cols):
        v = vbroadcast(x, xo + i)
        a0 = vfma(vload(w, pw + i * PANEL), v, a0)
        a1 = vfma(vload(w, pw + i * PANEL + LANES), v, a1)
    _put(y, yo, a0, a1, b, bo)


@njit(inline="always", **_KW)
def _first(w, so, r, npan):
    """The first column summed for the ``npan`` panels from row ``r``: the smallest of theirs
    (``w[so + r]``, one per panel; 0 when ``so < 0``). Starting a panel early adds only its
    zero columns, each exactly 0 (the inputs are finite), so the sums do not change."""
    if so < 0:
        return 0
    m = w[so + r]
    for q in range(1, npan):
        m = min(m, w[so + r + q * PANEL])
    return int(m)


@njit(**_KW)
def _gemm(w, wo, rows, cols, x, xo, xs, nj, b, bo, y, yo, ys, so):
    """``y_j = W x_j (+ b)`` for ``j < nj``: W ``(rows, cols)`` in panels (:func:`pack_panels`)
    at ``w[wo:]``, ``x_j`` at ``x[xo + j xs:]`` (cols), ``y_j`` at ``y[yo + j ys:]`` (rows);
    ``bo < 0``: no bias. ``so >= 0``: ``w[so + r]`` is the first column summed for row ``r``
    (the same for every row of a panel; the columns before it are zero in W), else 0.

    Each element is summed in one order, column by column (see :data:`PANEL`), whatever ``nj``.
    Panels go four at a time (64 rows; then two, then one). The frames go six, four or three at
    a time through each panel while it sits in the L1 cache (tiles chosen so that at most two
    frames are left), the last one or two through the group's panels at once; ``nj = 1`` is the
    matrix-vector product of the recurrence.
    """
    full = rows - rows % PANEL
    ps = PANEL * cols
    r0 = 0
    while r0 < full:
        npan = 4 if full - r0 >= 4 * PANEL else 2 if full - r0 >= 2 * PANEL else 1
        j = 0
        for q in range(npan):
            r = r0 + q * PANEL
            pw, i0, bq = wo + r * cols, _first(w, so, r, 1), bo + r if bo >= 0 else bo
            j = 0
            while nj - j >= 3:
                m = nj - j
                if m >= 12 or m == 6 or m == 9 or m == 10:
                    _mk6(w, pw, i0, cols, x, xo + j * xs, xs, y, yo + j * ys + r, ys, b, bq)
                    j += 6
                elif m >= 4:
                    _mk4(w, pw, i0, cols, x, xo + j * xs, xs, y, yo + j * ys + r, ys, b, bq)
                    j += 4
                else:
                    _mk3(w, pw, i0, cols, x, xo + j * xs, xs, y, yo + j * ys + r, ys, b, bq)
                    j += 3
            if npan == 1:
                while j < nj:
                    _mk1(w, pw, i0, cols, x, xo + j * xs, y, yo + j * ys + r, b, bq)
                    j += 1
        pw, b0 = wo + r0 * cols, bo + r0 if bo >= 0 else bo
        if npan == 4 and nj - j == 2:
            _mk2x2(w, pw, ps, _first(w, so, r0, 2), cols, x, xo + j * xs, xs, y, yo + j * ys + r0, ys, b, b0)
            _mk2x2(w, pw + 2 * ps, ps, _first(w, so, r0 + 2 * PANEL, 2), cols, x, xo + j * xs, xs, y,
                   yo + j * ys + r0 + 2 * PANEL, ys, b, bo + r0 + 2 * PANEL if bo >= 0 else bo)
        elif npan == 4 and nj - j == 1:
            _mk1x4(w, pw, ps, _first(w, so, r0, 4), cols, x, xo + j * xs, y, yo + j * ys + r0, b, b0)
        elif npan == 2 and nj - j == 2:
            _mk2x2(w, pw, ps, _first(w, so, r0, 2), cols, x, xo + j * xs, xs, y, yo + j * ys + r0, ys, b, b0)
        elif npan == 2 and nj - j == 1:
            _mk1x2(w, pw, ps, _first(w, so, r0, 2), cols, x, xo + j * xs, y, yo + j * ys + r0, b, b0)
        r0 += npan * PANEL
    p = rows - full
    if p > 0:  # the last, narrower panel: scalar, in the same order
        pw = wo + full * cols
        i0 = _first(w, so, full, 1)
        for j in range(nj):
            for r in range(p):
                acc = np.float32(0.0)
                for i in range(i0, cols):
                    acc = fma(load(w, pw + i * p + r), load(x, xo + j * xs + i), acc)
                if bo >= 0:
                    acc = acc + b[bo + full + r]
                y[yo + j * ys + full + r] = acc


# --- activations -----------------------------------------------------------------------------
# The logistic function and tanh as Eigen's rational approximations (Eigen's ``ptanh_float`` and
# logistic; onnxruntime's MLAS uses the same coefficients for its GRU and Sigmoid): no exp, no
# libm call, eight lanes at a time. Error below 1e-6 absolute on every float32 input; a NaN input
# gives NaN (the non-finite checks see it); +-inf give the limits. The scalar forms compute one
# lane exactly as the vector forms do (for the rows past the last multiple of eight).
_SIG_LIM = np.float32(18.0)
_SIG_P = (np.float32(4.37031012579801e-11), np.float32(1.15627324459942e-07), np.float32(6.08574864600143e-05),
          np.float32(8.51377133304701e-03), np.float32(2.48287947061529e-01))
_SIG_Q = (np.float32(6.10247389755681e-13), np.float32(5.76102136993427e-09), np.float32(6.29106785017040e-06),
          np.float32(1.70198817374094e-03), np.float32(1.16817656904453e-01), np.float32(9.93151921023180e-01))
_TANH_LIM = np.float32(9.0)
_TANH_P = (np.float32(-2.76076847742355e-16), np.float32(2.00018790482477e-13), np.float32(-8.60467152213735e-11),
           np.float32(5.12229709037114e-08), np.float32(1.48572235717979e-05), np.float32(6.37261928875436e-04),
           np.float32(4.89352455891786e-03))
_TANH_Q = (np.float32(1.19825839466702e-06), np.float32(1.18534705686654e-04), np.float32(2.26843463243900e-03),
           np.float32(4.89352518554385e-03))


@njit(inline="always", **_KW)
def _clamp(v, lo, hi):
    """``v`` limited to ``[lo, hi]``; a NaN stays NaN."""
    v = lo if v < lo else v
    return hi if v > hi else v


@njit(inline="always", **_KW)
def _sigmoid(v):
    """``1 / (1 + exp(-v))`` (float32 scalar; see the block comment above)."""
    x = _clamp(v, -_SIG_LIM, _SIG_LIM)
    x2 = x * x
    p = fma(fma(fma(fma(_SIG_P[0], x2, _SIG_P[1]), x2, _SIG_P[2]), x2, _SIG_P[3]), x2, _SIG_P[4]) * x
    q = fma(fma(fma(fma(fma(_SIG_Q[0], x2, _SIG_Q[1]), x2, _SIG_Q[2]), x2, _SIG_Q[3]), x2, _SIG_Q[4]), x2, _SIG_Q[5])
    return _clamp(p / q + np.float32(0.5), np.float32(0.0), np.float32(1.0))


@njit(inline="always", **_KW)
def _tanh(v):
    """``tanh(v)`` (float32 scalar)."""
    x = _clamp(v, -_TANH_LIM, _TANH_LIM)
    x2 = x * x
    p = fma(fma(fma(fma(fma(fma(_TANH_P[0], x2, _TANH_P[1]), x2, _TANH_P[2]), x2, _TANH_P[3]), x2, _TANH_P[4]), x2,
                _TANH_P[5]), x2, _TANH_P[6]) * x
    q = fma(fma(fma(_TANH_Q[0], x2, _TANH_Q[1]), x2, _TANH_Q[2]), x2, _TANH_Q[3])
    return p / q


@njit(inline="always", **_KW)
def _vpoly(x2, c0, c1, c2, c3):
    return vfma(vfma(vfma(vsplat(c0), x2, vsplat(c1)), x2, vsplat(c2)), x2, vsplat(c3))


@njit(inline="always", **_KW)
def _vsigmoid(v):
    """:func:`_sigmoid` of eight lanes."""
    x = vmin(vmax(v, vsplat(-_SIG_LIM)), vsplat(_SIG_LIM))
    x2 = vmul(x, x)
    p = vmul(vfma(_vpoly(x2, _SIG_P[0], _SIG_P[1], _SIG_P[2], _SIG_P[3]), x2, vsplat(_SIG_P[4])), x)
    q = vfma(vfma(_vpoly(x2, _SIG_Q[0], _SIG_Q[1], _SIG_Q[2], _SIG_Q[3]), x2, vsplat(_SIG_Q[4])), x2,
             vsplat(_SIG_Q[5]))
    y = vadd(vdiv(p, q), vsplat(np.float32(0.5)))
    return vmin(vmax(y, vsplat(np.float32(0.0))), vsplat(np.float32(1.0)))


@njit(inline="always", **_KW)
def _vtanh(v):
    """:func:`_tanh` of eight lanes."""
    x = vmin(vmax(v, vsplat(-_TANH_LIM)), vsplat(_TANH_LIM))
    x2 = vmul(x, x)
    p = _vpoly(x2, _TANH_P[0], _TANH_P[1], _TANH_P[2], _TANH_P[3])
    p = vmul(vfma(vfma(vfma(p, x2, vsplat(_TANH_P[4])), x2, vsplat(_TANH_P[5])), x2, vsplat(_TANH_P[6])), x)
    q = _vpoly(x2, _TANH_Q[0], _TANH_Q[1], _TANH_Q[2], _TANH_Q[3])
    return vdiv(p, q)


# The natural logarithm as Cephes' ``logf`` (S. L. Moshier): split off the exponent, a degree-8
# polynomial in the mantissa; about 1 ulp on normal inputs. Non-finite lanes pass through.
_LOG_P = (np.float32(7.0376836292e-2), np.float32(-1.1514610310e-1), np.float32(1.1676998740e-1),
          np.float32(-1.2420140846e-1), np.float32(1.4249322787e-1), np.float32(-1.6668057665e-1),
          np.float32(2.0000714765e-1), np.float32(-2.4999993993e-1), np.float32(3.3333331174e-1))
_LOG_Q1, _LOG_Q2 = np.float32(-2.12194440e-4), np.float32(0.693359375)


@njit(fastmath=_FAST, inline="always", **_KW)
def _logpow(v):
    """The network's feature of a filter output or a power: ``0.1 log(v + 1e-9)``."""
    return np.float32(0.1) * np.float32(math.log(v + np.float32(1e-9)))


@njit(inline="always", **_KW)
def _vlogpow(v):
    """:func:`_logpow` of eight lanes (``v >= 0``; +inf and NaN pass through, as ``log`` does)."""
    u = vadd(v, vsplat(np.float32(1e-9)))
    m, e = vsplitexp(u)
    x = vsub(m, vsplat(np.float32(1.0)))
    x2 = vmul(x, x)
    y = _vpoly(x, _LOG_P[0], _LOG_P[1], _LOG_P[2], _LOG_P[3])
    y = vfma(vfma(y, x, vsplat(_LOG_P[4])), x, vsplat(_LOG_P[5]))
    y = vfma(vfma(vfma(y, x, vsplat(_LOG_P[6])), x, vsplat(_LOG_P[7])), x, vsplat(_LOG_P[8]))
    y = vfma(e, vsplat(_LOG_Q1), vmul(vmul(y, x), x2))
    y = vfma(vsplat(np.float32(-0.5)), x2, y)
    r = vfma(e, vsplat(_LOG_Q2), vadd(x, y))
    r = vselect_lt(u, vsplat(np.float32(np.inf)), r, u)
    return vmul(vsplat(np.float32(0.1)), r)


@njit(inline="always", **_KW)
def _features(s, a, b, d, cnt):
    """``s[d + i] = _logpow(s[a + i]^2 (+ s[b + i]^2 when b >= 0))`` for ``i < cnt``: eight
    at a time, the rest one by one (an element takes the same path whatever the hop count)."""
    cv = cnt - cnt % LANES
    for i in range(0, cv, LANES):
        f = vload(s, a + i)
        p = vmul(f, f)
        if b >= 0:
            g = vload(s, b + i)
            p = vfma(g, g, p)
        vstore(s, d + i, _vlogpow(p))
    for i in range(cv, cnt):
        p = s[a + i] * s[a + i]
        if b >= 0:
            p = fma(s[b + i], s[b + i], p)
        s[d + i] = _logpow(p)


@njit(fastmath=_FAST, **_KW)
def _network(lay, w, s, c, nj):
    """Run the network on the ``nj`` hops channel ``c`` completed in this block (their samples
    follow the history in its input buffer); hop ``j``'s output lands in row ``j + 1`` of its hop
    outputs. Layer by layer over all hops (only the recurrence runs hop by hop). Returns False
    when an output or the state is not finite (the caller resets the channel)."""
    hop, win, n, h = lay[c, L_HOP], lay[c, L_WIN], lay[c, L_N], lay[c, L_H]
    layers, ctx, k, taps, n_in = lay[c, L_LAYERS], lay[c, L_CTX], lay[c, L_K], lay[c, L_TAPS], lay[c, L_IN]
    wb, sb, lat, jm = lay[c, L_W], lay[c, L_S], lay[c, L_LAT], lay[c, L_JM]
    o_enc, o_cq, o_cqs, o_inw, o_inb, o_gru, o_wout, o_bout, o_wtap, o_btap, o_dec, o_key = _offsets(
        win, n, h, layers, ctx, k, taps, n_in)
    (o_x, o_fr, o_h, o_ola, o_out, o_dry, o_ref, o_kb, o_cqo, o_feat, o_a, o_b, o_gi, o_gh, o_mask, o_filt,
     o_yfr, o_kf, _, _) = _chan_soffsets(lay, c)
    nr, kin = lay[c, L_NREFS], lay[c, L_KEYIN]
    xb, fb = sb + o_x, sb + o_fr + (taps - 1) * n  # hop j's context ends at xb + ctx + j hop
    # 1. filterbank frames and constant-Q context of every hop (each constant-Q row is zero
    # before its window: only its tail is summed)
    _gemm(w, wb + o_enc, n, win, s, xb + ctx - win, hop, nj, w, -1, s, fb, n, -1)
    _gemm(w, wb + o_cq, 2 * k, ctx, s, xb, hop, nj, w, -1, s, sb + o_cqo, 2 * k, wb + o_cqs)
    # 2. features and the input layer
    for j in range(nj):
        _features(s, fb + j * n, -1, sb + o_feat + j * n_in, n)
        _features(s, sb + o_cqo + j * 2 * k, sb + o_cqo + j * 2 * k + k, sb + o_feat + j * n_in + n, k)
    # informed inputs: each reference mic through the same encoder (its frames in the mask's
    # scratch rows for now), then the key: its maximum over each hop joins the previous kc - 1
    # frame values, and the key filter's kb outputs over the last kc of them are the features
    for r in range(nr):
        rb = sb + o_ref + r * (win + jm * hop)  # hop j's window starts at rb + j hop
        _gemm(w, wb + o_enc, n, win, s, rb, hop, nj, w, -1, s, sb + o_mask, n, -1)
        at = n + k + r * n
        for j in range(nj):
            _features(s, sb + o_mask + j * n, -1, sb + o_feat + j * n_in + at, n)
    if kin:
        kc, kb, kconn = lay[c, L_KCTX], lay[c, L_KBINS], lay[c, L_KCONN]
        kf, kw = sb + o_kf, wb + o_key
        for j in range(nj):
            m = s[sb + o_kb + j * hop]
            for i in range(1, hop):
                if s[sb + o_kb + j * hop + i] > m:
                    m = s[sb + o_kb + j * hop + i]
            s[kf + kc - 1 + j] = m
            for b in range(kb - kconn):  # frame j's window is kf[j .. j + kc - 1], newest last
                acc = np.float32(0.0)
                for i in range(kc):
                    acc += w[kw + b * kc + i] * s[kf + j + i]
                s[sb + o_feat + j * n_in + n_in - kb + b] = acc
            if kconn:  # the "key connected" feature: 1 while a key is routed to the channel
                s[sb + o_feat + j * n_in + n_in - 1] = np.float32(1.0 if lay[c, L_KEYKIND] != KEY_NONE else 0.0)
    _gemm(w, wb + o_inw, h, n_in, s, sb + o_feat, n_in, nj, w, wb + o_inb, s, sb + o_a, h, -1)
    for i in range(nj * h):
        if s[sb + o_a + i] < 0.0:
            s[sb + o_a + i] = 0.0
    # 3. GRU layers (PyTorch's equations; ONNX gate blocks z, r, h; linear_before_reset):
    # z = sig(Wz x + bz + Rz h + rbz), r = sig(Wr x + br + Rr h + rbr),
    # n = tanh(Wh x + bh + r (Rh h + rbh)), h' = (1 - z) n + z h
    src, dst = sb + o_a, sb + o_b
    for layer in range(layers):
        g = wb + o_gru + layer * (6 * h * h + 6 * h)
        hs = sb + o_h + layer * h
        _gemm(w, g, 3 * h, h, s, src, h, nj, w, g + 6 * h * h, s, sb + o_gi, 3 * h, -1)
        for j in range(nj):
            _gemm(w, g + 3 * h * h, 3 * h, h, s, hs, 0, 1, w, g + 6 * h * h + 3 * h, s, sb + o_gh, 0, -1)
            gi, gh = sb + o_gi + j * 3 * h, sb + o_gh
            hv = h - h % LANES
            for i in range(0, hv, LANES):
                z = _vsigmoid(vadd(vload(s, gi + i), vload(s, gh + i)))
                rr = _vsigmoid(vadd(vload(s, gi + h + i), vload(s, gh + h + i)))
                nn = _vtanh(vfma(rr, vload(s, gh + 2 * h + i), vload(s, gi + 2 * h + i)))
                hn = vfma(z, vload(s, hs + i), vmul(vsub(vsplat(np.float32(1.0)), z), nn))
                vstore(s, hs + i, hn)
                vstore(s, dst + j * h + i, hn)
            for i in range(hv, h):
                z = _sigmoid(s[gi + i] + s[gh + i])
                rr = _sigmoid(s[gi + h + i] + s[gh + h + i])
                nn = _tanh(fma(rr, s[gh + 2 * h + i], s[gi + 2 * h + i]))
                hn = fma(z, s[hs + i], (np.float32(1.0) - z) * nn)
                s[hs + i] = hn
                s[dst + j * h + i] = hn
        src, dst = dst, src
    # 4. mask on every hop's frame (its logits plus the key's mask weights times the key
    # features), and the multi-frame filter over the previous frames
    _gemm(w, wb + o_wout, n, h, s, src, h, nj, w, wb + o_bout, s, sb + o_mask, n, -1)
    if kin and lay[c, L_KMASK]:
        kb = lay[c, L_KBINS]
        km = wb + o_key + (kb - lay[c, L_KCONN]) * lay[c, L_KCTX]
        for j in range(nj):
            kfe = sb + o_feat + j * n_in + n_in - kb
            for i in range(n):
                acc = s[sb + o_mask + j * n + i]
                for b in range(kb):
                    acc += w[km + i * kb + b] * s[kfe + b]
                s[sb + o_mask + j * n + i] = acc
    nv = n - n % LANES  # per hop: an element is computed the same way whatever nj
    for j in range(nj):
        jn = j * n
        for i in range(0, nv, LANES):
            vstore(s, sb + o_filt + jn + i, vmul(vload(s, fb + jn + i), _vsigmoid(vload(s, sb + o_mask + jn + i))))
        for i in range(nv, n):
            s[sb + o_filt + jn + i] = s[fb + jn + i] * _sigmoid(s[sb + o_mask + jn + i])
    for tk in range(1, taps):
        _gemm(w, wb + o_wtap + (tk - 1) * n * h, n, h, s, src, h, nj, w, wb + o_btap + (tk - 1) * n, s,
              sb + o_mask, n, -1)
        for i in range(nj * n):
            s[sb + o_filt + i] += s[sb + o_mask + i] * s[fb + i - tk * n]
    # 5. decoder and overlap-add, hop by hop
    _gemm(w, wb + o_dec, win, n, s, sb + o_filt, n, nj, w, -1, s, sb + o_yfr, win, -1)
    ok = True
    for j in range(nj):
        y, out = sb + o_yfr + j * win, sb + o_out + (j + 1) * hop
        for i in range(hop):
            v = s[y + i] + s[sb + o_ola + i]
            s[out + i] = v
            if not math.isfinite(v):
                ok = False
        for i in range(win - hop):
            s[sb + o_ola + i] = s[y + hop + i]
    for i in range(layers * h):
        if not math.isfinite(s[sb + o_h + i]):
            ok = False
    return ok


@njit(**_KW)
def _reset_channel(lay, s, ist, c):
    """Zero channel ``c``'s state (history, frames, GRU, overlap-add, outputs, dry ring); it
    becomes fresh."""
    size = _chan_soffsets(lay, c)[8]  # everything before the scratch
    sb = lay[c, L_S]
    for i in range(size):
        s[sb + i] = 0.0
    ist[c, I_FILL] = 0
    ist[c, I_FRESH] = 1
    ist[c, I_DRYW] = 0
    ist[c, I_TMASK] = 0
    ist[c, I_TSCAN] = 0
    ist[c, I_LEADW] = 0


@njit(inline="always", **_KW)
def _key_value(lay, par, ist, c, inputs, events, n_events, e, i):
    """The channel's key at sample ``i`` for an informed model: a MIDI note-on's velocity / 127
    at its frame, a trigger's peak (up to 1) :data:`TRIGGER_SCAN_MS` after it crossed its
    threshold, else 0; less :data:`~debleed.models.graph.KEY_IDLE` for a ``key_connected`` model
    (the graph takes a connected key's idle value off), then raised to the model's ``key_power``.
    Returns ``(value, next event index)``."""
    kind = lay[c, L_KEYKIND]
    v = 0.0
    if kind == KEY_MIDI:
        lo, hi, mch = lay[c, L_NOTES_LO], lay[c, L_NOTES_HI], lay[c, L_MIDICH]
        while e < n_events and events[e, 0] <= i:
            st, note, vel = events[e, 1], events[e, 2], events[e, 3]
            if events[e, 0] == i and (st & 0xF0) == 0x90 and 0 < vel < 128 and 0 <= note < 128 \
                    and (mch == 0 or (st & 0x0F) == mch - 1):
                bit = (lo >> note) & 1 if note < 64 else (hi >> (note - 64)) & 1
                if bit and vel / 127.0 > v:
                    v = vel / 127.0
            e += 1
    elif kind == KEY_TRIGGER:
        x = abs(inputs[lay[c, L_KEYSRC], i])
        if not math.isfinite(x):
            x = 0.0
        if ist[c, I_TMASK] > 0:
            ist[c, I_TMASK] -= 1
        if ist[c, I_TSCAN] > 0:
            if x > par[c, P_PEAK]:
                par[c, P_PEAK] = x
            ist[c, I_TSCAN] -= 1
            if ist[c, I_TSCAN] == 0:
                v = min(par[c, P_PEAK], 1.0)
        elif ist[c, I_TMASK] == 0 and x >= par[c, P_TRIGTHR]:
            par[c, P_PEAK] = x
            ist[c, I_TSCAN] = lay[c, L_SCAN]
            ist[c, I_TMASK] = lay[c, L_RETRIG] + lay[c, L_SCAN]
            if ist[c, I_TSCAN] == 0:
                v = min(x, 1.0)
    if v > 0.0 and lay[c, L_KCONN]:
        v = max(v - KEY_IDLE, 0.0)
    if v > 0.0 and par[c, P_KPOW] != 1.0:
        v = v ** par[c, P_KPOW]
    return v, e


@njit(**_KW)
def denoise_block(n, inputs, events, n_events, lay, w, s, ist, par, ctl):
    """Denoise one block of every denoised channel, from row ``lay[c, L_SRC]`` of ``inputs`` into
    row ``lay[c, L_DST]``.

    Parameters
    ----------
    n : int
        Frames in this block, 0 <= n <= the ``max_block`` the stage was built for.
    inputs : float32 (n_rows, >= n)
        The chain's inputs; the denoised rows are written in ``[:, :n]``.
    events : int32 (max_events, 4)
        This block's MIDI events ``(frame, status, data1, data2)``, sorted by frame (as
        :func:`debleed.dsp.chain.run_block` takes them): an informed model's ``midi:`` key.
    n_events : int
        Valid rows of ``events``.
    lay : int64 (k, NL)
        Per denoised channel: rows, dimensions, offsets, informed inputs (``L_*``); k may be 0.
    w : float32 (n_weights,)
        Packed weights of every model in use (:func:`load_weights`).
    s : float32 (n_state,)
        Streaming state and scratch of every channel.
    ist : int64 (k, NIS)
        Integer state (``I_*``).
    par : float64 (k, NPAR)
        The weight of the denoised signal (target, now, ramp step), written by the control plane
        (one float store); a trigger key's threshold and peak (``P_*``).
    ctl : int64 (NCTL,)
        Reset request (``C_REQ`` raised by the control plane, e.g. at freewheel start) and the
        last one done: every channel restarts fresh before this block.

    Notes
    -----
    Real-time safe: allocates nothing, takes no lock, touches no Python object, cannot raise
    (checked by the LLVM IR test with the JACK cfunc). Three passes per channel: collect the
    block's samples (and an informed model's reference mics and key) into hops; run the network
    on the completed hops, layer by layer (each weight matrix read once per block, as a matrix
    product; only the GRU recurrence runs hop by hop); write the outputs, each sample reading the
    output of the last hop completed at or before it. The output does not depend on how the
    samples are cut into blocks.
    """
    k = lay.shape[0]
    if ctl[C_REQ] != ctl[C_DONE]:
        for c in range(k):
            _reset_channel(lay, s, ist, c)
        ctl[C_DONE] = ctl[C_REQ]
    for c in range(k):
        src, dst, hop, lat, ctx = lay[c, L_SRC], lay[c, L_DST], lay[c, L_HOP], lay[c, L_LAT], lay[c, L_CTX]
        win, jm, nr, kin = lay[c, L_WIN], lay[c, L_JM], lay[c, L_NREFS], lay[c, L_KEYIN]
        (o_x, o_fr, o_h, o_ola, o_out, o_dry, o_ref, o_kb, o_cqo, o_feat, o_a, o_b, o_gi, o_gh, o_mask, o_filt,
         o_yfr, o_kf, o_lead, o_xd) = _chan_soffsets(lay, c)
        sb, nf = lay[c, L_S], lay[c, L_N]
        fill0, fresh0 = ist[c, I_FILL], ist[c, I_FRESH]
        # 1. collect: the block's samples (after the leading silence of a fresh channel) follow
        # the history and the pending part of a hop; an informed model's reference mics and key
        # alongside. With a key lead the mic and reference mics pass a delay line of ``lead``
        # samples first (the key does not): the model hears the key that much ahead
        xs = sb + o_x + ctx - hop
        pos, fresh, e = fill0, fresh0, 0
        lead, lw = lay[c, L_LEAD], ist[c, I_LEADW]
        lb = sb + o_lead
        for i in range(n):
            kv = 0.0
            if kin:
                kv, e = _key_value(lay, par, ist, c, inputs, events, n_events, e, i)
            x = inputs[src, i]
            if not math.isfinite(x):
                x = np.float32(0.0)
            if lead > 0:  # the mic through its delay ring
                d = s[lb + lw]
                s[lb + lw] = x
                x = d
            s[sb + o_xd + i] = x
            take = fresh == 0 or x != 0.0  # a fresh channel skips leading silence
            for r in range(nr):
                row = lay[c, L_REF + r]
                v = inputs[row, i] if row >= 0 else np.float32(0.0)
                if not math.isfinite(v):
                    v = np.float32(0.0)
                if lead > 0:  # each reference mic's ring, written whatever is taken
                    q = lb + (1 + r) * lead + lw
                    d = s[q]
                    s[q] = v
                    v = d
                if take:
                    s[sb + o_ref + r * (win + jm * hop) + win - hop + pos] = v
            if lead > 0:
                lw += 1
                if lw == lead:
                    lw = 0
            if not take:
                continue
            fresh = 0
            s[xs + pos] = x
            if kin:
                s[sb + o_kb + pos] = kv
            pos += 1
        nj = pos // hop
        # 2. the network on the completed hops
        if nj > 0:
            ist[c, I_HOPS] += nj
            if not _network(lay, w, s, c, nj):
                _reset_channel(lay, s, ist, c)
                ist[c, I_RESETS] += 1
                fresh0 = 0  # the channel had sound: it goes on from here, not fresh
        # 3. outputs: sample i reads the output of the last hop completed at or before it
        ist[c, I_LEADW] = lw
        fill, fresh, jdone = fill0, fresh0, 0
        dw = ist[c, I_DRYW]
        g, gt, step = par[c, P_GNOW], par[c, P_G], par[c, P_STEP]
        for i in range(n):
            x = s[sb + o_xd + i]  # the mic as the model heard it (after the lead)
            if fresh != 0:
                if x == 0.0:
                    inputs[dst, i] = 0.0
                    continue
                fresh = 0
            fill += 1
            if fill == hop:
                fill = 0
                jdone += 1
            y = s[sb + o_out + jdone * hop + fill]
            s[sb + o_dry + dw] = x  # the dry input delayed by the latency: a ring of lat + 1
            dw += 1
            if dw > lat:
                dw = 0
            d = s[sb + o_dry + dw]
            if g != gt:
                g = min(g + step, gt) if g < gt else max(g - step, gt)
            if g != 1.0:
                y = np.float32(d + g * (y - d))
            inputs[dst, i] = y
        # 4. carry: history and pending samples to the front (the input's, each reference
        # mic's, the key's), the last hop's output and the last taps - 1 frames likewise
        if nj > 0:
            shift = nj * hop
            for i in range(ctx - hop + fill):
                s[sb + o_x + i] = s[sb + o_x + shift + i]
            for r in range(nr):
                rb = sb + o_ref + r * (win + jm * hop)
                for i in range(win - hop + fill):
                    s[rb + i] = s[rb + shift + i]
            if kin:
                for i in range(fill):
                    s[sb + o_kb + i] = s[sb + o_kb + shift + i]
                for i in range(lay[c, L_KCTX] - 1):
                    s[sb + o_kf + i] = s[sb + o_kf + nj + i]
            for i in range(hop):
                s[sb + o_out + i] = s[sb + o_out + nj * hop + i]
            keep = (lay[c, L_TAPS] - 1) * nf
            for i in range(keep):
                s[sb + o_fr + i] = s[sb + o_fr + nj * nf + i]
        ist[c, I_FILL], ist[c, I_FRESH], ist[c, I_DRYW] = fill, fresh, dw
        par[c, P_GNOW] = g


# --- weight loading (control plane) ------------------------------------------------------------

def _config_from_meta(path, meta: dict) -> dict:
    try:
        cfg = json.loads(meta["config"])
        hop = int(meta["hop"])
        window = int(meta["window"])
        rate = int(meta["sample_rate"])
    except (KeyError, ValueError, TypeError):
        raise DebleedError(f"denoiser model {path} lacks the hop/window/sample_rate/config metadata "
                           "(not a debleed streaming denoiser)") from None
    hop_c = int(cfg.get("hop", hop))
    n = int(cfg.get("n_filters", 256))
    h = int(cfg.get("hidden", 128))
    layers = int(cfg.get("layers", 2))
    ctx = int(cfg.get("context", 2 * hop_c))
    k = int(cfg.get("cq_bins", 0)) if ctx > 2 * hop_c else 0
    taps = int(cfg.get("taps", 1))
    n_refs = int(cfg.get("n_refs", 0))
    key = int(bool(cfg.get("key", False)))
    kc = int(cfg.get("key_ctx", 1)) if key else 1
    kconn = int(bool(cfg.get("key_connected", False))) if kc > 1 else 0
    kb = ((int(cfg.get("key_bins", 4)) + kconn) if kc > 1 else 1) if key else 0
    if hop_c != hop or window != 2 * hop:
        raise DebleedError(f"denoiser model {path}: metadata hop {hop} / window {window} disagree with its "
                           f"config {cfg} (window must be 2 * hop)")
    if not 0 <= n_refs <= MAX_REFS:
        raise DebleedError(f"denoiser model {path} takes {n_refs} reference mics; the kernels take 0 to {MAX_REFS}")
    km = int(bool(cfg.get("key_mask", False))) if kc > 1 else 0
    lead = key_lead_samples(cfg, rate)
    kpow = float(cfg.get("key_power", 1.0)) if key else 1.0
    lo, hi = KEY_POWER_RANGE
    if kc < 1 or kb < 0 or not 0 <= lead <= 0.02 * rate or not lo <= kpow <= hi:
        raise DebleedError(f"denoiser model {path}: key_ctx {kc} / key_bins {kb} / key_lead_ms {cfg.get('key_lead_ms')} / "
                           f"key_power {cfg.get('key_power', 1.0)} in its config are out of range (key_ctx >= 1, "
                           f"key_bins >= 0, key_lead_ms 0 to 20, key_power {lo:g} to {hi:g})")
    return {"hop": hop, "win": window, "n": n, "h": h, "layers": layers, "ctx": ctx, "k": k, "taps": taps,
            "n_refs": n_refs, "key": key, "kc": kc, "kb": kb, "km": km, "kconn": kconn, "lead": lead, "kpow": kpow,
            "n_in": n * (1 + n_refs) + k + kb, "rate": rate}


def _check_shape(path, name, arr, shape):
    if tuple(arr.shape) != tuple(shape):
        raise DebleedError(f"denoiser model {path}: tensor {name} has shape {tuple(arr.shape)}, the kernels "
                           f"need {tuple(shape)} for the model's config")
    return arr


def load_weights(path) -> tuple[dict, np.ndarray]:
    """Read a streaming denoiser's weights from its ONNX file for the kernels.

    Parameters
    ----------
    path : str or Path
        An exported model (:func:`debleed.models.net.export_onnx`).

    Returns
    -------
    dims : dict
        ``hop``, ``win``, ``n`` (filters), ``h`` (GRU width), ``layers``, ``ctx`` (context
        samples), ``k`` (constant-Q bins), ``taps``, ``n_refs`` (reference mics), ``key`` (1 when
        it takes a key), ``kc`` and ``kb`` (the key filter's frames and the key features: its
        outputs, plus the "key connected" feature where ``kconn`` is 1; 1 and 1 for a key that
        is one feature, 1 and 0 without a key), ``lead`` (the key's lead, samples at
        ``rate``: the mic and reference mics are delayed this much where a key is connected),
        ``km`` (1 when the key features also reach the mask), ``kpow`` (the power the key's
        values are raised to), ``n_in`` (features), ``rate`` (Hz).
    weights : ndarray, float32 (weight_size(...),)
        The packed weights (layout of :func:`_offsets`).

    Raises
    ------
    DebleedError
        A missing or unreadable file; a graph with an operator the kernels do not implement (the
        message names it); a missing tensor or a tensor of the wrong shape (named).
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # a dependency of the project: only a broken install lacks it
        raise DebleedError(f"reading denoiser weights needs the onnx package: {e}") from None
    path = Path(path)
    if not path.is_file():
        raise DebleedError(f"denoiser model {path} does not exist (reinstall debleed, or train it: make train)")
    try:
        m = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and others for a bad file
        raise DebleedError(f"cannot load denoiser model {path}: {str(e).strip()[:300] or type(e).__name__}") from None
    g = m.graph
    bad = sorted({nd.op_type for nd in g.node} - SUPPORTED_OPS)
    if bad:
        raise DebleedError(f"denoiser model {path} uses operator(s) {', '.join(bad)} that the streaming kernels do "
                           f"not implement (implemented: {', '.join(sorted(SUPPORTED_OPS))})")
    d = _config_from_meta(path, {p.key: p.value for p in m.metadata_props})
    names = tuple(i.name for i in g.input)
    expect = input_names(d["n_refs"], d["key"], d["kc"] > 1)
    if names != expect:
        raise DebleedError(f"denoiser model {path} has inputs {list(names)}; its config needs {list(expect)} "
                           "(not a debleed streaming denoiser, or a config that does not match the graph)")
    init = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
    consumers: dict[str, list] = {}
    producer: dict[str, object] = {}
    for nd in g.node:
        for i in nd.input:
            consumers.setdefault(i, []).append(nd)
        for o in nd.output:
            producer[o] = nd

    def need(name):
        if name not in init:
            raise DebleedError(f"denoiser model {path} has no tensor {name!r} (the kernels need it)")
        return init[name]

    def follows(node, op):
        """Does ``node``'s output reach an ``op`` node through Add/Transpose only?"""
        todo = list(consumers.get(node.output[0], []))
        while todo:
            nd = todo.pop()
            if nd.op_type == op:
                return True
            if nd.op_type in ("Add", "Transpose"):
                todo += consumers.get(nd.output[0], [])
        return False

    def bias_of(node):
        for nd in consumers.get(node.output[0], []):
            if nd.op_type == "Add":
                for i in nd.input:
                    if i in init:
                        return init[i]
        raise DebleedError(f"denoiser model {path}: no bias after MatMul {node.name!r}")

    hop, win, n, h, layers, ctx, k, taps, n_in = (d[x] for x in ("hop", "win", "n", "h", "layers", "ctx", "k",
                                                                  "taps", "n_in"))
    enc = _check_shape(path, "encoder.weight", need("encoder.weight"), (n, 1, win))[:, 0]
    dec = _check_shape(path, "decoder.weight", need("decoder.weight"), (n, 1, win))[:, 0]
    if k:
        cq = _check_shape(path, "cq.weight", need("cq.weight"), (2 * k, 1, ctx))[:, 0]
    else:
        cq = np.zeros((0, ctx), np.float32)
    mats = [nd for nd in g.node if nd.op_type == "MatMul" and any(i in init for i in nd.input)]
    w_in = w_out = b_out = w_kmask = None
    w_tap, b_tap = np.zeros((0, h), np.float32), np.zeros(0, np.float32)
    for nd in mats:
        wt = next(init[i] for i in nd.input if i in init)
        if d["km"] and follows(nd, "Sigmoid") and wt.shape == (d["kb"], n) and w_out is not None:
            w_kmask = wt.T  # (n, key outputs): the key's mask weights, after the mask layer's MatMul
        elif follows(nd, "Sigmoid"):
            w_out = _check_shape(path, f"{nd.name} (mask head)", wt, (h, n)).T
            b_out = _check_shape(path, "out.bias", bias_of(nd), (n,))
        elif follows(nd, "Relu"):
            w_in = _check_shape(path, f"{nd.name} (input layer)", wt, (n_in, h)).T
        else:
            w_tap = _check_shape(path, f"{nd.name} (multi-frame filter head)", wt, (h, n * (taps - 1))).T
            b_tap = _check_shape(path, "taps_out.bias", bias_of(nd), (n * (taps - 1),))
    if d["km"] and w_kmask is None:
        raise DebleedError(f"denoiser model {path} says key_mask but has no ({d['kb']}, {n}) key MatMul before its mask")
    for what, v in (("input layer MatMul", w_in), ("mask head MatMul", w_out)):
        if v is None:
            raise DebleedError(f"denoiser model {path} has no {what} (the kernels need it)")
    if taps > 1 and w_tap.shape[0] != n * (taps - 1):
        raise DebleedError(f"denoiser model {path} has taps = {taps} but no multi-frame filter head")
    b_in = _check_shape(path, "inp.bias", need("inp.bias"), (h,))
    grus = [nd for nd in g.node if nd.op_type == "GRU"]
    if len(grus) != layers:
        raise DebleedError(f"denoiser model {path} has {len(grus)} GRU layer(s); its config says {layers}")
    gru = []
    for li, nd in enumerate(grus):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nd.attribute}
        if attrs.get("linear_before_reset", 0) != 1 or attrs.get("direction", b"forward") not in (b"forward", "forward"):
            raise DebleedError(f"denoiser model {path}: GRU layer {li} is not a forward GRU with "
                               "linear_before_reset = 1 (the kernels implement PyTorch's GRU)")
        wi = _check_shape(path, f"{nd.input[1]} (GRU {li} W)", need(nd.input[1]), (1, 3 * h, h))[0]
        wr = _check_shape(path, f"{nd.input[2]} (GRU {li} R)", need(nd.input[2]), (1, 3 * h, h))[0]
        bb = _check_shape(path, f"{nd.input[3]} (GRU {li} B)", need(nd.input[3]), (1, 6 * h))[0]
        gru += [pack_panels(wi), pack_panels(wr), bb[:3 * h], bb[3 * h:]]
    # the first non-zero column of each constant-Q row (its window sits at the newest end), the
    # smallest of its panel's (the matrix kernels start a panel there)
    first = np.array([int(np.flatnonzero(r)[0]) if np.any(r) else ctx for r in cq], np.float32)
    starts = np.array([first[r // PANEL * PANEL:(r // PANEL + 1) * PANEL].min() for r in range(first.size)],
                      np.float32)
    taps_ = [pack_panels(w_tap[t * n:(t + 1) * n]) for t in range(taps - 1)]
    kc, kb = d["kc"], d["kb"]
    if kc > 1:
        key_filt = _check_shape(path, "key_filt.weight", need("key_filt.weight"), (kb - d["kconn"], 1, kc))[:, 0]
    else:  # the key is one feature: the newest frame's value, weight 1
        key_filt = np.ones((kb, 1), np.float32)
    parts = [pack_panels(enc), pack_panels(cq), starts, pack_panels(w_in), b_in,
             *gru,
             pack_panels(w_out), b_out, *taps_, b_tap, pack_panels(dec.T), key_filt,
             w_kmask if w_kmask is not None else np.zeros(0, np.float32)]
    flat = np.ascontiguousarray(np.concatenate([np.asarray(p, np.float32).ravel() for p in parts]))
    expect = weight_size(hop, win, n, h, layers, ctx, k, taps, n_in, kc, kb, d["km"], d["kconn"])
    if flat.size != expect:
        raise DebleedError(f"denoiser model {path}: packed {flat.size} weights, expected {expect}")
    return d, flat


# --- the stage (control plane object, data plane arrays) ----------------------------------------

class StreamingStage:
    """The denoised channels of a gig: packed weights, state and parameters for :func:`denoise_block`.

    Parameters
    ----------
    rows : sequence of (src_row, dst_row)
        Per denoised channel, the input row it reads and the (virtual) input row it writes.
    sample_rate : int
        Hz: 44100 or 48000 with the shipped models; a given model's own rate.
    models : sequence of (str or Path or None), optional
        Per channel, a model file; None (default) the shipped model for ``sample_rate``.
    channels : sequence of int, optional
        Gig channel index of each (what :meth:`set_param` takes); default 0..k-1.
    params : sequence of dict, optional
        Per channel, ``denoise_limit_db`` (dB, -100 to 0; -100 no limit) and ``denoise_mix``
        (0 to 1); defaults -100 dB and 1 (the model's output as is).
    max_block : int
        Longest block :meth:`process` (or the audio callback) will run, frames, 1 to 1048576;
        default 4096. The scratch holds one row per hop such a block can complete.
    informed : sequence of dict, optional
        Per channel, what an informed model hears besides its input: ``"refs"``, input rows of
        its reference mics (at most the model's ``n_refs``; the rest are silence), and
        ``"key"``: None, ``("midi", notes, midi_channel)`` or ``("trigger", row,
        trigger_threshold_db, retrigger_ms)``. A model without a key input ignores the key.

    Raises
    ------
    ParameterError
        A bad ``max_block``, a sample rate without a shipped model, a model trained at another
        rate, reference mics for a model that takes none or more than it takes, or a value out of
        range (the message names it and what is allowed).
    DebleedError
        A missing or unreadable model, or one the kernels cannot run (see :func:`load_weights`).

    Notes
    -----
    Everything is allocated here; :meth:`process` (and the JACK cfunc, through :attr:`arrays`)
    allocates nothing. Channels that share a model file share its weights.
    """

    #: ``(name, dtype, ndim)`` of the arrays :func:`denoise_block` takes after ``n, inputs, events,
    #: n_events``.
    FIELDS = (("lay", np.int64, 2), ("w", np.float32, 1), ("s", np.float32, 1), ("ist", np.int64, 2),
              ("par", np.float64, 2), ("ctl", np.int64, 1))

    def __init__(self, rows, sample_rate: int, *, models=None, channels=None, params=None, max_block: int = 4096,
                 informed=None):
        from debleed.models.denoiser import SHIPPED

        self.max_block = check_int("max_block", max_block, 1, MAX_BLOCK)

        rows = [(int(a), int(b)) for a, b in rows]
        k = len(rows)
        models = list(models) if models is not None else [None] * k
        self.channels = list(range(k)) if channels is None else [int(c) for c in channels]
        if len(models) != k or len(self.channels) != k:
            raise ParameterError(f"models and channels must give one entry per denoised channel ({k})")
        self.sample_rate = int(sample_rate)
        blobs: dict[str, tuple[dict, np.ndarray, int]] = {}
        offset = 0
        paths = []
        for mp in models:
            if mp is None:
                if self.sample_rate not in SHIPPED:
                    raise ParameterError(f"the denoiser runs at {' or '.join(map(str, sorted(SHIPPED)))} Hz, got "
                                         f"sample_rate={sample_rate!r} (run JACK at one of them, or resample offline "
                                         "with `debleed denoise`)")
                mp = SHIPPED[self.sample_rate]
            key = str(Path(mp).resolve()) if Path(mp).exists() else str(mp)
            if key not in blobs:
                dims, flat = load_weights(mp)
                if dims["rate"] != self.sample_rate:
                    raise ParameterError(f"model {mp} was trained at {dims['rate']} Hz, got sample_rate="
                                         f"{sample_rate!r} (allowed: {dims['rate']})")
                blobs[key] = (dims, flat, offset)
                offset += flat.size
            paths.append(key)
        self.models = paths
        self.w = np.zeros(max(offset, 1), np.float32)
        for dims, flat, off in blobs.values():
            self.w[off:off + flat.size] = flat
        self.lay = np.zeros((k, NL), np.int64)
        self._trig_thr = []
        soff = 0
        self.dims = []
        for c, ((src, dst), key) in enumerate(zip(rows, paths)):
            dims, _, off = blobs[key]
            lat = dims["win"] - 1
            jm = max_hops(dims["hop"], self.max_block)
            self.lay[c, :L_NREFS] = (src, dst, dims["hop"], dims["win"], dims["n"], dims["h"], dims["layers"],
                                     dims["ctx"], dims["k"], dims["taps"], dims["n_in"], off, soff, lat, jm)
            self._route(c, dims, key, (informed or [{}] * k)[c] or {})
            soff += state_size(dims["hop"], dims["win"], dims["n"], dims["h"], dims["layers"], dims["ctx"],
                               dims["k"], dims["taps"], dims["n_in"], lat, jm, dims["n_refs"], dims["key"], dims["kc"],
                               int(self.lay[c, L_LEAD]))
            self.dims.append(dims)
        self.s = np.zeros(max(soff, 1), np.float32)
        self.ist = np.zeros((k, NIS), np.int64)
        self.par = np.zeros((k, NPAR), np.float64)
        self.ctl = np.zeros(NCTL, np.int64)
        ramp = max(GAIN_RAMP_MS * 1e-3 * self.sample_rate, 1.0)
        self.par[:, P_STEP] = 1.0 / ramp
        for c, thr in self._trig_thr:
            self.par[c, P_TRIGTHR] = thr
        for c, dims in enumerate(self.dims):
            self.par[c, P_KPOW] = dims["kpow"]
        self.limit_db = np.full(k, -100.0)
        self.mix = np.ones(k)
        self.par[:, P_G] = 1.0
        for j, p in enumerate(params or []):
            for name, v in p.items():
                self._set(j, name, v)
        self.par[:, P_GNOW] = self.par[:, P_G]
        self._args = (self.lay, self.w, self.s, self.ist, self.par, self.ctl)
        self.reset()
        self.events = np.zeros((MAX_MIDI_EVENTS, 4), np.int32)
        # compile (or load from the cache) and run the kernel once now, not in the first callback
        rows_used = self.lay[:, [L_SRC, L_DST, L_KEYSRC]].max(initial=0)
        refs_used = self.lay[:, L_REF:L_REF + MAX_REFS].max(initial=0)
        denoise_block(0, np.zeros((int(max(rows_used, refs_used)) + 1, 1), np.float32), self.events, 0, *self._args)

    def _route(self, c: int, dims: dict, path: str, inf: dict) -> None:
        """Write channel ``c``'s informed inputs into its ``lay`` row (see ``informed``)."""
        from debleed.dsp.units import ms_to_samples

        refs = list(inf.get("refs") or [])
        if len(refs) > dims["n_refs"]:
            raise ParameterError(f"denoiser model {path} takes {dims['n_refs']} reference mic(s), got "
                                 f"{len(refs)} (denoise_refs): use an informed model, or name at most {dims['n_refs']}")
        row = self.lay[c]
        row[L_NREFS] = dims["n_refs"]
        row[L_REF:L_REF + MAX_REFS] = -1
        row[L_REF:L_REF + len(refs)] = refs
        row[L_KEYIN] = dims["key"]
        row[L_KCTX], row[L_KBINS], row[L_KMASK], row[L_KCONN] = dims["kc"], dims["kb"], dims["km"], dims["kconn"]
        row[L_LEAD] = 0
        key = inf.get("key") if dims["key"] else None
        row[L_KEYKIND] = KEY_NONE
        if key is not None and key[0] == "midi":
            _, notes, midich = key
            lo = sum(1 << n for n in notes if n < 64)
            hi = sum(1 << (n - 64) for n in notes if n >= 64)
            # the masks are int64: store the top bit's pattern as a negative number
            row[L_KEYKIND], row[L_NOTES_LO], row[L_NOTES_HI], row[L_MIDICH] = (
                KEY_MIDI, np.int64(np.uint64(lo)), np.int64(np.uint64(hi)), int(midich))
            row[L_LEAD] = dims["lead"]
        elif key is not None and key[0] == "trigger":
            _, src_row, thr_db, retrig_ms = key
            row[L_KEYKIND], row[L_KEYSRC] = KEY_TRIGGER, int(src_row)
            row[L_LEAD] = dims["lead"]
            row[L_RETRIG] = ms_to_samples(float(retrig_ms), self.sample_rate)
            row[L_SCAN] = ms_to_samples(TRIGGER_SCAN_MS, self.sample_rate)
            self._trig_thr.append((c, 10.0 ** (float(thr_db) / 20.0)))
        elif key is not None:
            raise ParameterError(f"an informed key is ('midi', notes, channel) or ('trigger', row, threshold_db, "
                                 f"retrigger_ms), got {key!r}")

    @classmethod
    def from_gig(cls, cfg, sample_rate: int, max_block: int):
        """The stage of a gig's denoised channels (``cfg``: a
        :class:`debleed.rt.config.GigConfig`) for blocks up to ``max_block`` frames, or None when
        no channel has ``denoise = true``. The one place the engines and the offline commands
        build it."""
        from debleed.dsp.params import PARAMS

        rows = cfg.denoised()
        if not rows:
            return None
        names = [n for n, p in PARAMS.items() if p.target == "denoiser"]
        informed = []
        for c, _, _ in rows:
            ch = cfg.channel[c]
            route = cfg.resolve_key(ch.key)
            key = (("midi", route.notes, ch.midi_channel) if route.kind == "midi" else
                   ("trigger", route.key_input, ch.trigger_threshold_db, ch.retrigger_ms) if route.kind == "trigger"
                   else None)
            informed.append({"refs": [cfg.input_names.index(r) for r in ch.denoise_refs], "key": key})
        try:
            return cls([(src, dst) for _, src, dst in rows], sample_rate,
                       models=[cfg.channel[c].denoise_model for c, _, _ in rows], channels=[c for c, _, _ in rows],
                       params=[{n: float(getattr(cfg.channel[c], n)) for n in names} for c, _, _ in rows],
                       max_block=max_block, informed=informed)
        except DebleedError as e:
            names_ = ", ".join(cfg.channel[c].name for c, _, _ in rows)
            raise type(e)(f"denoised channel(s) {names_}: {e}") from None

    @property
    def n_channels(self) -> int:
        """Number of denoised channels."""
        return self.lay.shape[0]

    @property
    def latency_samples(self) -> int:
        """Largest latency of the denoised channels, samples (``window - 1`` of each model, plus
        the key's lead where a model with one hears its key)."""
        return int((self.lay[:, L_LAT] + self.lay[:, L_LEAD]).max(initial=0))

    def channel_latency(self, channel_index: int) -> int:
        """Latency of one denoised channel (by gig channel index), samples: the model's
        ``window - 1`` plus the key's lead when its key is connected."""
        j = self.channels.index(channel_index)
        return int(self.lay[j, L_LAT] + self.lay[j, L_LEAD])

    def arrays(self) -> tuple:
        """The arrays :func:`denoise_block` takes after ``n, inputs`` (the same tuple every call)."""
        return self._args

    def reset(self) -> None:
        """Restart every channel fresh now (call only while the audio thread is not running it;
        while it runs use :meth:`request_reset`). Parameters are kept."""
        for c in range(self.n_channels):
            _reset_channel(self.lay, self.s, self.ist, c)
        self.ist[:, I_HOPS] = 0
        self.par[:, P_GNOW] = self.par[:, P_G]
        self.ctl[C_DONE] = self.ctl[C_REQ]

    def request_reset(self) -> None:
        """Ask the audio thread to restart every channel fresh before its next block (e.g. at
        freewheel start, so a bounce equals the offline render)."""
        self.ctl[C_REQ] += 1

    def process(self, n: int, inputs: np.ndarray, events=None, n_events: int = 0) -> None:
        """Run :func:`denoise_block` (Python engine, PortAudio, offline): rows of ``inputs``
        (float32 (n_rows, >= n)) are read and written in place; ``events`` (int32 (k, 4)) and
        ``n_events`` are the block's MIDI events, as :func:`debleed.dsp.chain.run_block` takes
        them (for an informed model's ``midi:`` key).

        Raises
        ------
        ParameterError
            ``n`` above :attr:`max_block`.
        """
        if not 0 <= n <= self.max_block:
            raise ParameterError(f"block of {n} frames: the denoiser stage takes 0 to max_block={self.max_block}")
        if events is None:
            events, n_events = self.events, 0
        denoise_block(n, inputs, events, n_events, *self._args)

    # --- parameters ------------------------------------------------------------------------
    def _set(self, j: int, name: str, value: float) -> None:
        from debleed.dsp.params import PARAMS  # the ranges' one definition
        from debleed.models.denoiser import limit_mix_gain

        if name == "denoise_limit_db":
            self.limit_db[j] = PARAMS[name].check(value)
        elif name == "denoise_mix":
            self.mix[j] = PARAMS[name].check(value)
        else:
            raise ParameterError(f"{name!r} is not a denoiser parameter (allowed: denoise_limit_db, denoise_mix)")
        self.par[j, P_G] = limit_mix_gain(self.limit_db[j], self.mix[j])

    def set_param(self, channel_index: int, name: str, value: float) -> None:
        """Change ``denoise_limit_db`` (dB, -100 to 0) or ``denoise_mix`` (0 to 1) of a channel.

        ``channel_index`` is the channel's index in the gig's channel list. The audio thread ramps
        to the new weight over :data:`GAIN_RAMP_MS`. Safe from any control thread (one float store).

        Raises
        ------
        ParameterError
            A channel that is not denoised, an unknown name or a value out of range.
        """
        if channel_index not in self.channels:
            raise ParameterError(f"channel {channel_index!r} is not denoised (denoised channels: "
                                 f"{', '.join(map(str, self.channels)) or 'none'})")
        self._set(self.channels.index(channel_index), name, value)

    def get_param(self, channel_index: int, name: str) -> float:
        """The current value of a denoiser parameter (see :meth:`set_param`)."""
        j = self.channels.index(channel_index)
        return float(self.limit_db[j] if name == "denoise_limit_db" else self.mix[j])

    def stats(self) -> dict:
        """Hops run and resets after a non-finite hop, per denoised channel (JSON-ready)."""
        return {"hops": [int(v) for v in self.ist[:, I_HOPS]],
                "nonfinite_resets": [int(v) for v in self.ist[:, I_RESETS]],
                "latency_samples": [int(v) for v in self.lay[:, L_LAT] + self.lay[:, L_LEAD]]}


class StreamingDenoiser(Processor):
    """One mono channel through the data-plane kernels, with :class:`~debleed.models.denoiser.Denoiser`'s
    interface (``prepare(ProcessSpec(sample_rate, max_block))``, ``process(x, out)``, ``reset()``,
    ``latency_samples``).

    Parameters
    ----------
    model_path : str or Path, optional
        A model file; default the shipped model for the rate given to :meth:`prepare`.

    Examples
    --------
    >>> from debleed.dsp.processor import ProcessSpec
    >>> d = StreamingDenoiser()
    >>> d.prepare(ProcessSpec(48000, 128))
    >>> x = np.zeros(128, np.float32); y = np.empty_like(x)
    >>> d.process(x, y)
    """

    def __init__(self, model_path=None):
        self.model_path = model_path
        self.stage = None

    @property
    def latency_samples(self) -> int:
        """``window - 1`` samples (63 for the shipped models); 63 before :meth:`prepare`."""
        return self.stage.latency_samples if self.stage is not None else 63

    def _allocate(self, spec: ProcessSpec) -> None:
        """Load the weights for ``spec.sample_rate`` and allocate for ``spec.max_block`` frames;
        ``spec.n_channels`` must be 1.

        Raises
        ------
        ParameterError
            A rate without a model, or more than one channel.
        DebleedError
            A missing or unreadable model.
        """
        check_channels(self, spec, 1, "one mono channel")
        st = self.stage
        if st is None or st.sample_rate != int(spec.sample_rate) or st.max_block != spec.max_block:
            self.stage = StreamingStage([(0, 1)], int(spec.sample_rate), models=[self.model_path],
                                        max_block=spec.max_block)
        self._io = np.zeros((2, spec.max_block), np.float32)

    def _clear(self) -> None:
        """Clear the streaming state; the weights stay loaded."""
        self.stage.reset()

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Denoise ``x`` (float (n,), n <= max_block) into ``out[:n]``, delayed by :attr:`latency_samples`.

        Raises
        ------
        DebleedError
            Before :meth:`prepare`.
        ParameterError
            ``x`` not 1-D or longer than ``max_block``, or ``out`` too short.
        """
        self.check_prepared("process")
        n = x.shape[0]
        if x.ndim != 1 or n > self.max_block:
            raise ParameterError(f"x must be 1-D with at most max_block={self.max_block} frames, got shape {x.shape}")
        if out.ndim != 1 or out.shape[0] < n:
            raise ParameterError(f"out must be 1-D with at least {n} frames, got shape {out.shape}")
        self._io[0, :n] = x
        self.stage.process(n, self._io)
        out[:n] = self._io[1, :n]
