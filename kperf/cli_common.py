"""What the ``kperf`` commands share: reading flag values, loading profiles, help and error wording.

Every helper that reads a flag's value names the flag in its ``KperfError`` (``--kernels: '(' is not a
regular expression``), and :func:`in_flag_words` rewrites the Python spelling that the library's
errors use (``capacity=128``, ``constexprs``, ``auto=``) into the command's flags (``--capacity 128``,
``--constexprs``, ``--auto``) at the one error boundary (kperf/cli.py), so that a message never asks a
command-line user for a keyword argument.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re

from kperf.dialect.errors import KperfError
from kperf.dialect.layout import GRANULARITIES, STORES
from kperf.dialect.options import HOIST_ARITH

PROFILE_NAME = "profile.kperf"  # what Profile.save and `kperf run` write into their folder


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, ``(default: 1024)``, except where there is nothing to
    show (no default, an off switch) or the help text says it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class ScriptError(KperfError):
    """The script that ``kperf run`` / ``kperf dump`` runs raised (its traceback is printed as by Python)."""


# --------------------------------------------------------------------------- flag values


_CONFIG_FLAGS = {"capacity": "--capacity", "strategy": "--strategy", "clock": "--clock", "auto": "--auto",
                 "store": "--store", "granularity": "--granularity", "warp_mask": "--warp-mask",
                 "cta_stride": "--cta-stride", "sms": "--sms", "hoist_arith": "--hoist-arith",
                 "defer_stores": "--defer-stores"}
#: lowering flags left out unless given (ProfileConfig keeps its own defaults)
_LOWERING = ("store", "granularity", "warp_mask", "cta_stride", "sms", "hoist_arith", "defer_stores")


def config(args, **extra):
    """The ``ProfileConfig`` of the command's flags; a refused value names its flag (``--capacity``)."""
    from kperf.dialect.options import OptionError, ProfileConfig
    given = {k: getattr(args, k) for k in _LOWERING if getattr(args, k, None) is not None}
    if "sms" in given:
        given["sms"] = _sm_list(given["sms"])
    try:
        return ProfileConfig(capacity=args.capacity, strategy=args.strategy, clock=args.clock, **given,
                             **extra)
    except OptionError as e:
        raise e.renamed(_CONFIG_FLAGS.get(e.option, e.option)) from None


def _sm_list(text: str) -> tuple[int, ...]:
    """``--sms 0,8,16`` or a range ``0-131/8`` (every 8th SM from 0 to 131)."""
    out: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            rng, _, step = part.partition("/")
            lo, _, hi = rng.partition("-")
            out += range(int(lo), int(hi or lo) + 1, int(step or 1))
    except ValueError:
        raise KperfError(f"--sms: expected SM ids such as 0,8,16 or a range 0-131/8, got {text!r}",
                         fix="e.g. --sms 0-131/8 records the CTAs on every 8th SM") from None
    return tuple(out)


def add_config_args(p) -> None:
    p.add_argument("--capacity", type=int, default=1024, help="record slots per warp")
    p.add_argument("--strategy", default="keep-first", choices=["keep-first", "wrap"],
                   help="when a warp's slots are full: keep its first records, or wrap and keep the latest")
    p.add_argument("--clock", default="clock", choices=["clock", "clock64", "globaltimer"],
                   help="the timer each record reads")
    p.add_argument("--store", default=None, choices=STORES,
                   help="where records go first: global memory, staged in shared memory, or auto (smem when "
                        "it fits) (default: global)")
    p.add_argument("--granularity", default=None, choices=GRANULARITIES,
                   help="which warps record: every warp, warp 0 of each warpgroup, warp 0 of the CTA, or the "
                        "first warp of each role of a warp-specialized kernel (default: warp)")
    p.add_argument("--warp-mask", type=lambda t: int(t, 0), default=None,
                   help="bitmask of warps allowed to record, e.g. 0x11 (with --granularity)")
    p.add_argument("--cta-stride", type=int, default=None, help="record only every Nth CTA")
    p.add_argument("--sms", default=None, help="record only CTAs on these SMs: 0,8,16 or 0-131/8")
    p.add_argument("--hoist-arith", default=None, choices=HOIST_ARITH,
                   help="move the integer arithmetic that feeds a recorded op in front of its records and "
                        "barrier wait: for automatic insertion's scopes, every scope, or none "
                        "(default: auto)")
    p.add_argument("--defer-stores", action="store_true", default=None,
                   help="read each record's clock in place, store it in the next wgmma's issue window")


def regex(text: str | None, flag: str) -> str | None:
    """``text`` when it is a regular expression; a KperfError naming ``flag`` when not."""
    if text is not None:
        try:
            re.compile(text)
        except re.error as e:
            raise KperfError(f"{flag}: {text!r} is not a regular expression ({e})",
                             fix="escape the special characters, e.g. \\( for a literal (") from None
    return text


def json_object(text: str | None, flag: str, example: str) -> dict:
    """The JSON object given to ``flag`` ({} when not given)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise KperfError(f"{flag}: not valid JSON ({e}): {text!r}",
                         fix=f"quote it for the shell: {flag} '{example}'") from None
    if not isinstance(value, dict):
        raise KperfError(f"{flag}: expected a JSON object of argument names, got {text!r}",
                         fix=f"e.g. {flag} '{example}'")
    return value


_ID_LIMIT = 1 << 32  # CTA, warp and SM ids lie below this
_MAX_IDS = 1 << 20


def int_list(text: str, flag: str) -> list[int]:
    """``"0,3,8-11"`` -> [0, 3, 8, 9, 10, 11]; a KperfError naming ``flag`` when it does not read."""
    out: list[int] = []
    try:
        for part in filter(None, text.split(",")):
            a, _, b = part.partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            if not 0 <= lo <= hi < _ID_LIMIT or len(out) + hi - lo + 1 > _MAX_IDS:
                raise KperfError(f"{flag}: {part!r} in {text!r} is out of range: ids lie in "
                                 f"[0, {_ID_LIMIT}), ranges go up, at most {_MAX_IDS:,} ids in all",
                                 fix="write ids of the launch and rising ranges, e.g. 0,3,8-11")
            out += range(lo, hi + 1)
    except ValueError:
        raise KperfError(f"{flag}: cannot read the number list {text!r}",
                         fix="write numbers and ranges, e.g. 0,3,8-11") from None
    return out


# --------------------------------------------------------------------------- profiles


def profile_file(path: str) -> str:
    """The saved profile ``path`` names: the file itself, or the ``profile.kperf`` of a folder that
    ``Profile.save`` or ``kperf run`` wrote (or the one ``.kperf`` file a folder holds)."""
    p = pathlib.Path(path)
    if not p.is_dir():
        return path
    if (p / PROFILE_NAME).is_file():
        return str(p / PROFILE_NAME)
    found = sorted(p.glob("*.kperf"))
    if len(found) == 1:
        return str(found[0])
    listed = ", ".join(f.name for f in found[:8]) + (", ..." if len(found) > 8 else "")
    holds = f"; it holds {listed}" if found else ""
    raise KperfError(f"{path} is a folder without a {PROFILE_NAME}{holds}",
                     fix=f"name one profile file, e.g. {found[0]}" if found else
                     "give a .kperf file, or the folder that kperf run --out / Profile.save(DIR) wrote")


def load_launches(path: str) -> list:
    """The decoded launches of the saved profile ``path`` names (:func:`profile_file`)."""
    from kperf.tracing.loading import load_profile_file
    launches = load_profile_file(profile_file(path))
    if not launches:
        raise KperfError(f"{path} holds no launches",
                         fix="profile a kernel that has kperf scopes (kperf run)")
    return launches


# --------------------------------------------------------------------------- error wording


#: keyword arguments of the Python API and the flags that set the same thing
KEYWORD_FLAGS = {"signature": "--signature", "constexprs": "--constexprs", "num_warps": "--num-warps",
                 "num_stages": "--num-stages", "capacity": "--capacity", "strategy": "--strategy",
                 "clock": "--clock", "auto": "--auto", "kernels": "--kernels", "target": "--target",
                 "ctas": "--ctas", "warps": "--warps", "sms": "--sms", "max_lanes": "--max-lanes",
                 "select": "--select"}
#: keywords that are not English words: rewritten wherever they stand alone
_PLAIN_KEYWORDS = ("signature", "constexprs", "num_warps", "num_stages")
_CALL = re.compile(r"\bkperf\.\w+\((\w+)=\.\.\.\)")  # kperf.profile(capacity=...)
# capacity=128, strategy='wrap', auto=
_ASSIGN = re.compile(r"(?<![\w-])(\w+)=('?)([\w.+-]*)\2(?=[\s,;:)/]|$)")


def _flag_words(text: str, flags: dict[str, str]) -> str:
    text = _CALL.sub(lambda m: flags.get(m.group(1), m.group(0)), text)

    def assign(m: re.Match) -> str:
        flag = flags.get(m.group(1))
        if flag is None:
            return m.group(0)
        return f"{flag} {m.group(3)}" if m.group(3) else flag

    text = _ASSIGN.sub(assign, text)
    for word in _PLAIN_KEYWORDS:
        if word in flags:
            text = re.sub(rf"(?<![\w-]){word}(?![\w=])", flags[word], text)
    return text


def flag_words(text: str, option_strings) -> str:
    """``text`` with the Python keywords it names rewritten as the flags (among ``option_strings``, the
    command's) that set the same thing: ``capacity=128`` -> ``--capacity 128``."""
    return _flag_words(text, {k: f for k, f in KEYWORD_FLAGS.items() if f in set(option_strings)})


def in_flag_words(err: KperfError, option_strings) -> KperfError:
    """``err`` in the command's words (:func:`flag_words`); ``err`` itself when nothing changes."""
    text = str(err)
    main, _, fix = text.partition("\n  fix: ")
    new_main, new_fix = flag_words(main, option_strings), flag_words(fix, option_strings) if fix else None
    if new_main == main and new_fix == (fix or None):
        return err
    out = KperfError(new_main, fix=new_fix)
    out.__cause__ = err
    return out
