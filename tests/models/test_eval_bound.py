"""The oracle-mask ceiling of `debleed eval`."""

import numpy as np

from debleed.models.evaluate import oracle_mask_signal
from debleed.models.metrics import si_sdr_db


def test_oracle_mask_reconstructs_passes_and_removes():
    rng = np.random.default_rng(0)
    n = 9600
    clean = np.zeros(n)
    clean[2000:2600] = rng.standard_normal(600) * np.exp(-np.arange(600) / 150.0)
    bleed = 0.3 * rng.standard_normal(n)
    noisy = clean + bleed
    np.testing.assert_allclose(oracle_mask_signal(noisy, noisy), noisy, atol=1e-9)  # mask 1: identity
    assert np.max(np.abs(oracle_mask_signal(noisy, np.zeros(n)))) == 0.0       # mask 0: silence
    out = oracle_mask_signal(noisy, clean)
    assert out.shape == (n,)
    assert si_sdr_db(clean, out) > si_sdr_db(clean, noisy) + 10.0
    quiet = np.r_[0:1500, 3500:n]
    assert np.sum(out[quiet] ** 2) < 0.01 * np.sum(noisy[quiet] ** 2)  # bleed between hits: > 20 dB down


def test_targets_table_says_met_or_not():
    from debleed.models.evaluate import markdown_table

    def m(sisdr, bleed, loud, ghost, ghost_clean):
        return {"si_sdr_db": sisdr, "bleed_reduction_db": bleed, "hit_loss_loud_db": loud,
                "hit_loss_ghost_db": ghost, "hit_loss_loud_vs_clean_db": loud,
                "hit_loss_ghost_vs_clean_db": ghost_clean, "n_loud": 3, "n_ghost": 4}

    setup = {"kit": "k", "sample_rate": 48000, "scenes": 1, "seconds": 1.0, "bleed": "room", "latency_samples": 63}
    gate = dict(m(9.0, 30.0, 0.6, 40.0, 30.0), threshold_db=-10, release_ms=500.0)
    res = {"setup": setup, "studio": {"raw": m(30, 0, 0, 0, 0)},
           "loud stage": {"raw": m(2, 0, 0, 0, 0), "gate": gate, "denoiser": m(14.5, 24.9, 0.5, 9.0, 0.9),
                          "oracle mask (bound)": m(20, 35, 0.2, 9.0, 0.8)}}
    rows = {line.split(" | ")[0].lstrip("| "): line for line in markdown_table(res).splitlines()
            if " | yes |" in line or " | no |" in line}
    assert "| yes |" in rows["SI-SDR >= best-tuned gate + 5 dB"]       # 14.5 >= 9 + 5
    assert "| no |" in rows["bleed reduction between hits >= 25 dB"]   # 24.9 < 25
    assert "| yes |" in rows["hit loss, loud hits <= 0.5 dB (vs mic)"]
    assert "| no |" in rows["hit loss, ghost notes <= 1 dB (vs mic)"]
    assert "| yes |" in rows["hit loss, ghost notes <= 1 dB (vs clean)"]
    assert rows["bleed reduction between hits >= 25 dB"].rstrip(" |").endswith("35.0")
