"""Kits as pieces x hits x mics, and the mixer.

A :class:`MultiMicKit` holds recorded hits; each :class:`KitHit` is one stroke of one piece
(kick, snare, hihat, toms, cymbals) as heard by *every* mic of the kit, like a multi-mic sample
library. Sources:

- :func:`kit_from_oneshots`: the one-shots of an installed kit (Hydrogen, avldrums SF2, Sonic Pi;
  see :func:`debleed.models.multitrack.load_kit`) placed in a simulated room
  (:func:`debleed.models.multitrack.room_bleed_irs`): the close mic hears its piece dry, every
  other mic hears it through the room at a given bleed level;
- :func:`kit_from_drumgizmo`: a DrumGizmo multi-mic kit (``drumkit.xml`` and its instrument
  files; every sample is one stroke recorded by every channel);
- :func:`debleed.soundcheck.kit_from_takes`: genuine hits cut from soundcheck takes.

The groove generator (:func:`debleed.models.groove.groove`, re-exported here) and one mixer
(:func:`mix`) turn a kit into multitracks: each groove hit plays the kit hit of its
role closest in velocity (round robin between the two closest), scaled to the groove's
velocity, into every mic; the bleed of each piece into the other mics can be raised or lowered
(``bleed_offset_db``). The mixer also returns what each close mic should sound like without
bleed (its own pieces only: the clean target), the groove's MIDI notes and piezo triggers.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from debleed.errors import DebleedError
from debleed.models.groove import GM, PIECES, ROLES, Hit, groove, piezo_trigger, role_piece  # noqa: F401 (re-exported)
from debleed.models.multitrack import (_ROLES, DEFAULT_BLEED_DB, Multitrack, _read_sample, _strip_ns, load_kit,
                                      room_bleed_irs)
from debleed.models.synth import REF_MICS, Scene, key_signal

#: A role a kit lacks is played by this one (as the multitrack renderer does).
ROLE_FALLBACK = {"hihat_open": "hihat_closed", "tom_low": "tom_mid", "tom_high": "tom_mid", "ride": "crash",
                 "tom_mid": "tom_low", "crash": "ride"}
#: The first role of each piece (what a piece's hits are called when only the piece is known).
PIECE_ROLE = {"kick": "kick", "snare": "snare", "hihat": "hihat_closed", "toms": "tom_mid", "cymbals": "crash"}


@dataclass
class KitHit:
    """One stroke of one piece at every mic of a kit.

    Attributes
    ----------
    piece : str
        kick, snare, hihat, toms or cymbals.
    role : str
        One of :data:`~debleed.models.multitrack.ROLES` (e.g. ``tom_low``).
    velocity : float
        In (0, 1]: the stroke's strength (amplitude relative to the piece's loudest stroke for
        measured hits, the sampler's velocity for one-shots).
    audio : ndarray, float32, shape (n_mics, n)
        The stroke at every mic (rows in the kit's ``mics`` order).
    onset : int
        Frame of the stroke's first sample in ``audio`` (frames before it are pre-roll).
    source : str
        Where it came from (a file, a layer, a soundcheck frame). Hits with the same source are
        the same recording (played at another velocity) and are never split apart.
    """

    piece: str
    role: str
    velocity: float
    audio: np.ndarray
    onset: int = 0
    source: str = ""


@dataclass
class MultiMicKit:
    """A kit as pieces x hits x mics.

    Attributes
    ----------
    name : str
    sample_rate : int
        Hz.
    mics : tuple of str
        Mic names (the rows of every hit's ``audio``).
    hits : list of KitHit
    close_mic : dict
        ``{piece: mic}``: the close mic of each piece (pieces no mic claims, e.g. cymbals with
        no overhead, are absent).
    license : str
    """

    name: str
    sample_rate: int
    mics: tuple
    hits: list = field(default_factory=list)
    close_mic: dict = field(default_factory=dict)
    license: str = ""

    @property
    def pieces(self) -> list[str]:
        """Pieces with at least one hit (kit order: kick, snare, hihat, toms, cymbals, others)."""
        have = {h.piece for h in self.hits}
        return [p for p in PIECES if p in have] + sorted(have - set(PIECES))

    def of(self, piece: str | None = None, role: str | None = None) -> list[KitHit]:
        """The hits of one piece or one role."""
        return [h for h in self.hits if (piece is None or h.piece == piece) and (role is None or h.role == role)]

    def own_pieces(self, mic: str) -> list[str]:
        """The pieces whose close mic is ``mic``."""
        return [p for p, m in self.close_mic.items() if m == mic]

    def split(self, every: int = 2, keep: int = 0) -> tuple["MultiMicKit", "MultiMicKit"]:
        """Split the hits in two kits that share no recording.

        Per role, the distinct recordings (``source``) are sorted by velocity and dealt in turn:
        recording ``i`` goes to the first kit when ``i % every == keep``, else to the second. A
        role with a single recording goes to both (there is nothing to hold out).

        Returns
        -------
        (MultiMicKit, MultiMicKit)
            ``(selected, rest)``.
        """
        if int(every) < 2 or not 0 <= int(keep) < int(every):
            raise DebleedError(f"split needs every >= 2 and 0 <= keep < every, got every={every!r}, keep={keep!r}")
        a, b = [], []
        for role in sorted({h.role for h in self.hits}):
            hits = self.of(role=role)
            sources = sorted({h.source for h in hits},
                             key=lambda s: (np.mean([h.velocity for h in hits if h.source == s]), s))
            if len(sources) == 1:
                a.extend(hits)
                b.extend(hits)
                continue
            first = {s for i, s in enumerate(sources) if i % every == keep}
            a.extend(h for h in hits if h.source in first)
            b.extend(h for h in hits if h.source not in first)
        make = lambda hs, tag: MultiMicKit(f"{self.name} ({tag})", self.sample_rate, self.mics, hs,  # noqa: E731
                                           dict(self.close_mic), self.license)
        return make(a, "split A"), make(b, "split B")

    def pick(self, role: str, velocity: float, rng: np.random.Generator) -> KitHit | None:
        """The hit that plays ``role`` at ``velocity``: of the role's hits (or its fallback
        role's, :data:`ROLE_FALLBACK`, or the piece's), one of the two closest in log velocity
        (round robin), or None if the piece has no hit at all."""
        cands = self.of(role=role)
        if not cands and role in ROLE_FALLBACK:
            cands = self.of(role=ROLE_FALLBACK[role])
        if not cands:
            cands = self.of(piece=role_piece(role))
        if not cands:
            return None
        d = np.array([abs(np.log(max(h.velocity, 1e-4) / max(velocity, 1e-4))) for h in cands])
        order = np.argsort(d, kind="stable")
        k = min(2, len(cands))
        return cands[int(order[int(rng.integers(0, k))])]


def mix(kit: MultiMicKit, hits: list[Hit], n_frames: int, *, bleed_offset_db=0.0, seed: int = 0,
        midi_lag_s: float = 0.0) -> Multitrack:
    """Mix ``hits`` (a groove) from ``kit`` into every mic.

    Parameters
    ----------
    kit : MultiMicKit
    hits : list of Hit
        E.g. from :func:`groove`; a hit at frame ``f`` places its kit hit's onset at ``f``.
    n_frames : int
        Length of the mix, >= 1.
    bleed_offset_db : float or dict
        Gain on every piece's bleed (its sound in mics that are not its close mic), dB: one
        value for all pieces or ``{piece: dB}``; default 0 (the kit's own bleed).
    seed : int
        Round-robin choices.
    midi_lag_s : float
        MIDI notes come this long after the hit (a trigger module's delay), s; default 0.

    Returns
    -------
    Multitrack
        ``mics`` and ``own`` keyed by the kit's mics; MIDI notes at the hits' frames plus
        ``midi_lag_s``.
    """
    if int(n_frames) < 1:
        raise DebleedError(f"n_frames must be >= 1, got {n_frames!r}")
    n = int(n_frames)
    rng = np.random.default_rng([seed, 99])
    mics = {m: np.zeros(n, np.float64) for m in kit.mics}
    own = {m: np.zeros(n, np.float64) for m in kit.mics}
    for h in hits:
        kh = kit.pick(h.role, h.velocity, rng)
        if kh is None:
            continue
        g = float(h.velocity) / max(kh.velocity, 1e-4)
        close = kit.close_mic.get(kh.piece)
        off = bleed_offset_db.get(kh.piece, 0.0) if isinstance(bleed_offset_db, dict) else float(bleed_offset_db)
        start = int(h.frame) - kh.onset
        a0, a1 = max(0, -start), min(kh.audio.shape[1], n - start)
        if a1 <= a0:
            continue
        for r, m in enumerate(kit.mics):
            seg = kh.audio[r, a0:a1] * g
            if m == close:
                own[m][start + a0:start + a1] += seg
                mics[m][start + a0:start + a1] += seg
            else:
                mics[m][start + a0:start + a1] += seg * 10.0 ** (off / 20.0)
    lag = int(round(midi_lag_s * kit.sample_rate))
    midi = [(h.frame + lag, bytes([0x99, GM.get(h.role, GM["snare"]), max(1, min(127, int(round(h.velocity * 127))))]))
            for h in hits if 0 <= h.frame + lag < n]
    return Multitrack(sample_rate=kit.sample_rate, mics={m: v.astype(np.float32) for m, v in mics.items()},
                  own={m: v.astype(np.float32) for m, v in own.items()}, hits=list(hits), midi=midi)


def kit_from_oneshots(name: str, sample_rate: int, *, seed: int = 0, bleed_db: dict | None = None,
                      max_seconds: float = 1.2, mics=None, room: bool = True) -> MultiMicKit:
    """An installed kit's one-shots as a multi-mic kit in a simulated room.

    Every velocity layer of every role becomes one hit (at the layer's top velocity, so the
    mixer scales it down for softer strokes, as the sampler does). Each piece's loudest hit
    peaks at -6 dBFS at its close mic (dry); the other mics hear it through one shoebox room
    (:func:`room_bleed_irs`, the same room and kit layout for every mic: seed ``seed``), the IR
    scaled to unit energy, times ``10 ** (bleed_db[mic][piece] / 20)``.

    Parameters
    ----------
    name : str
        A kit of :func:`~debleed.models.multitrack.load_kit`.
    sample_rate : int
        Hz.
    seed : int
        The room.
    bleed_db : dict, optional
        ``{mic: {piece: dB}}``; default :data:`DEFAULT_BLEED_DB`. A pair not listed gets -30 dB.
    max_seconds : float
        Hits are cut to this length, s (> 0; default 1.2).
    mics : sequence of str
        The close mics, one per piece (default kick, snare, hihat, toms, cymbals).
    room : bool
        Room IRs (default); False: a 2 ms delay instead (fast, for tests).
    """
    from scipy.signal import fftconvolve


    if not max_seconds > 0:
        raise DebleedError(f"max_seconds must be > 0, got {max_seconds!r}")
    k = load_kit(name)
    bleed_db = bleed_db or DEFAULT_BLEED_DB
    mics = tuple(PIECES if mics is None else mics)
    n_max = int(round(max_seconds * sample_rate))
    dry = []
    for role, inst in k.roles.items():
        for i, (lo, hi, gain, src) in enumerate(inst.layers):
            x = np.asarray(_read_sample(src, sample_rate), np.float64)[:n_max] * gain * hi
            dry.append((role, role_piece(role), float(hi), x, f"{name}:{role}:{i}"))
    peak = {}
    for _, p, _, x, _ in dry:
        peak[p] = max(peak.get(p, 0.0), float(np.max(np.abs(x))) if x.size else 0.0)
    irs = {}
    if room:
        for m in mics:
            if m in PIECES:
                irs[m] = room_bleed_irs(sample_rate, np.random.default_rng(seed), mic=m)[m]
    hits = []
    for role, p, v, x, src in dry:
        x = x * (0.5 / max(peak[p], 1e-12))
        audio = np.zeros((len(mics), n_max), np.float32)
        for r, m in enumerate(mics):
            if m == p:
                audio[r, :x.size] = x
                continue
            db = bleed_db.get(m, {}).get(p, -30.0)
            ir = irs.get(m, {}).get(p)
            if ir is None:
                ir = np.zeros(int(0.002 * sample_rate) + 1)
                ir[-1] = 1.0
            ir = ir / max(float(np.sqrt(np.sum(ir ** 2))), 1e-12)
            b = fftconvolve(x, ir)[:n_max] * 10.0 ** (db / 20.0)
            audio[r, :b.size] = b
        hits.append(KitHit(piece=p, role=role, velocity=v, audio=audio, onset=0, source=src))
    return MultiMicKit(name=name, sample_rate=int(sample_rate), mics=mics, hits=hits,
                       close_mic={p: p for p in PIECES if p in mics}, license=k.license)


def _dg_role(name: str) -> str | None:

    low = name.lower()
    for role, (pattern, exclude) in _ROLES.items():
        if re.search(pattern, low) and not re.search(exclude, low):
            return role
    for word, role in (("kick", "kick"), ("bd", "kick"), ("snare", "snare"), ("sn", "snare"), ("hi.?hat", "hihat_closed"), ("hat", "hihat_closed"),
                       ("hh", "hihat_closed"), ("tom", "tom_mid"), ("crash", "crash"), ("ride", "ride"),
                       ("china", "crash"), ("splash", "crash"), ("cymbal", "crash")):
        if re.search(rf"\b{word}", low):
            return role
    return None


def kit_from_drumgizmo(path, sample_rate: int, *, max_seconds: float = 2.0, close_mic: dict | None = None) -> MultiMicKit:
    """A DrumGizmo kit (its ``drumkit.xml``) as a multi-mic kit.

    Every ``<sample>`` of every instrument file is one hit: its ``<audiofile>`` elements give
    the stroke at each channel (``channel`` name, ``file``, 1-based ``filechannel``), mapped to
    the kit's channels by the instrument's ``<channelmap in= out=>``. Velocity is
    ``sqrt(power / max power)`` of the instrument's samples (DrumGizmo's ``power`` is an energy);
    the role comes from the instrument name (as for Hydrogen kits; instruments that match none
    are skipped). The close mic of each piece is ``close_mic[piece]`` if given, else the channel
    where the piece's hits are loudest.

    Raises
    ------
    DebleedError
        A missing or unreadable ``drumkit.xml``, instrument or audio file (named), or no usable
        instrument.
    """
    import soundfile as sf


    path = Path(path)
    if path.is_dir():
        path = path / "drumkit.xml"
    try:
        root = _strip_ns(ET.parse(path).getroot())
    except (OSError, ET.ParseError) as e:
        raise DebleedError(f"DrumGizmo kit {path}: cannot read drumkit.xml ({e})") from None
    channels = [c.get("name") for c in root.iter("channel") if c.get("name")]
    if not channels:
        raise DebleedError(f"DrumGizmo kit {path}: no <channels><channel name=...> in drumkit.xml")
    n_max = int(round(max_seconds * sample_rate))
    hits, cache = [], {}
    for inst in root.iter("instrument"):
        iname, ifile = inst.get("name", ""), inst.get("file")
        role = _dg_role(iname)
        if role is None or not ifile:
            continue
        cmap = {c.get("in"): c.get("out") for c in inst.iter("channelmap")}
        ipath = (path.parent / ifile).resolve()
        try:
            iroot = _strip_ns(ET.parse(ipath).getroot())
        except (OSError, ET.ParseError) as e:
            raise DebleedError(f"DrumGizmo kit {path}: instrument {iname!r}: cannot read {ipath} ({e})") from None
        samples = list(iroot.iter("sample"))
        powers = [float(s.get("power") or 0.0) for s in samples]
        pmax = max(powers) if powers and max(powers) > 0 else 1.0
        for s, pw in zip(samples, powers):
            audio = np.zeros((len(channels), n_max), np.float32)
            for af in s.iter("audiofile"):
                out = cmap.get(af.get("channel"), af.get("channel"))
                if out not in channels:
                    continue
                fpath = (ipath.parent / af.get("file", "")).resolve()
                if fpath not in cache:
                    try:
                        data, sr = sf.read(str(fpath), dtype="float32", always_2d=True)
                    except (OSError, RuntimeError) as e:
                        raise DebleedError(f"DrumGizmo kit {path}: instrument {iname!r}: cannot read {fpath} ({e})") from None
                    cache[fpath] = (data, sr)
                data, sr = cache[fpath]
                ch = int(af.get("filechannel") or 1) - 1
                if not 0 <= ch < data.shape[1]:
                    raise DebleedError(f"DrumGizmo kit {path}: {fpath} has {data.shape[1]} channels, "
                                       f"filechannel {ch + 1} asked")
                x = data[:, ch]
                if sr != sample_rate:
                    import soxr

                    x = soxr.resample(x, sr, sample_rate)
                x = x[:n_max]
                audio[channels.index(out), :x.size] += x
            v = float(np.sqrt(pw / pmax)) if pw > 0 else 1.0
            hits.append(KitHit(piece=role_piece(role), role=role, velocity=max(v, 1e-3), audio=audio, onset=0,
                               source=f"{iname}:{s.get('name', len(hits))}"))
    if not hits:
        raise DebleedError(f"DrumGizmo kit {path}: no instrument whose name names a drum piece")
    kit = MultiMicKit(name=root.get("name", path.parent.name), sample_rate=int(sample_rate), mics=tuple(channels),
                      hits=hits, license=(root.findtext("license") or "").strip())
    for p in kit.pieces:
        if close_mic and p in close_mic:
            kit.close_mic[p] = close_mic[p]
            continue
        e = np.mean([np.sum(h.audio.astype(np.float64) ** 2, axis=1) for h in kit.of(piece=p)], axis=0)
        kit.close_mic[p] = channels[int(np.argmax(e))]
    return kit


def reference_mics(kit: MultiMicKit, mic: str, n: int = 2) -> tuple:
    """The kit's mics an informed snare denoiser hears besides ``mic``: the hi-hat's close mic,
    then the overheads (a mic that is no piece's close mic, preferring names with "oh",
    "overhead" or "room"), at most ``n``; fewer where the kit has none (those inputs read as
    not connected)."""
    out = []
    hh = kit.close_mic.get("hihat")
    if hh and hh != mic:
        out.append(hh)
    close = set(kit.close_mic.values())
    others = [m for m in kit.mics if m != mic and m not in close and m not in out]
    others.sort(key=lambda m: not re.search(r"(^|[^a-z])(oh|overhead|room|amb)", m.lower()))
    return tuple((out + others)[:n])


def kit_scene(kit: MultiMicKit, mic: str, *, seconds: float, seed: int, bleed_offset_db: float = 0.0,
              augment: bool = True, informed: bool = False, refs=None, n_refs: int = len(REF_MICS), key_of=None):
    """A denoiser scene (:class:`debleed.models.synth.Scene`) for one close mic, mixed from ``kit``.

    The groove (:func:`groove`, random tempo 70-180 bpm; with ``augment`` random densities,
    swells and ride bars) is mixed by :func:`mix` with every piece's bleed offset by
    ``bleed_offset_db``; ``noisy`` is the mic, ``clean`` its own pieces, the hits those of the
    mic's pieces. With ``informed``, the scene also has ``refs``, float32 (n_refs, n): the mics
    named in ``refs`` (default :func:`reference_mics`; a row of zeros for a missing one, as a
    reference input that is not connected), and ``key``, float32 (n,): ``key_of(own_hits, n)``
    where given, else the snare's key with a trigger module's timing, misses and false triggers
    (:func:`debleed.models.synth.key_signal`).
    """

    sr = kit.sample_rate
    rng = np.random.default_rng([seed, 4243])
    bpm = float(rng.uniform(70.0, 180.0))
    if augment:
        hits = groove(seconds, sr, bpm=bpm, seed=seed, ghost_prob=rng.uniform(0.2, 0.8),
                      flam_prob=rng.uniform(0.0, 0.3), fill_every=int(rng.integers(1, 5)), swell_prob=0.5,
                      ride_prob=0.3)
    else:
        hits = groove(seconds, sr, bpm=bpm, seed=seed, swell_prob=0.5, ride_prob=0.3)
    n = int(round(seconds * sr))
    mx = mix(kit, hits, n, bleed_offset_db=bleed_offset_db, seed=seed)
    pieces = set(kit.own_pieces(mic))
    own = [h for h in hits if role_piece(h.role) in pieces]
    extra = {}
    if informed:
        names = tuple(reference_mics(kit, mic) if refs is None else refs)
        r = np.zeros((n_refs, n), np.float32)
        for i, m in enumerate(names[:n_refs]):
            r[i] = mx.mics[m]
        key = key_of(own, n) if key_of is not None else key_signal(hits, n, sr, np.random.default_rng([seed, 4244]))
        extra = {"refs": r, "key": key}
    return Scene(noisy=mx.mics[mic], clean=mx.own[mic], hit_frames=np.array([h.frame for h in own], np.int64),
                 hit_velocities=np.array([h.velocity for h in own], np.float64), sample_rate=sr, **extra)
