"""``kperf.compile``: compile a kernel through kperf without a GPU and show where records landed.

Examples:
    >>> report = kperf.compile(matmul, signature={"a": "*fp16", ..., "BK": "constexpr"},
    ...                        constexprs={"BK": 64}, target="cuda:90", num_warps=8, num_stages=3)
    >>> report.num_records, report.sass_per_record
    (4, 4.0)
    >>> print(report.ptx)      # the instrumented PTX
"""

from __future__ import annotations

import dataclasses

from kperf import sass as sass_tools
from kperf import schedule, stages, triton_compat  # triton_compat refuses an unsupported Triton on import
from kperf.dialect.errors import KperfError, error_chain
from kperf.dialect.layout import Geometry
from kperf.dialect.options import MAX_WARPS, ProfileConfig
from kperf.dialect.scope_table import ScopeTable


@dataclasses.dataclass
class CompileReport:
    """What kperf built: IR texts, SASS, the scope table and the static cost of the records."""

    name: str
    ttgir: str = dataclasses.field(repr=False)
    ptx: str = dataclasses.field(repr=False)
    sass: str = dataclasses.field(repr=False)
    cubin: bytes = dataclasses.field(repr=False)
    scopes: ScopeTable
    num_records: int  # record sites in the PTX (static)
    geometry: Geometry
    metadata: dict = dataclasses.field(repr=False)
    sass_instructions: int  # instrumented kernel
    sass_instructions_plain: int  # same kernel compiled without kperf
    sass_fixed_cost: int  # preamble + finalize, in SASS instructions
    sass_per_record: float  # mean SASS instructions per record site
    local_memory_ops: int  # LDL/STL in the instrumented SASS (spills)
    local_memory_ops_plain: int
    sass_plain: str = dataclasses.field(default="", repr=False)  # the same kernel compiled without kperf
    # where ptxas placed the kernel's work differently in the two builds (kperf.schedule; None: not compared)
    schedule_drift: schedule.ScheduleDrift | None = dataclasses.field(default=None, repr=False)

    def summary(self) -> str:
        return (f"{self.name}: {self.num_records} records, {len(self.scopes)} scopes; SASS "
                f"{self.sass_instructions_plain} -> {self.sass_instructions} instructions "
                f"({self.sass_fixed_cost} fixed + {self.sass_per_record:.1f} per record); "
                f"spills {self.local_memory_ops_plain} -> {self.local_memory_ops}; "
                f"{self.geometry.cta_bytes} profile bytes per CTA"
                + (f"\n{line}" if self.schedule_drift and (line := self.schedule_drift.headline()) else ""))


def unwrap_jit(fn):
    """The ``JITFunction`` under kperf.profile / autotune / heuristics wrappers."""
    seen = fn
    jit_function = triton_compat.jit_function_type()
    while not isinstance(fn, jit_function) and hasattr(fn, "fn"):
        fn = fn.fn
    if not isinstance(fn, jit_function):
        raise KperfError(f"{seen!r} is not a Triton kernel", fix="decorate the kernel with @triton.jit")
    return fn


def parse_target(target):
    if isinstance(target, triton_compat.gpu_target_type()):
        t = target
    else:
        backend, _, arch = str(target).partition(":")
        if backend != "cuda" or not arch.isdigit():
            raise KperfError(f"unsupported target {target!r}",
                             fix="use 'cuda:90' (Hopper) or 'cuda:80' (Ampere)")
        t = triton_compat.gpu_target(int(arch))
    if t.backend != "cuda" or int(t.arch) < 70:
        raise KperfError(f"kperf lowers records to PTX for NVIDIA GPUs (sm_70+), not {t}",
                         fix="use target='cuda:90'")
    return t


def _source_class(fn):
    """Triton's ``ASTSource``, or Gluon's for ``@gluon.jit`` kernels (they compile straight to TTGIR)."""
    return triton_compat.source_class(fn)


def default_attrs(signature: dict[str, str], fn) -> dict:
    """``tt.divisibility = 16`` on every pointer and integer argument, as the JIT gives 16-aligned values."""
    names = list(fn.arg_names)
    attrs = {}
    for name, ty in signature.items():
        if ty == "constexpr":
            continue
        if ty.startswith("*") or ty in ("i32", "i64", "u32", "u64"):
            attrs[(names.index(name),)] = [["tt.divisibility", 16]]
    return attrs


def check_arguments(fn, signature, constexprs) -> None:
    """The signature and constexprs fit the kernel: known names, known types, every constexpr given."""
    example = 'e.g. {"x": "*fp32", "n": "i32", "BLOCK": "constexpr"}'
    if not isinstance(signature, dict) or not all(isinstance(k, str) for k in signature):
        raise KperfError(f"signature must be a dict of argument name -> Triton type, got {signature!r}",
                         fix=example)
    if not isinstance(constexprs, dict):
        raise KperfError(f"constexprs must be a dict of argument name -> value, got {constexprs!r}",
                         fix='e.g. {"BLOCK": 128}')
    names = list(fn.arg_names)
    for what, keys in (("signature", signature), ("constexprs", constexprs)):
        unknown = [k for k in keys if isinstance(k, str) and k not in names]
        if unknown:
            raise KperfError(f"{what} names {', '.join(map(repr, unknown))}, not an argument of "
                             f"{fn.__name__}",
                             fix=f"its arguments: {', '.join(names)}")
    missing = [n for n in names if n not in signature and n not in constexprs]
    if missing:
        raise KperfError(f"signature lacks argument {', '.join(map(repr, missing))} of {fn.__name__}",
                         fix=f"give every argument a type ({example})")
    unset = [n for n, ty in signature.items() if ty == "constexpr" and n not in constexprs]
    if unset:
        raise KperfError(f"no value for constexpr argument {', '.join(map(repr, unset))} of {fn.__name__}",
                         fix=f"give its value in constexprs, e.g. constexprs={{{unset[0]!r}: 128}}")
    for name, ty in signature.items():
        if isinstance(ty, str) and ty != "constexpr" and not ty.startswith("tensordesc"):
            try:
                triton_compat.triton_type(ty)
            except Exception:
                raise KperfError(f"unknown Triton type {ty!r} for argument {name!r} of {fn.__name__}",
                                 fix="use a type such as *fp16, *fp32, i32, i64, fp32 or constexpr") from None


def check_options(gpu, options: dict) -> None:
    """Triton's compile options (``num_warps``, ...) are known to the backend and accepted by it."""
    known = triton_compat.cuda_option_names()
    unknown = sorted(set(options) - set(known) - {"instrumentation_mode"})
    if unknown:
        raise KperfError(f"unknown Triton compile option {', '.join(unknown)}",
                         fix=f"Triton's options: {', '.join(known)}")
    n = options.get("num_warps", 4)
    if type(n) is not int or n < 1 or n & (n - 1) or n > MAX_WARPS:
        raise KperfError(f"num_warps must be a power of two from 1 to {MAX_WARPS}, got {n!r}",
                         fix="use num_warps=4 or 8")
    try:
        triton_compat.cuda_backend(gpu).parse_options(dict(options))
    except (AssertionError, TypeError, ValueError) as e:
        raise KperfError(f"Triton refuses the compile options {options}: {e}",
                         fix="see triton.backends.nvidia.compiler.CUDAOptions") from None


def kperf_cause(exc: BaseException) -> KperfError | None:
    """The ``KperfError`` that ``exc`` wraps (Triton wraps errors raised in kernel code), if any."""
    return next((e for e in error_chain(exc) if isinstance(e, KperfError)), None)


def _source_line(fn, exc: BaseException) -> str:
    """``file:line`` of the kernel source a Triton compilation error points at ("" when unknown)."""
    node = getattr(exc, "node", None)
    code = getattr(getattr(fn, "fn", None), "__code__", None)
    if node is None or not hasattr(node, "lineno") or code is None:
        return ""
    raw = getattr(fn, "raw_src", None) or []  # the source lines from the first decorator; src starts at def
    decorators = next((i for i, line in enumerate(raw) if line.lstrip().startswith("def ")), 0)
    first = getattr(fn, "starting_line_number", code.co_firstlineno) + decorators
    return f"{code.co_filename}:{first + node.lineno - 1}"


def compile_failure(fn, exc: BaseException) -> KperfError:
    """A Triton compilation failure as a KperfError: the kperf error it wraps, or Triton's own message."""
    inner = kperf_cause(exc)
    where = _source_line(fn, exc) or None
    if inner is not None:
        if not where:
            return inner
        located = KperfError(str(inner), where=where)  # the message and its fix line, at the source line
        located.fix = inner.fix
        return located
    return KperfError(f"Triton could not compile {fn.__name__}: {type(exc).__name__}: {exc}", where=where,
                      fix="check the kernel's source at that line, its signature and its constexprs")


def _triton_compile(fn, src, gpu, options: dict):
    try:
        import triton
        return triton.compile(src, target=gpu, options=options)
    except KperfError:
        raise
    except Exception as e:
        raise compile_failure(fn, e) from e


def compile(fn, *, signature: dict[str, str], constexprs: dict | None = None, attrs: dict | None = None,
            target="cuda:90", config: ProfileConfig | None = None, auto: str | None = None,
            **options) -> CompileReport:
    """Compile ``fn`` (a ``@triton.jit`` function) instrumented and plain; no GPU needed.

    Args:
        signature: Triton types by argument name (``"*fp16"``, ``"i32"``, ``"constexpr"``).
        constexprs: values of the constexpr arguments.
        attrs: Triton argument attributes; by default every pointer and integer argument is marked
            16-divisible, as the JIT does for aligned values (without it loops are not pipelined).
        target: ``"cuda:90"`` or a ``GPUTarget``.
        config: the ``ProfileConfig``; defaults to ``ProfileConfig()``.
        auto: automatic insertion selectors (``"mma,tma"``; see ``kperf.passes.auto_insert``), the same
            as ``config=ProfileConfig(auto=...)``.
        options: Triton compile options (``num_warps``, ``num_stages``, ...).
    """
    fn = unwrap_jit(fn)
    if config is not None and not isinstance(config, ProfileConfig):
        raise KperfError(f"config must be a ProfileConfig, got {type(config).__name__}",
                         fix="pass kperf.ProfileConfig(...) or leave config out")
    config = config or ProfileConfig()
    if auto:
        config = dataclasses.replace(config, auto=auto)
    gpu = parse_target(target)
    constexprs = {} if constexprs is None else constexprs
    check_arguments(fn, signature, constexprs)
    check_options(gpu, options)
    if options.get("maxnreg") and triton_compat.FACTS.mode_drops_maxnreg:
        import warnings
        version = ".".join(map(str, triton_compat.VERSION))
        warnings.warn(f"Triton {version} ignores maxnreg when it compiles an instrumented kernel: the "
                      "instrumented build may use more registers than the plain one",
                      stacklevel=2)
    attrs = default_attrs(signature, fn) if attrs is None else attrs
    stages.install()
    source_cls = _source_class(fn)
    plain = _triton_compile(fn, source_cls(fn, signature, constexprs, attrs), gpu,
                            {**options, "instrumentation_mode": ""})
    inst = _triton_compile(fn, source_cls(fn, signature, constexprs, attrs), gpu,
                           {**options, "instrumentation_mode": stages.instrumentation_mode(config)})
    md = inst.metadata._asdict()
    info = md.get(stages.METADATA_KEY) or {}
    if not info.get("num_records"):
        raise KperfError(f"kernel {fn.__name__} has no kperf scopes to profile",
                         fix='add `with kperf.scope("name"):` around the code to time')
    num_warps = int(info["num_warps"])
    geometry = Geometry.from_json(info["geometry"])
    plain_md = {**plain.metadata._asdict(), "num_warps": num_warps}
    fixed = stages.lower_pass(config, plain_md, records=False).apply(plain.asm["ptx"]).ptx
    backend = triton_compat.cuda_backend(gpu)
    opts = backend.parse_options(dict(options))
    arch = triton_compat.cubin_arch(backend, opts)
    sass = sass_tools.disassemble(inst.asm["cubin"])
    sass_plain = sass_tools.disassemble(plain.asm["cubin"])
    n_inst = sass_tools.count_instructions(sass)
    n_plain = sass_tools.count_instructions(sass_plain)
    n_fixed = sass_tools.count_instructions(sass_tools.assemble_and_disassemble(backend, fixed, opts, arch))
    records = int(info.get("ptx_records", info["num_records"]))
    return CompileReport(
        name=md["name"], ttgir=inst.asm["ttgir"], ptx=inst.asm["ptx"], sass=sass, cubin=inst.asm["cubin"],
        scopes=ScopeTable.from_json(info["scopes"]), num_records=records, geometry=geometry, metadata=md,
        sass_instructions=n_inst, sass_instructions_plain=n_plain, sass_fixed_cost=n_fixed - n_plain,
        sass_per_record=(n_inst - n_fixed) / records if records else 0.0,
        local_memory_ops=sass_tools.local_memory_ops(sass),
        local_memory_ops_plain=sass_tools.local_memory_ops(sass_plain), sass_plain=sass_plain,
        schedule_drift=schedule.compare(sass_plain, sass, store=info.get("store", "global"),
                                        cloned=config.samples_ctas and config.clone))
