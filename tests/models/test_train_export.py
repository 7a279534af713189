"""Training smoke test and ONNX export parity (install the CPU torch when missing)."""

import numpy as np
import pytest

from debleed.errors import DebleedError
from debleed.models.denoiser import Denoiser
from debleed.dsp.processor import ProcessSpec

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module", params=[1, 8], ids=["taps1", "taps8"])
def exported(request, torch_installed, tmp_path_factory):
    """A randomly initialised network of the shipped architecture (with and without the
    multi-frame filter), exported to ONNX."""
    torch = torch_installed
    from debleed.models.net import SnareDenoiserNet, export_onnx
    from debleed.models.train import DEFAULT_MODEL

    torch.manual_seed(0)
    net = SnareDenoiserNet(**DEFAULT_MODEL, taps=request.param).eval()
    with torch.no_grad():  # make the mask (and the filter taps) vary so the comparison means something
        net.out.bias.normal_(0.0, 1.0)
        if request.param > 1:
            net.taps_out.weight.normal_(0.0, 0.02)
            net.taps_out.bias.normal_(0.0, 0.2)
    path = tmp_path_factory.mktemp("export") / "net.onnx"
    export_onnx(net, path, sample_rate=48000)
    return net, path


@pytest.mark.parametrize("block", [1, 64, 100, 128, 512])
def test_onnx_streaming_matches_torch_full_sequence(exported, block, torch_installed):
    torch = torch_installed
    net, path = exported
    rng = np.random.default_rng(block)
    x = (rng.standard_normal(48000 // 4) * np.exp(-np.arange(48000 // 4) / 3000.0) * 0.3).astype(np.float32)
    n = x.size // net.hop * net.hop
    with torch.no_grad():
        ref = net.run(torch.from_numpy(x[None, :n]))[0].numpy()
    d = Denoiser(path)
    d.prepare(ProcessSpec(48000, block))
    y = np.zeros(x.size, np.float32)
    for i in range(0, x.size, block):
        d.process(x[i:i + block], y[i:i + block])
    # the wrapper adds hop - 1 samples of buffering on top of the network's own hop delay
    got = y[net.hop - 1:net.hop - 1 + n]
    m = got.size
    assert np.max(np.abs(ref[:m])) > 1e-3
    assert np.max(np.abs(got - ref[:m])) <= 1e-4



def test_an_export_loads_into_the_data_plane_kernels_and_matches_onnxruntime(exported):
    """What make train and the soundcheck's adaptation write must run live: the kernels read its
    weights by name (no exporter prefix left) and give what onnxruntime gives."""
    import onnx

    from debleed.models.streaming import StreamingDenoiser

    net, path = exported
    assert not [i.name for i in onnx.load(str(path)).graph.initializer if i.name.startswith("net.")]
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(9600) * np.exp(-np.arange(9600) / 2000.0) * 0.3).astype(np.float32)
    outs = []
    for den in (StreamingDenoiser(path), Denoiser(path)):
        den.prepare(ProcessSpec(48000, 128))
        y = np.zeros_like(x)
        for i in range(0, x.size, 128):
            den.process(x[i:i + 128], y[i:i + 128])
        outs.append(y)
    assert np.max(np.abs(outs[1])) > 1e-3 and np.max(np.abs(outs[0] - outs[1])) <= 1e-4

def test_training_smoke_resume_and_export(torch_installed, tmp_path):
    from debleed.models.train import train

    kw = dict(sample_rate=44100, work_dir=tmp_path / "work", out=tmp_path / "m.onnx", batch=2,
              crop_s=0.2, n_scenes=2, scene_s=1.5, valid_scenes=1, ckpt_every=2, progress=False,
              model_kwargs={"hop": 32, "n_filters": 32, "hidden": 16, "layers": 1})
    res = train(steps=3, **kw)
    assert res["steps"] == 3 and np.isfinite(res["valid_loss"])
    assert (tmp_path / "work" / "ckpt_44k1.pt").is_file()
    ck = torch_installed.load(tmp_path / "work" / "ckpt_44k1.pt", weights_only=False)
    assert ck["step"] == 3
    with open(tmp_path / "resume.jsonl", "w") as log:
        res = train(steps=5, log=log, **kw)  # resumes at step 3: logs steps 4 and 5 only
    assert res["steps"] == 5
    import json

    rows = [json.loads(line) for line in (tmp_path / "resume.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 5]
    # a checkpoint from another scene recipe is not silently resumed, and is kept
    import debleed.models.train as train_mod

    before = (tmp_path / "work" / "ckpt_44k1.pt").read_bytes()
    real = train_mod.recipe_tag
    try:
        train_mod.recipe_tag = lambda: "otherrec"
        with pytest.raises(DebleedError, match=r"ckpt_44k1\.pt.*recipe"):
            train(steps=6, **kw)
    finally:
        train_mod.recipe_tag = real
    assert (tmp_path / "work" / "ckpt_44k1.pt").read_bytes() == before
    d = Denoiser(tmp_path / "m.onnx")
    d.prepare(ProcessSpec(44100, 128))
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    y = np.empty_like(x)
    d.process(x[:128], y[:128])
    assert np.all(np.isfinite(y[:128]))


def test_constant_q_context_is_causal_and_tuned(torch_installed):
    """Each context filter sits on its centre frequency and only reads the newest samples."""
    import math

    from debleed.models.net import constant_q_kernels

    rate, context, bins = 48000, 1024, 32
    ker = constant_q_kernels(context, bins, rate).double().numpy()
    assert ker.shape == (2 * bins, context)
    f_hi = min(16000.0, 0.45 * rate)
    freqs = [40.0 * (f_hi / 40.0) ** (k / (bins - 1)) for k in range(bins)]
    t = np.arange(context) / rate
    for k in (0, bins // 2, bins - 1):
        power = []
        for f in freqs:
            x = np.cos(2 * math.pi * f * t + 0.3)
            power.append(np.dot(ker[k], x) ** 2 + np.dot(ker[bins + k], x) ** 2)
        assert int(np.argmax(power)) == k
        # high bins use short windows at the end of the span: the oldest samples are unused
        length = int(min(context, max(8, round(8.0 * rate / freqs[k]))))
        assert np.all(ker[k, :context - length] == 0.0) and np.any(ker[k, context - length:] != 0.0)


def test_frame_level_loss_weighs_ghost_notes_like_accents(torch_installed):
    """Halving a ghost note 30 dB under an accent costs what halving the accent costs."""
    torch = torch_installed
    from debleed.models.train import frame_level_loss

    rng = np.random.default_rng(0)
    n = 4096
    burst = rng.standard_normal(1024)  # unit power: the -50 dB floor stays far below both hits
    ref = np.zeros(n)
    ref[512:1536] = burst                      # accent
    ref[2560:3584] = 10 ** (-30 / 20) * burst  # ghost note, -30 dB
    quiet_accent, quiet_ghost = ref.copy(), ref.copy()
    quiet_accent[512:1536] *= 0.5
    quiet_ghost[2560:3584] *= 0.5
    t = lambda a: torch.tensor(a[None], dtype=torch.float32)  # noqa: E731
    la = float(frame_level_loss(t(quiet_accent), t(ref)))
    lg = float(frame_level_loss(t(quiet_ghost), t(ref)))
    assert la > 0.0 and abs(la - lg) < 0.05 * la
    # residual bleed between hits keeps costing until it is far down
    for level_db in (-10, -20, -30):
        bleed = ref + 10 ** (level_db / 20) * rng.standard_normal(n) * 0.1
        more = ref + 10 ** ((level_db + 10) / 20) * rng.standard_normal(n) * 0.1
        assert float(frame_level_loss(t(more), t(ref))) > float(frame_level_loss(t(bleed), t(ref)))


def test_snare_level_loss_counts_only_where_the_snare_sounds(torch_installed):
    """Losing a ghost note costs as much as losing an accent, however long the silence around
    them; output between hits (no snare) costs nothing in this term."""
    torch = torch_installed
    from debleed.models.train import snare_level_loss

    rng = np.random.default_rng(1)
    burst = rng.standard_normal(1024)
    t = lambda a: torch.tensor(a[None], dtype=torch.float32)  # noqa: E731
    for n in (4096, 16384):  # more silence: the same loss
        ref = np.zeros(n)
        ref[512:1536] = burst
        ref[2560:3584] = 10 ** (-30 / 20) * burst
        no_ghost, no_accent, bleed = ref.copy(), ref.copy(), ref.copy()
        no_ghost[2560:3584] *= 0.1
        no_accent[512:1536] *= 0.1
        bleed[3840:] += 0.3 * rng.standard_normal(n - 3840)
        lg, la = float(snare_level_loss(t(no_ghost), t(ref))), float(snare_level_loss(t(no_accent), t(ref)))
        assert lg > 0.2 and abs(lg - la) < 0.05 * la
        assert float(snare_level_loss(t(bleed), t(ref))) < 0.05 * lg  # only the frames overlapping the hits
        assert float(snare_level_loss(t(ref), t(ref))) == 0.0
        # a ghost note lost (10 x under) against the same ghost with bleed over it (10 x over):
        # symmetric by default, the loss counts deficit_weight times with it
        over = ref.copy()
        over[2560:3584] *= 10.0
        lo, lg1 = float(snare_level_loss(t(over), t(ref))), float(snare_level_loss(t(no_ghost), t(ref)))
        assert lo == pytest.approx(lg1, rel=0.05)
        lg4 = float(snare_level_loss(t(no_ghost), t(ref), deficit_weight=4.0))
        assert lg4 == pytest.approx(4.0 * lg1, rel=1e-5)
        assert float(snare_level_loss(t(over), t(ref), deficit_weight=4.0)) == pytest.approx(lo, rel=1e-5)


def test_crops_key_lead_and_loud_share():
    """The key crop starts key_lead samples after the audio's; loud examples get their bleed
    raised to LOUD_LEVEL_DB (never lowered), the clean snare untouched."""
    from debleed.models.train import LOUD_LEVEL_DB, _crops

    rng = np.random.default_rng(0)
    n, length, lead = 9600, 2000, 336
    clean = rng.standard_normal((4, n)).astype(np.float32)
    bleed = rng.standard_normal((4, n)).astype(np.float32) * np.array([[0.01], [0.1], [1.0], [3.0]], np.float32)
    key = np.zeros((4, n), np.float32)
    key[:, ::500] = 0.5
    data = {"noisy": clean + bleed, "clean": clean, "refs": np.zeros((4, 2, n), np.float32), "key": key}
    levels = 10 * np.log10((bleed ** 2).sum(1) / (clean ** 2).sum(1))
    x, y, refs, k = _crops(data, np.random.default_rng(5), 64, length, informed=True, key_lead=lead)
    r = np.random.default_rng(5)
    idx, start = r.integers(0, 4, 64), r.integers(0, n - length, 64)
    for b in range(64):
        np.testing.assert_array_equal(x[b], data["noisy"][idx[b], start[b]:start[b] + length])
        want = key[idx[b], start[b] + lead:start[b] + lead + length]
        np.testing.assert_array_equal(k[b, :want.size], want)
    x2, y2, *_ = _crops(data, np.random.default_rng(5), 64, length, informed=True, key_lead=lead, loud_share=1.0,
                        levels=levels)
    np.testing.assert_array_equal(y2, y)
    got = 10 * np.log10(((x2 - y2) ** 2).sum(1) / (y2 ** 2).sum(1))
    base = levels[idx]
    assert np.all(got >= base - 0.5)  # never lowered (crop levels scatter about the scene's)
    assert np.all(got <= np.maximum(base, LOUD_LEVEL_DB[1]) + 0.5)
    assert np.all(got[base < LOUD_LEVEL_DB[0] - 1] >= LOUD_LEVEL_DB[0] - 0.5)


def test_bleed_loss_measures_the_output_where_only_bleed_sounds(torch_installed):
    """The bleed loss is the metric's bleed reduction as a loss: 0 once the output is 40 dB under
    the mic where only bleed sounds, 1 per 10 dB above that, blind to what happens under hits."""
    torch = torch_installed
    from debleed.models.train import bleed_loss

    rng = np.random.default_rng(1)
    n = 8192
    snare = np.zeros(n)
    snare[1024:3072] = rng.standard_normal(2048)        # a hit; silence elsewhere
    bleed = 0.1 * rng.standard_normal(n)                 # -20 dB everywhere
    mic = snare + bleed
    t = lambda a: torch.tensor(np.asarray(a)[None], dtype=torch.float32)  # noqa: E731
    passed = float(bleed_loss(t(mic), t(snare), t(mic)))
    assert passed == pytest.approx(4.0, abs=0.01)        # output = mic: 0 dB, 40 dB short
    for reduction_db in (10.0, 20.0, 30.0):
        out = snare + 10 ** (-reduction_db / 20) * bleed
        assert float(bleed_loss(t(out), t(snare), t(mic))) == pytest.approx(4.0 - reduction_db / 10, abs=0.05)
    assert float(bleed_loss(t(snare), t(snare), t(mic))) == 0.0   # perfect output
    # what the output does under the hit does not count (that is the other losses' job)
    louder_hit = snare * 2.0 + 1e-3 * bleed
    assert float(bleed_loss(t(louder_hit), t(snare), t(mic))) == 0.0
    # an item with no bleed-only frame adds nothing (and no NaN)
    assert float(bleed_loss(t(snare), t(snare), t(snare))) == 0.0
    # against the item's mic power ("rms"): bleed 40 dB under the hits costs nothing once it is
    # 50 dB under the item's power, while loud bleed keeps costing
    quiet_mic = snare + 0.1 * bleed                      # bleed -40 dB
    p_mic = float(np.mean(quiet_mic ** 2))
    expect = (10 * np.log10(float(np.mean(bleed[4096:] ** 2)) * 0.01 / p_mic) + 50.0) / 10.0
    got = float(bleed_loss(t(quiet_mic), t(snare), t(quiet_mic), reference="rms", target_db=-50.0))
    assert got == pytest.approx(expect, abs=0.05) and 0.0 < got < 2.0
    reduced = snare + 0.1 * 10 ** (-20 / 20) * bleed
    assert float(bleed_loss(t(reduced), t(snare), t(quiet_mic), reference="rms", target_db=-50.0)) == 0.0
    assert float(bleed_loss(t(mic), t(snare), t(mic), reference="rms", target_db=-50.0)) > got + 1.0
    with pytest.raises(DebleedError, match="reference"):
        bleed_loss(t(mic), t(snare), t(mic), reference="peak")
    # the gradient points towards less output where only bleed sounds
    out = t(mic).requires_grad_(True)
    bleed_loss(out, t(snare), t(mic)).backward()
    g = out.grad[0].numpy()
    assert np.all(np.isfinite(g)) and np.dot(g[4096:], mic[4096:]) > 0.0


def test_loss_weights_move_the_total_by_their_terms(torch_installed):
    """``sisdr_weight`` and ``bleed_weight`` change the total by exactly weight x term."""
    torch = torch_installed
    from debleed.models.train import Loss

    rng = np.random.default_rng(3)
    ref = np.zeros((2, 8192))
    ref[:, 1024:3072] = rng.standard_normal((2, 2048))
    mix = ref + 0.1 * rng.standard_normal((2, 8192))
    est = ref + 0.03 * rng.standard_normal((2, 8192))
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    base, parts = Loss()(t(est), t(ref), t(mix))
    assert parts["bleed"] == 0.0 and parts["sisdr"] > 10.0
    heavy, p2 = Loss(sisdr_weight=0.5)(t(est), t(ref), t(mix))
    assert float(heavy) == pytest.approx(float(base) - 0.45 * parts["sisdr"], rel=1e-4, abs=1e-4)
    with_bleed, p3 = Loss(bleed_weight=2.0)(t(est), t(ref), t(mix))
    assert p3["bleed"] > 0.0
    assert float(with_bleed) == pytest.approx(float(base) + 2.0 * p3["bleed"], rel=1e-4, abs=1e-4)


def test_training_with_bleed_weight_uses_its_own_checkpoint(torch_installed, tmp_path):
    """A fine-tuning stage (bleed weight, own checkpoint name) starts from --init, leaves the
    base checkpoint alone and logs the bleed loss."""
    import json

    from debleed.models.train import train

    kw = dict(sample_rate=44100, work_dir=tmp_path / "work", batch=2, crop_s=0.2, n_scenes=2, scene_s=1.5,
              valid_scenes=1, ckpt_every=1, progress=False,
              model_kwargs={"hop": 32, "n_filters": 32, "hidden": 16, "layers": 1})
    train(steps=2, out=tmp_path / "base.onnx", **kw)
    base = tmp_path / "work" / "ckpt_44k1.pt"
    # a start point far from any fresh model: the mask bias moved from 2.0 to -1.0
    st = torch_installed.load(base, weights_only=False)
    st["model"]["out.bias"] = st["model"]["out.bias"] - 3.0
    start = tmp_path / "start.pt"
    torch_installed.save(st, start)
    before = start.read_bytes()
    with open(tmp_path / "log.jsonl", "w") as log:
        res = train(steps=2, out=tmp_path / "ft.onnx", init=start, ckpt_name="ckpt_44k1_ft.pt", log=log,
                    loss_kwargs={"bleed_weight": 1.0}, **{k: v for k, v in kw.items() if k != "model_kwargs"})
    assert res["checkpoint"].endswith("ckpt_44k1_ft.pt") and (tmp_path / "work" / "ckpt_44k1_ft.pt").is_file()
    assert start.read_bytes() == before
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(r["bleed"]) and r["bleed"] >= 0.0 for r in rows)
    # the fine-tuned weights started from the given checkpoint, not from scratch (bias 2.0)
    ft = torch_installed.load(tmp_path / "work" / "ckpt_44k1_ft.pt", weights_only=False)
    assert ft["config"] == st["config"]
    moved = (ft["model"]["out.bias"] - st["model"]["out.bias"]).abs().max().item()
    assert moved < 0.05


def test_train_refuses_bad_settings_before_rendering(torch_installed, tmp_path):
    from debleed.models.train import train

    kw = dict(sample_rate=44100, work_dir=tmp_path / "work", out=tmp_path / "m.onnx", progress=False)
    for bad, match in (({"steps": 0}, "steps must be an integer >= 1, got 0"),
                       ({"steps": -3, "init": tmp_path / "x.pt"}, "steps must be an integer >= 0"),
                       ({"ckpt_every": 0}, "ckpt_every must be an integer >= 1, got 0"),
                       ({"batch": 2.5}, "batch must be an integer >= 1, got 2.5"),
                       ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
                       ({"crop_s": 7.0}, r"crop_s 7.0 s is longer than a scene"),
                       ({"init": tmp_path / "missing.pt"}, r"--init checkpoint .*missing\.pt does not exist")):
        args = {"steps": 2, **bad}
        with pytest.raises(DebleedError, match=match):
            train(**kw, **args)
    assert not (tmp_path / "work").exists() and not (tmp_path / "m.onnx").exists()


def test_held_out_kits_cannot_enter_training_scenes(tmp_path):
    from debleed.errors import DebleedError
    from debleed.models.synth import build_cache

    with pytest.raises(DebleedError, match="held out"):
        build_cache(tmp_path / "x.npz", kits=("ForzeeStereo", "avldrums:Red_Zeppelin_4_LV2"),
                    sample_rate=48000, n_scenes=2, seconds=1.0, seed=0, progress=False)
    assert not (tmp_path / "x.npz").exists()


def test_multi_frame_filter_streams_and_starts_as_the_one_tap_model(torch_installed):
    """Taps reach into past frames without latency: streaming equals one-shot, the zero-initialised
    head leaves a one-tap model's output unchanged, and a span past the context is refused."""
    torch = torch_installed
    from debleed.models.net import SnareDenoiserNet

    kw = {"hop": 32, "n_filters": 64, "hidden": 24, "layers": 1, "context": 256, "cq_bins": 8}
    torch.manual_seed(1)
    one = SnareDenoiserNet(**kw).eval()
    many = SnareDenoiserNet(**kw, taps=7).eval()
    missing = many.load_state_dict(one.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["taps_out.bias", "taps_out.weight"]
    x = torch.randn(2, 32 * 60)
    with torch.no_grad():
        assert torch.equal(one.run(x), many.run(x))
        many.taps_out.weight.normal_(0.0, 0.1)
        many.taps_out.bias.normal_(0.0, 0.3)
        full = many.run(x)
        assert (full - one.run(x)).abs().max() > 1e-2
        # the taps read frames from before each chunk (out of enc_state): streaming in uneven
        # chunks, some shorter than the taps' reach, gives the one-shot output
        state, outs, i = many.zero_state(2), [], 0
        for c in (32, 96, 320, 64, 1408):
            y, *state = many(x[:, i:i + c], *state)
            outs.append(y)
            i += c
        assert torch.allclose(torch.cat(outs, -1), full, atol=1e-5)
    with pytest.raises(ValueError, match="taps"):
        SnareDenoiserNet(**kw, taps=8)  # 64 + 7 * 32 > 256
    with pytest.raises(ValueError, match="taps"):
        SnareDenoiserNet(**kw, taps=0)


def test_fine_tuning_with_taps_starts_from_the_checkpoint_output(torch_installed, tmp_path):
    from debleed.models.train import train

    kw = dict(sample_rate=44100, work_dir=tmp_path / "work", batch=2, crop_s=0.2, n_scenes=2, scene_s=1.5,
              valid_scenes=1, ckpt_every=1, progress=False)
    train(steps=2, out=tmp_path / "base.onnx", model_kwargs={"hop": 32, "n_filters": 32, "hidden": 16, "layers": 1,
                                                               "context": 256, "cq_bins": 8}, **kw)
    base = tmp_path / "work" / "ckpt_44k1.pt"
    res = train(steps=0, out=tmp_path / "ft.onnx", init=base, ckpt_name="ft.pt", taps=4, **kw)
    assert res["steps"] == 0
    # resuming a checkpoint with another filter length is refused and keeps the checkpoint
    train(steps=1, out=tmp_path / "ft1.onnx", init=base, ckpt_name="ft1.pt", taps=4, **kw)
    before = (tmp_path / "work" / "ft1.pt").read_bytes()
    with pytest.raises(DebleedError, match=r"ft1\.pt.*taps"):
        train(steps=2, out=tmp_path / "ft1.onnx", init=base, ckpt_name="ft1.pt", taps=2, **kw)
    assert (tmp_path / "work" / "ft1.pt").read_bytes() == before
    x = np.random.default_rng(0).standard_normal(4410).astype(np.float32) * 0.3
    outs = []
    for name in ("base.onnx", "ft.onnx"):
        d = Denoiser(tmp_path / name)
        d.prepare(ProcessSpec(44100, 441))
        y = np.zeros_like(x)
        for i in range(0, x.size, 441):
            d.process(x[i:i + 441], y[i:i + 441])
        outs.append(y)
    assert np.max(np.abs(outs[0])) > 1e-3
    assert np.max(np.abs(outs[0] - outs[1])) <= 1e-6
    from debleed.models.denoiser import model_info

    assert model_info(tmp_path / "ft.onnx")["config"]["taps"] == 4
    # a checkpoint that does not fit (other widths) is refused by name, not half-loaded
    with pytest.raises(DebleedError, match="does not fit"):
        train(steps=0, out=tmp_path / "x.onnx", init=base, ckpt_name="x.pt",
              model_kwargs={"hop": 32, "n_filters": 32, "hidden": 8, "layers": 1}, **kw)
