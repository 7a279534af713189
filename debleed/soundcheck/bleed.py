"""The soundcheck's bleed step: the bleed matrix (every piece's level in every mic), its table and
heat map."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from debleed.fileio import atomic_path
from debleed.models.kit import MultiMicKit

def bleed_matrix(kit: MultiMicKit, window_s: float = 0.2) -> tuple[list, list, np.ndarray]:
    """Per mic (rows) and piece (columns): the piece's median level in the mic relative to the
    mic's own piece, dB (energy over ``window_s`` from each hit's first sample; a mic with no
    own piece is relative to its loudest piece).

    Returns ``(mics, pieces, matrix)``; NaN where a piece has no hit.
    """
    pieces = kit.pieces
    mics = list(kit.mics)
    level = np.full((len(mics), len(pieces)), np.nan)
    w = int(window_s * kit.sample_rate)
    for j, p in enumerate(pieces):
        e = np.array([np.sum(h.audio[:, h.onset:h.onset + w].astype(np.float64) ** 2, axis=1) for h in kit.of(piece=p)])
        if e.size:
            level[:, j] = np.median(10.0 * np.log10(np.maximum(e, 1e-20)), axis=0)
    out = np.full_like(level, np.nan)
    for i, m in enumerate(mics):
        own = [pieces.index(p) for p in kit.own_pieces(m) if p in pieces]
        ref = level[i, own[0]] if own else np.nanmax(level[i])
        out[i] = level[i] - ref
    return mics, pieces, out


def bleed_table(mics, pieces, mat) -> str:
    """The bleed matrix as a markdown table."""
    lines = ["| mic \\ piece | " + " | ".join(pieces) + " |", "|---|" + "---:|" * len(pieces)]
    for i, m in enumerate(mics):
        lines.append(f"| {m} | " + " | ".join("-" if np.isnan(v) else f"{v:+.1f}" for v in mat[i]) + " |")
    return "\n".join(lines)


def plot_bleed(path, mics, pieces, mat) -> None:
    """The bleed matrix as a heat map (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(pieces) + 2, 0.7 * len(mics) + 1.5))
    im = ax.imshow(np.where(np.isnan(mat), -60, mat), cmap="viridis", vmin=-40, vmax=10)
    ax.set_xticks(range(len(pieces)), pieces)
    ax.set_yticks(range(len(mics)), mics)
    ax.set_xlabel("piece")
    ax.set_ylabel("mic")
    for i in range(len(mics)):
        for j in range(len(pieces)):
            if not np.isnan(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:+.0f}", ha="center", va="center", color="w" if mat[i, j] < -15 else "k")
    fig.colorbar(im, label="dB relative to the mic's own piece")
    ax.set_title("bleed matrix")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)



@dataclasses.dataclass
class Bleed:
    """The bleed matrix (:func:`bleed_matrix`): ``db[i, j]`` is piece ``pieces[j]`` in mic
    ``mics[i]`` relative to the mic's own piece, dB (NaN: no hit of the piece)."""

    mics: list
    pieces: list
    db: np.ndarray

    def loudest_other_db(self, mic: str, piece: str, default: float = -40.0) -> float:
        """The loudest piece other than ``piece`` in ``mic``, dB relative to ``mic``'s own piece
        (``default`` when no other piece was measured)."""
        row = self.mics.index(mic)
        others = [v for j, v in enumerate(self.db[row]) if self.pieces[j] != piece and np.isfinite(v)]
        return float(max(others)) if others else float(default)

    def as_json(self) -> dict:
        """``{"mics", "pieces", "db"}`` with None for NaN (the report's form)."""
        return {"mics": self.mics, "pieces": self.pieces,
                "db": [[None if np.isnan(v) else float(v) for v in r] for r in self.db]}


def measure_bleed(kit: MultiMicKit, out_dir=None) -> Bleed:
    """The bleed step: the kit's :func:`bleed_matrix`; with ``out_dir``, its heat map
    ``bleed_matrix.png`` there (:func:`plot_bleed`)."""
    mics, pieces, mat = bleed_matrix(kit)
    if out_dir is not None:
        plot_bleed(Path(out_dir) / "bleed_matrix.png", mics, pieces, mat)
    return Bleed(mics, pieces, mat)
