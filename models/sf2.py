"""Read one-shot drum kits out of SoundFont 2 (SF2) files: zones, velocity ranges, sample data.

A small read-only parser written from the *SoundFont Technical Specification 2.04* (E-mu
Systems, 10 September 2002, ``sfspec24.pdf``); the section numbers below are that document's.
It reads only what a drum one-shot needs:

- the RIFF layout (section 4): ``RIFF('sfbk')`` holding ``LIST('INFO')``, ``LIST('sdta')`` and
  ``LIST('pdta')``;
- the INFO strings (section 5), e.g. ``INAM`` (bank name), ``ICOP`` (copyright), ``IENG``;
- where the sample data lies (section 6): ``smpl``, 16-bit signed little-endian words, and the
  optional ``sm24`` (the low 8 bits of 24-bit samples, read only when ``ifil`` >= 2.04);
- the "hydra" (section 7): preset headers ``phdr`` (7.2), preset zones ``pbag``/``pgen``
  (7.3, 7.5), instruments ``inst`` (7.6), instrument zones ``ibag``/``igen`` (7.7, 7.9) and
  sample headers ``shdr`` (7.10);
- the generators (8.1.2, 8.1.3) ``startAddrsOffset`` (0), ``endAddrsOffset`` (1),
  ``startAddrsCoarseOffset`` (4), ``endAddrsCoarseOffset`` (12), ``instrument`` (41),
  ``keyRange`` (43), ``velRange`` (44), ``initialAttenuation`` (48, centibels) and
  ``sampleID`` (53).

Zones follow the generator model (7.3, 7.7, 8.5, 9.4): the first zone of a preset or instrument
is a *global* zone when it lacks the terminal generator (``instrument`` or ``sampleID``); its
generators are defaults for the other zones. Key and velocity ranges of the preset zone and the
instrument zone intersect; ``initialAttenuation`` of the preset zone adds to the instrument's.
Modulators, envelopes, filters, tuning, pan and loops are ignored: a drum hit is played as
recorded, from the zone's start to its end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from debleed.errors import DebleedError

# generator numbers (section 8.1.2)
_START, _END, _START_COARSE, _END_COARSE = 0, 1, 4, 12
_INSTRUMENT, _KEY_RANGE, _VEL_RANGE, _ATTENUATION, _SAMPLE_ID = 41, 43, 44, 48, 53
# sfSampleType bits (section 7.10)
_MONO, _RIGHT, _LEFT, _ROM = 1, 2, 4, 0x8000
# record layouts and sizes (sections 7.2-7.10)
_RECORDS = {"phdr": ("<20sHHHIII", 38), "pbag": ("<HH", 4), "pgen": ("<HH", 4), "inst": ("<20sH", 22),
            "ibag": ("<HH", 4), "igen": ("<HH", 4), "shdr": ("<20sIIIIIBbHH", 46)}


@dataclass(frozen=True)
class SampleHeader:
    """One ``shdr`` record (section 7.10).

    Attributes
    ----------
    name : str
    start, end : int
        First and one-past-last frame in the ``smpl`` data (frames, i.e. 16-bit words).
    sample_rate : int
        Hz, the recording's own rate.
    link : int
        Index of the other channel of a stereo pair (meaningful for left and right samples).
    kind : int
        ``sfSampleType``: 1 mono, 2 right, 4 left (8 linked, 0x8000 ROM).
    """

    name: str
    start: int
    end: int
    sample_rate: int
    link: int
    kind: int


@dataclass(frozen=True)
class Zone:
    """A playable zone: one preset zone combined with one instrument zone (section 9.4).

    Attributes
    ----------
    instrument : str
        Instrument name (``inst``).
    key_range, vel_range : (int, int)
        Inclusive MIDI key and velocity ranges (0-127), preset and instrument ranges intersected.
    attenuation_cb : float
        ``initialAttenuation`` of the instrument zone plus that of the preset zone, centibels
        (0 when neither has one).
    sample : int
        Index of the sample header in :attr:`SoundFont.samples`.
    start, end : int
        Frames in the ``smpl`` data the zone plays, after the address offset generators.
    """

    instrument: str
    key_range: tuple
    vel_range: tuple
    attenuation_cb: float
    sample: int
    start: int
    end: int


@dataclass(frozen=True)
class Preset:
    """A preset (``phdr``): name, MIDI bank and program, and its playable zones in file order."""

    name: str
    bank: int
    program: int
    zones: tuple

    def zones_for_key(self, key: int) -> list[Zone]:
        """The zones that play MIDI ``key``, in file order."""
        return [z for z in self.zones if z.key_range[0] <= key <= z.key_range[1]]


@dataclass(frozen=True)
class Sf2Source:
    """Where a zone's audio lies in an SF2 file; hashable, so it can key a sample cache.

    Attributes
    ----------
    path : Path
        The SF2 file.
    name : str
        Sample name (for messages).
    sample_rate : int
        Hz.
    spans : tuple of (int, int)
        ``(start, end)`` frames in ``smpl``: one span, or two for a stereo pair (averaged).
    smpl_offset : int
        Byte offset of the ``smpl`` data in the file.
    sm24_offset : int or None
        Byte offset of the ``sm24`` data, if the file has 24-bit samples.
    """

    path: Path
    name: str
    sample_rate: int
    spans: tuple
    smpl_offset: int
    sm24_offset: int | None = None

    def read(self) -> np.ndarray:
        """The zone's audio as mono float32 (n_frames,), full scale 1.0, at :attr:`sample_rate`.

        A stereo pair is averaged to mono, trimmed to the shorter channel. Reads only these
        frames from the file.
        """
        chans = []
        for start, end in self.spans:
            n = end - start
            hi = np.fromfile(self.path, dtype="<i2", count=n, offset=self.smpl_offset + 2 * start)
            if self.sm24_offset is None:
                chans.append(hi.astype(np.float32) / np.float32(32768.0))
            else:
                lo = np.fromfile(self.path, dtype=np.uint8, count=n, offset=self.sm24_offset + start)
                full = (hi.astype(np.int32) << 8) | lo.astype(np.int32)
                chans.append(full.astype(np.float32) / np.float32(8388608.0))
        m = min(c.size for c in chans)
        return (sum(c[:m] for c in chans) / np.float32(len(chans))).astype(np.float32)


@dataclass(frozen=True)
class SoundFont:
    """The parts of an SF2 file that :mod:`debleed.models.multitrack` uses.

    Attributes
    ----------
    path : Path
    version : (int, int)
        ``ifil`` major and minor (section 5.1), e.g. (2, 1).
    info : dict[str, str]
        INFO strings by chunk id (``INAM``, ``ICOP``, ``IENG``, ``ICMT``, ...).
    presets : tuple of Preset
    samples : tuple of SampleHeader
        Without the terminal ``EOS`` record.
    smpl_offset : int
        Byte offset of the ``smpl`` data in the file; ``smpl_frames`` its length in frames.
    sm24_offset : int or None
        Byte offset of the ``sm24`` data, where present and the version is >= 2.04.
    """

    path: Path
    version: tuple
    info: dict
    presets: tuple
    samples: tuple
    smpl_offset: int
    smpl_frames: int
    sm24_offset: int | None

    def source(self, zone: Zone) -> Sf2Source:
        """The audio of ``zone``: its own span, plus its partner's where it is half a stereo pair.

        Notes
        -----
        For a left or right sample linked (``wSampleLink``) to a sample of the other side, the
        partner's span is the partner's header shifted by this zone's address offsets; the two
        are averaged to mono by :meth:`Sf2Source.read`.
        """
        s = self.samples[zone.sample]
        spans = [(zone.start, zone.end)]
        if s.kind & (_LEFT | _RIGHT) and 0 <= s.link < len(self.samples):
            p = self.samples[s.link]
            if p.kind & (_LEFT | _RIGHT) and p.kind & (_LEFT | _RIGHT) != s.kind & (_LEFT | _RIGHT):
                a, b = p.start + zone.start - s.start, p.end + zone.end - s.end
                if 0 <= a < b <= self.smpl_frames:
                    spans.append((a, b))
        return Sf2Source(path=self.path, name=s.name, sample_rate=s.sample_rate, spans=tuple(spans),
                         smpl_offset=self.smpl_offset, sm24_offset=self.sm24_offset)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def _chunks(f, start: int, end: int, path: Path):
    """``(id, data_offset, size)`` of the RIFF chunks between byte ``start`` and ``end``."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            break
        cid, size = struct.unpack("<4sI", head)
        if pos + 8 + size > end:
            raise DebleedError(f"{path}: chunk {cid!r} at byte {pos} runs past its parent "
                               f"({size} bytes, {end - pos - 8} left): a truncated or damaged SF2 file")
        yield cid.decode("latin-1"), pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are padded to an even size


def _records(name: str, data: bytes, path: Path) -> list[tuple]:
    fmt, size = _RECORDS[name]
    if len(data) % size or len(data) < 2 * size:
        raise DebleedError(f"{path}: pdta sub-chunk {name!r} is {len(data)} bytes, not a multiple of "
                           f"its {size}-byte record with at least one entry and the terminal one")
    return [struct.unpack_from(fmt, data, i) for i in range(0, len(data), size)]


def _zones(bags: list[tuple], gens: list[tuple], first: int, stop: int, terminal: int) -> list[dict]:
    """Generator dicts ``{oper: amount}`` of the local zones ``first..stop-1``, globals applied.

    A first zone without the ``terminal`` generator is the global zone (sections 7.3, 7.7): its
    generators are the defaults of the others. Other zones without it are ignored.
    """
    zones = [{op: amount for op, amount in gens[bags[i][0]:bags[i + 1][0]]} for i in range(first, stop)]
    defaults = {}
    if zones and terminal not in zones[0]:
        defaults = zones.pop(0)
    return [{**defaults, **z} for z in zones if terminal in z]


def _range(gens: dict, oper: int) -> tuple:
    amount = gens.get(oper, 127 << 8)  # rangesType: low byte lo, high byte hi (section 7.5)
    return amount & 0xFF, amount >> 8


def _signed(amount: int) -> int:
    return amount - 0x10000 if amount >= 0x8000 else amount


def read_sf2(path) -> SoundFont:
    """Parse an SF2 file's INFO, sample layout and presets (nothing is written anywhere).

    Parameters
    ----------
    path : str or Path
        The ``.sf2`` file.

    Returns
    -------
    SoundFont
        Presets sorted by (bank, program); sample data is not loaded (see
        :meth:`SoundFont.source` and :meth:`Sf2Source.read`).

    Raises
    ------
    DebleedError
        If the file is not a SoundFont 2 (``RIFF`` form ``sfbk``), lacks a required chunk, or
        has a zone whose sample lies outside the sample data.
    """
    path = Path(path)
    lists = {}
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
            raise DebleedError(f"{path}: not a SoundFont 2 file (expected a RIFF 'sfbk' form, "
                               f"got {head[:4]!r}/{head[8:12]!r})")
        end = min(12 + struct.unpack("<I", head[4:8])[0] - 4, path.stat().st_size)
        for cid, off, size in _chunks(f, 12, end, path):
            if cid == "LIST":
                f.seek(off)
                kind = f.read(4).decode("latin-1")
                lists[kind] = {c: (o, s) for c, o, s in _chunks(f, off + 4, off + size, path)}
        missing = [k for k in ("INFO", "sdta", "pdta") if k not in lists]
        if missing or "smpl" not in lists["sdta"]:
            raise DebleedError(f"{path}: missing the {', '.join(missing) or 'smpl'} chunk of a SoundFont 2 file")

        def data(kind, cid):
            off, size = lists[kind][cid]
            f.seek(off)
            return f.read(size)

        info = {cid: _cstr(data("INFO", cid)) for cid in lists["INFO"] if cid not in ("ifil", "iver")}
        version = struct.unpack("<HH", data("INFO", "ifil")) if "ifil" in lists["INFO"] else (2, 0)
        pdta = {}
        for name in _RECORDS:
            if name not in lists["pdta"]:
                raise DebleedError(f"{path}: missing the pdta sub-chunk {name!r} (section 7 of the SF2 spec)")
            pdta[name] = _records(name, data("pdta", name), path)
    smpl_offset, smpl_bytes = lists["sdta"]["smpl"]
    smpl_frames = smpl_bytes // 2
    sm24_offset = None
    if "sm24" in lists["sdta"] and tuple(version) >= (2, 4) and lists["sdta"]["sm24"][1] >= smpl_frames:
        sm24_offset = lists["sdta"]["sm24"][0]
    samples = tuple(SampleHeader(_cstr(r[0]), r[1], r[2], r[5], r[8], r[9]) for r in pdta["shdr"][:-1])

    inst_zones = []
    insts = pdta["inst"]
    for i in range(len(insts) - 1):
        zones = []
        for g in _zones(pdta["ibag"], pdta["igen"], insts[i][1], insts[i + 1][1], _SAMPLE_ID):
            sid = g[_SAMPLE_ID]
            if sid >= len(samples) or samples[sid].kind & _ROM:
                continue
            s = samples[sid]
            start = s.start + _signed(g.get(_START, 0)) + 32768 * _signed(g.get(_START_COARSE, 0))
            stop = s.end + _signed(g.get(_END, 0)) + 32768 * _signed(g.get(_END_COARSE, 0))
            if not 0 <= start < stop <= smpl_frames:
                raise DebleedError(f"{path}: instrument {_cstr(insts[i][0])!r}, sample {s.name!r}: frames "
                                   f"{start}..{stop} lie outside the sample data (0..{smpl_frames})")
            zones.append((g, sid, start, stop))
        inst_zones.append((_cstr(insts[i][0]), zones))

    presets = []
    phdr = pdta["phdr"]
    for i in range(len(phdr) - 1):
        zones = []
        for pg in _zones(pdta["pbag"], pdta["pgen"], phdr[i][3], phdr[i + 1][3], _INSTRUMENT):
            if pg[_INSTRUMENT] >= len(inst_zones):
                continue
            iname, izones = inst_zones[pg[_INSTRUMENT]]
            pk, pv = _range(pg, _KEY_RANGE), _range(pg, _VEL_RANGE)
            for ig, sid, start, stop in izones:
                ik, iv = _range(ig, _KEY_RANGE), _range(ig, _VEL_RANGE)
                key = (max(pk[0], ik[0]), min(pk[1], ik[1]))
                vel = (max(pv[0], iv[0]), min(pv[1], iv[1]))
                if key[0] > key[1] or vel[0] > vel[1]:
                    continue
                att = _signed(ig.get(_ATTENUATION, 0)) + _signed(pg.get(_ATTENUATION, 0))
                zones.append(Zone(iname, key, vel, float(att), sid, start, stop))
        presets.append(Preset(_cstr(phdr[i][0]), phdr[i][2], phdr[i][1], tuple(zones)))
    presets.sort(key=lambda p: (p.bank, p.program))
    return SoundFont(path=path, version=tuple(version), info=info, presets=tuple(presets), samples=samples,
                     smpl_offset=smpl_offset, smpl_frames=smpl_frames, sm24_offset=sm24_offset)
