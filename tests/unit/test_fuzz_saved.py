"""Fuzzing saved profiles: a known ``.kperf`` file, mutated, must load to a clear outcome.

Five known profiles are saved once (:func:`_originals`, from ``known_profiles``): one launch with its
buffer packed into zstd columns (format version 2, ``payload: "packed"``) and the same raw (version 1,
``payload: "buffer"``), the same with decoded tables (``payload: "columns"``), a warp-specialised launch
that records a subset of its warps (version 2), and two launches in one file (version 1) with measured
traffic (the ``traffic.json`` member ``kperf ncu`` stores).  Each case mutates one of them
(:func:`_mutate`):

- the file's bytes: bit flips, overwritten or zeroed ranges, truncation, appended bytes;
- the manifest: one field anywhere (found by walking the JSON) replaced by a hostile value (``null``,
  another type, a huge or negative int, NaN, a deeply nested list or object, a NUL/newline string),
  deleted, or an unknown key added; or the manifest replaced by deeply nested JSON, by non-JSON, or
  dropped;
- a member: its bytes flipped (the CRC is kept right, so the content itself is checked: a packed
  column's zstd frame checksum and CRC-32 catch every flip), truncated, deleted, an extra member added;
- the traffic: one field of its JSON edited as the manifest's are, or the whole replaced;

and loads the copy with ``load_profile`` (and the traffic with ``read_traffic``).  The outcome must be:

- ``error`` / ``error+fix``: a :class:`KperfError` whose message names the file;
- ``same``: every launch loads with the events, intervals, lost table, CTA table and metadata (launch
  number, kernel, grid, geometry, strategy, scopes, warp roles, t0, clock) of the original;
- ``reported``: a launch has problems the original had not (the buffer's decode reports them);
- ``value-change``: the mutation replaced a manifest value by another of the same JSON type inside
  the checked range (a file hand-edited to other plausible values: a kernel name, a launch number, a
  clock, t0); it loads, and what the file now says changes;
- ``value-change`` also for a bit flipped in a member of measured values of a "columns" launch
  (``time_ns``, ``cycles``, the CTA, lost and SM-clock tables, and ``seg_first_seq``, the sequence
  number of a warp's first kept record: any number in range is one a warp may have recorded), and
  ``buffer-content`` for a bit flipped in a stored buffer that the decoder cannot tell from a real one
  (what a buffer mutation may do is the decoder fuzz's business: ``test_fuzz_decoder.py``);
- ``value-change`` also for any edit inside a launch's ``info`` (the runtime's facts about the launch:
  free-form names and values) that passes the checks;
- ``optional-dropped``: an optional launch field (``kernel``, ``grid``, ``scopes``, ``warp_roles``,
  ``clock_ghz``, ``gtime_step_ns``, ``info``) deleted or set to null: the launch loads equal to the
  original in everything but that field;
- ``traffic-change``: the traffic member edited (its fields, or its bytes with the CRC kept right) into
  traffic that passes the checks: the launches load as before, and the traffic tables and trace
  numbers are made from it without an error (what the checks let through, the readers can use);
- ``traffic-dropped``: the traffic member deleted, or its name in the zip's directory changed (a
  top-level member no reader knows is ignored, so that older readers load newer files): the launches
  load as before, without traffic.

Any other exception, or a changed load from any other mutation, fails the case.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import tempfile
import zipfile

import known_profiles as kp
import numpy as np
from fuzz_support import Outcomes, clear_error, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from kperf.dialect.errors import KperfError
from kperf.tracing.saved import MANIFEST, TRAFFIC, attach_traffic, load_profile, read_traffic, save_profile
from kperf.tracing.traffic import trace_args, traffic_table

CASES = 1200
_DIR = tempfile.mkdtemp(prefix="kperf-fuzz-saved-")
_ORIGINALS: dict[str, tuple[bytes, list, dict | None]] = {}
#: measured traffic of the "two" profile, as kperf ncu stores it (traffic.build's fields)
MEASURED = {"format": "kperf-traffic", "version": 1, "created": "2026-12-06T04:00:00+00:00",
            "ncu": {"version": "Version 2099.1", "metrics": ["dram__bytes_read.sum"], "lacking": []},
            "device": {"name": "NVIDIA H100 80GB HBM3", "l2_bytes": 52428800, "sms": 132},
            "units": {"dram__bytes_read.sum": "byte"},
            "launches": [{"launch": i, "kernel": "attn", "ncu_id": i + 1, "grid": [3, 1, 1],
                          "block": [128, 1, 1], "kperf_record_bytes": 1024 * (i + 1),
                          "metrics": {"dram__bytes_read.sum": 1.5e6 * (i + 1), "lts__t_bytes.sum": None}}
                         for i in (0, 1)],
            "unmatched_ncu": [{"ncu_id": 0, "kernel": "attn", "reason": "an earlier launch"}],
            "unmatched_profile": [], "notes": ["attn: the last 2 are matched"], "problems": []}


#: launch facts as the runtime records them (DecodedLaunch.info), on two of the profiles
INFO = {"inductor_ops": ["aten.addmm", "aten.relu"], "replay": 3, "cuda_graph": True, "ms": 0.5,
        "launch_path": "inductor"}


def _columns_launch():
    d = kp.vanilla()
    d.raw = None  # saved as decoded tables
    d.info = dict(INFO)
    return d


def _with_info(d):
    d.info = dict(INFO)
    return d


def _originals() -> dict[str, tuple[bytes, list, dict | None]]:
    """name -> (file bytes, the launches it loads to, its traffic), made once."""
    if not _ORIGINALS:
        profiles = {"buffer": ([kp.vanilla()], 2), "buffer-v1": ([kp.vanilla()], 1),
                    "columns": ([_columns_launch()], 2), "flows": ([kp.with_flows()[0]], 2),
                    "two": ([kp.vanilla(launch=0), _with_info(kp.improved(launch=1))], 1)}
        for name, (launches, version) in profiles.items():
            path = os.path.join(_DIR, f"{name}.kperf")
            save_profile(path, launches, version=version)
            measured = MEASURED if name == "two" else None
            if measured:
                attach_traffic(path, measured)
            with open(path, "rb") as f:
                _ORIGINALS[name] = (f.read(), load_profile(path, threads=1), measured)
    return _ORIGINALS


# --------------------------------------------------------------------------- mutations


DEEP = "__deep__"  # stands for a deeply nested value until the manifest is written as text


def _deep(depth: int, obj: bool) -> str:
    """JSON text nested ``depth`` deep (built as text: the json module cannot write it)."""
    return ('{"a": ' * depth + "0" + "}" * depth) if obj else ("[" * depth + "0" + "]" * depth)


HOSTILE = [None, "", "x", "a\x00b\nc", 1.5, -1, 0, 1, 2**31, 2**63, 2**64 + 1, 10**40, -(10**40), True,
           False, float("nan"), float("inf"), [], {}, [None], [[0, "x"]], {"num_warps": "4"},
           "keep-first", "clock", [1, 2, 3, 4]]


def _paths(obj, prefix=()) -> list[tuple]:
    """Every path into a JSON value (dict keys, list indices), the value's own path included."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _same_kind(a, b) -> bool:
    """Same JSON type (bool apart from int; int and float both numbers)."""
    def kind(x):
        return "bool" if isinstance(x, bool) else "num" if isinstance(x, int | float) else type(x).__name__
    return kind(a) == kind(b) and not (isinstance(b, float) and not math.isfinite(b))


#: members of a "columns" launch that hold measured values (any finite value is a plausible one)
VALUE_MEMBERS = ("time_ns.npy", "cycles.npy", "ctas.npy", "sm_clocks.npy", "lost.npy", "seg_first_seq.npy")
OPTIONAL = ("kernel", "grid", "scopes", "warp_roles", "clock_ghz", "gtime_step_ns", "info")  # of an entry


def _edit_manifest(rng: random.Random, m: dict) -> tuple[dict | str, str, str | None]:
    """(new manifest or raw text, what was done, the allowance: ``value-change`` for a value replaced
    by another of its JSON type, ``optional:FIELD`` for an optional launch field deleted or null)."""
    op = rng.choice(("replace", "replace", "replace", "replace", "delete", "add-key", "whole"))
    if op == "whole":
        text = rng.choice((_deep(rng.choice((50, 5000, 200_000)), rng.random() < 0.5),
                           "{", "", "null", "[]", '{"format": "kperf-profile"}', "\x00" * 8,
                           json.dumps({**m, "version": 3}), json.dumps({**m, "launches": []})))
        return text, f"manifest := {text[:40]!r}", None
    paths = _paths(m)[1:]
    path = rng.choice(paths)
    parent = m
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    optional = f"optional:{key}" if len(path) == 3 and path[0] == "launches" and key in OPTIONAL else None
    info = len(path) >= 3 and path[0] == "launches" and path[2] == "info"  # free-form: any fact is plausible
    if op == "delete":
        del parent[key]
        return m, f"delete {path}", "value-change" if info and len(path) > 3 else optional
    if op == "add-key":
        target = parent[key] if isinstance(parent[key], dict) else m
        target[f"unknown_{rng.randrange(100)}"] = rng.choice(HOSTILE)
        return m, f"add a key under {path}", "value-change" if info and target is not m else None
    old = parent[key]
    new = rng.choice([*HOSTILE, DEEP, _flip_value(rng, old)])
    parent[key] = new
    if new == DEEP:
        depth = rng.choice((3, 1000, 100_000))
        return (json.dumps(m).replace(json.dumps(DEEP), _deep(depth, rng.random() < 0.5)),
                f"{path}: {old!r:.40} -> nested {depth} deep", None)
    allowance = "value-change" if _same_kind(old, new) or (info and len(path) > 3) else \
        optional if new is None else None
    return m, f"{path}: {old!r:.40} -> {new!r:.60}", allowance


def _flip_value(rng: random.Random, v):
    """A neighbouring value of the same type."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v ^ (1 << rng.randrange(64))
    if isinstance(v, float):
        return v * rng.choice((0.5, 2.0, -1.0, 1e300))
    if isinstance(v, str):
        return v[: rng.randrange(len(v) + 1)] + rng.choice(("", "x", "\x00", "é", "\n"))
    return v


def _rezip(members: dict[str, bytes], manifest_text: str | None) -> bytes:
    """A zip of ``members`` with a (possibly edited) manifest, stored like save_profile."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        if manifest_text is not None:
            z.writestr(MANIFEST, manifest_text)
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist() if n != MANIFEST}


def _mutate(rng: random.Random, data: bytes, traffic: bool = False) -> tuple[bytes, str, str | None]:
    """(mutated file, what was done, its allowance: see :func:`_edit_manifest`; ``traffic-change`` for an
    edit of the traffic member)."""
    layers = ("bytes", "manifest", "manifest", "manifest", "member") + (("traffic",) if traffic else ())
    layer = rng.choice(layers)
    if layer == "bytes":
        b = bytearray(data)
        kind = rng.choice(("flip", "flip", "write", "zero", "truncate", "append"))
        at = rng.randrange(len(b))
        if kind == "flip":
            b[at] ^= 1 << rng.randrange(8)
        elif kind == "write":
            b[at:at + 4] = rng.randbytes(4)
        elif kind == "zero":
            n = rng.randint(1, 64)
            b[at:at + n] = bytes(len(b[at:at + n]))
        elif kind == "truncate":
            del b[at:]
        else:
            b += rng.randbytes(rng.randint(1, 100))
        return bytes(b), f"bytes: {kind} at {at}", None
    members = _members(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        manifest = json.loads(z.read(MANIFEST))
    if layer == "traffic":
        t, what, _ = _edit_manifest(rng, json.loads(members[TRAFFIC]))
        members[TRAFFIC] = (t if isinstance(t, str) else json.dumps(t)).encode()
        return _rezip(members, json.dumps(manifest)), f"traffic {what}", "traffic-change"
    if layer == "manifest":
        m, what, allowance = _edit_manifest(rng, copy.deepcopy(manifest))
        text = m if isinstance(m, str) else json.dumps(m)
        if rng.random() < 0.02:
            return _rezip(members, None), "no manifest", None
        return _rezip(members, text), what, allowance
    name = rng.choice(sorted(members))
    kind = rng.choice(("flip", "flip", "truncate", "delete", "extra"))
    b = bytearray(members[name])
    if kind == "flip" and b:
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        members[name] = bytes(b)
    elif kind == "truncate":
        members[name] = bytes(b[: rng.randrange(len(b) + 1)])
    elif kind == "delete":
        del members[name]
    else:
        members[f"launches/0/extra_{rng.randrange(9)}.npy"] = rng.randbytes(16)
    allowance = None
    if name == TRAFFIC:
        allowance = "traffic-change"
    elif kind == "flip":
        base = name.rsplit("/", 1)[-1]
        allowance = ("buffer-content" if base == "buffer.bin"
                     else "value-change" if base in VALUE_MEMBERS else None)
    return _rezip(members, json.dumps(manifest)), f"member {name}: {kind}", allowance


# --------------------------------------------------------------------------- outcomes

_META = ("launch", "kernel", "grid", "geometry", "strategy", "scopes", "warp_roles", "t0_ns", "lost_total",
         "n_ctas", "info")


def _same_launch(a, b, ignore: str = "") -> bool:
    if any(getattr(a, f) != getattr(b, f) for f in _META if f != ignore):
        return False
    if ignore != "clock_ghz" and not (a.clock_ghz == b.clock_ghz
                                      or (math.isnan(a.clock_ghz) and math.isnan(b.clock_ghz))):
        return False
    ta, tb = (a.events, *a.intervals(), a.lost, a.ctas), (b.events, *b.intervals(), b.lost, b.ctas)
    return all(x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
               for x, y in zip(ta, tb, strict=True) if x.dtype.names is None) and all(
        np.array_equal(x, y) for x, y in zip(ta, tb, strict=True) if x.dtype.names is not None)


def _traffic_outcome(path: str, ref: list, got: list, traffic: dict | None, what: str,
                     allowance: str | None) -> str:
    """The outcome of a case whose traffic loads other than the original's (module docstring)."""
    if not (len(got) == len(ref) and all(_same_launch(a, b) for a, b in zip(ref, got, strict=True))):
        raise AssertionError(f"{what}: the launches loaded differently, and the traffic too")
    if traffic is None:
        with zipfile.ZipFile(path) as z:  # a member that is neither the manifest nor a launch's: renamed
            renamed = [n for n in z.namelist() if n != MANIFEST and not n.startswith("launches/")]
        if allowance == "traffic-change" or renamed:
            return "traffic-dropped"
        raise AssertionError(f"{what}: the traffic is gone with no error")
    trace_args(traffic)  # what passed the checks must be usable by the trace and the tables
    traffic_table(traffic)
    if allowance == "traffic-change":
        return "traffic-change"
    raise AssertionError(f"{what}: the traffic loaded differently with no error")


def outcome(name: str, data: bytes, what: str, allowance: str | None, path: str) -> str:
    original, ref, measured = _originals()[name]
    with open(path, "wb") as f:
        f.write(data)
    try:
        got = load_profile(path, threads=1)
        traffic = read_traffic(path) if measured is not None else None
    except KperfError as err:
        return clear_error(err, names=path)
    if traffic != measured:
        return _traffic_outcome(path, ref, got, traffic, what, allowance)
    if len(got) == len(ref) and all(_same_launch(a, b) for a, b in zip(ref, got, strict=True)):
        return "same"
    if any(set(b.problems) - set(a.problems) for a, b in zip(ref, got, strict=False)):
        return "reported"
    if allowance in ("value-change", "buffer-content"):
        return allowance
    if allowance and all(_same_launch(a, b, ignore=allowance[9:]) for a, b in zip(ref, got, strict=True)):
        return "optional-dropped"
    raise AssertionError(f"{name}: {what}: the profile loaded differently with no problem reported")


def test_fuzz_mutated_saved_profiles_load_to_a_clear_outcome():
    tally = Outcomes()
    names = sorted(_originals())
    path = os.path.join(_DIR, "mutated.kperf")

    @fuzz_settings(CASES)
    @given(st.sampled_from(names), st.integers(0, 2**32 - 1))
    def case(name, seed):
        original = _originals()[name]
        data, what, allowance = _mutate(random.Random(seed), original[0], traffic=original[2] is not None)
        tally.run(outcome, name, data, what, allowance, path, describe=f"{name}: {what} (seed {seed})")

    case()
    tally.check("saved profiles", CASES * 9 // 10,
                must_see=("same", "error+fix", "reported", "traffic-change"))
