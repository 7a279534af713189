"""The soundcheck's report: ``report.md``, ``report.json`` and the plots of the hits found
(``hits.png``) and the keys' alignment (``alignment.png``); the bleed matrix's heat map is
:func:`debleed.soundcheck.bleed.plot_bleed`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from debleed.fileio import atomic_path, atomic_write_text, jsonable
from debleed.soundcheck.bleed import bleed_table
from debleed.soundcheck.hits import PASSAGE_GAP_S, identified_by, identified_how, passage_summary


def plot_hits(path, takes: dict, sample_rate: int, hits: list) -> None:
    """The takes' envelopes with every detected hit marked in its piece's colour (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mics = list(takes)
    fig, axes = plt.subplots(len(mics), 1, figsize=(12, 1.3 * len(mics) + 1), sharex=True, squeeze=False)
    colours = {p: f"C{i}" for i, p in enumerate(sorted({h.piece for h in hits}))}
    for ax, m in zip(axes[:, 0], mics):
        x = np.asarray(takes[m], np.float64)
        step = max(1, x.size // 4000)
        n = x.size // step * step
        env = np.abs(x[:n]).reshape(-1, step).max(axis=1)
        ax.plot(np.arange(env.size) * step / sample_rate, 20 * np.log10(np.maximum(env, 1e-6)), lw=0.6, color="0.3")
        for h in hits:
            ax.axvline(h.frame / sample_rate, color=colours[h.piece], lw=0.6, alpha=0.7)
        ax.set_ylabel(m, rotation=0, ha="right")
        ax.set_ylim(-90, 3)
    for p, c in colours.items():
        axes[0, 0].plot([], [], color=c, label=p)
    axes[0, 0].legend(loc="upper right", ncol=len(colours), fontsize=8)
    axes[-1, 0].set_xlabel("time, s")
    fig.suptitle("soundcheck takes (peak level, dBFS) and the hits found")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)



def plot_alignment(path, delays: dict, sample_rate: int) -> None:
    """Per keyed channel, every hit's key-minus-first-sample delay (dots) and what the gate needs:
    the chosen lookahead (line) less the attack allowance (dashed); PNG, written atomically.

    ``delays`` is ``{channel: (delays_ms, alignment dict of key_alignment)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(delays)
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(names) + 1.5))
    for i, name in enumerate(names):
        d, al = delays[name]
        ax.plot(d, np.full(len(d), i) + np.linspace(-0.15, 0.15, len(d)) if len(d) else [], "o", ms=4, color="C0")
        cover = al["lookahead_ms"] + al.get("audio_delay_ms", 0.0)
        ax.plot([cover, cover], [i - 0.35, i + 0.35], color="C3", lw=2)
        ax.plot([cover - al["attack_allowance_ms"]] * 2, [i - 0.35, i + 0.35], color="C3", lw=1, ls="--")
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("key time minus the hit's first sample, ms")
    ax.set_title("alignment: hits (dots), what the lookahead covers (red), less the attack (dashed)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)



def report_markdown(r: dict) -> str:
    """``report.md``."""
    lines = ["# Soundcheck", "", f"Config `{r['config']}`, {r['sample_rate']} Hz, {r['seconds']:.1f} s of takes.", "",
             "## Hits found per piece", "", "| piece | close mic | hits | identified by |", "|---|---|---:|---|"]
    how = r.get("hits_identified_how", {})
    for p, n in r["hits_per_piece"].items():
        said = "; ".join(f"{h} ({k})" for h, k in how.get(p, {}).items())
        lines.append(f"| {p} | {r['close_mics'].get(p, '(none: bleed in every mic)')} | {n} | {said} |")
    if r.get("pieces_table"):
        lines += ["", "MIDI notes named by the gig's `[pieces]` table: "
                  + ", ".join(f"{k} = {v}" for k, v in r["pieces_table"].items()) + "."]
    if r.get("passages"):
        lines += ["", "Passages (one piece played alone; hits less than "
                  f"{r.get('passage_gap_s', 1.0):g} s apart):", "", "| passage | time, s | hits | pieces |",
                  "|---:|---|---:|---|"]
        for ps in r["passages"]:
            mark = "" if ps["placed"] else " **(not placed)**"
            lines.append(f"| {ps['passage']} | {ps['start_s']:.1f}-{ps['end_s']:.1f} | {ps['hits']} | "
                         + ", ".join(f"{p} {k}" for p, k in ps["pieces"].items()) + mark + " |")
    for w in r.get("warnings", []):
        lines += ["", f"**Warning:** {w}."]
    bm = r["bleed_matrix"]
    mat = np.array([[np.nan if v is None else v for v in row] for row in bm["db"]])
    lines += ["", "![hits](hits.png)", "", "## Bleed matrix", "",
              "Level of each piece in each mic relative to the mic's own piece, dB (median over hits, first 200 ms).", "",
              bleed_table(bm["mics"], bm["pieces"], mat), "", "![bleed matrix](bleed_matrix.png)", "",
              "## Alignment and settings", ""] + (["![alignment](alignment.png)", ""] if r.get("alignment_plot") else [])
    for name, ch in r["channels"].items():
        lines += [f"### {name} (key `{ch['key']}`, piece {ch['piece']})", ""]
        a = ch.get("alignment")
        if a and a.get("n"):
            lines.append(f"Key minus first sample of each hit: median {a['median_ms']:+.2f} ms, range "
                         f"{a['min_ms']:+.2f} .. {a['max_ms']:+.2f} ms over {a['n']} hits; lookahead {a['lookahead_ms']:.2f} ms.")
            lines.append("")
        lines += ["| setting | value | where it came from |", "|---|---:|---|"]
        for k, v in ch["settings"].items():
            lines.append(f"| `{k}` | {v:.3g} | {ch['why'].get(k, '')} |")
        if ch.get("denoise") is not None:
            lines += ["", f"Denoiser {'on' if ch['denoise'] else 'turned off'}: {ch['why'].get('denoise', '')}."]
        m = ch["fit"]
        lines += ["", f"On the fit mixtures: SI-SDR {m['si_sdr_db']:.1f} dB, bleed reduction {m['bleed_reduction_db']:.1f} dB, "
                  f"hit loss loud {m['hit_loss_loud_db']:.2f} dB, ghost {m['hit_loss_ghost_db']:.2f} dB (vs mic) / "
                  f"{m['hit_loss_ghost_vs_clean_db']:.2f} dB (vs clean); {ch['grid_points']} grid points.", ""]
    if r["denoiser"]:
        lines += ["## Denoiser", ""]
        for name, d in r["denoiser"].items():
            lines += [f"### {name}", "", d.get("why", ""), ""]
            if "before" in d:
                lines += [f"Fine-tuned {d['steps']} steps in {d['train_seconds']:.0f} s on mixtures of {d['train_hits']} hits; "
                          f"validation: {d['n_valid_scenes']} grooves mixed from {d['valid_hits']} held-out hits "
                          "(at the measured bleed).", "",
                          "| model | SI-SDR dB | bleed reduction dB | hit loss loud dB (vs mic / vs clean) | ghost dB (vs mic / vs clean) |",
                          "|---|---:|---:|---:|---:|"]
                for lab, m in (("shipped", d["before"]), ("adapted", d["after"])):
                    lines.append(f"| {lab} | {m['si_sdr_db']:.1f} | {m['bleed_reduction_db']:.1f} | {m['hit_loss_loud_db']:.2f} / "
                                 f"{m.get('hit_loss_loud_vs_clean_db', float('nan')):.2f} | "
                                 f"{m['hit_loss_ghost_db']:.2f} / {m['hit_loss_ghost_vs_clean_db']:.2f} |")
                lines.append("")
    lines += prediction_markdown(r.get("prediction"))
    lines += [f"The new gig: `{r['gig']}`. Took {r['seconds_taken']:.0f} s.", ""]
    return "\n".join(lines)



def write_report(out_dir, report: dict) -> None:
    """``OUT/report.json`` and ``OUT/report.md`` (:func:`report_markdown`), written atomically."""
    out = Path(out_dir)
    atomic_write_text(out / "report.json", json.dumps(jsonable(report), indent=2, default=float) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report))


def soundcheck_report(lc, kit, hits: list, bleed, keys: dict, fits: dict, denoisers: dict, *, block: int) -> dict:
    """The report of a soundcheck (``report.json``; :func:`report_markdown` renders it).

    Parameters
    ----------
    lc : LineCheck
        The line check (:func:`debleed.soundcheck.hits.read_line_check`).
    kit : MultiMicKit
        Its hits (:func:`debleed.soundcheck.hits.find_hits`).
    hits : list of DetectedHit
    bleed : Bleed
        :func:`debleed.soundcheck.bleed.measure_bleed`.
    keys : dict
        ``{channel: KeyAlignment}`` (:func:`debleed.soundcheck.alignment.align_keys`).
    fits : dict
        ``{channel: ChannelFit}`` (:func:`debleed.soundcheck.fit.fit_channels`).
    denoisers : dict
        ``{channel: dict}`` (:func:`debleed.soundcheck.adapt.adapt_denoisers`).
    block : int
        The JACK period the gig will run at, frames.

    Returns
    -------
    dict
        ``config``, ``takes``, ``sample_rate``, ``seconds``, ``block``, ``hits_per_piece``,
        ``close_mics``, ``hits_identified_by`` (counts per kind), ``hits_identified_how`` (in
        words), ``pieces_table`` (the gig's ``[pieces]``), ``passages`` and ``warnings``
        (:func:`~debleed.soundcheck.hits.passage_summary`), ``bleed_matrix``, ``channels`` (per gated
        channel: key, piece, alignment, settings, why, fit metrics, grid points, denoise) and
        ``denoiser``.
    """
    passages, warnings = passage_summary(hits, lc.sample_rate)
    channels = {name: {"key": f.key, "piece": f.piece, "alignment": keys[name].alignment, "settings": f.values,
                       "why": f.why, "fit": f.metrics, "grid_points": f.grid_points,
                       "denoise": None if f.denoise is None else f.denoise[0]} for name, f in fits.items()}
    return {"config": str(lc.config_path), "takes": lc.files, "sample_rate": lc.sample_rate, "seconds": lc.seconds,
            "block": block, "hits_per_piece": {p: len(kit.of(piece=p)) for p in kit.pieces}, "close_mics": lc.close,
            "hits_identified_by": identified_by(hits, kit.pieces),
            "hits_identified_how": identified_how(hits, kit.pieces), "pieces_table": lc.pieces,
            "passages": passages, "passage_gap_s": PASSAGE_GAP_S, "warnings": warnings,
            "bleed_matrix": bleed.as_json(), "channels": channels, "denoiser": denoisers}


def _spread_text(sp: dict, digits: int = 1) -> str:
    if not sp or not sp.get("n"):
        return "-"
    return f"{sp['median']:.{digits}f} ({sp['p10']:.{digits}f} to {sp['p90']:.{digits}f})"


def prediction_markdown(p: dict | None) -> list:
    """The report's "What to expect at the show" section (:func:`~debleed.soundcheck.predict.predict_show`)."""
    if not p:
        return []
    if "channels" not in p:
        return ["## What to expect at the show", "", p.get("why", "no prediction") + ".", ""]
    lines = ["## What to expect at the show", "",
             f"The gig run as `debleed render` runs it on {p['grooves']} grooves of {p['seconds']:g} s per balance "
             f"(hi-hat eighths or sixteenths, backbeats, fills, ghost notes), mixed from the {p['hits']} line-check hits "
             f"that the fit and the denoiser's fine-tuning never saw (they saw the other {p.get('fit_hits', '?')}), at "
             "the measured bleed and with every piece's bleed 10 dB louder. Median over the grooves (10 to 90 %).", "",
             "| channel | gig | bleed | SI-SDR dB | mic alone dB | bleed reduction dB | loud-hit loss dB | ghost loss dB |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for ch, per in p["channels"].items():
        for lab, offs in per.items():
            for off, m in offs.items():
                bal = "measured" if float(off) == 0 else f"{off} dB"
                lines.append(f"| {ch} | {lab} | {bal} | {_spread_text(m.get('si_sdr_db'))} | "
                             f"{_spread_text(m.get('mic_si_sdr_db'))} | {_spread_text(m.get('bleed_reduction_db'))} | "
                             f"{_spread_text(m.get('hit_loss_loud_db'), 2)} | {_spread_text(m.get('hit_loss_ghost_db'), 1)} |")
    lines += ["", "SI-SDR against the channel's own pieces (the mic alone: the same with no processing); bleed "
              "reduction between hits; hit loss in the first 30 ms of loud hits and ghost notes, against the mic.", ""]
    return lines
