"""Refresh the README's generated tables: ``python -m debleed.docs [README.md]``.

The config reference's channel parameters (:func:`debleed.dsp.params.markdown_table`) and the
OSC addresses (:func:`debleed.rt.control.osc.address_table`) come from the parameter table; this writes
them between their ``<!-- name:start -->`` and ``<!-- name:end -->`` markers. A test checks that
the README is current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from debleed.errors import DebleedError
from debleed.fileio import atomic_write_text


def generated() -> dict[str, str]:
    """Marker name -> table text."""
    from debleed.dsp.params import markdown_table
    from debleed.rt.control.osc import address_table

    return {"params": markdown_table(), "osc": address_table()}


def section(text: str, name: str) -> str:
    """The text between ``<!-- name:start -->`` and ``<!-- name:end -->``.

    Raises
    ------
    DebleedError
        If the markers are missing.
    """
    m = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    if not m:
        raise DebleedError(f"no <!-- {name}:start --> ... <!-- {name}:end --> section")
    return m.group(1)


def refresh(path) -> bool:
    """Rewrite the generated sections of ``path``; return True if anything changed."""
    path = Path(path)
    text = new = path.read_text()
    for name, table in generated().items():
        old = section(new, name)
        new = new.replace(f"<!-- {name}:start -->\n{old}\n<!-- {name}:end -->",
                          f"<!-- {name}:start -->\n{table}\n<!-- {name}:end -->")
    if new != text:
        atomic_write_text(path, new)
    return new != text


if __name__ == "__main__":  # pragma: no cover
    target = sys.argv[1] if len(sys.argv) > 1 else "README.md"
    print(f"{target}: {'updated' if refresh(target) else 'already current'}")
