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
- decoder: ``ConvTranspose1d(n_filters, 1, window, stride=hop)`` with overlap-add.

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

STATE_NAMES = ("enc_state", "gru_state", "ola_state")


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

    Raises
    ------
    ValueError
        ``context`` not a multiple of ``hop`` or below ``window``; ``taps`` below 1 or reaching
        past ``context``.
    """

    def __init__(self, hop: int = 32, n_filters: int = 256, hidden: int = 128, layers: int = 2,
                 context: int | None = None, cq_bins: int = 64, sample_rate: int = 48000, taps: int = 1):
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
        self.encoder = nn.Conv1d(1, n_filters, self.window, stride=hop, bias=False)
        if self.cq_bins:
            self.cq = nn.Conv1d(1, 2 * self.cq_bins, self.context, stride=hop, bias=False)
            with torch.no_grad():
                self.cq.weight.copy_(constant_q_kernels(self.context, self.cq_bins, self.sample_rate).unsqueeze(1))
            self.cq.weight.requires_grad_(False)
        self.inp = nn.Linear(n_filters + self.cq_bins, hidden)
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, n_filters)
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

    def config(self) -> dict:
        """Constructor arguments (saved in checkpoints and ONNX metadata)."""
        cfg = {"hop": self.hop, "n_filters": self.n_filters, "hidden": self.hidden, "layers": self.layers}
        if self.cq_bins:
            cfg.update(context=self.context, cq_bins=self.cq_bins, sample_rate=self.sample_rate)
        if self.taps > 1:
            cfg["taps"] = self.taps
        return cfg

    def zero_state(self, batch: int = 1):
        """Zero streaming state ``(enc_state (B, context - hop), gru_state (layers, B, hidden),
        ola_state (B, hop))``."""
        dev = self.encoder.weight.device
        return (torch.zeros(batch, self.context - self.hop, device=dev),
                torch.zeros(self.layers, batch, self.hidden, device=dev), torch.zeros(batch, self.hop, device=dev))

    def forward(self, audio, enc_state, gru_state, ola_state):
        """One streaming step over a chunk of whole hops.

        Parameters
        ----------
        audio : Tensor (B, T * hop)
            Input samples, T >= 1.
        enc_state : Tensor (B, context - hop)
            The previous ``context - hop`` input samples (zeros at start).
        gru_state : Tensor (layers, B, hidden)
        ola_state : Tensor (B, hop)
            Overlap-add tail of the previous chunk (zeros at start).

        Returns
        -------
        denoised : Tensor (B, T * hop)
            Clean estimate, delayed by ``hop`` samples.
        enc_state_out, gru_state_out, ola_state_out :
            The state for the next chunk.
        """
        hop = self.hop
        x = torch.cat([enc_state, audio], dim=-1)                  # (B, context - hop + T * hop)
        past = (self.taps - 1) * hop
        frames_all = self.encoder(x[:, self.context - self.window - past:].unsqueeze(1))  # (B, N, taps - 1 + T)
        frames = frames_all[:, :, self.taps - 1:]                  # (B, N, T)
        feat = 0.1 * torch.log(frames * frames + 1e-9)
        if self.cq_bins:
            c = self.cq(x.unsqueeze(1))                           # (B, 2K, T)
            c = c * c
            feat = torch.cat([feat, 0.1 * torch.log(c[:, :self.cq_bins] + c[:, self.cq_bins:] + 1e-9)], dim=1)
        feat = feat.transpose(1, 2)
        z, gru_out = self.gru(torch.relu(self.inp(feat)), gru_state)
        mask = torch.sigmoid(self.out(z)).transpose(1, 2)         # (B, N, T)
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
        return y[:, :n], x[:, -(self.context - hop):], gru_out, y[:, n:]

    def run(self, audio):
        """Whole-signal (one-shot) output from zero state; ``audio`` (B, T * hop)."""
        return self.forward(audio, *self.zero_state(audio.shape[0]))[0]


def export_onnx(model: SnareDenoiserNet, path, *, sample_rate: int, opset: int = 17) -> None:
    """Export the streaming step to ONNX with named state inputs and outputs.

    Inputs ``audio`` (1, n) with n a multiple of ``hop``, ``enc_state`` (1, context - hop), ``gru_state``
    (layers, 1, hidden), ``ola_state`` (1, hop); outputs ``denoised`` (1, n) and
    ``enc_state_out``, ``gru_state_out``, ``ola_state_out``. The metadata holds ``hop``,
    ``window``, ``sample_rate`` and the constructor arguments.
    """
    import json
    import warnings

    import onnx

    model = model.eval()
    args = (torch.zeros(1, 4 * model.hop),) + model.zero_state(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=["audio", *STATE_NAMES],
                          output_names=["denoised"] + [s + "_out" for s in STATE_NAMES],
                          dynamic_axes={"audio": {1: "n"}, "denoised": {1: "n"}},
                          opset_version=opset, dynamo=False)
    m = onnx.load(str(path))
    meta = {"hop": str(model.hop), "window": str(model.window), "sample_rate": str(int(sample_rate)),
            "config": json.dumps(model.config()), "producer": "debleed snare denoiser"}
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(path))
