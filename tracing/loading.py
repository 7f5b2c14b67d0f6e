"""What the statistics and plots accept as a profile, turned into a list of decoded launches.

A profile is given as one :class:`~kperf.tracing.decode.DecodedLaunch`, a list of them, a
``kperf.Profile`` (anything with a ``decoded()`` method), or the path of a saved profile
(:func:`kperf.tracing.saved.load_profile`).  Launches are recognised by their attributes, so this
module needs nothing from the top ``kperf`` package.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from kperf.dialect.errors import KperfError

from .saved import load_profile


def load_profile_file(path: str | os.PathLike) -> list:
    """The launches of a saved kperf profile (:func:`kperf.tracing.saved.load_profile`)."""
    if not pathlib.Path(path).is_file():
        raise KperfError(f"no profile file at {path}",
                         fix="give the path of a profile saved by `kperf run` or Profile.save()")
    return list(load_profile(path))


def _has(x: Any, name: str) -> bool:
    """Whether ``x`` has the attribute, without reading it: ``DecodedLaunch.events`` is a property that
    builds the whole events table (seconds and gigabytes for a large launch)."""
    return hasattr(type(x), name) or name in getattr(x, "__dict__", {})


def _is_launch(x: Any) -> bool:
    return _has(x, "events") and _has(x, "ctas")


def as_launches(profile: Any) -> list:
    """A list of DecodedLaunch from a DecodedLaunch, a list of them, a ``kperf.Profile`` or the path of
    a saved profile."""
    if isinstance(profile, (str, os.PathLike)):
        return load_profile_file(profile)
    if _is_launch(profile) and _has(profile, "intervals"):
        return [profile]
    if hasattr(profile, "decoded") and callable(profile.decoded):
        return list(profile.decoded())
    try:
        launches = list(profile)
    except TypeError:
        raise KperfError(f"expected a profile, got {type(profile).__name__}",
                         fix="pass a kperf.Profile, decoded launches or a saved profile's path") from None
    for d in launches:
        if not _is_launch(d):
            raise KperfError("expected decoded launches (kperf.tracing.DecodedLaunch), "
                             f"got {type(d).__name__}",
                             fix="pass kperf.tracing.saved.load_profile(path) or a kperf.Profile")
    return launches
