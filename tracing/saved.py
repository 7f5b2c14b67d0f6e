"""Saved profiles: one ``.kperf`` file that holds launches losslessly, to report, plot and diff anywhere
later (format: docs/saved-profile.md).

A ``.kperf`` file is a zip archive:

- ``manifest.json``: ``{"format": "kperf-profile", "version": 2, "kperf_version", "created",
  "device", "launches": [...]}``, one entry per launch with its kernel name, grid, geometry, strategy,
  scope table, warp roles, clock, ``t0_ns``, lost counts and problems as decoded when saved, the
  launch's ``info`` when it has some (``DecodedLaunch.info``, any version), and its ``payload``;
- per launch its profile buffer, either packed into zstd-compressed columns (``payload: "packed"``,
  version 2: :mod:`.saved_packed`, :mod:`.codec`; a few bytes per event) or exactly as copied from
  the GPU (``payload: "buffer"``, ``launches/<i>/buffer.bin``, version 1); either way re-decoded on
  load, so a newer decoder reads old files with its own fixes; or, for launches whose buffer was not
  kept, its decoded tables as ``.npy`` members (``payload: "columns"``);
- optionally ``traffic.json``: the memory traffic ``kperf ncu`` measured for the launches
  (:mod:`.traffic`), added or replaced in an existing file by :func:`attach_traffic` (the other members
  copied byte for byte) and read by :func:`read_traffic`; loading the launches never reads it.

Saving writes version 2 when the ``zstandard`` package is importable, else version 1 with a warning;
this kperf reads both.  Members are stored uncompressed in the zip (the packed columns are zstd frames
already), so loading maps them straight from the file (no copy); it checks every member's CRC, every
packed column's checksums, and the manifest and any decoded tables field by field
(:mod:`.saved_checks`): a damaged or malformed file is a ``KperfError`` naming the file and the field.
Writing goes through :func:`kperf.tracing.atomic.atomic_file`, so a failed save leaves no partial file.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import math
import mmap
import os
import struct
import time
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import Geometry
from kperf.dialect.scope_table import Scope, ScopeTable

from . import codec
from .atomic import atomic_file
from .columns import EventColumns
from .decode import decode
from .launch import INFO_VALUES, DecodedLaunch, plain_info
from .saved_checks import (
    MANIFEST_NAME,
    TRAFFIC_MEMBER,
    check_columns,
    check_ids,
    check_intervals,
    check_manifest,
    check_traffic,
    damaged,
    traffic_error,
)
from .saved_packed import read_columns, unpack, write_columns

FORMAT = "kperf-profile"
VERSION = 2  # the newest version this kperf writes and reads
VERSIONS = (1, 2)
MANIFEST = MANIFEST_NAME
TRAFFIC = TRAFFIC_MEMBER
SUFFIX = ".kperf"
_SEG_FIELDS = ("launch", "cta", "sm", "warp", "first_seq", "n")
_TABLES = ("ctas", "lost", "sm_clocks")
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header
_NPY_HEADER_MAX = 1 << 16  # numpy reads headers of up to 10,000 bytes


def kperf_version() -> str:
    try:
        return version("kperf")
    except Exception:  # not installed as a distribution (running from a checkout)
        return "0+unknown"


def _geometry_json(g: Geometry) -> dict:
    return g.to_json() if hasattr(g, "to_json") else dataclasses.asdict(g)


def _geometry(d: dict) -> Geometry:
    if hasattr(Geometry, "from_json"):
        return Geometry.from_json(d)
    names = {f.name for f in dataclasses.fields(Geometry)}
    return Geometry(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def _info_json(d: DecodedLaunch) -> dict | None:
    """The launch's ``info`` as JSON values, or the KperfError that names the value that is none."""
    try:
        return plain_info(getattr(d, "info", None))
    except ValueError as e:
        raise KperfError(f"cannot save launch {d.launch}: {e}", fix=f"give DecodedLaunch.info values that "
                         f"are {INFO_VALUES} (str() the others)") from None


def _launch_manifest(i: int, d: DecodedLaunch, payload: str) -> dict:
    entry = {
        "index": i, "launch": d.launch, "kernel": d.kernel,
        "grid": list(d.grid) if d.grid else None, "n_ctas": d.n_ctas,
        "geometry": _geometry_json(d.geometry), "strategy": d.strategy,
        "scopes": None if d.scopes is None else [[int(k), v] for k, v in sorted(d.scopes.items())],
        "warp_roles": d.warp_roles, "clock_ghz": d.clock_ghz if np.isfinite(d.clock_ghz) else None,
        "sm_clocks_ghz": ({str(int(r["sm"])): float(r["ghz"]) for r in d.sm_clocks}
                          if len(d.sm_clocks) else {}),
        "t0_ns": int(d.t0_ns), "gtime_step_ns": int(d.gtime_step_ns), "n_events": d.n_events,
        "lost_total": int(d.lost_total), "problems": list(d.problems), "payload": payload,
    }
    info = _info_json(d)
    if info is not None:  # written only when the runtime told something: older files are unchanged
        entry["info"] = info
    return entry


def _npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, np.ascontiguousarray(a), allow_pickle=False)
    return b.getvalue()


def _version(version: int | None) -> int:
    """The format version to write: 2 when zstandard is importable (else 1, with a warning)."""
    if version is None:
        if codec.available():
            return VERSION
        warnings.warn("kperf: zstandard is not installed: saving format version 1 (raw buffers, several "
                      "times larger); pip install zstandard for the compact version 2", stacklevel=3)
        return 1
    if version not in VERSIONS:
        raise KperfError(f"cannot save format version {version!r}; this kperf writes versions "
                         f"{', '.join(map(str, VERSIONS))}",
                         fix="pass version=2 (or 1, uncompressed), or leave it out")
    if version == 2:
        codec.zstd("saving format version 2")
    return version


def _launch_members(i: int, d: DecodedLaunch, version: int, level: int) -> tuple[dict, list[tuple[str, Any]]]:
    """A launch's manifest entry and its members (name, bytes or array)."""
    if d.raw is not None and version >= 2:
        entry = _launch_manifest(i, d, "packed")
        raw = np.ascontiguousarray(d.raw).reshape(-1).view(np.uint8)
        if raw.size != d.n_ctas * d.geometry.cta_bytes:
            raise KperfError(f"launch {d.launch}: its buffer (DecodedLaunch.raw) holds {raw.size} bytes, not "
                             f"{d.n_ctas} CTAs x {d.geometry.cta_bytes}",
                             fix="save the launch decode() returned, or set its raw to None")
        specs, frames = write_columns(raw, d.geometry, d.n_ctas, level)
        entry["packed"] = specs
        return entry, [(f"launches/{i}/{name}.zst", frame) for name, frame in frames]
    if d.raw is not None:
        return _launch_manifest(i, d, "buffer"), [(f"launches/{i}/buffer.bin", d.raw)]
    cols = d.columns
    members: list[tuple[str, Any]] = [(f"launches/{i}/seg_{f}.npy", _npy(cols.seg[f])) for f in _SEG_FIELDS]
    members += [(f"launches/{i}/{f}.npy", _npy(a)) for f, a in cols.cols.items()]
    members += [(f"launches/{i}/{t}.npy", _npy(getattr(d, t))) for t in _TABLES]
    return _launch_manifest(i, d, "columns"), members


def save_profile(path: str | os.PathLike, launches: Sequence[DecodedLaunch], *, device: str | None = None,
                 compress: bool = False, version: int | None = None, level: int = codec.LEVEL,
                 extra: dict[str, bytes] | None = None) -> str:
    """Write ``launches`` (``DecodedLaunch`` objects) to one ``.kperf`` file; returns its path.

    Args:
        path: the file to write (``.kperf`` by convention); replaced atomically.
        device: the GPU's name, recorded in the manifest when given.
        compress: deflate the members that are not zstd frames already (raw buffers of version 1,
            decoded tables): smaller, slower to write and to load, and no longer mapped from the file.
        version: the format version: 2 (packed, compressed buffers; needs zstandard) or 1 (raw
            buffers); default 2 when zstandard is installed, else 1 with a warning.
        level: the zstd level of version 2's columns.
        extra: more members, ``{name: bytes}`` (e.g. a rank's tag: ``tracing.rank_file``), written in
            the same atomic write; readers ignore members they do not know.
    """
    launches = list(launches)
    if not launches:
        raise KperfError("nothing to save: the profile holds no launches",
                         fix="profile a launch of a kernel with kperf scopes first")
    for d in launches:
        if not isinstance(d, DecodedLaunch):
            raise KperfError(f"save_profile takes DecodedLaunch objects, got {type(d).__name__}",
                             fix="pass profile.decoded() or the result of kperf.tracing.decode")
    version = _version(version)
    path = os.fspath(path)
    manifest = {"format": FORMAT, "version": version, "kperf_version": kperf_version(),
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "device": device, "launches": []}
    stamp = time.localtime()[:6]
    with atomic_file(path) as out, zipfile.ZipFile(out, "w", allowZip64=True) as z:
        members: list[tuple[str, Any]] = []
        for i, d in enumerate(launches):
            entry, own = _launch_members(i, d, version, level)
            manifest["launches"].append(entry)
            members += own
        z.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED if compress and not name.endswith(".zst") \
                else zipfile.ZIP_STORED
            with z.open(info, "w", force_zip64=True) as w:
                if isinstance(data, np.ndarray):
                    data = memoryview(np.ascontiguousarray(data)).cast("B")
                w.write(data)
        for name, data in (extra or {}).items():
            z.writestr(zipfile.ZipInfo(name, date_time=stamp), data)
    return path


# --------------------------------------------------------------------------- loading


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a ``.kperf`` file, checked (format name and version)."""
    path = os.fspath(path)
    with _open(path) as z:
        return _manifest(path, z)


def _open(path: str) -> zipfile.ZipFile:
    if not os.path.exists(path):
        raise KperfError(f"no saved profile at {path}",
                         fix="check the path; Profile.save() writes .kperf files")
    if os.path.isdir(path):
        cand = [f for f in sorted(os.listdir(path)) if f.endswith(SUFFIX)]
        raise KperfError(f"{path} is a directory, not a .kperf file",
                         fix=f"pass the file inside it ({', '.join(cand)})" if cand else "pass a .kperf file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
        raise damaged(path, f"not a zip archive ({e})") from None


def _manifest(path: str, z: zipfile.ZipFile) -> dict:
    try:
        m = json.loads(z.read(MANIFEST))
    except KeyError:
        raise damaged(path, f"no {MANIFEST} in the archive") from None
    except RecursionError:
        raise damaged(path, f"{MANIFEST} nests too deeply to be a kperf manifest") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError) as e:
        raise damaged(path, f"cannot read {MANIFEST} ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        found = m.get("format") if isinstance(m, dict) else None
        raise KperfError(f"{path} is a zip file but not a kperf profile (format {found!r})",
                         fix="pass a file written by Profile.save() or kperf.tracing.saved.save_profile()")
    v = m.get("version")
    if type(v) is not int or v > VERSION or v < 1:
        raise KperfError(f"{path} is a kperf profile of format version {v!r}; this kperf "
                         f"({kperf_version()}) reads versions 1 to {VERSION}",
                         fix=("upgrade kperf to read it (pip install -U kperf)"
                              if isinstance(v, int) and v > VERSION
                              else "the manifest is damaged; save the profile again"))
    if not m.get("launches"):
        raise KperfError(f"{path} holds no launches", fix="save a profile that captured at least one launch")
    check_manifest(path, m)
    _check_members(path, z, m)
    return m


def _check_members(path: str, z: zipfile.ZipFile, m: dict) -> None:
    """Every ``launches/<i>/`` member belongs to a launch of the manifest (else an entry was lost)."""
    indices = {str(e["index"]) for e in m["launches"]}
    for name in z.namelist():
        top, _, rest = name.partition("/")
        i = rest.partition("/")[0]
        if top == "launches" and i not in indices:
            raise damaged(path, f"member {name} belongs to no launch of {MANIFEST} (no entry has index "
                                f"{i[:20]!r}: a launch entry lost?)")


def _member(path: str, z: zipfile.ZipFile, mm: mmap.mmap | None, name: str) -> np.ndarray:
    """A member's bytes as a uint8 array: mapped from the file when stored, else read; CRC checked."""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise damaged(path, f"member {name} is missing") from None
    if info.compress_type == zipfile.ZIP_STORED and mm is not None:
        off = info.header_offset
        if off + _LOCAL_HEADER.size > len(mm):
            raise damaged(path, f"member {name} lies past the end of the file")
        h = _LOCAL_HEADER.unpack_from(mm, off)
        if h[0] != b"PK\x03\x04":
            raise damaged(path, f"bad local header for {name}")
        start = off + _LOCAL_HEADER.size + h[9] + h[10]
        if start + info.file_size > len(mm):
            raise damaged(path, f"member {name} is truncated")
        data = np.frombuffer(mm, np.uint8, count=info.file_size, offset=start)
        if zlib.crc32(data) & 0xFFFFFFFF != info.CRC:
            raise damaged(path, f"member {name} fails its CRC check")
        return data
    try:
        return np.frombuffer(z.read(name), np.uint8)
    # NotImplementedError: a compression method zipfile lacks (a damaged directory entry, another writer's)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
        raise damaged(path, f"cannot read {name} ({e})") from None


def _npy_member(path, z, mm, name) -> np.ndarray:
    """A ``.npy`` member as an array (a copy); any header or size that does not parse is a KperfError."""
    data = _member(path, z, mm, name)
    try:
        head = io.BytesIO(data[:_NPY_HEADER_MAX].tobytes())
        major, _minor = np.lib.format.read_magic(head)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(head)
        if dtype.hasobject:
            raise ValueError(f"dtype {dtype} holds Python objects")
        count = math.prod(shape)
        offset = head.tell()
        if offset + count * dtype.itemsize != data.size:
            raise ValueError(f"a header for {count} items of {dtype.itemsize} bytes, but "
                             f"{data.size - offset} bytes of data")
        a = np.frombuffer(data, dtype, count=count, offset=offset)
        return (a.reshape(shape[::-1]).T if fortran else a.reshape(shape)).copy()
    except Exception as e:  # noqa: BLE001 - a damaged header fails in many ways (ValueError, TokenError...)
        raise damaged(path, f"member {name} is not a valid array ({type(e).__name__}: {e})") from None


def load_profile(path: str | os.PathLike, *, threads: int | None = None) -> list[DecodedLaunch]:
    """The launches of a ``.kperf`` file, decoded (buffers by this kperf's decoder)."""
    path = os.fspath(path)
    z = _open(path)
    with z:
        m = _manifest(path, z)
        mm = None
        try:
            with open(path, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # an empty file or no mmap: read members instead
            mm = None
        out = []
        for e in m["launches"]:
            try:
                out.append(_load_launch(path, z, mm, e, threads))
            except KperfError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, OverflowError) as err:
                raise damaged(path, f"launch {e['index']}: {err}") from None
    return out


def _load_launch(path, z, mm, e: dict, threads) -> DecodedLaunch:
    i = e["index"]
    g = _geometry(e["geometry"])
    scopes = {int(k): str(v) for k, v in e["scopes"]} if e.get("scopes") is not None else None
    grid = tuple(e["grid"]) if e.get("grid") else None
    meta = dict(kernel=e.get("kernel") or "", warp_roles=e.get("warp_roles"), grid=grid,
                info=plain_info(e.get("info")))
    if e["payload"] in ("buffer", "packed"):
        buf = (_member(path, z, mm, f"launches/{i}/buffer.bin") if e["payload"] == "buffer"
               else _packed_buffer(path, z, mm, e, g))
        if buf.size != e["n_ctas"] * g.cta_bytes:
            raise damaged(path, f"launch {i}: buffer of {buf.size} bytes, expected {e['n_ctas']} CTAs x "
                                 f"{g.cta_bytes} bytes")
        return decode(buf, g, strategy=e["strategy"], n_ctas=e["n_ctas"], launch=e["launch"], scopes=scopes,
                      threads=threads, **meta)
    if e["payload"] != "columns":
        raise KperfError(f"{path}: launch {i} has a payload of kind {e['payload']!r}, unknown to this kperf",
                         fix="upgrade kperf (pip install -U kperf)")
    rd = lambda name: _npy_member(path, z, mm, f"launches/{i}/{name}.npy")  # noqa: E731
    seg = {f: rd(f"seg_{f}") for f in _SEG_FIELDS}
    names = set(z.namelist())
    cols = {c: rd(c) for c in ("scope", "is_end", "cycles", "time_ns", "seq")
            if c != "seq" or f"launches/{i}/seq.npy" in names}
    tables = {t: rd(t) for t in _TABLES}
    check_columns(path, f"launch {i}", seg, cols, tables)
    check_ids(path, f"launch {i}", seg, cols, tables["ctas"], launch=e["launch"], n_ctas=e["n_ctas"],
              num_warps=g.num_warps, scopes=scopes)
    ghz = e.get("clock_ghz")
    d = DecodedLaunch(
        launch=e["launch"], geometry=g, strategy=e["strategy"], columns=EventColumns(seg, **cols),
        lost_total=int(e["lost_total"]), problems=list(e["problems"]), t0_ns=int(e["t0_ns"]),
        clock_ghz=float("nan") if ghz is None else float(ghz), scopes=scopes,
        gtime_step_ns=int(e.get("gtime_step_ns") or 0), **tables, **meta)
    check_intervals(path, f"launch {i}", d.intervals()[0])
    return d


def _packed_buffer(path: str, z: zipfile.ZipFile, mm, e: dict, g: Geometry) -> np.ndarray:
    """The buffer of a ``"packed"`` launch, rebuilt from its columns (:mod:`.saved_packed`)."""
    i = e["index"]
    codec.zstd(f"reading {path} (format version 2)")
    try:
        cols = read_columns(e["packed"], g, e["n_ctas"], lambda name: _member(path, z, mm, name),
                            f"launches/{i}/")
    except codec.UnknownStep as err:
        raise KperfError(f"{path}: launch {i}: {err}", fix="upgrade kperf (pip install -U kperf)") from None
    except codec.ColumnError as err:
        raise damaged(path, f"launch {i} {err}") from None
    except MemoryError:
        raise KperfError(f"{path}: launch {i} is too large to load here ({e['n_ctas']} CTAs x "
                         f"{g.cta_bytes} bytes)", fix="load it on a machine with more memory") from None
    return unpack(cols, g, e["n_ctas"])


@dataclasses.dataclass
class SavedKernel:
    """What a saved launch tells of its kernel (the fields of ``kperf.runtime.KernelInfo`` reports use)."""

    name: str
    scopes: ScopeTable
    geometry: Geometry
    strategy: str


class SavedLaunch:
    """A launch loaded from a ``.kperf`` file, shaped like ``kperf.runtime.LaunchRecord`` for ``Profile``."""

    def __init__(self, d: DecodedLaunch):
        self._decoded = d
        self.index = d.launch
        self.n_ctas = d.n_ctas
        table = ScopeTable([Scope(int(i), n, -1) for i, n in sorted((d.scopes or {}).items())])
        self.kernel = SavedKernel(d.kernel or "kernel", table, d.geometry, d.strategy)

    def decoded(self) -> DecodedLaunch:
        return self._decoded


# --------------------------------------------------------------------------- measured traffic


def read_traffic(path: str | os.PathLike) -> dict | None:
    """The measured traffic a ``.kperf`` file holds (its ``traffic.json`` member, :mod:`.traffic`), checked
    (:func:`~.saved_checks.check_traffic`); None when it holds none."""
    path = os.fspath(path)
    with _open(path) as z:
        _manifest(path, z)
        if TRAFFIC not in z.namelist():
            return None
        where = f"{path} (member {TRAFFIC})"
        try:
            data = json.loads(z.read(TRAFFIC))
        except RecursionError:
            raise traffic_error(where, "it nests too deeply to be measured traffic") from None
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError) as e:
            raise traffic_error(where, f"cannot read it ({e})") from None
    return check_traffic(where, data)


def attach_traffic(path: str | os.PathLike, data: dict | None) -> str:
    """Store measured traffic (:mod:`.traffic`'s ``build``) in the saved profile ``path``: its
    ``traffic.json`` member is added, or replaced, or removed when ``data`` is None.  Any format version
    may hold it.  The file is rewritten to a temporary file renamed into place, the other members copied
    byte for byte (not decompressed); returns the path."""
    path = os.fspath(path)
    member = None
    if data is not None:
        check_traffic(f"the traffic to store in {path}", data)
        member = json.dumps(data, indent=1).encode()
    read_manifest(path)  # a readable kperf profile, or the KperfError that says why not
    _replace_member(path, TRAFFIC, member)
    return path


def _replace_member(path: str, name: str, data: bytes | None) -> None:
    """Rewrite the zip ``path`` with the member ``name`` set to ``data`` (stored; None: left out), every
    other member's local header and data (and data descriptor) copied as they are."""
    with atomic_file(path) as out:
        with open(path, "rb") as src, zipfile.ZipFile(src) as z:
            kept = [info for info in z.infolist() if info.filename != name]
            size = os.fstat(src.fileno()).st_size
            for info in kept:
                start, end = _span(path, src, info, size)
                info.header_offset = out.tell()
                info.extra = _without_zip64(info.extra)  # the writer adds it again where offsets need it
                _copy(src, out, start, end - start)
            comment = z.comment
        # zipfile writes the central directory from its list of members: the copied ones, at their new
        # offsets (written before it opened, so it starts after them), then the new one
        with zipfile.ZipFile(out, "w", allowZip64=True) as new:
            new.filelist.extend(kept)
            new.comment = comment
            if data is not None:
                new.writestr(zipfile.ZipInfo(name, date_time=time.localtime()[:6]), data)


def _copy(src, out, start: int, n: int) -> None:
    src.seek(start)
    while n > 0:
        chunk = src.read(min(n, 1 << 23))
        if not chunk:
            raise EOFError("the profile ended early")
        out.write(chunk)
        n -= len(chunk)


def _span(path: str, src, info: zipfile.ZipInfo, size: int) -> tuple[int, int]:
    """Where the member ``info`` lies in the file: its local header, data and any data descriptor."""
    src.seek(info.header_offset)
    head = src.read(_LOCAL_HEADER.size)
    if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise damaged(path, f"bad local header for {info.filename}")
    h = _LOCAL_HEADER.unpack(head)
    extra = src.read(h[9] + h[10])[h[9]:]
    end = info.header_offset + _LOCAL_HEADER.size + h[9] + h[10] + info.compress_size
    if info.flag_bits & 0x08:  # sizes and CRC after the data: [signature] crc, sizes (8 bytes with zip64)
        src.seek(end)
        signed = src.read(4) == b"PK\x07\x08" and info.CRC != 0x08074B50
        end += (4 if signed else 0) + 4 + (16 if 1 in _extra_ids(extra) else 8)
    if end > size:
        raise damaged(path, f"member {info.filename} is truncated")
    return info.header_offset, end


def _extra_fields(extra: bytes) -> list[tuple[int, bytes]]:
    """The (id, field) pairs of a zip extra field."""
    out, at = [], 0
    while at + 4 <= len(extra):
        kind, n = struct.unpack_from("<HH", extra, at)
        out.append((kind, extra[at:at + 4 + n]))
        at += 4 + n
    return out


def _extra_ids(extra: bytes) -> set[int]:
    return {kind for kind, _ in _extra_fields(extra)}


def _without_zip64(extra: bytes) -> bytes:
    return b"".join(field for kind, field in _extra_fields(extra) if kind != 1)
