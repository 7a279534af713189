"""The terminal UI, driven by textual's pilot over a running chain."""

from __future__ import annotations

import asyncio

import pytest

from debleed.rt.control.tui import DebleedTui, editable_params, gr_bar, key_bar
from tests.rt._blockengine import running_control

GIG = """\
# tui gig
[client]
name = "dbtui"
[inputs]
snare = []
trig = []
[[channel]]
name = "snare"
input = "snare"
threshold_db = -30.0  # keep me
[[channel]]
name = "kick"
input = "snare"
key = "trigger:trig"
"""


@pytest.fixture
def control(tmp_path):
    path = tmp_path / "gig.toml"
    path.write_text(GIG)
    # a block every 5 ms: a Python thread that holds the GIL more often slows textual's pilot a lot
    with running_control(path, meters=True, level=0.2, interval_s=0.005) as ctl:
        yield ctl


def test_bars():
    assert key_bar(float("-inf"), -30.0).count("|") == 1 and "#" not in key_bar(float("-inf"), -30.0)
    full = key_bar(0.0, None)
    assert set(full) == {"#"}
    assert key_bar(-36.0, -30.0).index("|") > key_bar(-36.0, -30.0).rindex("#")
    assert gr_bar(0.0).strip() == "" and gr_bar(-60.0) == "=" * len(gr_bar(-60.0))


def test_only_parameters_that_act_on_the_channel_are_offered(control):
    snare, kick = editable_params(control, 0), editable_params(control, 1)
    assert snare[:2] == ["mode", "bypass"] and "threshold_db" in snare and "detector" in snare
    assert "trigger_threshold_db" not in snare and "trigger_threshold_db" in kick
    assert "key_hpf_hz" not in kick and "lookahead_ms" not in snare and "denoise_mix" not in snare


def test_keys_select_change_bypass_and_save(control):
    async def drive():
        app = DebleedTui(control)
        async with app.run_test(size=(160, 30)) as pilot:
            await pilot.pause()
            # snare: move to threshold_db and raise it two steps
            idx = editable_params(control, 0).index("threshold_db")
            await pilot.press(*(["right"] * idx))
            assert app.param == "threshold_db"
            await pilot.press("+", "+")
            assert control.get("snare", "threshold_db") == -28.0
            await pilot.press("minus")
            assert control.get("snare", "threshold_db") == -29.0
            # kick: bypass it
            await pilot.press("down", "b")
            assert control.get("kick", "bypass") is True
            assert "kick bypass on" in app.message
            # a step that would leave the range is clamped, never an error
            await pilot.press("up")
            for _ in range(40):
                await pilot.press("+")
            assert control.get("snare", "threshold_db") == 0.0
            await pilot.press("s")
            assert app.message.startswith("saved into")
            await pilot.press("q")
        return app

    asyncio.run(drive())
    text = control.config_path.read_text()
    assert "threshold_db = 0.0  # keep me" in text and "bypass = true" in text
    assert [c["param"] for c in control.changes][:3] == ["threshold_db"] * 3


def test_it_quits_when_the_engine_stops(control):
    async def drive():
        app = DebleedTui(control, should_stop=lambda: True)
        async with app.run_test() as pilot:
            # the check runs on the UI's refresh timer; on a loaded machine the first tick can
            # come late, so wait for it (up to 20 s) rather than for a fixed time
            for _ in range(200):
                await pilot.pause(0.1)
                if not app.is_running:
                    break
            return app.is_running

    assert asyncio.run(drive()) is False
