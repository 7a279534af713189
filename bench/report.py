"""The report: ``report.json`` (every number and the machine), ``report.md`` (tables) and PNG
plots (matplotlib, Agg backend), all written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from debleed.bench.common import fmt, fmt_mm
from debleed.bench.control import markdown_lines
from debleed.fileio import atomic_output, atomic_write_text


def machine_line(m: dict) -> str:
    return (f"{m.get('cpu')}, {m.get('cores_usable')} of {m.get('cores')} cores usable, {m.get('distro') or m.get('os')}; "
            f"Python {m.get('python')}, numba {m.get('numba')}, onnxruntime {m.get('onnxruntime')}, "
            f"jackd {m.get('jackd')}, JACK-Client {m.get('JACK-Client')}")


def markdown(report: dict) -> str:
    s = report["sections"]
    L = ["# debleed benchmark report", "",
         f"Run: `{report['command']}` ({'quick' if report['options']['quick'] else 'full'}), "
         f"{report['options']['repeats']} repeats, started {report['started']}, took {report['wall_s']:.0f} s.", "",
         f"Machine: {machine_line(report['machine'])}.", "",
         "Every number is the median over repeats with (min-max), unless noted.", ""]
    for name, sec in s.items():
        if "skipped" in sec:
            L += [f"## {name}", "", f"Skipped: {sec['skipped']}", ""]
        elif "error" in sec:
            L += [f"## {name}", "", f"Failed: {sec['error']}", ""]
    if "kernels" in s and "chain" in s["kernels"]:
        k = s["kernels"]
        bs = k["block_sizes"]
        L += ["## 1. Kernels (ns per sample per channel)", "",
              "`run_block` (the function every engine calls), driven from an njit loop:", "",
              "| chain | " + " | ".join(map(str, bs)) + " |", "|---|" + "---:|" * len(bs)]
        for name, row in k["chain"].items():
            L.append(f"| {name} | " + " | ".join(fmt(row[str(b)]["median"]) for b in bs) + " |")
        L += ["", "Processors through their public `process()`, called from Python per block (8 channels):", "",
              "| processor | " + " | ".join(map(str, bs)) + " |", "|---|" + "---:|" * len(bs)]
        for name, row in k["processors"].items():
            L.append(f"| {name} | " + " | ".join(fmt(row[str(b)]["median"]) for b in bs) + " |")
        o = k["offline_rtf"]
        L += ["", f"Offline render (`Chain.process`, {o['channels']} channels, block {o['block']}, "
                  f"{o['audio_s']:.0f} s of audio): **{fmt_mm(o['rtf'], 0)} x real time**.", ""]
    if "callback" in s and "runs" in s["callback"]:
        c = s["callback"]
        L += ["## 2. Process callback against the deadline", "",
              f"{c['run_s']:g} s of real-kit audio per run, {c['repeats']} fresh `debleed live` processes per row.", "",
              "| engine | frames | ch | deadline us | p50 us | p99 us | p99.9 us | max us | xruns | blamed on debleed | DSP load % |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in c["runs"]:
            cb = r["callback_us"]
            L.append(f"| {r['engine']} | {r['period']} | {r['channels']} | {r['deadline_us']:.0f} | {fmt_mm(cb['p50'])} | "
                     f"{fmt_mm(cb['p99'])} | {fmt_mm(cb['p99.9'])} | {fmt_mm(cb['max'])} | {r['xruns_total']} | "
                     f"{r['blamed_debleed_total']} | {fmt_mm(r['dsp_load_percent'])} |")
        L += ["", *[f"- {n}" for n in c["notes"]], ""]
    if "peer" in s and "runs" in s["peer"]:
        p = s["peer"]
        L += ["## 3. Peer: LSP sidechain gate, same run", "", f"Peer: {p['peer']}.", "",
              "| frames | ch | baseline % | debleed % | LSP % | debleed / LSP | net debleed / LSP | blamed debleed | blamed LSP |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in p["runs"]:
            L.append(f"| {r['period']} | {r['channels']} | {fmt_mm(r['baseline_load_percent'])} | {fmt_mm(r['debleed_load_percent'])} | "
                     f"{fmt_mm(r['lsp_load_percent'])} | {fmt(r['ratio_debleed_over_lsp'], 2)} | "
                     f"{fmt(r['net_ratio_debleed_over_lsp'], 2)} | {r['blamed_debleed_total']} | {r['blamed_lsp_total']} |")
        L += ["", *[f"- {n}" for n in p["notes"]], ""]
    if "latency" in s and "impulse" in s["latency"]:
        lt = s["latency"]
        L += ["## 4. Latency truth", "", f"Impulse through JACK in freewheel at {lt['impulse']['period']} frames:", "",
              "| chain | reported (frames) | measured (frames) | peak out | match |", "|---|---:|---:|---:|---|"]
        for name, r in lt["impulse"]["chains"].items():
            rep = r["reported_frames"]
            L.append(f"| {name} | {rep['min']}-{rep['max']} | {fmt_mm(r['measured_frames'], 0)} | "
                     f"{fmt(r['peak_out']['median'], 3)} | {'yes' if r['match'] else 'NO'} |")
        L += ["", *[f"- {n}" for n in lt["impulse"]["notes"]], ""]
        if lt.get("denoiser"):
            L += ["A denoised channel alone (bypass, no lookahead), impulse in freewheel:", "",
                  "| rate Hz | period | engine | reported (frames) | measured (frames) | match |",
                  "|---:|---:|---|---:|---:|---|"]
            for r in lt["denoiser"]:
                rep = r["reported_frames"]
                L.append(f"| {r['sample_rate']} | {r['period']} | {r['engine']} | {rep['min']}-{rep['max']} | "
                         f"{fmt_mm(r['measured_frames'], 0)} | {'yes' if r['match'] else 'NO'} |")
            L += [""]
        L += ["Round trip in real time, bench client A -> debleed (gate) -> A:", "",
              "| frames | measured | theory | match | hardware loop would add (capture + playback, as JACK reports) |",
              "|---:|---:|---:|---|---:|"]
        for r in lt["round_trip"]:
            h = r["hardware_loop_reference_frames"]
            L.append(f"| {r['period']} | {fmt_mm(r['measured_frames'], 0)} | {r['theory_frames']} | "
                     f"{'yes' if r['match'] else 'NO'} | {h['system_capture']} + {h['system_playback']} |")
        L += ["", "Theory: A's output and A's input close a cycle in the graph; JACK runs one edge of a cycle as "
                  "a feedback connection whose data is read in the next cycle, so the impulse comes back exactly "
                  "one period later, plus the latency debleed reports (0 for a gate without lookahead). Through "
                  "an audio interface (playback cable to capture) the driver's capture and playback latencies "
                  "would add to that.", ""]
    if "denoiser" in s and "models" in s["denoiser"]:
        d = s["denoiser"]
        L += ["## 5. Denoiser", ""]
        for name, m in d["models"].items():
            if "error" in m:
                L += [f"`{name}`: failed: {m['error']}", ""]
                continue
            L += [f"`{name}` (latency {m.get('latency_samples')} samples at {m.get('sample_rate')} Hz), per block "
                  "on one core: the data-plane kernels (what the audio callback runs) against the onnxruntime "
                  "wrapper (`Denoiser.process`, the batch path):", "",
                  "| block | deadline us | kernels p50 / p99 / max us | kernels % of period (p50) | "
                  "onnxruntime p50 / p99 / max us | onnxruntime % of period (p50) |", "|---:|---:|---|---:|---|---:|"]
            for b, r in m["kernels"].items():
                w = m["wrapper"].get(b)
                L.append(f"| {b} | {r['deadline_us']:.0f} | {fmt_mm(r['us']['p50'])} / {fmt_mm(r['us']['p99'])} / "
                         f"{fmt_mm(r['us']['max'])} | {fmt(r['percent_of_period_p50'])} | "
                         + (f"{fmt_mm(w['us']['p50'])} / {fmt_mm(w['us']['p99'])} / {fmt_mm(w['us']['max'])} | "
                            f"{fmt(w['percent_of_period_p50'])} |" if w else "- | - |"))
            L += ["", "Raw sessions, p50 us per run: `run` / `run_with_iobinding`:", ""]
            for prov, rows in m["raw"].items():
                if "skipped" in rows:
                    L.append(f"- {prov}: {rows['skipped']}")
                    continue
                parts = []
                for b, r in rows.items():
                    parts.append(f"{b}: {r['error']}" if "error" in r else
                                 f"{b}: {fmt(r['run_us']['p50']['median'])} / {fmt(r['iobinding_us']['p50']['median'])}")
                L.append(f"- {prov}: " + "; ".join(parts))
            dl = m["deadline"]
            L += ["", "Blocks of 64 frames over their deadline: " + ", ".join(
                f"{k} {fmt_mm(v['over_deadline'], 0)} of {v['blocks']}" if "over_deadline" in v
                else f"{k} skipped ({v.get('skipped', '')})" for k, v in dl.items()), ""]
        lv = d.get("live", {})
        if "error" in lv:
            L += [f"`debleed live` with 2 denoised channels: failed: {lv['error']}", ""]
        elif lv:
            L += [f"`debleed live` with 2 denoised channels at {lv['period_frames']} frames (deadline "
                  f"{lv['deadline_us']:.0f} us), the denoisers inside the audio callback:", "",
                  "| condition | xruns | callback p99.9 us | callback max us |", "|---|---:|---:|---:|"]
            L += [f"| {cond} | {fmt_mm(lv[cond]['xruns'], 0)} | {fmt_mm(lv[cond]['callback_p99.9_us'])} | "
                  f"{fmt_mm(lv[cond]['callback_max_us'])} |" for cond in ("no_hog", "hog") if cond in lv]
            L += [""]
    if "soak" in s and "runs" in s["soak"]:
        k = s["soak"]
        L += ["## 6. Soak", "",
              f"{k['seconds']:g} s per run at {k['period']} frames, {k['channels']} channels, denoised channels "
              f"{k['denoised_channels']}, one `lsp-plugins-sc-gate-mono -hl` per channel in the same server "
              "(one run per jackd mode).", "",
              "| jackd | callbacks | xruns | blamed on debleed / on LSP | debleed / worst gate (debleed waiting / running) | "
              "p50 / p99.9 / max us | deadline us | DSP load mean / max % | RSS start / end KiB |",
              "|---|---:|---:|---|---|---|---:|---|---|"]
        for mode, r in k["runs"].items():
            if "callbacks" not in r:
                L.append(f"| {mode} | {r.get('skipped') or r.get('error')} | | | | | | | |")
                continue
            cb = r["callback_us"]
            st = r.get("blamed_state", {}).get("debleed", {})
            L.append(f"| {r['jackd']} | {r['callbacks']} | {r['xruns']} | {r['blamed_debleed']} / {r['blamed_lsp']} "
                     f"({r['lsp_clients']} LSP clients) | {r['blamed_debleed']} / {r.get('blamed_worst_lsp', '-')} "
                     f"({st.get('Triggered', 0)} / {st.get('Running', 0)}) | "
                     f"{fmt(cb['p50'])} / {fmt(cb['p99.9'])} / {fmt(cb['max'])} | {r['deadline_us']:.0f} | "
                     f"{fmt(r['dsp_load_percent']['mean'])} / {fmt(r['dsp_load_percent']['max'])} | "
                     f"{r['rss_kib']['start']} / {r['rss_kib']['end']} |")
        L += [""]
    if "control" in s and "runs" in s["control"]:
        L += markdown_lines(s["control"])
    plots = report.get("plots", [])
    if plots:
        L += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(L) + "\n"


def _save(fig, path: Path) -> None:
    with atomic_output(path) as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def plots(report: dict, out: Path) -> list[str]:
    """Write the PNG plots; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["sections"]
    names = []
    if "callback" in s and s["callback"].get("runs"):
        runs = s["callback"]["runs"]
        engines = sorted({r["engine"] for r in runs})
        fig, axes = plt.subplots(1, len(engines), figsize=(6 * len(engines), 4.5), squeeze=False, sharey=True)
        for ax, eng in zip(axes[0], engines):
            rows = [r for r in runs if r["engine"] == eng]
            xs = range(len(rows))
            for p, mk in (("p50", "o"), ("p99", "s"), ("p99.9", "^"), ("max", "x")):
                ax.plot(xs, [r["callback_us"][p]["median"] for r in rows], mk, label=p)
            ax.plot(xs, [r["deadline_us"] for r in rows], "_", markersize=20, color="red", label="deadline")
            ax.set_xticks(list(xs), [f"{r['period']}f\n{r['channels']}ch" for r in rows], fontsize=7)
            ax.set_yscale("log")
            ax.set_title(f"{eng} engine: callback time (median over repeats)")
            ax.set_ylabel("us")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        _save(fig, out / "callback.png")
        plt.close(fig)
        names.append("callback.png")
    if "kernels" in s and s["kernels"].get("chain"):
        k = s["kernels"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, key, title in ((axes[0], "chain", "run_block (njit loop)"), (axes[1], "processors", "processors (Python per block)")):
            for name, row in k[key].items():
                ax.plot(k["block_sizes"], [row[str(b)]["median"] for b in k["block_sizes"]], "o-", label=name)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("block size (frames)")
            ax.set_ylabel("ns per sample per channel")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        _save(fig, out / "kernels.png")
        plt.close(fig)
        names.append("kernels.png")
    if "latency" in s and "impulse" in s["latency"]:
        ch = s["latency"]["impulse"]["chains"]
        rt = s["latency"]["round_trip"]
        labels = list(ch) + [f"round trip {r['period']}f" for r in rt]
        rep = [r["reported_frames"]["max"] for r in ch.values()] + [r["theory_frames"] for r in rt]
        meas = [r["measured_frames"]["median"] or 0 for r in ch.values()] + [r["measured_frames"]["median"] or 0 for r in rt]
        fig, ax = plt.subplots(figsize=(9, 4))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], rep, 0.4, label="reported / theory")
        ax.bar([x + 0.2 for x in xs], meas, 0.4, label="measured")
        ax.set_xticks(list(xs), labels, rotation=20, fontsize=8)
        ax.set_ylabel("frames at 48 kHz")
        ax.set_title("Latency truth")
        ax.legend()
        _save(fig, out / "latency.png")
        plt.close(fig)
        names.append("latency.png")
    return names


def write(report: dict, out: Path) -> None:
    """Write ``report.json``, the plots and ``report.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = plots(report, out)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "report.md", markdown(report))
