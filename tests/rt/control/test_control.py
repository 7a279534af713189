"""The live control plane without JACK: changes, errors, steps, the log, save, replay, meters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from debleed.dsp.chain import K_DONE_FRAME, K_FRAMES
from debleed.errors import ConfigError, DebleedError, EngineError, ParameterError
from debleed.rt.config import load_config
from debleed.rt.control import LiveControl, load_changes
from debleed.offline.render import render_arrays
from debleed.dsp.processor import ProcessSpec
from tests.rt._blockengine import BlockEngine, running_control

GIG = """\
# Soundcheck gig: the snare is gated by its own mic.
[client]
name = "dbctl"

[inputs]
snare = []          # close mic
kick = []

[[channel]]
name = "snare"
input = "snare"
threshold_db = -30.0   # tuned by ear
hold_ms = 40.0

# the kick ducks under the snare
[[channel]]
name = "kick"
input = "kick"
mode = "duck"
key = "input:snare"
preset = "balanced"
"""


@pytest.fixture
def gig(tmp_path):
    path = tmp_path / "gig.toml"
    path.write_text(GIG)
    return path


@pytest.fixture
def running(gig):
    with running_control(gig) as ctl:
        yield ctl


def test_a_change_takes_effect_at_a_block_boundary_and_is_logged(running):
    e = running.set("snare", "threshold_db", -24.0)
    assert e["channel"] == "snare" and e["param"] == "threshold_db" and e["value"] == -24.0
    assert e["frame"] % running.engine.period_frames == 0
    assert e["frame"] == running.chain.ctl[K_DONE_FRAME]
    assert running.get("snare", "threshold_db") == -24.0
    assert running.chain.ptab[0, 0] == -24.0  # P_THR of the bank the audio side reads
    e2 = running.set("kick", "range_db", -12.0)
    assert e2["frame"] >= e["frame"]
    assert [c["param"] for c in running.changes] == ["threshold_db", "range_db"]


@pytest.mark.parametrize("channel, name, value, expect", [
    ("snare", "threshold_db", 5.0, "threshold_db must be in [-120, 0] dBFS, got 5.0"),
    ("snare", "threshold_db", float("nan"), "threshold_db must be a number in [-120, 0] dBFS, got NaN"),
    ("snare", "attack_ms", "fast", "attack_ms must be a number in [0, 1000] ms, got 'fast'"),
    ("snare", "mode", "expander", "mode must be one of 'gate', 'duck', 'bypass', got 'expander'"),
    ("snare", "bypass", "yes", "bypass must be true or false, got 'yes'"),
    ("snare", "tresh_db", -3.0, "unknown parameter 'tresh_db'"),
    ("tom", "threshold_db", -3.0, "unknown channel 'tom' (channels: snare, kick)"),
    ("snare", "lookahead_ms", 2.0, "lookahead_ms cannot change while running: it changes the channel's latency"),
    ("snare", "key", "midi:38", "key 'midi:38' needs the MIDI port, which opens at start only"),
    ("snare", "velocity_depth", True, "channel 'snare': velocity_depth = true needs a midi:<note> key"),
    ("snare", "key", "input:tom", "key 'input:tom' names no defined input (defined: snare, kick)"),
    ("snare", "key", "trig:kick", "key must be self | input:<name> | trigger:<name>"),
    ("snare", "denoise_mix", 0.5, "channel 'snare' has no denoiser"),
])
def test_bad_changes_change_nothing_and_say_what_is_allowed(running, channel, name, value, expect):
    before = (running.chain.itabs.copy(), running.chain.ptabs.copy(), int(running.chain.ctl[2]))
    with pytest.raises(ParameterError) as e:
        running.set(channel, name, value)
    assert expect in str(e.value)
    assert np.array_equal(before[0], running.chain.itabs) and np.array_equal(before[1], running.chain.ptabs)
    assert int(running.chain.ctl[2]) == before[2]  # nothing published
    assert running.changes == []


def test_key_routing_changes_live_and_is_saved(running, gig):
    from debleed.dsp.chain import I_KEYIDX, I_KEYKIND, KEY_INPUT, KEY_TRIGGER

    running.set("snare", "key", "input:kick")
    assert running.get("snare", "key") == "input:kick"
    assert running.chain.itab[0, I_KEYKIND] == KEY_INPUT and running.chain.itab[0, I_KEYIDX] == 1
    running.set("kick", "key", " trigger:snare ")
    assert running.chain.itab[1, I_KEYKIND] == KEY_TRIGGER and running.chain.itab[1, I_KEYIDX] == 0
    running.save()
    cfg = load_config(gig)
    assert cfg.channel[0].key == "input:kick" and cfg.channel[1].key == "trigger:snare"


def test_steps_follow_the_table(running):
    running.step("snare", "threshold_db", +1)
    assert running.get("snare", "threshold_db") == -29.0
    running.step("snare", "attack_ms", +1)
    assert running.get("snare", "attack_ms") == pytest.approx(1.25)
    running.set("snare", "ratio", math.inf)
    running.step("snare", "ratio", -1)
    assert running.get("snare", "ratio") == 100.0
    running.step("snare", "mode", +1)
    assert running.get("snare", "mode") == "duck"
    running.set("snare", "threshold_db", 0.0)
    running.step("snare", "threshold_db", +1)
    assert running.get("snare", "threshold_db") == 0.0  # clamped to the range


def test_save_writes_only_the_changes_and_keeps_comments_and_layout(running, gig):
    running.set("snare", "threshold_db", -22.5)
    running.set("kick", "mode", "bypass")
    running.set("kick", "ratio", math.inf)
    running.save()
    text = gig.read_text()
    assert "# Soundcheck gig: the snare is gated by its own mic." in text
    assert "threshold_db = -22.5   # tuned by ear" in text
    assert "# the kick ducks under the snare" in text and 'preset = "balanced"' in text
    assert text.count("threshold_db") == 1  # the kick's preset threshold is not written out
    cfg = load_config(gig)
    assert cfg.channel[0].threshold_db == -22.5 and cfg.channel[0].hold_ms == 40.0
    assert cfg.channel[1].mode == "bypass" and math.isinf(cfg.channel[1].ratio)
    assert not list(gig.parent.glob(".*tmp*"))


def test_save_refuses_a_file_that_lost_the_channel(running, gig):
    running.set("kick", "threshold_db", -20.0)
    gig.write_text(GIG.replace('name = "kick"', 'name = "kick2"'))
    with pytest.raises(ConfigError, match="channel 'kick' is not in the file any more"):
        running.save()


def test_change_log_file_and_replay_reader(gig, tmp_path):
    eng = BlockEngine(load_config(gig)).start()
    log = tmp_path / "changes.jsonl"
    ctl = LiveControl(eng, gig, changes_log=log)
    try:
        ctl.set("snare", "threshold_db", -18.0)
        ctl.set("kick", "ratio", math.inf)
    finally:
        eng.stop()
        ctl.close()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0]["debleed_changes"] == 1 and lines[0]["period"] == 64
    assert [x["param"] for x in lines[1:]] == ["threshold_db", "ratio"] and lines[2]["value"] == "inf"
    back = load_changes(log, origin=lines[1]["frame"])
    assert back[0]["frame"] == 0 and math.isinf(back[1]["value"])


@pytest.mark.parametrize("text, expect", [
    ('{"frame": 1, "channel": "a"}', "needs frame, channel, param and value"),
    ('{"frame": 1.5, "channel": "a", "param": "ratio", "value": 2}', "frame must be an integer"),
    ('{"frame": 1, "channel": "a", "param": "rattio", "value": 2}', "unknown parameter 'rattio'"),
    ("not json", "not JSON"),
])
def test_a_bad_change_log_is_named_by_line(tmp_path, text, expect):
    p = tmp_path / "log.jsonl"
    p.write_text('{"debleed_changes": 1}\n' + text + "\n")
    with pytest.raises(DebleedError, match=rf"line 2: .*{expect}|line 2: {expect}"):
        load_changes(p)


def _scene(n, seed=0):
    rng = np.random.default_rng(seed)
    snare = (0.01 * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(2400) / 48000
    for h in range(1000, n - 2400, 6000):
        snare[h:h + 2400] += (0.5 * rng.standard_normal(2400) * np.exp(-t / 0.02)).astype(np.float32)
    kick = (0.2 * np.sin(2 * np.pi * 60 * np.arange(n) / 48000)).astype(np.float32)
    return np.stack([snare, kick])


def test_render_replays_changes_as_the_chain_would_live(gig):
    cfg = load_config(gig)
    n, block = 48000, 128
    x = _scene(n)
    changes = [{"frame": 12800, "channel": "snare", "param": "threshold_db", "value": -12.0},
               {"frame": 12800, "channel": "kick", "param": "range_db", "value": -6.0},
               {"frame": 25600, "channel": "snare", "param": "mode", "value": "duck"},
               {"frame": 38400, "channel": "kick", "param": "bypass", "value": True},
               {"frame": 44800, "channel": "snare", "param": "key", "value": "input:kick"}]
    res = render_arrays(cfg, x, 48000, block, changes=changes)
    assert res["changes_applied"] == 5 and res["changes_moved"] == 0
    # the same by hand: the chain, block by block, with set_params before the logged blocks
    chain = cfg.chain()
    chain.prepare(ProcessSpec(48000, block, chain.n_channels))
    y = np.zeros((2, n), np.float32)
    for s in range(0, n, block):
        todo = [(c["channel"], c["param"], cfg.resolve_key(c["value"]) if c["param"] == "key" else c["value"])
                for c in changes if c["frame"] == s]
        if todo:
            chain.set_params(todo)
        chain.process(x[:, s:s + block], y[:, s:s + block])
    assert np.array_equal(res["outputs"], y)
    plain = render_arrays(cfg, x, 48000, block)["outputs"]
    assert np.array_equal(plain[:, :12800], y[:, :12800])
    assert not np.array_equal(plain[:, 12800:], y[:, 12800:])
    moved = render_arrays(cfg, x, 48000, block, changes=[{**changes[0], "frame": 12801}])
    assert moved["changes_moved"] == 1
    with pytest.raises(ParameterError, match="unknown channel 'tom'"):
        render_arrays(cfg, x, 48000, block, changes=[{**changes[0], "channel": "tom"}])


def test_meters_rows_and_status_line_with_many_channels(tmp_path):
    lines = ["[client]", 'name = "many"', "[inputs]", "a = []"]
    for i in range(300):
        lines += ["[[channel]]", f'name = "ch{i}"', 'input = "a"']
    p = tmp_path / "many.toml"
    p.write_text("\n".join(lines))
    eng = BlockEngine(load_config(p), level=0.3).start()
    ctl = LiveControl(eng, p)
    try:
        import time

        from debleed.dsp.chain import K_FRAMES

        t_end = time.monotonic() + 30.0
        while ctl.chain.ctl[K_FRAMES] < 4 * eng.period_frames and time.monotonic() < t_end:
            time.sleep(0.01)
        ctl.poll_meters()
        rows = ctl.meter_rows()
        assert len(rows) == 300 and all(r["key_db"] > -30.0 for r in rows)
        gr = np.zeros(300)
        gr[17] = -30.0
        line = eng.status_line(gr)
        assert len(line) < 250 and "ch17  -30.0dB" in line and "+294 more" in line
        from debleed.cli.live import _startup_line

        start = _startup_line(eng, eng.config)
        assert len(start) < 200 and "300 channel(s)" in start and "1 in, 300 out" in start
    finally:
        eng.stop()
        ctl.close()


def test_a_change_the_audio_thread_has_not_confirmed_is_still_logged_and_saved(gig):
    eng = BlockEngine(load_config(gig)).start()
    ctl = LiveControl(eng, gig)
    eng.stop()
    frames = int(ctl.chain.ctl[K_FRAMES])
    with pytest.raises(EngineError, match=f"not running: the change is published.*logged at frame {frames}"):
        ctl.set("snare", "threshold_db", -10.0)
    assert ctl.chain.pending  # the next block takes it
    assert ctl.changes == [{"frame": frames, "clock": None, "channel": "snare", "param": "threshold_db",
                            "value": -10.0}]
    ctl.save()
    assert load_config(gig).channel[0].threshold_db == -10.0
    x = np.zeros((2, 64), np.float32)
    ctl.chain.process(x, np.zeros_like(x))
    assert not ctl.chain.pending and ctl.chain.ctl[K_DONE_FRAME] == frames
    ctl.close()


def test_a_key_change_that_would_break_a_rule_between_keys_is_refused(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(GIG.replace('hold_ms = 40.0', 'hold_ms = 40.0\nkey_hpf_hz = 100.0'))
    with running_control(path) as ctl:
        with pytest.raises(ParameterError, match="key_hpf_hz filters an audio key; a trigger: key has none"):
            ctl.set("snare", "key", "trigger:kick")
        ctl.set_many([("snare", "key_hpf_hz", 0.0)])
        ctl.set("snare", "key", "trigger:kick")  # once the filter is off
        ctl.save()
    assert load_config(path).channel[0].key == "trigger:kick"


def test_save_puts_new_keys_inside_their_table(running, gig):
    running.set("snare", "release_ms", 50.0)
    running.set("snare", "dry_wet", 0.3)
    running.save()
    text = gig.read_text()
    snare = text.split("[[channel]]")[1]
    assert "release_ms = 50.0" in snare and "dry_wet = 0.3" in snare
    assert snare.rstrip().endswith("# the kick ducks under the snare")  # the comment stays with the kick
    assert snare.index("dry_wet") < snare.index("# the kick ducks under the snare")


def test_denoiser_settings_go_to_the_stage_and_are_saved(tmp_path):
    path = tmp_path / "dn.toml"
    path.write_text(GIG.replace('hold_ms = 40.0', 'hold_ms = 40.0\ndenoise = true  # the snare denoiser'))
    calls = []

    class Stage:
        def set_param(self, channel_index, name, value):
            calls.append((channel_index, name, value))

    with running_control(path) as ctl:
        ctl.engine.stage = Stage()
        e = ctl.set("snare", "denoise_mix", 0.5)
        ctl.set("snare", "denoise_limit_db", -18.0)
        assert calls == [(0, "denoise_mix", 0.5), (0, "denoise_limit_db", -18.0)]
        assert ctl.get("snare", "denoise_mix") == 0.5 and e["frame"] >= 0
        with pytest.raises(ParameterError, match=r"denoise_limit_db must be in \[-100, 0\] dB, got 6.0"):
            ctl.set("snare", "denoise_limit_db", 6.0)
        with pytest.raises(ParameterError, match="channel 'kick' has no denoiser"):
            ctl.set("kick", "denoise_mix", 0.5)
        ctl.save()
    cfg = load_config(path)
    assert cfg.channel[0].denoise_mix == 0.5 and cfg.channel[0].denoise_limit_db == -18.0
    assert "denoise = true  # the snare denoiser" in path.read_text()


@pytest.mark.parametrize("mode", [0o600, 0o444, 0o640])
def test_save_keeps_the_gig_file_mode(running, gig, mode):
    gig.chmod(mode)
    running.set("snare", "threshold_db", -21.0)
    running.save()
    assert gig.stat().st_mode & 0o7777 == mode and load_config(gig).channel[0].threshold_db == -21.0
