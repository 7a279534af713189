"""Every subcommand's --help renders (help texts come from the parameter table's docs)."""

from __future__ import annotations

import pytest

from debleed.cli import build_parser, main


def _commands():
    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_help_renders(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: debleed" in capsys.readouterr().out
