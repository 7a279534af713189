"""The snare de-bleed network (torch; training and export only, never imported at run time).

A learned-filterbank mask network in the style of Conv-TasNet, made causal and streaming:

- encoder: ``Conv1d(1, n_filters, window, stride=hop)`` over the last ``window`` samples
  (``window = 2 * hop``), i.e. one frame per hop;
- context features (``context > window``): a fixed causal constant-Q filterbank over the last
  ``context`` samples (complex Hann-windowed exponentials, right-aligned so they end at the
  newest sample), for the frequency resolution the short synthesis window lacks (snare body
  against toms and kick). It looks only into the past, so it adds no latency;
- mask estimator: per frame, log power of the filterbank (and of the context features), a
  linear layer, a stacked GRU over frames (causal by construction), a linear layer and a
  sigmoid (one mask value per filter);
- multi-frame filter (``taps > 1``): besides the mask on the current frame, a second linear
  head gives ``taps - 1`` unbounded coefficients per filter that weight the same filter's
  previous frames, so each output frame is a short FIR filter across frames of every subband
  (the "deep filtering" of DeepFilterNet, Schröter et al., ICASSP 2022, here on a real learned
  filterbank). It reaches ``window + (taps - 1) * hop`` samples into the past, sharpening the
  frequency resolution the output can have without adding latency. The head starts at zero, so a
  model with taps starts as the same model without them (fine-tuning from one);
- decoder: ``ConvTranspose1d(n_filters, 1, window, stride=hop)`` with overlap-add;
- informed inputs (``n_refs > 0``, ``key``): reference mics (e.g. the hi-hat close mic and an
  overhead) go through the same encoder (shared weights, same window and hop) and their log
  power joins the features; the channel's key (a per-sample signal: onsets with velocity, zeros
  elsewhere) is reduced to one value per frame, its maximum over the hop that just completed;
  with ``key_ctx > 1`` a learned causal filter over the last ``key_ctx`` of those frames gives
  ``key_bins`` features that hold after an onset (it starts as the newest frame and onsets
  decaying over 5, 20 and 80 ms: :data:`KEY_DECAYS_MS`), so the network knows for the whole
  decay of a hit that the key fired, and how hard, not only on the one frame it arrives (a key
  arrives 2-6 ms after its hit). With ``key_power < 1`` each frame value ``v`` becomes
  ``v ** key_power`` first, so a ghost note's key (velocity 0.02-0.1) is not 10-50 times
  weaker than an accent's but 3-7 times (power 0.5). With ``key_connected`` the model also
  knows whether a key is connected at all: a connected key carries :data:`KEY_IDLE` on every
  sample between onsets (zeros: no key), the graph turns that into one more key feature (1 while
  connected, else 0; it reaches the input layer and, with ``key_mask``, the mask) and takes the
  idle value off the key before the power, so a model can close between the strokes a
  connected key reports and still hedge where no key is routed. The mask
  still applies to the mic's frames only. Zeros in place of a key or a reference mic mean "not
  connected" (training drops them at random), so one model serves every configuration.

:meth:`SnareDenoiserNet.forward` is the streaming step and also the training forward: it takes
a chunk of whole hops plus the state (last ``hop`` input samples, GRU hidden state, pending
overlap-add tail) and returns the output chunk plus the new state. Run from zero state over a
whole signal it is the one-shot model, so streaming equals one-shot by construction.

The output is the clean estimate delayed by ``hop`` samples (the overlap-add tail is not
final until the next frame). The run-time wrapper buffers arbitrary blocks into hops, adding
``hop - 1`` samples: total latency ``window - 1`` samples.
"""

from __future__ import annotations

import torch
from torch import nn

from debleed.models.graph import KEY_IDLE, KEY_POWER_RANGE, input_names, state_names  # the graph contract, defined once

#: The key's features at their start (``key_ctx > 1``): the key's value on the newest frame, then
#: its onsets decaying with these time constants, ms (the filter is trained from there).
KEY_DECAYS_MS = (5.0, 20.0, 80.0)


def constant_q_kernels(context: int, n_bins: int, sample_rate: float, *, f_min: float = 40.0,
                       f_max: float = 16000.0, q: float = 8.0):
    """Causal constant-Q analysis filters, shape ``(2 * n_bins, context)`` (cos rows, then sin rows).

    Bin ``k`` is centred on ``f_k``, geometrically spaced from ``f_min`` to ``min(f_max, 0.45 *
    sample_rate)`` Hz, with a periodic Hann window of ``min(context, q * sample_rate / f_k)``
    samples placed at the end of the ``context``-sample span (the newest samples), normalised to
    unit sum: the transform of Brown, "Calculation of a constant Q spectral transform", JASA 89
    (1991), made causal by right-aligning the windows (no look-ahead).
    """
    import math

    f_hi = min(float(f_max), 0.45 * float(sample_rate))
    freqs = torch.tensor([f_min * (f_hi / f_min) ** (k / max(n_bins - 1, 1)) for k in range(n_bins)],
                         dtype=torch.float64)
    ker = torch.zeros(2 * n_bins, context, dtype=torch.float64)
    for k, f in enumerate(freqs.tolist()):
        length = int(min(context, max(8, round(q * sample_rate / f))))
        n = torch.arange(length, dtype=torch.float64)
        w = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / length)
        w = w / w.sum()
        ph = 2.0 * math.pi * f / sample_rate * n
        ker[k, context - length:] = w * torch.cos(ph)
        ker[n_bins + k, context - length:] = w * torch.sin(ph)
    return ker.float()


class SnareDenoiserNet(nn.Module):
    """Causal streaming filterbank-mask denoiser.

    Parameters
    ----------
    hop : int
        Frame hop, samples (the window is ``2 * hop``); default 32.
    n_filters : int
        Filterbank size; default 256.
    hidden : int
        GRU width; default 128.
    layers : int
        GRU layers; default 2.
    context : int
        Samples of past the mask estimator sees, a multiple of ``hop`` and >= ``window``; default
        ``window`` (no context features). Adds no latency.
    cq_bins : int
        Constant-Q context bins (used when ``context > window``); default 64.
    sample_rate : int
        Hz, for the constant-Q centre frequencies; default 48000.
    taps : int
        Frames the output filter spans per filter (1: a mask on the current frame only; the
        default). Needs ``window + (taps - 1) * hop <= context``.
    n_refs : int
        Reference mics (0 to 4; default 0), each encoded by the same encoder.
    key : bool
        Whether the model takes the channel's key signal; default False.
    key_ctx : int
        Frames of key history the key filter spans (1 to 4096; default 1: the newest frame's
        value is the one key feature, no filter and no ``key_state``).
    key_bins : int
        Key features (the key filter's outputs) with ``key_ctx > 1``, 1 to 16; default 4.
    key_mask : bool
        With a key filter: its features also reach the mask directly, ``mask = sigmoid(out(h) +
        key_out(k))`` with ``key_out`` a ``(key features -> n_filters)`` linear map without bias,
        started at zero (the model starts as the same model without it): a key that fired can
        open the mask on the snare's filters whatever the recurrent state; default False.
    key_lead_ms : float
        How far ahead of the audio the model hears its key, ms (0 to 20; default 0): trained
        with the key moved this much earlier, so a key that lags its hit by less still arrives
        before the hit's audio. The network does not use it; the data-plane stage and the
        evaluation delay the mic and reference mics by it where a key is connected (a look-ahead,
        added to the channel's latency). Saved in the config.
    key_power : float
        Exponent applied to the key's frame values before the key filter, ``v ** key_power``
        (0.1 to 1; default 1: the velocity as it comes). Below 1 it lifts soft strokes' keys
        toward the accents' (0.5: velocity 0.04 becomes 0.2), so a ghost note's key can open
        the mask; the data-plane kernels apply it to the key value they build. Saved in the
        config when not 1.
    key_connected : bool
        With a key filter: one more key feature that says whether a key is connected (the key
        input reads at least :data:`~debleed.models.graph.KEY_IDLE` on every sample while one
        is; :func:`~debleed.models.graph.key_graph_input`), after the filter's outputs. Its input
        layer column and mask weights start at zero (the model starts as the same model without
        it); default False. Saved in the config when set.

    Raises
    ------
    ValueError
        ``context`` not a multiple of ``hop`` or below ``window``; ``taps`` below 1 or reaching
        past ``context``; ``n_refs`` outside 0 to 4; ``key_ctx``, ``key_bins`` or ``key_power``
        out of range.
    """

    def __init__(self, hop: int = 32, n_filters: int = 256, hidden: int = 128, layers: int = 2,
                 context: int | None = None, cq_bins: int = 64, sample_rate: int = 48000, taps: int = 1,
                 n_refs: int = 0, key: bool = False, key_ctx: int = 1, key_bins: int = 4, key_lead_ms: float = 0.0,
                 key_mask: bool = False, key_power: float = 1.0, key_connected: bool = False):
        super().__init__()
        self.hop, self.window = int(hop), 2 * int(hop)
        self.n_filters, self.hidden, self.layers = int(n_filters), int(hidden), int(layers)
        self.context = self.window if context is None else int(context)
        if self.context < self.window or self.context % self.hop:
            raise ValueError(f"context must be a multiple of hop ({hop}) and >= window ({self.window}), got {context}")
        self.cq_bins = int(cq_bins) if self.context > self.window else 0
        self.taps = int(taps)
        if self.taps < 1 or self.window + (self.taps - 1) * self.hop > self.context:
            raise ValueError(f"taps must be >= 1 with window + (taps - 1) * hop <= context "
                             f"({self.window} + (taps - 1) * {self.hop} <= {self.context}), got {taps}")
        self.sample_rate = int(sample_rate)
        self.n_refs, self.key = int(n_refs), bool(key)
        if not 0 <= self.n_refs <= 4:
            raise ValueError(f"n_refs must be 0 to 4, got {n_refs}")
        if not 1 <= int(key_ctx) <= 4096:
            raise ValueError(f"key_ctx must be 1 to 4096 frames, got {key_ctx}")
        if not 1 <= int(key_bins) <= 16:
            raise ValueError(f"key_bins must be 1 to 16, got {key_bins}")
        if not 0.0 <= float(key_lead_ms) <= 20.0:
            raise ValueError(f"key_lead_ms must be 0 to 20 ms, got {key_lead_ms}")
        lo, hi = KEY_POWER_RANGE
        if not lo <= float(key_power) <= hi:
            raise ValueError(f"key_power must be {lo:g} to {hi:g}, got {key_power}")
        self.key_lead_ms = float(key_lead_ms) if self.key else 0.0
        self.key_power = float(key_power) if self.key else 1.0
        self.key_ctx = int(key_ctx) if self.key else 1
        self.key_bins = (int(key_bins) if self.key_ctx > 1 else 1) if self.key else 0
        self.encoder = nn.Conv1d(1, n_filters, self.window, stride=hop, bias=False)
        if self.cq_bins:
            self.cq = nn.Conv1d(1, 2 * self.cq_bins, self.context, stride=hop, bias=False)
            with torch.no_grad():
                self.cq.weight.copy_(constant_q_kernels(self.context, self.cq_bins, self.sample_rate).unsqueeze(1))
            self.cq.weight.requires_grad_(False)
        self.key_mask = bool(key_mask) and self.key_ctx > 1
        self.key_connected = bool(key_connected) and self.key_ctx > 1
        if self.key_ctx > 1:
            self.key_filt = nn.Conv1d(1, self.key_bins, self.key_ctx, bias=False)
            with torch.no_grad():
                self.key_filt.weight.copy_(key_filters(self.key_ctx, self.key_bins, self.sample_rate / self.hop))
        self.inp = nn.Linear(self.n_features, hidden)
        if self.key_connected:  # the connected feature's column starts at zero
            with torch.no_grad():
                self.inp.weight[:, -1] = 0.0
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, n_filters)
        if self.key_mask:
            self.key_out = nn.Linear(self.key_features, n_filters, bias=False)
            nn.init.zeros_(self.key_out.weight)
        if self.taps > 1:
            self.taps_out = nn.Linear(hidden, n_filters * (self.taps - 1))
            nn.init.zeros_(self.taps_out.weight)
            nn.init.zeros_(self.taps_out.bias)
        self.decoder = nn.ConvTranspose1d(n_filters, 1, self.window, stride=hop, bias=False)
        self.reset_filterbank()

    def reset_filterbank(self, seed: int = 0) -> None:
        """Start from a perfect-reconstruction filterbank and an almost open mask.

        Encoder and decoder filters are the rows of a random tight frame ``B`` (``B^T B = I``,
        QR of a Gaussian matrix; needs ``n_filters >= window``) times a square-root periodic Hann window, so that with the mask
        at 1 the decoder's overlap-add returns the input exactly (Hann windows at 50 % overlap
        sum to 1), delayed by ``hop``. The mask bias starts at 2 (sigmoid 0.88).
        """
        g = torch.Generator().manual_seed(seed)
        if self.n_filters >= self.window:
            q, _ = torch.linalg.qr(torch.randn(self.n_filters, self.window, generator=g, dtype=torch.float64))
        else:  # fewer filters than window samples: orthonormal rows (no perfect reconstruction)
            q = torch.linalg.qr(torch.randn(self.window, self.n_filters, generator=g, dtype=torch.float64))[0].T
        n = torch.arange(self.window, dtype=torch.float64)
        w = torch.sqrt(0.5 - 0.5 * torch.cos(2.0 * torch.pi * n / self.window))
        basis = (q * w).float()
        with torch.no_grad():
            self.encoder.weight.copy_(basis.unsqueeze(1))
            self.decoder.weight.copy_(basis.unsqueeze(1))
            nn.init.constant_(self.out.bias, 2.0)

    @property
    def n_features(self) -> int:
        """Features per frame: mic filterbank, constant-Q bins, each reference's filterbank, key."""
        return self.n_filters * (1 + self.n_refs) + self.cq_bins + self.key_features

    @property
    def key_features(self) -> int:
        """Key features per frame: the key filter's ``key_bins`` outputs, plus one with
        ``key_connected`` (0 without a key)."""
        return self.key_bins + self.key_connected

    @property
    def informed(self) -> bool:
        """Whether the model takes reference mics or a key (the seven-argument :meth:`forward`)."""
        return bool(self.n_refs or self.key)

    def macs_per_hop(self) -> dict:
        """Multiply-adds per hop of the streaming step, by part (dense counts: every constant-Q
        kernel tap, every GRU gate; the sigmoid, tanh and log are not counted)."""
        n, h, w = self.n_filters, self.hidden, self.window
        parts = {"encoder": n * w * (1 + self.n_refs), "constant_q": 2 * self.cq_bins * self.context,
                 "key": self.key_bins * self.key_ctx if self.key_ctx > 1 else 0, "inp": self.n_features * h, "gru": sum(3 * (h + h) * h for _ in range(self.layers)),
                 "out": h * n * self.taps + (self.key_features * n if self.key_mask else 0), "decoder": n * w}
        parts["total"] = sum(parts.values())
        return parts

    def config(self) -> dict:
        """Constructor arguments (saved in checkpoints and ONNX metadata)."""
        cfg = {"hop": self.hop, "n_filters": self.n_filters, "hidden": self.hidden, "layers": self.layers}
        if self.cq_bins:
            cfg.update(context=self.context, cq_bins=self.cq_bins, sample_rate=self.sample_rate)
        if self.taps > 1:
            cfg["taps"] = self.taps
        if self.n_refs:
            cfg["n_refs"] = self.n_refs
        if self.key:
            cfg["key"] = True
        if self.key_ctx > 1:
            cfg.update(key_ctx=self.key_ctx, key_bins=self.key_bins)
        if self.key_lead_ms:
            cfg["key_lead_ms"] = self.key_lead_ms
        if self.key_mask:
            cfg["key_mask"] = True
        if self.key_power != 1.0:
            cfg["key_power"] = self.key_power
        if self.key_connected:
            cfg["key_connected"] = True
        return cfg

    def zero_state(self, batch: int = 1):
        """Zero streaming state, in :func:`state_names` order: ``enc_state (B, context - hop)``,
        ``ref_state (B, n_refs, window - hop)`` (informed models with refs only), ``key_state (B,
        key_ctx - 1)`` (with a key filter only), ``gru_state (layers, B, hidden)``, ``ola_state (B,
        hop)``."""
        dev = self.encoder.weight.device
        st = [torch.zeros(batch, self.context - self.hop, device=dev)]
        if self.n_refs:
            st.append(torch.zeros(batch, self.n_refs, self.window - self.hop, device=dev))
        if self.key_ctx > 1:
            st.append(torch.zeros(batch, self.key_ctx - 1, device=dev))
        return tuple(st) + (torch.zeros(self.layers, batch, self.hidden, device=dev),
                            torch.zeros(batch, self.hop, device=dev))

    @property
    def has_key_state(self) -> bool:
        """Whether the model carries ``key_state`` (a key filter over past frames)."""
        return self.key_ctx > 1

    def forward(self, audio, *args):
        """One streaming step over a chunk of whole hops.

        ``forward(audio, enc_state, gru_state, ola_state)`` for a mic-only model;
        ``forward(audio, refs, key, *state)`` for an informed one, ``state`` in
        :meth:`zero_state` order (``enc_state, [ref_state,] [key_state,] gru_state, ola_state``;
        ``refs`` None when ``n_refs`` is 0, ``key`` None without a key).

        Parameters
        ----------
        audio : Tensor (B, T * hop)
            Input samples, T >= 1.
        refs : Tensor (B, n_refs, T * hop)
            The reference mics, same samples as ``audio`` (zeros: not connected).
        key : Tensor (B, T * hop)
            The key: onset velocities in (0, 1] at onset samples, zeros elsewhere (all zeros: no key).
        enc_state : Tensor (B, context - hop)
            The previous ``context - hop`` input samples (zeros at start).
        ref_state : Tensor (B, n_refs, window - hop)
            The previous ``window - hop`` samples of each reference mic.
        key_state : Tensor (B, key_ctx - 1)
            The key's previous ``key_ctx - 1`` frame values (with a key filter).
        gru_state : Tensor (layers, B, hidden)
        ola_state : Tensor (B, hop)
            Overlap-add tail of the previous chunk (zeros at start).

        Returns
        -------
        denoised : Tensor (B, T * hop)
            Clean estimate, delayed by ``hop`` samples.
        enc_state_out, [ref_state_out,] [key_state_out,] gru_state_out, ola_state_out :
            The state for the next chunk (same order as the state inputs).
        """
        n_state = 3 + bool(self.n_refs) + self.has_key_state
        if self.informed:
            if len(args) != 2 + n_state:
                raise TypeError(f"an informed model takes (audio, refs, key, {', '.join(self._state_list())}), "
                                f"got {1 + len(args)} arguments")
            refs, key = args[:2]
            state = list(args[2:])
        else:
            if len(args) != 3:
                raise TypeError(f"takes (audio, enc_state, gru_state, ola_state), got {1 + len(args)} arguments")
            refs = key = None
            state = list(args)
        enc_state = state.pop(0)
        ref_state = state.pop(0) if self.n_refs else None
        key_state = state.pop(0) if self.has_key_state else None
        gru_state, ola_state = state
        hop = self.hop
        x = torch.cat([enc_state, audio], dim=-1)                  # (B, context - hop + T * hop)
        past = (self.taps - 1) * hop
        frames_all = self.encoder(x[:, self.context - self.window - past:].unsqueeze(1))  # (B, N, taps - 1 + T)
        frames = frames_all[:, :, self.taps - 1:]                  # (B, N, T)
        feats = [0.1 * torch.log(frames * frames + 1e-9)]
        if self.cq_bins:
            c = self.cq(x.unsqueeze(1))                           # (B, 2K, T)
            c = c * c
            feats.append(0.1 * torch.log(c[:, :self.cq_bins] + c[:, self.cq_bins:] + 1e-9))
        new_state = [x[:, -(self.context - hop):]]
        if self.n_refs:
            rx = torch.cat([ref_state, refs], dim=-1)               # (B, R, window - hop + T * hop)
            for r in range(self.n_refs):                           # the mic's encoder, shared weights
                e = self.encoder(rx[:, r:r + 1])                   # (B, N, T)
                feats.append(0.1 * torch.log(e * e + 1e-9))
            new_state.append(rx[:, :, -(self.window - hop):])
        kf = None
        if self.key:
            k = key.reshape(key.shape[0], -1, hop).amax(dim=-1)    # (B, T): max over each frame's newest hop
            if self.key_connected:  # 1 while the key reads at least its idle value, then the idle taken off
                conn = torch.clamp(k * (1.0 / KEY_IDLE), 0.0, 1.0)
                k = torch.relu(k - KEY_IDLE)
            if self.key_power != 1.0:
                k = torch.relu(k).pow(self.key_power)
            if self.has_key_state:
                kx = torch.cat([key_state, k], dim=-1)              # (B, key_ctx - 1 + T)
                kf = self.key_filt(kx.unsqueeze(1))               # (B, key_bins, T)
                if self.key_connected:
                    kf = torch.cat([kf, conn.unsqueeze(1)], dim=1)  # (B, key_bins + 1, T)
                feats.append(kf)
                new_state.append(kx[:, -(self.key_ctx - 1):])
            else:
                feats.append(k.unsqueeze(1))
        feat = torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]
        feat = feat.transpose(1, 2)
        z, gru_out = self.gru(torch.relu(self.inp(feat)), gru_state)
        logits = self.out(z)
        if self.key_mask:
            logits = logits + self.key_out(kf.transpose(1, 2))
        mask = torch.sigmoid(logits).transpose(1, 2)              # (B, N, T)
        filtered = frames * mask
        if self.taps > 1:
            t = frames.shape[-1]
            coef = self.taps_out(z).transpose(1, 2)                # (B, N * (taps - 1), T)
            for k in range(1, self.taps):                          # frame t - k weighted by c_k(t)
                c = coef[:, (k - 1) * self.n_filters:k * self.n_filters]
                filtered = filtered + c * frames_all[:, :, self.taps - 1 - k:self.taps - 1 - k + t]
        y = self.decoder(filtered).squeeze(1)                      # (B, (T + 1) * hop)
        y = torch.cat([y[:, :hop] + ola_state, y[:, hop:]], dim=-1)
        n = audio.shape[-1]
        return (y[:, :n], *new_state, gru_out, y[:, n:])

    def _state_list(self) -> tuple:
        return state_names(self.n_refs, self.has_key_state)

    def run(self, audio, refs=None, key=None):
        """Whole-signal (one-shot) output from zero state; ``audio`` (B, T * hop), ``refs``
        (B, n_refs, T * hop) and ``key`` (B, T * hop) for an informed model (None: zeros)."""
        b = audio.shape[0]
        state = self.zero_state(b)
        if not self.informed:
            return self.forward(audio, *state)[0]
        if self.n_refs and refs is None:
            refs = audio.new_zeros(b, self.n_refs, audio.shape[-1])
        if self.key and key is None:
            key = audio.new_zeros(b, audio.shape[-1])
        return self.forward(audio, refs if self.n_refs else None, key if self.key else None, *state)[0]


def key_filters(key_ctx: int, key_bins: int, frame_rate: float):
    """The key filter's start, shape ``(key_bins, 1, key_ctx)`` (newest frame last): row 0 the
    newest frame alone, row ``i`` an onset ``a`` frames old weighted ``exp(-a / tau_i)`` with
    ``tau_i`` from :data:`KEY_DECAYS_MS` (cycled, each cycle twice as long) at ``frame_rate``
    frames per second."""
    age = torch.arange(key_ctx - 1, -1, -1, dtype=torch.float64)
    rows = [torch.zeros(key_ctx, dtype=torch.float64)]
    rows[0][-1] = 1.0
    for i in range(1, key_bins):
        tau_ms = KEY_DECAYS_MS[(i - 1) % len(KEY_DECAYS_MS)] * 2.0 ** ((i - 1) // len(KEY_DECAYS_MS))
        rows.append(torch.exp(-age / (tau_ms * 1e-3 * frame_rate)))
    return torch.stack(rows).unsqueeze(1).float()


class _ExportStep(nn.Module):
    """The streaming step with exactly the graph inputs of :func:`input_names` (absent ones dropped)."""

    def __init__(self, net: SnareDenoiserNet):
        super().__init__()
        self.net = net

    def forward(self, *inputs):
        net = self.net
        if not net.informed:
            return net(*inputs)
        named = dict(zip(input_names(net.n_refs, net.key, net.has_key_state), inputs))
        return net(named["audio"], named.get("refs"), named.get("key"),
                   *(named[k] for k in state_names(net.n_refs, net.has_key_state)))


def export_onnx(model: SnareDenoiserNet, path, *, sample_rate: int, opset: int = 17) -> None:
    """Export the streaming step to ONNX with named state inputs and outputs.

    Inputs (:func:`input_names`) ``audio`` (1, n) with n a multiple of ``hop``, ``refs`` (1, n_refs, n)
    when the model has reference mics, ``key`` (1, n) when it takes a key, ``enc_state`` (1,
    context - hop), ``ref_state`` (1, n_refs, window - hop) with reference mics, ``key_state``
    (1, key_ctx - 1) with a key filter, ``gru_state``
    (layers, 1, hidden), ``ola_state`` (1, hop); outputs ``denoised`` (1, n) and ``<state>_out``
    for each state input, in the same order. The metadata holds ``hop``, ``window``,
    ``sample_rate`` and the constructor arguments (``config`` JSON, with ``n_refs`` and ``key``
    for an informed model).
    """
    import json
    import warnings

    import onnx

    model = model.eval()
    n = 4 * model.hop
    names = input_names(model.n_refs, model.key, model.has_key_state)
    states = state_names(model.n_refs, model.has_key_state)
    example = {"audio": torch.zeros(1, n), "refs": torch.zeros(1, model.n_refs, n), "key": torch.zeros(1, n),
               **dict(zip(states, model.zero_state(1)))}
    args = tuple(example[k] for k in names)
    dynamic = {"audio": {1: "n"}, "denoised": {1: "n"}}
    if model.n_refs:
        dynamic["refs"] = {2: "n"}
    if model.key:
        dynamic["key"] = {1: "n"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_ExportStep(model), args, str(path), input_names=list(names),
                          output_names=["denoised"] + [s + "_out" for s in states],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    m = onnx.load(str(path))
    _tidy_initializers(m, prefix="net.")  # the _ExportStep wrapper's attribute, on every weight
    meta = {"hop": str(model.hop), "window": str(model.window), "sample_rate": str(int(sample_rate)),
            "config": json.dumps(model.config()), "producer": "debleed snare denoiser"}
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(path))


def _tidy_initializers(m, prefix: str = "") -> None:
    """Give every weight its parameter's name in the exported graph ``m`` (in place).

    Strips the export wrapper's ``prefix`` from initializer names, and replaces an ``Identity``
    of an initializer (the exporter's way of sharing a tensor that two parameters hold with equal
    values, e.g. encoder and decoder at their initial filterbank) by a copy under the second
    parameter's name, so each named parameter is its own initializer and the graph uses only
    the operators the real-time kernels know.
    """
    from onnx import numpy_helper

    def strip(name):
        return name[len(prefix):] if prefix and name.startswith(prefix) else name

    for init in m.graph.initializer:
        init.name = strip(init.name)
    inits = {i.name: i for i in m.graph.initializer}
    keep = []
    for node in m.graph.node:
        node.input[:] = [strip(i) for i in node.input]
        node.output[:] = [strip(o) for o in node.output]
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), name=node.output[0])
            m.graph.initializer.append(copy)
            inits[copy.name] = copy
            continue
        keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)


def onnx_weight_layout(path) -> list:
    """Where each network parameter sits in an exported model: a list of ``(parameter,
    initializer name, shape, consuming node type, note)``.

    Named parameters keep their names (``encoder.weight``, ``cq.weight``, ``inp.bias``,
    ``out.bias``, ``decoder.weight``); the exporter gives the input and output layers' weights and
    the GRU's tensors generated names, so they are found by the node that reads them: the first
    ``MatMul`` with an initializer is ``inp`` (its weight transposed, (features, hidden)), the
    second ``out`` ((hidden, n_filters)), a third the key's mask weights ``key_out`` ((key features,
    n_filters): ``key_bins`` plus one with ``key_connected``; ``key_mask`` models); each ``GRU`` node's W, R, B inputs (gate order z, r, h;
    ``linear_before_reset=1``).
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    rows = []
    for name in ("encoder.weight", "cq.weight", "key_filt.weight", "inp.bias", "out.bias", "decoder.weight"):
        if name in inits:
            users = sorted({n.op_type for n in m.graph.node if name in n.input})
            rows.append((name, name, tuple(inits[name]), "/".join(users), ""))
    mats = [n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    if mats:
        rows.append(("inp.weight (transposed)", mats[0].input[1], tuple(inits[mats[0].input[1]]), "MatMul",
                     "features x hidden"))
        rows.append(("out.weight (transposed)", mats[1].input[1], tuple(inits[mats[1].input[1]]), "MatMul",
                     "hidden x n_filters"))
    if len(mats) > 2:
        rows.append(("key_out.weight (transposed)", mats[2].input[1], tuple(inits[mats[2].input[1]]), "MatMul",
                     "key features x n_filters"))
    for layer, node in enumerate(n for n in m.graph.node if n.op_type == "GRU"):
        for i, what in ((1, "W (input weights, gates z, r, h)"), (2, "R (recurrent weights, gates z, r, h)"),
                        (3, "B (Wb then Rb, gates z, r, h)")):
            rows.append((f"gru layer {layer} {what}", node.input[i], tuple(inits[node.input[i]]), "GRU", ""))
    return rows
