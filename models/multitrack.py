"""Render real-drum multitracks with bleed from installed sampled drum kits.

The one multitrack renderer of debleed: the demo uses it, and so does data synthesis for the
denoiser. Samples are read at run time from Debian packages (never copied into the repo, nothing
written to disk):

- Hydrogen kits of ``hydrogen-drumkits`` (:data:`ACOUSTIC_KITS`), by folder name; the license is
  the ``<license>`` of the kit's ``drumkit.xml``;
- the SoundFont 2 kits of ``avldrums.lv2-soundfont``, as ``"avldrums:STEM"`` where STEM is the
  ``.sf2`` file's stem (:data:`EXTRA_KITS`); read with :mod:`debleed.models.sf2`;
- the ``drum_*`` one-shots of ``sonic-pi-samples``, as ``"sonic-pi"`` (:data:`SONIC_PI_ROLES`).

The licenses of the last two come from their packages' Debian copyright files.

This module is the one-shot *source* of kits and holds :class:`Multitrack`, the one result type of
both mixers; the kit abstraction (pieces x hits x mics) and the multi-mic mixer live in
:mod:`debleed.models.kit`, the groove generator (:func:`groove`, :class:`Hit`,
:func:`role_piece`) and the piezo trigger in :mod:`debleed.models.groove`.
:func:`render_multitrack` renders one-shots dry with per-pair bleed (the demo's and the training
scenes' renderer); :func:`debleed.models.kit.kit_from_oneshots` turns the same one-shots into a
multi-mic kit in one simulated room for the mixer.

A render has, per piece (kick, snare, hihat, toms, cymbals): the *own* signal (the piece
alone, the clean target), and per close mic the *mic* signal: its own piece plus attenuated,
delayed, low-passed copies of every other piece (the bleed), plus a piezo trigger for the kick
and the groove's MIDI notes (General MIDI drum map).
"""

from __future__ import annotations

import fnmatch
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from debleed.errors import DebleedError
from debleed.models.groove import GM, PIECES, ROLES, Hit, groove, piezo_trigger, role_piece  # noqa: F401 (re-exported)
from debleed.models.sf2 import Sf2Source, read_sf2

HYDROGEN_DIRS = (Path("/usr/share/hydrogen/data/drumkits"), Path.home() / ".hydrogen/data/drumkits")
#: The acoustic kits of hydrogen-drumkits that debleed uses (Hydrogen kits only).
ACOUSTIC_KITS = ("ForzeeStereo", "BJA_Pacific", "The Black Pearl 1.0", "rumpf_kit_z01_h2",
                 "ColomboAcousticDrumkit", "Millo-Drums_v.1", "Millo_MultiLayered2", "Millo_MultiLayered3")
#: Debian's copyright file of hydrogen-drumkits: the license of kits whose ``drumkit.xml`` has none.
HYDROGEN_COPYRIGHT = Path("/usr/share/doc/hydrogen-drumkits/copyright")
#: Kits from other Debian packages: the SF2 kits of avldrums.lv2-soundfont and the Sonic Pi
#: one-shots of sonic-pi-samples.
EXTRA_KITS = ("avldrums:Red_Zeppelin_4_LV2", "avldrums:Black_Pearl_4_LV2", "sonic-pi")
AVLDRUMS_PREFIX = "avldrums:"
#: Where avldrums.lv2-soundfont puts its SF2 files (the second holds links to the first).
AVLDRUMS_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/lib/lv2/avldrums.lv2"))
AVLDRUMS_COPYRIGHT = Path("/usr/share/doc/avldrums.lv2-soundfont/copyright")
SONIC_PI_KIT = "sonic-pi"
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
SONIC_PI_COPYRIGHT = Path("/usr/share/doc/sonic-pi-samples/copyright")

# instrument roles, by regex on the kit's instrument names (first match wins, in kit order)
_ROLES = {
    "kick": (r"kick|bass ?drum|bassdrum|\bbd\b", r"stick|\b[234]\b"),
    "snare": (r"snare", r"rim|roll|side|stick|off|2|dry|rock|brush"),
    "hihat_closed": (r"(hi.?hat|hh|\bhat\b).*clos|clos.*(hi.?hat|hh)", r"foot|pedal"),
    "hihat_open": (r"(hi.?hat|hh|\bhat\b).*open|open.*(hi.?hat|hh)", r"semi"),
    "tom_low": (r"(low|floor).*tom|tom.*(low|floor)", r"^$"),
    "tom_mid": (r"(mid|middle).*tom|tom.*(mid|2)|^tom$", r"^$"),
    "tom_high": (r"(hi|high).*tom|tom.*(hi|high|1)", r"[234]$"),
    "crash": (r"crash", r"ride|flink|choke|bell"),
    "ride": (r"ride", r"bell|crash|flink|bow|cup"),
}
#: Per kit, roles whose instrument the name patterns get wrong: ``{kit: {role: instrument name}}``.
#: Millo_MultiLayered3's main snare is called "Snare Rock" (the other is a roll).
_KIT_ROLE_OVERRIDES = {"Millo_MultiLayered3": {"snare": "Snare Rock"}}


#: SF2 kits: per role, the General MIDI keys to try in order, and a pattern that a name of one of
#: the key's samples must match (case-insensitive; SF2 names are cut at 20 characters, so
#: "41-Ludwig16FloorTom-" is followed by "41-Ludwig16FloorTo-1") for the key to be taken. They
#: guard against kits that put something else on a GM key: avldrums' 4-piece kits have two toms
#: (41 floor tom, 43 its edge hit, 45 rack tom, 47 its edge hit), a hi-hat swish on 48 and a
#: crash choke on 50, so ``tom_high`` falls through to 47, the rack tom's edge hit.
SF2_ROLES = {
    "kick": ((36, 35), r"kick|bass"),
    "snare": ((38, 40), r"snare"),
    "hihat_closed": ((42,), r"hat"),
    "hihat_open": ((46,), r"hat"),
    "tom_low": ((41, 43), r"tom"),
    "tom_mid": ((45, 47), r"tom"),
    "tom_high": ((48, 50, 47), r"tom"),
    "crash": ((49, 57), r"crash"),
    "ride": ((51, 59), r"ride"),
}

#: The Sonic Pi kit: per role, ``(file stem, min velocity, max velocity)`` layers. All but
#: drum_heavy_kick, drum_cowbell, drum_roll and drum_cymbal_pedal (unused) are one recordist's
#: kit (menegass, freesound 100051-100067). drum_cymbal_soft/hard are one cymbal at two
#: dynamics (their long-term log spectra correlate at 0.84, as splash soft/hard do) with no ride
#: among the samples, so that cymbal is ridden (``ride``) and the splash is the ``crash``.
SONIC_PI_ROLES = {
    "kick": (("drum_bass_soft", 0.0, 0.5), ("drum_bass_hard", 0.5, 1.0)),
    "snare": (("drum_snare_soft", 0.0, 0.5), ("drum_snare_hard", 0.5, 1.0)),
    "hihat_closed": (("drum_cymbal_closed", 0.0, 1.0),),
    "hihat_open": (("drum_cymbal_open", 0.0, 1.0),),
    "tom_low": (("drum_tom_lo_soft", 0.0, 0.5), ("drum_tom_lo_hard", 0.5, 1.0)),
    "tom_mid": (("drum_tom_mid_soft", 0.0, 0.5), ("drum_tom_mid_hard", 0.5, 1.0)),
    "tom_high": (("drum_tom_hi_soft", 0.0, 0.5), ("drum_tom_hi_hard", 0.5, 1.0)),
    "crash": (("drum_splash_soft", 0.0, 0.5), ("drum_splash_hard", 0.5, 1.0)),
    "ride": (("drum_cymbal_soft", 0.0, 0.5), ("drum_cymbal_hard", 0.5, 1.0)),
}


@dataclass
class Instrument:
    """One kit instrument: name and velocity layers ``(min, max, gain, source)``.

    ``min`` and ``max`` are velocities in [0, 1]; ``gain`` is linear; ``source`` is an audio
    file (Path) or a zone of an SF2 file (:class:`debleed.models.sf2.Sf2Source`). Layers are
    sorted by ``min``.
    """

    name: str
    layers: list


@dataclass
class Kit:
    """A drum kit: name, where it lies, license text and the instrument of each role.

    ``path`` is the Hydrogen kit folder, the SF2 file or the Sonic Pi samples folder.
    """

    name: str
    path: Path
    license: str
    roles: dict = field(default_factory=dict)


def find_kit_dir(name: str) -> Path:
    """Folder of an installed Hydrogen kit.

    Raises
    ------
    DebleedError
        If it is not installed (names the package to install).
    """
    for base in HYDROGEN_DIRS:
        if (base / name / "drumkit.xml").is_file():
            return base / name
    raise DebleedError(f"drum kit {name!r} not found in {', '.join(map(str, HYDROGEN_DIRS))}: "
                       "install Debian's hydrogen-drumkits (`apt-get install hydrogen-drumkits`); "
                       f"other kits: {', '.join(EXTRA_KITS)}")


def _strip_ns(root):
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


@lru_cache(maxsize=None)
def load_kit(name: str) -> Kit:
    """Load a kit by name and assign its instruments to roles (kick, snare, ...).

    Parameters
    ----------
    name : str
        A Hydrogen kit folder name (e.g. one of :data:`ACOUSTIC_KITS`), ``"avldrums:STEM"`` for
        an SF2 kit of avldrums.lv2-soundfont, or ``"sonic-pi"`` (see :data:`EXTRA_KITS`).

    Returns
    -------
    Kit
        Hydrogen kits have the roles their instrument names match (at least kick, snare and
        hihat_closed); the SF2 and Sonic Pi kits have all of :data:`ROLES`.

    Raises
    ------
    DebleedError
        If the kit is not installed (names the Debian package), an ``avldrums:`` stem is unknown
        (lists those installed), or a role cannot be filled.
    """
    if name.startswith(AVLDRUMS_PREFIX):
        return _load_sf2_kit(name)
    if name == SONIC_PI_KIT:
        return _load_sonic_pi_kit()
    return _load_hydrogen_kit(name)


def _load_hydrogen_kit(name: str) -> Kit:
    """Parse a Hydrogen kit's ``drumkit.xml`` and assign instruments to roles by name."""
    path = find_kit_dir(name)
    root = _strip_ns(ET.parse(path / "drumkit.xml").getroot())
    lic = (root.findtext("license") or "").strip() or _hydrogen_license(name)
    instruments = []
    for inst in root.iter("instrument"):
        iname = (inst.findtext("name") or "").strip()
        layers = []
        for layer in inst.iter("layer"):
            fn = layer.findtext("filename")
            if fn and (path / fn).is_file():
                layers.append((float(layer.findtext("min") or 0), float(layer.findtext("max") or 1),
                               float(layer.findtext("gain") or 1), path / fn))
        if not layers and inst.findtext("filename") and (path / inst.findtext("filename")).is_file():
            layers.append((0.0, 1.0, 1.0, path / inst.findtext("filename")))
        if iname and layers:
            instruments.append(Instrument(iname, sorted(layers, key=lambda v: v[0])))
    kit = Kit(name=name, path=path, license=lic)
    taken = set()
    for role, iname in _KIT_ROLE_OVERRIDES.get(name, {}).items():
        inst = next((i for i in instruments if i.name == iname), None)
        if inst is not None:
            kit.roles[role] = inst
            taken.add(id(inst))
    for role, (pattern, exclude) in _ROLES.items():
        if role in kit.roles:
            continue
        for inst in instruments:
            low = inst.name.lower()
            if id(inst) in taken:
                continue
            if re.search(pattern, low) and not re.search(exclude, low):
                kit.roles[role] = inst
                taken.add(id(inst))
                break
    for must in ("kick", "snare", "hihat_closed"):
        if must not in kit.roles:
            raise DebleedError(f"kit {name!r}: no instrument found for {must} "
                               f"(instruments: {', '.join(i.name for i in instruments)})")
    return kit


def _hydrogen_license(name: str) -> str:
    """License of a Hydrogen kit from Debian's hydrogen-drumkits copyright file ("unknown" if silent)."""
    para = (_dep5_match(_dep5(HYDROGEN_COPYRIGHT), f"drumkits/{name}.h2drumkit")
            if HYDROGEN_COPYRIGHT.is_file() else None)
    if para is None or not para.get("license"):
        return "unknown"
    return (f"{_first_line(para['license'])}, Copyright {' '.join(para.get('copyright', '').split())} "
            f"(Debian hydrogen-drumkits, {HYDROGEN_COPYRIGHT})")


def avldrums_stems() -> list[str]:
    """Stems of the installed avldrums.lv2-soundfont SF2 files (sorted; empty if none)."""
    return sorted({p.stem for d in AVLDRUMS_DIRS if d.is_dir() for p in d.glob("*.sf2")})


def _find_sf2(name: str) -> Path:
    stem = name[len(AVLDRUMS_PREFIX):]
    for d in AVLDRUMS_DIRS:
        if stem and "/" not in stem and (d / f"{stem}.sf2").is_file():
            return d / f"{stem}.sf2"
    have = avldrums_stems()
    where = ", ".join(map(str, AVLDRUMS_DIRS))
    if not have:
        raise DebleedError(f"drum kit {name!r}: no SF2 files in {where}: install Debian's "
                           "avldrums.lv2-soundfont (`apt-get install avldrums.lv2-soundfont`)")
    raise DebleedError(f"drum kit {name!r}: no SF2 file {stem + '.sf2'!r} in {where} (installed: "
                       f"{', '.join(AVLDRUMS_PREFIX + s for s in have)}; more come with Debian's "
                       "avldrums.lv2-soundfont)")


def _dep5(path: Path) -> list[dict]:
    """The paragraphs of a Debian machine-readable copyright file (DEP-5) as dicts.

    Field names are lower-cased; continuation lines are joined with newlines, "." lines dropped.
    """
    paras, cur, key = [], {}, None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, None
        elif line[0] in " \t":
            if key is not None and line.strip() != ".":
                cur[key] = (cur[key] + "\n" + line.strip()).strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            cur[key] = value.strip()
    if cur:
        paras.append(cur)
    return paras


def _dep5_match(paras: list[dict], file_path: str) -> dict | None:
    """The paragraph that governs ``file_path`` (the last whose Files patterns match it)."""
    hit = None
    for p in paras:
        if any(fnmatch.fnmatchcase(file_path, pat) for pat in p.get("files", "").split()):
            hit = p
    return hit


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _sf2_license(sf2_path: Path, info: dict) -> str:
    """License of an avldrums SF2: its Debian copyright paragraph, and the SF2's own INFO."""
    own = "; ".join(f"SF2 {k}: {info[k]}" for k in ("ICOP", "IENG") if info.get(k))
    para = _dep5_match(_dep5(AVLDRUMS_COPYRIGHT), f"sf2/{sf2_path.name}") if AVLDRUMS_COPYRIGHT.is_file() else None
    if para is None or not para.get("license"):
        return f"{info.get('ICOP') or 'unknown'} ({own}; {AVLDRUMS_COPYRIGHT} not found or silent)"
    return (f"{_first_line(para['license'])}, Copyright {' '.join(para.get('copyright', '').split())} "
            f"(Debian avldrums.lv2-soundfont, {AVLDRUMS_COPYRIGHT}, Files: {para['files']}; {own})")


def _sf2_layer_name(names: list[str]) -> str:
    """The first sample's name without its layer number ("38-PearlSnare-1" -> "38-PearlSnare")."""
    return re.sub(r"[-_ ]*\d*$", "", names[0]) or names[0]


def _load_sf2_kit(name: str) -> Kit:
    """An avldrums SF2 kit: each role is the zones of one General MIDI key of the first preset.

    Notes
    -----
    The preset is the file's first by (bank, program); a role takes the first key of
    :data:`SF2_ROLES` not taken by an earlier role that plays a sample named like the role.
    Each zone becomes a layer: MIDI velocities ``lo..hi`` become the velocity range
    ``((lo - 1) / 127, hi / 127)``, i.e. a velocity ``v`` in (0, 1] plays the zone whose MIDI range
    holds ``ceil(127 v)``, so the layers tile (0, 1] without gaps; the gain is
    ``10 ** (-initialAttenuation / 200)`` (centibels, SF2 spec 8.1.3); the source is the zone's
    frames at the sample's own rate, a stereo pair averaged to mono (the avldrums files hold
    only mono 44.1 kHz samples and no initialAttenuation, so their gains are 1). Zones with a velocity range
    already taken for that key (round robins, the other half of a stereo pair) are skipped: the
    first in file order plays.
    """
    path = _find_sf2(name)
    sfont = read_sf2(path)
    if not sfont.presets:
        raise DebleedError(f"drum kit {name!r}: {path} has no presets")
    preset = sfont.presets[0]
    kit = Kit(name=name, path=path, license=_sf2_license(path, sfont.info))
    taken, tried = set(), {}
    for role, (keys, pattern) in SF2_ROLES.items():
        for key in keys:
            zones = preset.zones_for_key(key)
            names = [sfont.samples[z.sample].name for z in zones]
            tried.setdefault(role, []).append(f"{key}: {_sf2_layer_name(names) if names else 'nothing'}")
            if key in taken or not zones or not any(re.search(pattern, n, re.I) for n in names):
                continue
            layers, seen = [], set()
            for z in zones:
                if z.vel_range in seen:
                    continue
                seen.add(z.vel_range)
                layers.append(((z.vel_range[0] - 1) / 127.0 if z.vel_range[0] > 0 else 0.0,
                               z.vel_range[1] / 127.0, 10.0 ** (-z.attenuation_cb / 200.0), sfont.source(z)))
            layers.sort(key=lambda v: (v[0], v[1]))
            kit.roles[role] = Instrument(f"{zones[0].instrument} (key {key}: {_sf2_layer_name(names)})", layers)
            taken.add(key)
            break
        else:
            raise DebleedError(f"drum kit {name!r}: no key of preset {preset.name!r} in {path} plays a "
                               f"{role} (tried {'; '.join(tried[role])}; wanted sample names matching "
                               f"{pattern!r})")
    return kit


def _sonic_pi_license(files: list[str]) -> str:
    """Per-file licenses of Sonic Pi samples from Debian's sonic-pi-samples copyright file."""
    if not SONIC_PI_COPYRIGHT.is_file():
        return f"unknown: {SONIC_PI_COPYRIGHT} not found (Debian sonic-pi-samples)"
    paras = _dep5(SONIC_PI_COPYRIGHT)
    parts, kinds = [], []
    for fn in files:
        p = _dep5_match(paras, f"etc/samples/{fn}") or {}
        lic = _first_line(p.get("license", "")) or "unknown"
        kinds.append(lic)
        parts.append(f"{fn}: {lic}, {' '.join(p.get('copyright', '?').split())}"
                     + (f", {p['source']}" if p.get("source") else ""))
    return f"{'/'.join(sorted(set(kinds)))} per file ({SONIC_PI_COPYRIGHT}): " + "; ".join(parts)


def _load_sonic_pi_kit() -> Kit:
    """The Sonic Pi one-shots of :data:`SONIC_PI_ROLES` as a kit (gains 1, files at 44.1 kHz)."""
    kit = Kit(name=SONIC_PI_KIT, path=SONIC_PI_DIR, license="")
    files = []
    for role, layers in SONIC_PI_ROLES.items():
        out = []
        for stem, lo, hi in layers:
            p = SONIC_PI_DIR / f"{stem}.flac"
            if not p.is_file():
                raise DebleedError(f"drum kit {SONIC_PI_KIT!r}: {p} not found: install Debian's "
                                   "sonic-pi-samples (`apt-get install sonic-pi-samples`)")
            out.append((lo, hi, 1.0, p))
            files.append(p.name)
        kit.roles[role] = Instrument("/".join(s for s, _, _ in layers), out)
    kit.license = _sonic_pi_license(files)
    return kit


@lru_cache(maxsize=512)
@lru_cache(maxsize=1024)
def _read_sample(source, sample_rate: int) -> np.ndarray:
    """A layer's audio as mono float32 (n_frames,) at ``sample_rate`` Hz (soxr where needed).

    ``source`` is an audio file (Path; channels averaged) or an
    :class:`~debleed.models.sf2.Sf2Source`. Cached (kits are read-only package files); the
    returned array is read-only.
    """
    if isinstance(source, Sf2Source):
        mono, sr = source.read(), source.sample_rate
    else:
        data, sr = sf.read(str(source), dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
    if sr != sample_rate:
        import soxr

        mono = soxr.resample(mono, sr, sample_rate).astype(np.float32)
    mono = np.ascontiguousarray(mono, np.float32)
    mono.flags.writeable = False
    return mono


def _pitched(x: np.ndarray, semitones: float, sample_rate: int) -> np.ndarray:
    """``x`` played ``semitones`` higher (faster and shorter; lower: slower and longer), soxr."""
    import soxr

    ratio = 2.0 ** (semitones / 12.0)
    return soxr.resample(x, sample_rate * ratio, sample_rate).astype(np.float32)


def instrument_hit(inst: Instrument, velocity: float, sample_rate: int, semitones: float = 0.0) -> np.ndarray:
    """The one-shot of ``inst`` for ``velocity`` in (0, 1], scaled by velocity, mono float32.

    Plays the first layer (in ``min`` order) whose ``[min, max]`` holds ``velocity``, else the
    last layer; ``semitones`` (default 0) retunes it by resampling (a tighter or slacker head:
    pitch and decay change together).
    """
    layer = inst.layers[-1]
    for lo, hi, gain, p in inst.layers:
        if lo <= velocity <= hi:
            layer = (lo, hi, gain, p)
            break
    x = _read_sample(layer[3], sample_rate)
    if semitones:
        x = _pitched(x, float(semitones), sample_rate)
    return x * np.float32(layer[2] * velocity)


#: Default bleed into each close mic, dB relative to the piece's own level at its own mic.
DEFAULT_BLEED_DB = {
    "kick": {"snare": -14.0, "hihat": -26.0, "toms": -18.0, "cymbals": -22.0},
    "snare": {"kick": -16.0, "hihat": -10.0, "toms": -16.0, "cymbals": -14.0},
    "hihat": {"kick": -20.0, "snare": -8.0, "toms": -18.0, "cymbals": -10.0},
    "toms": {"kick": -16.0, "snare": -10.0, "hihat": -16.0, "cymbals": -10.0},
    "cymbals": {"kick": -18.0, "snare": -10.0, "hihat": -10.0, "toms": -12.0},
}


@dataclass
class Multitrack:
    """A drum multitrack: a groove played into every mic, and each mic's own pieces alone.

    Both mixers return it: :func:`render_multitrack` (a groove on an installed kit, one close
    mic per piece, bleed by delay and low-pass or room IRs) and :func:`debleed.models.kit.mix`
    (a groove on a multi-mic kit, bleed as the kit's mics heard it).

    Attributes
    ----------
    sample_rate : int
        Hz.
    mics : dict
        ``{mic: float32 (n_frames,)}``: each mic as it hears the groove (own pieces plus bleed).
    own : dict
        ``{mic: float32 (n_frames,)}``: each mic's own pieces only (the clean target of a
        channel on that mic).
    hits : list of Hit
        The groove.
    midi : list of (frame, bytes)
        Note-on messages of the groove (channel 10, General MIDI notes).
    kick_trigger : ndarray or None
        Piezo trigger signal of the kick, float32 (n_frames,), where the mixer renders one.
    kit : str
        Kit name ("" where the mixer does not know it); ``license`` its license text.
    """

    sample_rate: int
    mics: dict
    own: dict
    hits: list
    midi: list
    kick_trigger: np.ndarray | None = None
    kit: str = ""
    license: str = ""

    def piece_hits(self, piece: str) -> list[Hit]:
        """The hits that belong to ``piece`` (e.g. all toms for ``toms``)."""
        return [h for h in self.hits if role_piece(h.role) == piece]


def _one_pole_lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    from scipy.signal import lfilter

    a = np.exp(-2.0 * np.pi * cutoff_hz / sample_rate)
    return lfilter([1.0 - a], [1.0, -a], x).astype(np.float32)


def render_multitrack(*, kit: str = "ForzeeStereo", seconds: float = 8.0, sample_rate: int = 48000,
                      bpm: float = 100.0, seed: int = 0, bleed_db: dict | None = None,
                      hits: list[Hit] | None = None, bleed_irs: dict | None = None,
                      tuning: dict | None = None) -> Multitrack:
    """Render a groove on a real kit into close mics with bleed.

    Parameters
    ----------
    kit : str
        Installed kit (see :func:`load_kit`): a Hydrogen kit (:data:`ACOUSTIC_KITS`),
        ``"avldrums:STEM"`` or ``"sonic-pi"`` (:data:`EXTRA_KITS`); default "ForzeeStereo".
    seconds : float
        Length, s, > 0; default 8.
    sample_rate : int
        Hz; default 48000. Samples are resampled with soxr where needed.
    bpm, seed :
        Groove tempo and random seed.
    bleed_db : dict, optional
        ``{mic: {piece: dB}}`` bleed levels; default :data:`DEFAULT_BLEED_DB`.
    hits : list of Hit, optional
        Play these instead of :func:`groove`.
    bleed_irs : dict, optional
        ``{mic: {piece: ir}}`` room impulse responses (float (n_taps,), e.g. from
        :func:`room_bleed_irs`). Where given, the bleed of that piece into that mic is the piece
        convolved with the IR, scaled to unit IR energy, times ``10**(dB/20)``, instead of the
        default delay and low-pass.
    tuning : dict, optional
        ``{piece: semitones}``: retune every one-shot of that piece by resampling (e.g.
        ``{"snare": -2.0}``); default none.

    Notes
    -----
    Bleed of piece P into mic M is P's direct signal times ``10**(dB/20)``, delayed by 1-4 ms
    (mic distance) and low-passed at 6 kHz (off-axis colour), unless ``bleed_irs`` has an IR. The kick trigger is a 180 Hz
    piezo burst (8 ms decay) per kick hit plus snare crosstalk at -30 dB.
    """
    if not seconds > 0:
        raise DebleedError(f"seconds must be > 0, got {seconds!r}")
    k = load_kit(kit)
    n = int(round(seconds * sample_rate))
    hits = groove(seconds, sample_rate, bpm=bpm, seed=seed) if hits is None else hits
    direct = {p: np.zeros(n, np.float32) for p in PIECES}
    for h in hits:
        role = h.role if h.role in k.roles else {"hihat_open": "hihat_closed", "tom_low": "tom_mid",
                                                 "tom_high": "tom_mid", "ride": "crash"}.get(h.role, h.role)
        if role not in k.roles:
            continue
        s = instrument_hit(k.roles[role], h.velocity, sample_rate, (tuning or {}).get(role_piece(h.role), 0.0))
        m = min(s.size, n - h.frame)
        if m > 0:
            direct[role_piece(h.role)][h.frame:h.frame + m] += s[:m]
    # normalise each piece to a -6 dBFS peak at its own mic
    for p, x in direct.items():
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak > 0:
            x *= np.float32(0.5 / peak)
    bleed_db = bleed_db or DEFAULT_BLEED_DB
    rng = np.random.default_rng(seed + 1)
    mics = {}
    for mic in PIECES:
        y = direct[mic].copy()
        for piece, db in bleed_db.get(mic, {}).items():
            d = int(rng.uniform(0.001, 0.004) * sample_rate)
            ir = (bleed_irs or {}).get(mic, {}).get(piece)
            if ir is not None:
                from scipy.signal import fftconvolve

                ir = np.asarray(ir, np.float64)
                ir = ir / max(float(np.sqrt(np.sum(ir ** 2))), 1e-12)
                b = fftconvolve(direct[piece], ir)[:n].astype(np.float32) * np.float32(10.0 ** (db / 20.0))
                y += b
                continue
            b = _one_pole_lowpass(direct[piece], 6000.0, sample_rate) * np.float32(10.0 ** (db / 20.0))
            y[d:] += b[:n - d]
        mics[mic] = y
    trig = piezo_trigger(hits, n, sample_rate, piece="kick", crosstalk_db={"snare": -30.0})
    midi = [(h.frame, bytes([0x99, GM[h.role] if h.role in GM else GM["snare"], max(1, min(127, int(round(h.velocity * 127))))]))
            for h in hits]
    return Multitrack(sample_rate=sample_rate, own=direct, mics=mics, kick_trigger=trig, hits=hits,
                      midi=midi, kit=kit, license=k.license)


#: Typical piece positions relative to the snare (m; x to the drummer's right, y away from the
#: drummer, z up), jittered per room by :func:`room_bleed_irs`.
_KIT_LAYOUT = {"snare": (0.0, 0.0, 0.65), "kick": (0.35, 0.35, 0.3), "hihat": (-0.45, 0.1, 0.95),
               "toms": (0.35, 0.25, 0.8), "cymbals": (0.1, 0.6, 1.4)}


def room_bleed_irs(sample_rate: int, rng: np.random.Generator, *, mic: str = "snare",
                   rt60_s: tuple = (0.2, 1.0), max_order: int = 20) -> dict:
    """Impulse responses from every other piece into one close mic, in a random room.

    A shoebox room (pyroomacoustics image-source method) of random size (3-10 m by 3-9 m by
    2.5-4.5 m) and reverberation time (uniform in ``rt60_s``), with the kit at a random place,
    pieces jittered around the usual layout by up to 15 cm, and a cardioid close mic 3-8 cm
    above the piece ``mic``, aimed at it (axis jittered).

    Parameters
    ----------
    sample_rate : int
        Hz.
    rng : numpy.random.Generator
        Random source (a fixed seed gives the same room).
    mic : str
        The close mic's piece; default "snare".
    rt60_s : (float, float)
        Range of the room's RT60, s; default 0.2 to 1.0.
    max_order : int
        Image-source order cap (higher: longer tail, slower); default 20.

    Returns
    -------
    dict
        ``{mic: {piece: ir}}`` float64 IRs for every piece but ``mic`` (pass as ``bleed_irs`` to
        :func:`render_multitrack`). Each IR includes the propagation delay.

    Notes
    -----
    Needs pyroomacoustics (a runtime dependency of debleed).
    """
    import pyroomacoustics as pra
    from pyroomacoustics.directivities import Cardioid, DirectionVector

    dims = np.array([rng.uniform(3.0, 10.0), rng.uniform(3.0, 9.0), rng.uniform(2.5, 4.5)])
    rt60 = float(rng.uniform(*rt60_s))
    try:
        e_abs, order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # room too absorbent for this RT60: take the most reverberant possible
        e_abs, order = 0.05, max_order
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(float(e_abs)),
                       max_order=int(min(order, max_order)))
    centre = np.array([rng.uniform(1.2, dims[0] - 1.2), rng.uniform(1.2, dims[1] - 1.2), 0.0])
    pos = {p: centre + np.asarray(xyz) + rng.uniform(-0.15, 0.15, 3) * (p != mic)
           for p, xyz in _KIT_LAYOUT.items()}
    others = [p for p in PIECES if p != mic]
    for p in others:
        room.add_source(np.clip(pos[p], 0.1, dims - 0.1))
    mic_pos = pos[mic] + np.array([rng.uniform(-0.05, 0.05), -0.08, rng.uniform(0.03, 0.08)])
    aim = Cardioid(orientation=DirectionVector(azimuth=float(rng.uniform(60.0, 120.0)),
                                               colatitude=float(rng.uniform(130.0, 170.0)), degrees=True))
    room.add_microphone(np.clip(mic_pos, 0.1, dims - 0.1), directivity=aim)
    room.compute_rir()
    return {mic: {p: np.asarray(room.rir[0][i], np.float64) for i, p in enumerate(others)}}
