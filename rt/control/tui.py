"""``debleed live --tui``: the terminal UI (textual).

One row per channel: mode, key level as a bar with the threshold marked (``|``), gain
reduction meter, open/closed, latency, and the selected parameter's value. Keys:

=============  ==========================================================
up / down      select a channel
left / right   select a parameter (those that apply to the channel's mode and key)
``+`` / ``-``  change it by its step (dB steps; x1.25 per press for times)
``b``          bypass the channel (toggle; ramped)
``s``          save the changes into the gig file (comments kept)
``q``          quit (as Ctrl-C)
=============  ==========================================================

Everything goes through :class:`debleed.rt.control.LiveControl`, as OSC does; the UI reads the
meters the control's meter thread collects.
"""

from __future__ import annotations

import math

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from debleed.dsp.params import PARAMS
from debleed.errors import DebleedError

#: Key-level bar: dBFS at its left and right ends, and its width in characters.
BAR_LO_DB, BAR_HI_DB, BAR_W = -72.0, 0.0, 24
#: Gain-reduction bar: dB at its right end, width.
GR_LO_DB, GR_W = -60.0, 12
REFRESH_HZ = 15.0


def key_bar(level_db: float, threshold_db: float | None) -> str:
    """``level_db`` as a bar of :data:`BAR_W` characters with ``|`` at ``threshold_db``."""
    def pos(db):
        f = (min(max(db, BAR_LO_DB), BAR_HI_DB) - BAR_LO_DB) / (BAR_HI_DB - BAR_LO_DB)
        return int(round(f * (BAR_W - 1)))

    n = pos(level_db) + 1 if math.isfinite(level_db) and level_db > BAR_LO_DB else 0
    cells = ["#" if i < n else "." for i in range(BAR_W)]
    if threshold_db is not None:
        cells[pos(threshold_db)] = "|"
    return "".join(cells)


def gr_bar(gr_db: float) -> str:
    """Gain reduction (dB, <= 0) as a bar of :data:`GR_W` characters."""
    n = int(round(min(max(gr_db, GR_LO_DB), 0.0) / GR_LO_DB * GR_W))
    return "=" * n + " " * (GR_W - n)


def editable_params(control, c: int) -> list[str]:
    """Live parameters that act on channel ``c`` (its mode and key), ``mode`` and ``bypass`` first."""
    ch = control.config.channel[c]
    kind = control.get(c, "key").partition(":")[0]  # the key now (it can change live)
    spec = control.chain.channels[c]
    out = []
    for name, p in PARAMS.items():
        if not p.live or p.kind == "key":  # keys change over OSC (a string, no step)
            continue
        if p.target == "denoiser" and not ch.denoise:
            continue
        if name not in ("mode", "bypass") and (kind not in p.keys or
                                                (spec.mode != "bypass" and spec.mode not in p.modes)):
            continue
        out.append(name)
    return out


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)


class DebleedTui(App):
    """The terminal UI over a :class:`~debleed.rt.control.LiveControl`."""

    TITLE = "debleed"
    CSS = "DataTable { height: 1fr; } #status { height: 3; }"
    BINDINGS = [
        Binding("up", "channel(-1)", "channel", show=False, priority=True),
        Binding("down", "channel(1)", "channel", show=False, priority=True),
        Binding("left", "param(-1)", "param", priority=True),
        Binding("right", "param(1)", "param", priority=True),
        Binding("plus,equals_sign", "step(1)", "+"),
        Binding("minus", "step(-1)", "-"),
        Binding("b", "bypass", "bypass"),
        Binding("s", "save", "save"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, control, should_stop=None, refresh_hz: float = REFRESH_HZ):
        super().__init__()
        self.control = control
        self.refresh_hz = refresh_hz
        self.should_stop = should_stop or (lambda: False)
        self.row = 0
        self.param_pos = {}
        self.message = ""

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row", zebra_stripes=True)
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        t.add_columns("channel", "mode", "key level (| threshold)", "GR", "dB", "open", "latency", "parameter", "value")
        for name in self.control.names:
            t.add_row(*([name] + [""] * 8), key=name)
        self.refresh_rows()
        self.set_interval(1.0 / self.refresh_hz, self.tick)

    # --- state ------------------------------------------------------------------------------
    @property
    def param(self) -> str:
        names = editable_params(self.control, self.row)
        return names[self.param_pos.get(self.row, 0) % len(names)]

    def tick(self) -> None:
        if self.should_stop():
            self.exit()
            return
        self.refresh_rows()

    def refresh_rows(self) -> None:
        t = self.query_one(DataTable)
        rows = self.control.meter_rows()
        for c, r in enumerate(rows):
            name = r["channel"]
            param = self.param if c == self.row else ""
            keyed = r["mode"] != "bypass"
            cells = {
                "mode": ("bypass" if r["bypass"] else r["mode"]),
                "key level (| threshold)": key_bar(r["key_db"], r["threshold_db"] if keyed else None),
                "GR": gr_bar(r["gr_db"]), "dB": f"{r['gr_db']:6.1f}",
                "open": ("open" if r["open"] else "closed") if keyed and not r["bypass"] else "-",
                "latency": f"{r['latency_samples']} smp",
                "parameter": param, "value": _fmt(self.control.get(c, param)) if param else ""}
            for col, v in cells.items():
                t.update_cell(name, self._col_key(t, col), v, update_width=True)
        p = PARAMS[self.param]
        unit = f" {p.unit}" if p.unit else ""
        self.query_one("#status", Static).update(
            f"{self.control.names[self.row]} / {self.param} = {_fmt(self.control.get(self.row, self.param))}{unit}"
            f"   range {p.range_text()}   {p.doc}\n{self.message}")

    def _col_key(self, t, label):
        for key, col in t.columns.items():
            if str(col.label) == label:
                return key
        raise KeyError(label)

    # --- actions ----------------------------------------------------------------------------
    def action_channel(self, d: int) -> None:
        self.row = (self.row + d) % len(self.control.names)
        self.query_one(DataTable).move_cursor(row=self.row)
        self.refresh_rows()

    def action_param(self, d: int) -> None:
        self.param_pos[self.row] = (self.param_pos.get(self.row, 0) + d) % len(editable_params(self.control, self.row))
        self.refresh_rows()

    def _do(self, fn) -> None:
        """Run ``fn()`` (which returns the message to show); show an error instead if it raises."""
        try:
            self.message = fn()
        except DebleedError as e:
            self.message = f"error: {e}"
        self.refresh_rows()

    def action_step(self, d: int) -> None:
        name, c = self.param, self.row

        def go():
            e = self.control.step(c, name, d)
            return f"{e['channel']} {name} = {_fmt(self.control.get(c, name))} at frame {e['frame']}"
        self._do(go)

    def action_bypass(self) -> None:
        c = self.row

        def go():
            e = self.control.set(c, "bypass", not self.control.get(c, "bypass"))
            return f"{e['channel']} bypass {_fmt(self.control.get(c, 'bypass'))} at frame {e['frame']}"
        self._do(go)

    def action_save(self) -> None:
        self._do(lambda: f"saved into {self.control.save()}")

    def on_data_table_row_highlighted(self, event) -> None:
        self.row = event.cursor_row
        self.refresh_rows()


def run_tui(control, should_stop=None) -> None:
    """Run the UI until ``q`` or ``should_stop()`` (checked 15 times a second)."""
    DebleedTui(control, should_stop).run()
