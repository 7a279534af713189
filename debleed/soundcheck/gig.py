"""The soundcheck's gig step: the new gig, the input config with the soundcheck's values."""

from __future__ import annotations

from pathlib import Path

import tomlkit

from debleed.fileio import atomic_write_text


def write_gig(config_path, out_path, settings: dict, models: dict, shipped_models: dict) -> str:
    """The input config with the soundcheck's values, one comment per value; written atomically.

    tomlkit keeps the user's comments and layout. Values are written as given (the steps clamp
    them to the parameters' ranges), rounded to 3 decimals.

    Parameters
    ----------
    config_path : path
        The gig config the soundcheck started from (never written to).
    out_path : path
        The new gig (``OUT/gig.toml``).
    settings : dict
        ``{channel: (values, why)}`` or ``{channel: (values, why, denoise)}``: values in user
        units, one sentence per value for its comment; ``denoise`` is ``(on, why)`` on a
        denoised channel (off: every ``denoise*`` key is removed and ``denoise = false`` written).
    models : dict
        ``{channel: model path}`` of the denoised channels.
    shipped_models : dict
        ``{channel: bool}``: True where the channel keeps its start model (nothing written),
        False where ``models`` holds the adapted one (written as ``denoise_model``).

    Returns
    -------
    str
        The text written; a ``[pieces]`` table is kept as it was.
    """
    doc = tomlkit.parse(Path(config_path).read_text())
    for tbl in doc["channel"]:
        name = tbl["name"]
        denoise = None
        if name in settings:
            vals, why, *rest = settings[name]
            denoise = rest[0] if rest else None
            for k, v in vals.items():
                # denoise_limit_db is written even at -100 (no limit): the config's default is another value
                it = tomlkit.item(round(float(v), 3))
                it.comment(f"soundcheck: {why.get(k, '')}")
                tbl[k] = it
        if denoise is not None and not denoise[0]:
            for k in [k for k in tbl if k.startswith("denoise")]:
                del tbl[k]
            it = tomlkit.item(False)
            it.comment(f"soundcheck: {denoise[1]}")
            tbl["denoise"] = it
            continue
        if name in models and not shipped_models.get(name, True):
            it = tomlkit.item(str(Path(models[name]).resolve()))
            it.comment("soundcheck: denoiser fine-tuned on this kit's hits (better than the shipped one on held-out hits)")
            tbl["denoise_model"] = it
    text = tomlkit.dumps(doc)  # a [pieces] table stays as written (debleed live ignores it)
    atomic_write_text(out_path, text)
    return text

