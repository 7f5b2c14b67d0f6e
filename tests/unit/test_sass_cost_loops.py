"""bench/sass_cost.py's loop reading without a GPU: the innermost HGMMA loops of a warp-specialized
kernel (one per consumer warpgroup), and what a variant adds to the consumer loop that grew most."""

from __future__ import annotations

from bench.sass_cost import _added, _main_loops


def _sass(body: list[str]) -> str:
    return "\n".join(f"        /*{16 * i:04x}*/   {t} ;" for i, t in enumerate(body))


def _loop(start: int, n: int, mma: bool = True) -> list[str]:
    """``n`` instructions from address index ``start``, the last a branch back to the first."""
    ops = [("HGMMA.64x128x16.F32" if mma and k == 1 else "FADD R1, R1, R2") for k in range(n - 1)]
    return ops + [f"BRA 0x{16 * start:x}"]


def _kernel(a: int, b: int) -> str:
    """Two consumer loops of ``a`` and ``b`` instructions inside an outer loop that holds both."""
    body = ["MOV R0, R1"] + _loop(1, a) + _loop(1 + a, b)
    return _sass(body + [f"BRA 0x{16 * 1:x}"])


def test_only_innermost_hgmma_loops_are_consumer_loops():
    loops = _main_loops(_kernel(20, 20))
    assert loops["mma_loops"] == [20, 20] and loops["mma_loop"] == 20


def test_the_consumer_loop_that_grew_most_is_reported():
    plain = _main_loops(_kernel(20, 20))
    one_left_plain = _main_loops(_kernel(21, 32))  # one warpgroup's loop kept (nearly) plain
    assert _added(plain, one_left_plain)["mma_loop"] == 12
    assert _added(plain, _main_loops(_kernel(32, 32)))["mma_loop"] == 12


def test_consumer_loops_one_instruction_apart_when_plain_are_still_twins():
    """The held-out WS attention's two consumer loops are 472 and 473 instructions plain; under
    role granularity one stays 472 and the other grows to 499: +26, not +0."""
    plain = _main_loops(_kernel(472, 473))
    assert _added(plain, _main_loops(_kernel(472, 499)))["mma_loop"] == 26


def _ordered(ops: list[str]) -> str:
    """One consumer loop: ``ops`` then a branch back to its first instruction."""
    return _sass(["MOV R0, R1", *ops, "BRA 0x10"])


def test_loop_order_compares_unrecorded_loops_with_the_plain_kernels():
    """A loop of the plain kernel's opcodes in another order scores below 1; a loop with clock reads
    (recorded) is not compared; the same order scores 1."""
    from bench.sass_cost import loop_order

    ops = ["HGMMA.64x128x16.F32 R24, gdesc[UR4], R24"] + [f"FADD R{k}, R{k}, R2" for k in range(8)] + \
        [f"FMUL R{k}, R{k}, R3" for k in range(8)] + ["@!P1 SYNCS.ARRIVE.TRANS64.ART0 RZ, [UR4], R5"]
    plain = _ordered(ops)
    assert loop_order(plain, _ordered(ops))["unrecorded_loops"] == [1.0]
    shuffled = ops[:1] + [o for pair in zip(ops[1:9], ops[9:17], strict=True) for o in pair] + ops[17:]
    got = loop_order(plain, _ordered(shuffled))["unrecorded_loops"]
    assert len(got) == 1 and 0.4 < got[0] < 1.0
    recorded = ops[:1] + ["CS2R.32 R7, SR_CLOCKLO"] + ops[2:]  # as long as the plain loop
    assert loop_order(plain, _ordered(recorded))["unrecorded_loops"] == []
