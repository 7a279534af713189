"""The non-Hydrogen kits (avldrums SF2 kits, Sonic Pi one-shots) and the SF2 reader."""

import re
import struct

import numpy as np
import pytest

from debleed.errors import DebleedError
from debleed.models import multitrack
from debleed.models.multitrack import (EXTRA_KITS, ROLES, SONIC_PI_ROLES, _read_sample, instrument_hit,
                                       load_kit, render_multitrack)
from debleed.models.sf2 import read_sf2

SF2_KITS = [k for k in EXTRA_KITS if k.startswith("avldrums:")]
# what each role's instrument must be called (SF2 instrument names carry the sample names)
ROLE_WORDS = {"kick": "kick|bass", "snare": "snare", "hihat_closed": "hat|cymbal_closed",
              "hihat_open": "hat|cymbal_open", "tom_low": "tom", "tom_mid": "tom", "tom_high": "tom",
              "crash": "crash|splash", "ride": "ride|cymbal_soft"}


@pytest.mark.parametrize("name", EXTRA_KITS)
def test_kit_has_every_role_with_sane_samples(name):
    kit = load_kit(name)
    assert set(kit.roles) == set(ROLES)
    for role, inst in kit.roles.items():
        assert re.search(ROLE_WORDS[role], inst.name, re.I), (role, inst.name)
        assert [lay[0] for lay in inst.layers] == sorted(lay[0] for lay in inst.layers)
        for lo, hi, gain, source in inst.layers:
            assert 0.0 <= lo < hi <= 1.0 and gain > 0.0
            x = _read_sample(source, 48000)
            assert x.dtype == np.float32 and x.ndim == 1 and x.size > 2400, (role, source)
            assert np.all(np.isfinite(x)) and 0.1 < np.max(np.abs(x)) < 1.5, (role, source)


@pytest.mark.parametrize("name", EXTRA_KITS)
def test_layers_cover_all_velocities(name):
    grid = np.concatenate([np.linspace(1e-4, 1.0, 2000), np.arange(1, 128) / 127.0])
    for role, inst in load_kit(name).roles.items():
        for v in grid:
            assert any(lo <= v <= hi for lo, hi, _, _ in inst.layers), (role, v, inst.layers)


@pytest.mark.parametrize("name", EXTRA_KITS)
def test_snare_layers_rise_with_velocity(name):
    layers = load_kit(name).roles["snare"].layers
    assert len(layers) >= 2
    assert all(a[1] <= b[0] + 1e-9 for a, b in zip(layers, layers[1:]))  # ascending, no overlap
    peaks = [float(np.max(np.abs(_read_sample(src, 48000)))) for *_, src in layers]
    assert peaks[0] < peaks[-1]


@pytest.mark.parametrize("name", SF2_KITS)
def test_sf2_velocity_maps_midi_velocity_to_its_zone(name):
    """Velocity v/127 plays the zone whose MIDI velocity range holds v (layers are ((lo-1)/127, hi/127))."""
    kit = load_kit(name)
    for inst in kit.roles.values():
        for v in range(1, 128):
            x = v / 127.0
            lo, hi, _, _ = next(lay for lay in inst.layers if lay[0] <= x <= lay[1])
            assert round(lo * 127) + 1 <= v <= round(hi * 127)
    assert "key 38" in kit.roles["snare"].name
    assert len(kit.roles["snare"].layers) >= 3


@pytest.mark.parametrize("name", EXTRA_KITS)
def test_render_short_multitrack(name):
    mt = render_multitrack(kit=name, seconds=2.0, sample_rate=48000)
    assert mt.kit == name and mt.license == load_kit(name).license
    for x in (mt.own["snare"], mt.mics["snare"]):
        assert x.shape == (96000,) and np.all(np.isfinite(x))
        assert np.max(np.abs(x)) > 0.25
    # the snare mic carries bleed: it differs from the snare alone
    assert np.max(np.abs(mt.mics["snare"] - mt.own["snare"])) > 1e-3


def test_instrument_hit_scales_with_velocity():
    inst = load_kit("sonic-pi").roles["snare"]
    soft, loud = instrument_hit(inst, 0.25, 48000), instrument_hit(inst, 1.0, 48000)
    assert np.max(np.abs(soft)) < np.max(np.abs(loud))


@pytest.mark.parametrize("name", SF2_KITS)
def test_sf2_license(name):
    lic = load_kit(name).license
    assert lic and not lic.lower().startswith("unknown")
    assert "CC-BY-SA" in lic  # the copyright file's sf2/* paragraph and the SF2's own ICOP


def test_sonic_pi_license_names_each_file():
    lic = load_kit("sonic-pi").license
    assert lic.startswith("CC0") and "unknown" not in lic
    for layers in SONIC_PI_ROLES.values():
        for stem, _, _ in layers:
            assert f"{stem}.flac: CC0" in lic


def test_unknown_avldrums_stem_lists_the_installed_ones():
    with pytest.raises(DebleedError) as e:
        load_kit("avldrums:No_Such_Kit")
    msg = str(e.value)
    assert "avldrums:No_Such_Kit" in msg and "No_Such_Kit.sf2" in msg
    for k in SF2_KITS:
        assert k in msg


def test_missing_packages_name_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(multitrack, "AVLDRUMS_DIRS", (tmp_path,))
    with pytest.raises(DebleedError, match="avldrums.lv2-soundfont"):
        multitrack._load_sf2_kit("avldrums:Black_Pearl_4_LV2")
    monkeypatch.setattr(multitrack, "SONIC_PI_DIR", tmp_path)
    with pytest.raises(DebleedError, match="'sonic-pi'.*sonic-pi-samples"):
        multitrack._load_sonic_pi_kit()


# --- the SF2 reader on a small file built here ---------------------------------------------

def _chunk(cid: bytes, data: bytes) -> bytes:
    return cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)


def _gens(*pairs) -> bytes:
    return b"".join(struct.pack("<HH", op, amount & 0xFFFF) for op, amount in pairs)


def _range_amount(lo: int, hi: int) -> int:
    return lo | (hi << 8)  # rangesType: low byte lo, high byte hi


def _tiny_sf2(path, mono, left, right):
    """Key 38: a global zone (attenuation 60 cB), a soft mono zone and a loud stereo-pair zone."""
    n = [len(mono), len(left), len(right)]
    starts = np.cumsum([0] + n)
    smpl = np.concatenate([mono, left, right]).astype("<i2").tobytes()
    shdr = b"".join(struct.pack("<20sIIIIIBbHH", name, int(s), int(s + k), int(s), int(s + k), 22050, 60, 0,
                                link, kind)
                    for name, s, k, link, kind in [(b"mono", starts[0], n[0], 0, 1), (b"L", starts[1], n[1], 2, 4),
                                                   (b"R", starts[2], n[2], 1, 2)])
    shdr += struct.pack("<20sIIIIIBbHH", b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    igen = [_gens((48, 60)),  # global zone: initialAttenuation 60 cB
            _gens((43, _range_amount(38, 38)), (44, _range_amount(1, 63)), (0, 10), (53, 0)),  # start offset +10 frames
            _gens((43, _range_amount(38, 38)), (44, _range_amount(64, 127)), (48, 0), (53, 1))]
    ibag = b"".join(struct.pack("<HH", sum(len(g) // 4 for g in igen[:i]), 0) for i in range(4))
    pgen = _gens((48, 20), (41, 0))  # preset attenuation adds 20 cB
    pdta = b"".join([
        _chunk(b"phdr", struct.pack("<20sHHHIII", b"Drums", 0, 128, 0, 0, 0, 0)
               + struct.pack("<20sHHHIII", b"EOP", 0, 0, 1, 0, 0, 0)),
        _chunk(b"pbag", struct.pack("<HH", 0, 0) + struct.pack("<HH", 2, 0)),
        _chunk(b"pmod", b"\0" * 10), _chunk(b"pgen", pgen + _gens((0, 0))),
        _chunk(b"inst", struct.pack("<20sH", b"Snare", 0) + struct.pack("<20sH", b"EOI", 3)),
        _chunk(b"ibag", ibag), _chunk(b"imod", b"\0" * 10), _chunk(b"igen", b"".join(igen) + _gens((0, 0))),
        _chunk(b"shdr", shdr)])
    info = _chunk(b"ifil", struct.pack("<HH", 2, 1)) + _chunk(b"INAM", b"tiny\0") + _chunk(b"ICOP", b"CC0\0\0")
    body = b"sfbk" + _chunk(b"LIST", b"INFO" + info) + _chunk(b"LIST", b"sdta" + _chunk(b"smpl", smpl)) \
        + _chunk(b"LIST", b"pdta" + pdta)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_sf2_reader_zones_attenuation_offsets_and_stereo(tmp_path):
    rng = np.random.default_rng(0)
    mono, left, right = (rng.integers(-20000, 20000, k) for k in (300, 200, 220))
    p = tmp_path / "tiny.sf2"
    _tiny_sf2(p, mono, left, right)
    sfont = read_sf2(p)
    assert sfont.info["INAM"] == "tiny" and sfont.info["ICOP"] == "CC0" and sfont.version == (2, 1)
    (preset,) = sfont.presets
    assert (preset.name, preset.bank, preset.program) == ("Drums", 128, 0)
    assert preset.zones_for_key(37) == []
    soft, loud = preset.zones_for_key(38)
    assert soft.vel_range == (1, 63) and loud.vel_range == (64, 127)
    assert soft.attenuation_cb == 80.0 and loud.attenuation_cb == 20.0  # global 60 / local 0, + preset 20
    assert (soft.start, soft.end) == (10, 300)
    x = sfont.source(soft).read()
    np.testing.assert_array_equal(x, mono[10:].astype(np.float32) / 32768)
    src = sfont.source(loud)
    assert src.sample_rate == 22050 and len(src.spans) == 2
    np.testing.assert_allclose(src.read(), (left + right[:200]).astype(np.float32) / 65536, atol=1e-7)


def test_sf2_reader_rejects_other_files(tmp_path):
    p = tmp_path / "x.sf2"
    p.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(DebleedError, match="not a SoundFont 2"):
        read_sf2(p)


MILLO_KITS = ("Millo-Drums_v.1", "Millo_MultiLayered2", "Millo_MultiLayered3")


@pytest.mark.parametrize("name", MILLO_KITS)
def test_millo_kits_take_their_license_from_debian_and_play_a_snare(name):
    kit = load_kit(name)
    # drumkit.xml has no <license>: the hydrogen-drumkits copyright paragraph gives it
    assert kit.license.startswith("GPL-2") and "Emillo" in kit.license
    assert {"kick", "snare", "hihat_closed", "tom_low", "crash", "ride"} <= set(kit.roles)
    assert re.search("snare", kit.roles["snare"].name, re.I)
    assert not re.search("roll|stick", kit.roles["snare"].name, re.I)


def test_role_override_picks_the_main_snare_not_the_roll():
    # the name patterns skip "Snare Rock" (other kits use "rock" for alternates); the override takes it
    assert load_kit("Millo_MultiLayered3").roles["snare"].name == "Snare Rock"


def test_tuning_resamples_the_one_shot():
    inst = load_kit("ForzeeStereo").roles["snare"]
    base = instrument_hit(inst, 0.8, 48000)
    up = instrument_hit(inst, 0.8, 48000, semitones=12.0)
    down = instrument_hit(inst, 0.8, 48000, semitones=-12.0)
    assert abs(up.size - base.size / 2) <= 64 and abs(down.size - 2 * base.size) <= 64

    def centroid(x):
        mag = np.abs(np.fft.rfft(x[:4096], 8192))
        return float(np.sum(mag * np.arange(mag.size)) / np.sum(mag))

    assert centroid(down) < centroid(base) < centroid(up)
    # the cached sample itself is never changed
    assert np.array_equal(instrument_hit(inst, 0.8, 48000), base)


def test_render_multitrack_tuning_only_touches_its_piece():
    kw = dict(kit="ForzeeStereo", seconds=2.0, sample_rate=48000, seed=3)
    plain, tuned = render_multitrack(**kw), render_multitrack(**kw, tuning={"snare": 3.0})
    assert np.array_equal(plain.own["kick"], tuned.own["kick"])
    assert not np.allclose(plain.own["snare"], tuned.own["snare"])
