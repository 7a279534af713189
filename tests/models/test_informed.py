"""The informed denoiser (reference mics and key): streaming, ONNX export contract, training data."""

import json
from pathlib import Path

import numpy as np
import pytest

from debleed.errors import DebleedError
from debleed.dsp.processor import ProcessSpec

SMALL = {"hop": 32, "n_filters": 64, "hidden": 24, "layers": 1, "context": 256, "cq_bins": 8}
#: The ONNX operators the real-time kernels are written from.
ALLOWED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "Log", "Relu", "Sigmoid", "GRU", "Concat",
               "Slice", "Transpose", "Unsqueeze", "Squeeze", "Reshape", "ReduceMax", "Constant", "Shape", "Gather",
               "Pow", "Clip", "Sub"}


def _signals(n, n_refs=2, seed=0):
    rng = np.random.default_rng(seed)
    env = np.exp(-np.arange(n) / 3000.0)
    x = (rng.standard_normal(n) * env * 0.3).astype(np.float32)
    refs = (rng.standard_normal((n_refs, n)) * 0.2).astype(np.float32)
    key = np.zeros(n, np.float32)
    key[rng.choice(n, 12, replace=False)] = rng.uniform(0.05, 1.0, 12)
    return x, refs, key


@pytest.fixture(scope="module", params=[(2, True), (0, True), (2, False)], ids=["refs+key", "key", "refs"])
def informed(request, torch_installed, tmp_path_factory):
    """A random informed network of the shipped informed architecture, exported."""
    torch = torch_installed
    from debleed.models.net import SnareDenoiserNet, export_onnx
    from debleed.models.train import INFORMED_MODEL

    n_refs, key = request.param
    torch.manual_seed(0)
    net = SnareDenoiserNet(**dict(INFORMED_MODEL, n_refs=n_refs, key=key)).eval()
    with torch.no_grad():  # a varying mask, and inputs that matter, so the comparison means something
        net.out.bias.normal_(0.0, 1.0)
        net.inp.weight.mul_(4.0)
        if net.key_ctx > 1:
            net.key_filt.weight.add_(torch.randn_like(net.key_filt.weight) * 0.05)
    path = tmp_path_factory.mktemp("informed") / "net.onnx"
    export_onnx(net, path, sample_rate=48000)
    return net, path


def test_export_contract_names_ops_initializers_and_metadata(informed):
    import onnx

    net, path = informed
    m = onnx.load(str(path))
    r, k = net.n_refs, net.key
    kstate = net.key_ctx > 1
    want_in = ["audio"] + ["refs"] * bool(r) + ["key"] * k + ["enc_state"] + ["ref_state"] * bool(r) + \
        ["key_state"] * kstate + ["gru_state", "ola_state"]
    assert [i.name for i in m.graph.input] == want_in
    states = [n for n in want_in if n.endswith("_state")]
    assert [o.name for o in m.graph.output] == ["denoised"] + [s + "_out" for s in states]
    assert {n.op_type for n in m.graph.node} <= ALLOWED_OPS
    gru = [n for n in m.graph.node if n.op_type == "GRU"]
    assert len(gru) == 1 and any(a.name == "linear_before_reset" and a.i == 1 for a in gru[0].attribute)
    names = {i.name for i in m.graph.initializer}
    assert {"encoder.weight", "decoder.weight", "cq.weight", "inp.bias", "out.bias"} <= names
    # the reference mics go through the mic's encoder: one Conv per mic and reference, same weight
    convs = [n for n in m.graph.node if n.op_type == "Conv" and n.input[1] == "encoder.weight"]
    assert len(convs) == 1 + r
    from debleed.models.net import onnx_weight_layout

    layout = {row[0]: row for row in onnx_weight_layout(path)}
    assert layout["inp.weight (transposed)"][2] == (net.n_features, net.hidden)
    assert layout["out.weight (transposed)"][2] == (net.hidden, net.n_filters)
    assert layout["encoder.weight"][3] == "Conv" and layout["decoder.weight"][3] == "ConvTranspose"
    meta = {p.key: p.value for p in m.metadata_props}
    cfg = json.loads(meta["config"])
    assert cfg.get("n_refs", 0) == r and cfg.get("key", False) == k
    if kstate:  # the key filter: a named Conv weight over the key's frames, and its state
        assert cfg["key_ctx"] == net.key_ctx and cfg["key_bins"] == net.key_bins
        kf = [n for n in m.graph.node if n.op_type == "Conv" and n.input[1] == "key_filt.weight"]
        assert len(kf) == 1
        shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
        assert shapes["key_state"] == [1, net.key_ctx - 1]
    assert meta["hop"] == "32" and meta["window"] == "64"


def test_export_matches_torch_in_chunks(informed, torch_installed):
    import onnxruntime as ort

    torch = torch_installed
    net, path = informed
    n = 32 * 150
    x, refs, key = _signals(n, max(net.n_refs, 1))
    refs = refs[:net.n_refs]
    with torch.no_grad():
        ref = net.run(torch.from_numpy(x[None]), torch.from_numpy(refs[None]) if net.n_refs else None,
                      torch.from_numpy(key[None]) if net.key else None)[0].numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for chunk in (32, 96, 320, n):
        state = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                 for i in sess.get_inputs() if i.name.endswith("_state")}
        outs = []
        for i in range(0, n, chunk):
            feed = {"audio": x[None, i:i + chunk], **state}
            if net.n_refs:
                feed["refs"] = refs[None, :, i:i + chunk]
            if net.key:
                feed["key"] = key[None, i:i + chunk]
            res = sess.run(None, feed)
            outs.append(res[0][0])
            state = dict(zip(state, res[1:]))
        assert np.max(np.abs(ref)) > 1e-3
        assert np.max(np.abs(np.concatenate(outs) - ref)) <= 1e-4, chunk


def test_informed_inputs_change_the_output_and_zeros_mean_not_connected(informed, torch_installed):
    torch = torch_installed
    net, _ = informed
    x, refs, key = _signals(32 * 80, 2, seed=3)
    xt = torch.from_numpy(x[None])
    with torch.no_grad():
        plain = net.run(xt)  # missing inputs read as zeros
        zeros = net.run(xt, torch.zeros(1, net.n_refs, x.size) if net.n_refs else None,
                        torch.zeros(1, x.size) if net.key else None)
        full = net.run(xt, torch.from_numpy(refs[None, :net.n_refs]) if net.n_refs else None,
                       torch.from_numpy(key[None]) if net.key else None)
    assert torch.equal(plain, zeros)
    assert (full - plain).abs().max() > 1e-4


def test_model_from_onnx_and_the_wrapper_run_an_informed_export(informed, torch_installed):
    torch = torch_installed
    from debleed.models.denoiser import Denoiser
    from debleed.models.train import model_from_onnx

    net, path = informed
    back = model_from_onnx(path)
    assert back.config() == net.config()
    for a, b in zip(net.state_dict().values(), back.state_dict().values()):
        assert torch.allclose(a, b)
    # the onnxruntime wrapper runs it mic-only (refs and key not connected), block by block
    x, _, _ = _signals(4800)
    n = x.size // 32 * 32
    with torch.no_grad():
        ref = net.run(torch.from_numpy(x[None, :n]))[0].numpy()
    d = Denoiser(path)
    d.prepare(ProcessSpec(48000, 100))
    y = np.zeros_like(x)
    for i in range(0, x.size, 100):
        d.process(x[i:i + 100], y[i:i + 100])
    got = y[31:31 + n]
    assert np.max(np.abs(got - ref[:got.size])) <= 1e-4


def test_plain_model_config_and_signature_unchanged(torch_installed):
    torch = torch_installed
    from debleed.models.net import SnareDenoiserNet

    net = SnareDenoiserNet(**SMALL)
    assert "n_refs" not in net.config() and "key" not in net.config()
    assert len(net.zero_state(1)) == 3
    y, *state = net(torch.zeros(1, 64), *net.zero_state(1))
    assert y.shape == (1, 64) and len(state) == 3
    with pytest.raises(TypeError, match="informed"):
        SnareDenoiserNet(**SMALL, key=True)(torch.zeros(1, 64), *net.zero_state(1))
    with pytest.raises(ValueError, match="n_refs"):
        SnareDenoiserNet(**SMALL, n_refs=5)


def test_key_filter_holds_an_onset_and_grows_an_old_key(torch_installed):
    """The key filter's features hold after an onset (its decaying rows), where the one-frame key
    is gone a frame later; a model whose key is one feature starts the filtered model exactly
    (same output with and without a key on the rows that the old model had)."""
    torch = torch_installed
    from debleed.models.net import KEY_DECAYS_MS, SnareDenoiserNet, key_filters
    from debleed.models.train import _with_key_filter

    w = key_filters(256, 4, 48000 / 32)[:, 0]
    assert w.shape == (4, 256) and w[0, -1] == 1 and torch.all(w[0, :-1] == 0)
    frames_10ms = int(0.010 * 48000 / 32)
    for i, tau in enumerate(KEY_DECAYS_MS, start=1):  # an onset 10 ms old weighs exp(-10 / tau)
        assert float(w[i, -1 - frames_10ms]) == pytest.approx(np.exp(-frames_10ms * 32 / 48 / tau), rel=1e-5)
    old = SnareDenoiserNet(**SMALL, n_refs=1, key=True)
    new = SnareDenoiserNet(**SMALL, n_refs=1, key=True, key_ctx=64, key_bins=4)
    with torch.no_grad():
        old.out.bias.normal_(0.0, 1.0)
        old.inp.weight.mul_(4.0)
    missing, unexpected = new.load_state_dict(_with_key_filter(old.state_dict(), new), strict=False)
    assert missing == ["key_filt.weight"] and not unexpected
    with torch.no_grad():  # the new features' columns are zeroed: the grown model is the old one
        new.inp.weight[:, -3:] = 0.0
        x, refs, key = (torch.from_numpy(a[None]) for a in _signals(32 * 60, 1, seed=5))
        assert torch.allclose(old.run(x, refs, key), new.run(x, refs, key), atol=1e-6)
    with pytest.raises(ValueError, match="key_ctx"):
        SnareDenoiserNet(**SMALL, key=True, key_ctx=0)
    # the key's mask weights start at zero: the model with them is the model without them
    masked = SnareDenoiserNet(**SMALL, n_refs=1, key=True, key_ctx=64, key_bins=4, key_mask=True)
    missing, _ = masked.load_state_dict(new.state_dict(), strict=False)
    assert missing == ["key_out.weight"]
    with torch.no_grad():
        assert torch.equal(masked.run(x, refs, key), new.run(x, refs, key))


def test_key_power_raises_the_key_values_before_the_filter(torch_installed, tmp_path):
    """``key_power`` p: the model fed a key k is the same weights at p = 1 fed k ** p (a ghost
    note's 0.04 heard as 0.2 at p = 0.5); it survives export and loading back, and a power outside
    0.1 to 1 is refused by name."""
    torch = torch_installed
    from debleed.models.net import SnareDenoiserNet, export_onnx
    from debleed.models.train import model_from_onnx

    torch.manual_seed(1)
    lifted = SnareDenoiserNet(**SMALL, n_refs=1, key=True, key_ctx=64, key_bins=4, key_mask=True, key_power=0.5)
    plain = SnareDenoiserNet(**SMALL, n_refs=1, key=True, key_ctx=64, key_bins=4, key_mask=True)
    with torch.no_grad():
        lifted.out.bias.normal_(0.0, 1.0)
        lifted.key_out.weight.normal_(0.0, 2.0)
    plain.load_state_dict(lifted.state_dict())
    assert lifted.config()["key_power"] == 0.5 and "key_power" not in plain.config()
    x, refs, key = (torch.from_numpy(a[None]) for a in _signals(32 * 80, 1, seed=3))
    with torch.no_grad():
        y = lifted.run(x, refs, key)
        assert torch.allclose(y, plain.run(x, refs, key.sqrt()), atol=1e-6)
        assert not torch.allclose(y, plain.run(x, refs, key), atol=1e-4)
    path = tmp_path / "lifted.onnx"
    export_onnx(lifted, path, sample_rate=48000)
    back = model_from_onnx(path)
    assert back.config() == lifted.config()
    with torch.no_grad():
        assert torch.allclose(back.run(x, refs, key), y, atol=1e-5)
    for bad in (0.05, 1.5):
        with pytest.raises(ValueError, match="key_power"):
            SnareDenoiserNet(**SMALL, key=True, key_power=bad)


def test_key_connected_tells_a_silent_key_from_no_key(torch_installed, tmp_path):
    """``key_connected``: grown from weights without it the model starts as the same model; with
    its weights trained, a connected key that plays nothing (its idle value on every sample)
    differs from no key, onsets still count as connected, and the feature survives export."""
    torch = torch_installed
    from debleed.models.graph import KEY_IDLE, key_graph_input
    from debleed.models.net import SnareDenoiserNet, export_onnx
    from debleed.models.train import _with_key_connected, model_from_onnx

    torch.manual_seed(2)
    kw = dict(SMALL, n_refs=1, key=True, key_ctx=64, key_bins=4, key_mask=True, key_power=0.4)
    plain = SnareDenoiserNet(**kw)
    with torch.no_grad():
        plain.out.bias.normal_(0.0, 1.0)
        plain.key_out.weight.normal_(0.0, 2.0)
    conn = SnareDenoiserNet(**kw, key_connected=True)
    assert conn.config()["key_connected"] is True and "key_connected" not in plain.config()
    assert conn.n_features == plain.n_features + 1 and conn.key_out.weight.shape == (64, 5)
    conn.load_state_dict(_with_key_connected(plain.state_dict(), conn))
    x, refs, key = _signals(32 * 80, 1, seed=4)
    cfg = conn.config()
    t = lambda a: torch.from_numpy(a[None])  # noqa: E731
    idle = key_graph_input(key, key.size, cfg)
    assert idle.min() == np.float32(KEY_IDLE) and np.array_equal(key_graph_input(key, key.size, plain.config()), key)
    assert not key_graph_input(None, 10, cfg).any()
    with torch.no_grad():
        # grown: the same model (the connected feature's weights are zero)
        assert torch.allclose(conn.run(t(x), t(refs), t(idle)), plain.run(t(x), t(refs), t(key)), atol=1e-5)
        conn.key_out.weight[:, -1] = -3.0  # trained: a connected key closes the mask
        silent = conn.run(t(x), t(refs), t(key_graph_input(np.zeros_like(key), key.size, cfg)))
        none = conn.run(t(x), t(refs), t(np.zeros_like(key)))
        assert silent.abs().sum() < 0.5 * none.abs().sum()
    path = tmp_path / "conn.onnx"
    export_onnx(conn, path, sample_rate=48000)
    back = model_from_onnx(path)
    assert back.config() == cfg
    with torch.no_grad():
        assert torch.allclose(back.run(t(x), t(refs), t(idle)), conn.run(t(x), t(refs), t(idle)), atol=1e-5)


def test_crops_give_a_kept_key_its_idle_value():
    from debleed.models.graph import KEY_IDLE
    from debleed.models.train import _crops

    n = 4000
    data = {"noisy": np.ones((3, n), np.float32), "clean": np.ones((3, n), np.float32),
            "refs": np.ones((3, 2, n), np.float32), "key": np.zeros((3, n), np.float32)}
    data["key"][:, ::500] = 0.5
    plain = _crops(data, np.random.default_rng(1), 200, 64, informed=True, drop_key=0.3)[3]
    key = _crops(data, np.random.default_rng(1), 200, 64, informed=True, drop_key=0.3, key_idle=True)[3]
    kept = key.min(axis=1) > 0
    assert 0.6 < kept.mean() < 0.8 and np.all(key[kept] >= np.float32(KEY_IDLE))
    assert not key[~kept].any() and np.array_equal(np.maximum(plain, np.float32(KEY_IDLE))[kept], key[kept])


def test_informed_model_costs_under_the_budget(torch_installed):
    from debleed.models.net import SnareDenoiserNet
    from debleed.models.train import INFORMED_MODEL

    net = SnareDenoiserNet(**INFORMED_MODEL)
    macs = net.macs_per_hop()
    assert macs["total"] <= 200_000
    assert net.window - 1 == 63  # latency: overlap-add hop plus hop buffering


def test_key_signal_timing_misses_and_false_triggers():
    from debleed.models.kit import Hit
    from debleed.models.synth import KEY_MIDI_DELAY_MS, KEY_PIEZO_DELAY_MS, key_signal

    sr = 48000
    hits = [Hit(4800 * i, "snare", 0.8) for i in range(1, 40)] + [Hit(4800 * i + 2400, "kick", 0.9) for i in range(40)]
    hits.sort(key=lambda h: h.frame)
    lo = min(KEY_MIDI_DELAY_MS[0], KEY_PIEZO_DELAY_MS[0]) * sr / 1000
    hi = (max(KEY_MIDI_DELAY_MS[1], KEY_PIEZO_DELAY_MS[1]) + 0.5) * sr / 1000 + 1
    n_snare = n_false = 0
    for seed in range(20):
        key = key_signal(hits, 4800 * 41, sr, np.random.default_rng(seed))
        on = np.flatnonzero(key)
        assert np.all((key[on] > 0) & (key[on] <= 1))
        d = on % 4800
        snare = (d >= lo) & (d <= hi)
        n_snare += snare.sum()
        n_false += ((d >= 2400 + lo) & (d <= 2400 + hi)).sum()
        assert snare.sum() + ((d >= 2400 + lo) & (d <= 2400 + hi)).sum() == on.size  # nothing else
    # 0-5 % missed, a few false triggers on loud kicks
    assert 0.93 * 39 * 20 <= n_snare <= 39 * 20
    assert 0 < n_false < 0.1 * 40 * 20


def test_informed_scene_keeps_the_snare_mic_and_renders_refs_and_key():
    from debleed.models.synth import REF_MICS, render_scene

    kw = dict(kit="sonic-pi", sample_rate=48000, seconds=1.5, seed=3)
    plain = render_scene(**kw)
    inf = render_scene(**kw, informed=True)
    assert np.array_equal(plain.noisy, inf.noisy) and np.array_equal(plain.clean, inf.clean)
    assert inf.refs.shape == (len(REF_MICS), plain.noisy.size) and inf.refs.dtype == np.float32
    assert np.all(np.abs(inf.refs).max(axis=1) > 1e-3)
    assert np.count_nonzero(inf.key) >= 0.9 * inf.hit_frames.size
    with pytest.raises(DebleedError, match="room"):
        render_scene(**kw, informed=True, room=False)


def test_informed_training_smoke_and_fine_tuning(torch_installed, tmp_path):
    from debleed.models.train import train

    kw = dict(work_dir=tmp_path / "work", batch=2, crop_s=0.2, n_scenes=2, scene_s=1.0, valid_scenes=1,
              ckpt_every=2, progress=False)
    res = train(sample_rate=48000, steps=2, out=tmp_path / "m.onnx", model_kwargs=dict(SMALL, n_refs=2, key=True), **kw)
    assert res["steps"] == 2 and np.isfinite(res["valid_loss"])
    assert sorted(np.load(next((tmp_path / "work").glob("train_48k_*.npz")))) == ["clean", "key", "noisy", "refs",
                                                                                 "sample_rate"]
    # fine-tuning at 44.1 kHz keeps the informed architecture and renders informed scenes for it
    res = train(sample_rate=44100, steps=1, out=tmp_path / "m44.onnx", init=tmp_path / "work" / "ckpt_48k.pt", **kw)
    from debleed.models.denoiser import model_info

    assert model_info(tmp_path / "m44.onnx")["config"]["n_refs"] == 2


def test_crops_drop_inputs_per_example():
    from debleed.models.train import _crops

    n, rng = 4000, np.random.default_rng(0)
    data = {"noisy": np.ones((3, n), np.float32), "clean": np.ones((3, n), np.float32),
            "refs": np.ones((3, 2, n), np.float32), "key": np.ones((3, n), np.float32)}
    x, y, refs, key = _crops(data, rng, 400, 64, informed=True, drop_key=0.3, drop_ref=0.0, drop_all_refs=0.5)
    key_on = key.max(axis=1) > 0
    refs_on = refs.max(axis=2) > 0
    assert 0.6 < key_on.mean() < 0.8
    assert np.array_equal(refs_on[:, 0], refs_on[:, 1]) and 0.4 < refs_on[:, 0].mean() < 0.6
    assert np.all(x == 1) and np.all(y == 1)


def test_train_refuses_a_drop_probability_outside_0_1(torch_installed, tmp_path):
    from debleed.models.train import train

    with pytest.raises(DebleedError, match="drop_all_refs must be a probability"):
        train(sample_rate=48000, steps=1, work_dir=tmp_path, drop_all_refs=1.5, progress=False)
    assert not list(tmp_path.iterdir())  # refused before rendering anything


def test_key_gate_opens_before_a_late_key_with_its_look_ahead():
    from debleed.models.evaluate import key_gate_signal

    sr, n = 48000, 48000
    x = np.zeros(n)
    x[10000:10480] = 1.0  # a 10 ms hit
    key = np.zeros(n, np.float32)
    key[10000 + 240] = 0.8  # the key 5 ms late
    y, lat = key_gate_signal(x, key, sr, hold_ms=20.0, release_ms=10.0, lookahead_ms=7.0)
    assert lat == 336
    assert np.allclose(y[10000 + lat:10480 + lat], 1.0)  # the whole hit passes
    assert np.max(np.abs(y[:10000 + lat])) == 0.0 and np.max(np.abs(y[20000:])) < 1e-3


def _tiny_drumgizmo_kit(folder, sr):
    """A DrumGizmo kit of three instruments (kick, snare, hi-hat), two strokes each, heard by
    three close mics and an overhead, each stroke at its own mic at full level and at the others
    20 dB down (the overhead 10 dB down)."""
    import soundfile as sf

    mics = ("Kick", "Snare", "HiHat", "OH")
    rng = np.random.default_rng(5)
    parts = []
    for inst, own, f0 in (("Kick", "Kick", 60.0), ("Snare", "Snare", 200.0), ("HiHat", "HiHat", 7000.0)):
        (folder / inst).mkdir(parents=True)
        samples = []
        for i, amp in enumerate((0.25, 1.0)):
            t = np.arange(4800) / sr
            x = amp * (np.sin(2 * np.pi * f0 * t) + 0.3 * rng.standard_normal(t.size)) * np.exp(-t / 0.05)
            data = np.stack([x * (1.0 if m == own else 0.3 if m == "OH" else 0.1) for m in mics], axis=1)
            sf.write(folder / inst / f"{i}.wav", data.astype(np.float32), sr, subtype="FLOAT")
            samples.append(f'<sample name="s{i}" power="{amp ** 2}">' + "".join(
                f'<audiofile channel="{m}" file="{i}.wav" filechannel="{c + 1}"/>' for c, m in enumerate(mics))
                + "</sample>")
        (folder / inst / "inst.xml").write_text(f'<instrument version="2.0" name="{inst}"><samples>'
                                                + "".join(samples) + "</samples></instrument>")
        parts.append(f'<instrument name="{inst}" file="{inst}/inst.xml">'
                     + "".join(f'<channelmap in="{m}" out="{m}"/>' for m in mics) + "</instrument>")
    (folder / "drumkit.xml").write_text('<drumkit name="tiny"><channels>' + "".join(
        f'<channel name="{m}"/>' for m in mics) + "</channels><instruments>" + "".join(parts)
        + "</instruments></drumkit>")


def test_eval_informed_has_both_scenarios_and_a_drumgizmo_row(tmp_path):
    from debleed.models.evaluate import evaluate_informed, informed_table
    from debleed.models.kit import kit_from_drumgizmo, kit_scene, reference_mics

    sr = 48000
    _tiny_drumgizmo_kit(tmp_path / "kit", sr)
    dg = kit_from_drumgizmo(tmp_path / "kit", sr)
    assert dg.close_mic["snare"] == "Snare" and reference_mics(dg, "Snare") == ("HiHat", "OH")
    sc = kit_scene(dg, "Snare", seconds=2.0, seed=1, augment=False, informed=True)
    assert sc.refs.shape == (2, sc.noisy.size) and np.any(sc.refs[0]) and np.any(sc.refs[1])
    assert np.count_nonzero(sc.key) >= 1  # the snare's onsets, as a trigger module sends them
    model = Path(__file__).parents[2] / "models" / "snare_denoiser_48k_informed.onnx"
    res = evaluate_informed(model_path=model, out_dir=tmp_path / "out", kits=(), scenes=1, seconds=2.0,
                            drumgizmo=tmp_path / "kit", progress=False)
    rows = res["DrumGizmo: tiny"]
    assert set(rows) == {"studio", "loud stage"}
    for scenario in rows.values():
        assert {"key gate", "model, mic only", "model, key", "model, key + refs", "model, key -> key gate",
                "model, key + refs -> key gate", "oracle mask (bound)"} <= set(scenario)
    # more bleed on the loud stage: the raw mic scores lower
    assert rows["loud stage"]["raw"]["si_sdr_db"] < rows["studio"]["raw"]["si_sdr_db"]
    table = (tmp_path / "out" / "informed.md").read_text()
    assert table == informed_table(res) and "| DrumGizmo: tiny | loud stage | model, key + refs |" in table
    assert "No DrumGizmo kit installed" not in table
