"""An informed model in the data plane: reference mics and the key (MIDI or trigger) reach the
kernels as they reach onnxruntime, and a gig routes them from `denoise_refs` and the channel's key.

A small informed model with random weights is exported with torch for the test (the contract of
`debleed.models.net.export_onnx`), so the kernels are checked against onnxruntime on the graph
itself, whatever model ships.
"""

from __future__ import annotations

import textwrap
import tomllib

import numpy as np
import onnxruntime as ort
import pytest

from debleed.errors import DebleedError, ParameterError
from debleed.models.streaming import StreamingStage, load_weights

pytestmark = pytest.mark.torch
RATE = 48000


@pytest.fixture(scope="module", params=[(1, 0.0, False, 1.0, False), (40, 0.0, False, 1.0, False),
                                        (40, 2.0, True, 1.0, False), (40, 2.0, True, 0.5, False),
                                        (40, 2.0, True, 0.4, True)],
                ids=["key-frame", "key-filter", "key-lead-mask", "key-power", "key-connected"])
def informed_model(request, tmp_path_factory, torch_installed):
    """Its key as one feature (the newest frame's value), or through a key filter over 40 frames,
    and with a key lead of 2 ms (96 samples: the mic and refs are delayed that much) and the key
    features reaching the mask directly; and that with the key's values raised to the power 0.5
    (the graph raises the key it is fed; the kernels the key they build); and that at 0.4 with the
    "key connected" feature (the graph reads a connected key's idle value; the kernels know a
    key is routed)."""
    import torch

    from debleed.models.net import SnareDenoiserNet, export_onnx

    torch.manual_seed(0)
    net = SnareDenoiserNet(hop=32, n_filters=48, hidden=24, layers=2, context=256, cq_bins=8, sample_rate=RATE,
                           n_refs=2, key=True, key_ctx=request.param[0], key_bins=3, key_lead_ms=request.param[1],
                           key_mask=request.param[2], key_power=request.param[3],
                           key_connected=request.param[4])
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)  # a model whose refs and key change the output
    path = tmp_path_factory.mktemp("informed") / "informed.onnx"
    export_onnx(net, path, sample_rate=RATE)
    return path


def _signals(n, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 0.1).astype(np.float32)
    refs = (rng.standard_normal((2, n)) * 0.1).astype(np.float32)
    frames = np.sort(rng.choice(n - 100, 30, replace=False))
    vels = rng.integers(1, 128, frames.size)
    return x, refs, frames, vels


def _config(path) -> dict:
    import json

    import onnx

    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["config"])


def _lead(path) -> int:
    return int(round(_config(path).get("key_lead_ms", 0.0) * RATE / 1000))


def _onnxruntime(path, x, refs, key, lead=0):
    """One-shot run of the graph from zero state (streaming equals one-shot), then the kernels'
    extra ``hop - 1`` samples of buffering so both line up. With a key lead of ``lead`` samples
    the graph hears the key that much ahead of the audio, and the output comes that much later.
    ``key`` None: no key connected (zeros); a key: connected (its idle value, where the model
    has the "key connected" feature)."""
    from debleed.models.graph import key_graph_input

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in sess.get_inputs()}
    m = x.size // 32 * 32
    k = None
    if key is not None:
        k = np.zeros(m, np.float32)
        k[:m - lead] = key[lead:m]
    feeds.update(audio=x[None, :m], refs=refs[None, :, :m], key=key_graph_input(k, m, _config(path))[None])
    y = sess.run(None, feeds)[0][0]
    return np.concatenate([np.zeros(31 + lead, np.float32), y])[:m]


def _kernels(stage, x, refs, events, block, trig=None):
    n = x.size
    io = np.zeros((5, block), np.float32)
    y = np.zeros(n, np.float32)
    ev = np.zeros((256, 4), np.int32)
    for s in range(0, n, block):
        m = min(block, n - s)
        io[0, :m], io[1:3, :m] = x[s:s + m], refs[:, s:s + m]
        if trig is not None:
            io[4, :m] = trig[s:s + m]
        sel = events[(events[:, 0] >= s) & (events[:, 0] < s + m)].copy()
        sel[:, 0] -= s
        ev[:len(sel)] = sel
        stage.process(m, io, ev, len(sel))
        y[s:s + m] = io[3, :m]
    return y


@pytest.mark.parametrize("block", [1, 64, 128, 1000])
def test_refs_and_midi_key_equal_onnxruntime(informed_model, block):
    n = RATE
    x, refs, frames, vels = _signals(n)
    key = np.zeros(n, np.float32)
    key[frames] = vels / 127.0
    events = np.array([(f, 0x90, 38, v) for f, v in zip(frames, vels)]
                      + [(f + 3, 0x90, 42, 100) for f in frames[:5]], np.int32)  # other notes: no key
    events = events[np.argsort(events[:, 0], kind="stable")]
    st = StreamingStage([(0, 3)], RATE, models=[informed_model], max_block=block,
                        informed=[{"refs": [1, 2], "key": ("midi", (38,), 0)}])
    lead = _lead(informed_model)
    assert st.channel_latency(0) == 63 + lead and st.stats()["latency_samples"] == [63 + lead]
    y = _kernels(st, x, refs, events, block)
    ref = _onnxruntime(informed_model, x, refs, key, lead)
    assert np.max(np.abs(y[:ref.size] - ref)) <= 1e-4
    # the refs and the key matter: without them the output differs (and without a key there is
    # no lead: the model's own latency)
    bare = StreamingStage([(0, 3)], RATE, models=[informed_model], max_block=block)
    assert bare.channel_latency(0) == 63
    y0 = _kernels(bare, x, refs, events, block)
    assert np.max(np.abs(y0[:ref.size] - ref)) > 1e-3
    assert np.max(np.abs(y0 - _onnxruntime(informed_model, x, np.zeros_like(refs), None))) <= 1e-4


def test_a_key_connected_but_silent_is_not_no_key(informed_model):
    """A MIDI key routed to the channel that plays nothing: the kernels equal the graph fed a
    connected, silent key; for a "key connected" model that differs from no key at all."""
    n = RATE // 2
    x, refs, _, _ = _signals(n, seed=2)
    st = StreamingStage([(0, 3)], RATE, models=[informed_model], max_block=128,
                        informed=[{"refs": [1, 2], "key": ("midi", (38,), 0)}])
    y = _kernels(st, x, refs, np.zeros((0, 4), np.int32), 128)
    lead = _lead(informed_model)
    ref = _onnxruntime(informed_model, x, refs, np.zeros(n, np.float32), lead)
    assert np.max(np.abs(y[:ref.size] - ref)) <= 1e-4
    none = _onnxruntime(informed_model, x, refs, None, lead)
    differs = np.max(np.abs(ref - none)) > 1e-3
    assert differs == bool(_config(informed_model).get("key_connected"))


def test_trigger_key_is_the_piezo_peak_after_its_threshold(informed_model):
    n = RATE // 2
    x, refs, frames, _ = _signals(n, seed=1)
    trig = np.zeros(n, np.float32)
    key = np.zeros(n, np.float32)
    scan = 48  # TRIGGER_SCAN_MS at 48 kHz
    for i, peak in enumerate((0.3, 0.9, 2.0, 0.5, 0.7, 0.4, 0.8, 0.6, 0.35, 0.45)):
        f = 1000 + 2000 * i  # further apart than the 30 ms retrigger
        trig[f:f + 5] = [0.2, -peak, 0.5 * peak, 0.1, 0.05]  # crosses -20 dBFS (0.1) at f
        trig[f + 400] = 0.9  # ringing within the retrigger time: no second hit
        key[f + scan] = min(peak, 1.0)  # the peak, once the scan after the crossing is over
    st = StreamingStage([(0, 3)], RATE, models=[informed_model], max_block=128,
                        informed=[{"refs": [1, 2], "key": ("trigger", 4, -20.0, 30.0)}])
    y = _kernels(st, x, refs, np.zeros((0, 4), np.int32), 128, trig=trig)
    ref = _onnxruntime(informed_model, x, refs, key, _lead(informed_model))
    assert np.max(np.abs(y[:ref.size] - ref)) <= 1e-4


def test_weights_and_routing_errors(informed_model):
    dims, _ = load_weights(informed_model)
    assert dims["n_refs"] == 2 and dims["key"] == 1 and dims["n_in"] == 48 * 3 + 8 + dims["kb"]
    assert (dims["kc"], dims["kb"], dims["kconn"]) in ((1, 1, 0), (40, 3, 0), (40, 4, 1))
    with pytest.raises(ParameterError, match="takes 2 reference mic\\(s\\), got 3"):
        StreamingStage([(0, 3)], RATE, models=[informed_model], informed=[{"refs": [1, 2, 4]}])
    with pytest.raises(ParameterError, match="takes 0 reference mic\\(s\\), got 1 \\(denoise_refs\\)"):
        StreamingStage([(0, 3)], RATE, informed=[{"refs": [1]}])  # the shipped mic-only model


def test_a_gig_routes_refs_and_key_to_the_stage(informed_model):
    from debleed.rt.config import parse_config

    gig = textwrap.dedent(f"""
        [inputs]
        snare = []
        hihat = []
        oh = []
        [[channel]]
        name = "snare"
        input = "snare"
        mode = "bypass"
        key = "midi:38,40"
        midi_channel = 10
        denoise = true
        denoise_model = "{informed_model}"
        denoise_refs = ["hihat", "oh"]
        """)
    cfg = parse_config(tomllib.loads(gig))
    st = StreamingStage.from_gig(cfg, RATE, 128)
    from debleed.models.streaming import KEY_MIDI, L_KEYKIND, L_MIDICH, L_NOTES_LO, L_REF
    assert list(st.lay[0, L_REF:L_REF + 2]) == [1, 2] and st.lay[0, L_KEYKIND] == KEY_MIDI
    assert st.lay[0, L_NOTES_LO] == (1 << 38) | (1 << 40) and st.lay[0, L_MIDICH] == 10
    bad = parse_config(tomllib.loads(gig.replace('denoise_model = "' + str(informed_model) + '"\n', "")))
    with pytest.raises(DebleedError, match="denoised channel\\(s\\) snare: .*takes 0 reference mic"):
        StreamingStage.from_gig(bad, RATE, 128)
    with pytest.raises(Exception, match="denoise_refs names 'tom', which is not a defined input"):
        parse_config(tomllib.loads(gig.replace('["hihat", "oh"]', '["hihat", "tom"]')))
