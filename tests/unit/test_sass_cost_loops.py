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
