"""Gig config validation: clear errors naming file, key, value and what is allowed."""

import math
from pathlib import Path

import pytest

from debleed.errors import ConfigError
from debleed.rt.config import PRESETS, load_config, parse_config
from debleed.dsp.processor import ProcessSpec

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ISSUE_EXAMPLE = '''
[client]
name = "debleed"
[inputs]
kick = ["system:capture_1"]
snare = ["system:capture_2"]
kick_trig = ["system:capture_3"]
[midi]
connect = []
[[channel]]
name = "kick"
input = "kick"
connect = ["system:playback_1"]
mode = "gate"
key = "trigger:kick_trig"
threshold_db = -30.0
ratio = 10.0
knee_db = 6.0
range_db = -60.0
attack_ms = 1.0
hold_ms = 20.0
release_ms = 100.0
lookahead_ms = 0.0
dry_wet = 1.0
'''


def base(**channel):
    ch = {"name": "snare", "input": "snare", **channel}
    return {"inputs": {"snare": [], "snare_trig": []}, "channel": [ch]}


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_and_presets_load(path):
    if path.name == "presets.toml":
        assert set(PRESETS) == {"balanced", "aggressive", "gentle", "fast"}
        return
    cfg = load_config(path)
    chain = cfg.chain()
    chain.prepare(ProcessSpec(48000, 256, chain.n_channels))
    assert chain.n_channels == len(cfg.channel)


def test_the_documented_example_parses(tmp_path):
    f = tmp_path / "gig.toml"
    f.write_text(ISSUE_EXAMPLE)
    cfg = load_config(f)
    spec = cfg.channel_specs()[0]
    assert (spec.key, spec.key_input, spec.threshold_db, spec.hold_ms) == ("trigger", 2, -30.0, 20.0)
    assert cfg.input_names == ["kick", "snare", "kick_trig"]


def test_unknown_key_is_an_error_naming_it_and_the_allowed_keys():
    with pytest.raises(ConfigError) as e:
        parse_config(base(threshhold_db=-30.0), "gig.toml")
    msg = str(e.value)
    assert "gig.toml" in msg and "channel[0] ('snare').threshhold_db: unknown key" in msg
    assert "threshold_db" in msg.split("allowed:")[1]


def test_unknown_top_level_section_is_an_error():
    with pytest.raises(ConfigError, match="midii: unknown key"):
        parse_config({**base(), "midii": {}})


@pytest.mark.parametrize("field, value, expect", [
    ("threshold_db", 5.0, "threshold_db: must be in [-120, 0] dBFS, got 5.0"),
    ("ratio", 0.5, "ratio: must be in [1, 1e+06] or inf, got 0.5"),
    ("mode", "expander", "mode: must be one of 'gate', 'duck', 'bypass', got 'expander'"),
    ("key", "trig:x", "key: must be self | input:<name> | trigger:<name> | midi:<note>[,<note>...], got 'trig:x'"),
    ("key", "midi:38,200", "key: notes must be MIDI notes in 0-127, got 200"),
    ("lookahead_ms", 250.0, "lookahead_ms: must be in [0, 100] ms, got 250.0"),
    ("release_ms", float("nan"), "release_ms: must be a number in [0, 10000] ms, got NaN"),
    ("ratio", 2e6, "ratio: must be in [1, 1e+06] or inf, got 2000000.0"),
    ("midi_channel", True, "midi_channel: must be an integer in [0, 16], got True"),
    ("denoise_refs", ["a", "a"], "denoise_refs: must be a list of up to 4 names of [inputs] entries (no repeats)"),
    ("link", "a b/c", "link: must be 1-48 characters of letters, digits, '_', '-', '.', got 'a b/c'"),
    ("preset", "brutal", "preset: Input should be 'balanced', 'aggressive', 'gentle' or 'fast'"),
])
def test_bad_values_are_named_with_what_is_allowed(field, value, expect):
    with pytest.raises(ConfigError) as e:
        parse_config(base(**{field: value}))
    assert expect in str(e.value)


@pytest.mark.parametrize("channel, expect", [
    ({"velocity_depth": True}, "velocity_depth = true needs a midi:<note> key, this channel's key is 'self'"),
    ({"denoise_model": "m.onnx"}, "denoise_model is set but denoise is not true"),
    ({"denoise_mix": 0.5}, "denoise_mix is set but denoise is not true"),
    ({"key": "trigger:snare_trig", "key_hpf_hz": 80.0}, "key_hpf_hz filters an audio key; a trigger: key has none"),
    ({"key": "midi:38", "key_lpf_hz": 5000.0}, "key_lpf_hz filters an audio key; a midi: key has none"),
])
def test_keys_that_would_do_nothing_are_errors(channel, expect):
    with pytest.raises(ConfigError) as e:
        parse_config(base(**channel))
    assert expect in str(e.value) and "channel[0] ('snare')" in str(e.value)


def test_key_filters_at_or_above_nyquist_are_named_when_the_rate_is_known():
    from debleed.errors import ParameterError
    from debleed.offline.render import render_arrays

    cfg = parse_config(base(key_hpf_hz=30000.0, key_lpf_hz=20000.0))
    x = __import__("numpy").zeros((2, 64), "float32")
    assert render_arrays(cfg, x, 96000, 64)["outputs"].shape == (1, 64)
    with pytest.raises(ParameterError, match=r"channel 'snare': key_hpf_hz: highpass cutoff must be in "
                                             r"\(0, 24000\) Hz at 48000 Hz, got 30000\.0 \(0 turns the filter off\)"):
        render_arrays(cfg, x, 48000, 64)


def test_key_naming_an_undefined_input_lists_the_defined_ones():
    with pytest.raises(ConfigError, match=r"channel 'snare': key 'trigger:snare_trg' names no defined input "
                                          r"\(defined: snare, snare_trig\)"):
        parse_config(base(key="trigger:snare_trg"))


def test_channel_input_must_be_defined():
    with pytest.raises(ConfigError, match="input 'sn' is not a defined input"):
        parse_config({"inputs": {"snare": []}, "channel": [{"name": "s", "input": "sn"}]})


def test_duplicate_channel_names_are_refused():
    cfg = base()
    cfg["channel"].append(dict(cfg["channel"][0]))
    with pytest.raises(ConfigError, match="names must be unique"):
        parse_config(cfg)


def test_preset_applies_and_explicit_keys_override_it():
    cfg = parse_config(base(preset="aggressive", release_ms=120.0))
    spec = cfg.channel_specs()[0]
    assert (spec.threshold_db, spec.ratio, spec.attack_ms, spec.release_ms) == (-40.0, 20.0, 0.5, 120.0)
    gentle = parse_config(base(preset="gentle")).channel_specs()[0]
    assert (gentle.threshold_db, gentle.ratio, gentle.release_ms, gentle.dry_wet) == (-25.0, 4.0, 150.0, 0.7)


def test_infinite_ratio_is_allowed():
    assert math.isinf(parse_config(base(ratio=float("inf"))).channel_specs()[0].ratio)


def test_midi_key_parses_notes_and_opens_midi_port():
    cfg = parse_config(base(key="midi:38, 40"))
    assert cfg.channel_specs()[0].notes == (38, 40)
    assert cfg.uses_midi


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="nothere.toml: config file not found"):
        load_config(tmp_path / "nothere.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[inputs\nkick = [")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_missing_required_keys():
    with pytest.raises(ConfigError, match="channel: required key is missing"):
        parse_config({"inputs": {"a": []}})


@pytest.mark.parametrize("depth", [100, 5000])
def test_a_deeply_nested_array_is_a_config_error_not_a_recursion_error(tmp_path, depth):
    p = tmp_path / "deep.toml"
    p.write_text("[inputs]\nsnare = " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError, match=r"deep\.toml"):
        load_config(p)


@pytest.mark.parametrize("line", ['threshold_db = "-20"', 'hold_ms = "30"', 'midi_channel = "2"', 'bypass = "true"',
                                  "bypass = 1"])
def test_numbers_and_booleans_written_as_strings_are_refused(line):
    import tomllib

    text = f'[inputs]\nsnare = []\n[[channel]]\nname = "s"\ninput = "snare"\nkey = "midi:38"\n{line}\n'
    with pytest.raises(ConfigError, match=line.split(" = ")[0]):
        parse_config(tomllib.loads(text))


@pytest.mark.parametrize("channel, expect", [
    ({"connect": ["debleed:in_snare"]}, "connect names 'debleed:in_snare', an input of debleed itself"),
    ({"denoise": True, "denoise_refs": ["nope"]}, "denoise_refs names 'nope', which is not a defined input"),
    ({"denoise_refs": ["snare"]}, "denoise_refs is set but denoise is not true"),
])
def test_routing_that_would_loop_or_name_nothing_is_an_error(channel, expect):
    with pytest.raises(ConfigError) as e:
        parse_config(base(**channel))
    assert expect in str(e.value)


def test_pieces_table_maps_notes_to_piece_names_and_names_a_bad_entry():
    d = base()
    d["pieces"] = {"38": "snare", "47": "tom2"}
    assert parse_config(d).pieces == {38: "snare", 47: "tom2"}
    assert parse_config(base()).pieces == {}
    for bad, expect in (({"200": "x"}, "pieces: key '200' is not a MIDI note (allowed: a whole number 0-127)"),
                        ({"38": ""}, "pieces: 38 = '': a piece name is 1-48 letters"),
                        ("snare", 'pieces: must be a table of MIDI note = "piece"')):
        d["pieces"] = bad
        with pytest.raises(ConfigError) as e:
            parse_config(d)
        assert expect in str(e.value)


def test_readme_client_and_midi_rows_match_the_config_models():
    """The README's config reference states each ``[client]`` and ``[midi]`` default as the
    config model defines it (the channel rows are generated: tests of debleed.docs)."""
    import re

    from debleed.rt.config import ClientConfig, MidiConfig

    text = (CONFIGS.parent / "README.md").read_text()
    rows = dict(re.findall(r"^\| `((?:client|midi)\.\w+)` \|[^|]*\|[^|]*\| ([^|]*) \|", text, re.M))
    for section, model in (("client", ClientConfig), ("midi", MidiConfig)):
        for name, field in model.model_fields.items():
            key = f"{section}.{name}"
            assert key in rows, f"README's config reference has no row for {key}"
            default = field.default if field.default_factory is None else field.default_factory()
            assert rows[key].strip().strip("`") == str(default).replace("'", '"'), (key, rows[key], default)
