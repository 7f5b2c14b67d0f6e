"""Automatic insertion on the final TTGIR of a warp-specialized Hopper attention kernel (no GPU)."""

import re

import numpy as np
import pytest
import triton
import triton.language as tl

import kperf
from kperf.dialect.errors import KperfError
from kperf.dialect.options import ProfileConfig
from kperf.dialect.selectors import PRESETS, SELECTORS, parse_selectors
from kperf.examples import attention as A
from kperf.examples import matmul as mm
from kperf.passes.warp_roles import role_starts
from kperf.tracing.decode import EVENT_DTYPE
from kperf.tracing.flows import FLOW_DTYPE, compute_flows


@pytest.fixture(scope="module")
def ws_report():
    return kperf.compile(A.attn_fwd_kernel, signature=A.SIGNATURE, constexprs=A.CONSTEXPRS, target="cuda:90",
                         auto="mma,tma", **A.COMPILE_OPTIONS)


def _region_texts(ttgir: str) -> dict[str, str]:
    """The text of the default and partitionN regions of the ttg.warp_specialize op."""
    lines = ttgir.splitlines()
    out, cur = {}, None
    for line in lines:
        s = line.strip()
        if s == "default {":
            cur = "default"
        elif s.startswith(("partition", "} partition")) and s.endswith("{"):
            cur = s.lstrip("} ").split("(")[0]
        elif s.startswith("} : (") and cur is not None:
            cur = None
        if cur is not None:
            out[cur] = out.get(cur, "") + line + "\n"
    return out


@pytest.mark.compile_side
def test_ws_attention_has_records_in_every_partition(ws_report):
    r = ws_report
    assert "ttg.warp_specialize" in r.ttgir
    regions = _region_texts(r.ttgir)
    assert set(regions) == {"default", "partition0", "partition1"}
    for name, text in regions.items():
        assert text.count("// kperf.record start") >= 2, name
    # producer issues TMA; consumers wait for it and run wgmma
    assert 'tma.load attention.py:51' in regions["default"].replace("\\22", "")
    for p in ("partition0", "partition1"):
        t = regions[p].replace("\\22", "")
        assert "wgmma attention.py:52" in t and "wgmma attention.py:66" in t
        assert "tma.wait attention.py:51" in t and "tma.wait attention.py:65" in t
    names = r.scopes.names()
    assert all(re.search(r" attention\.py:\d+", n) for n in names), names


@pytest.mark.compile_side
def test_ws_attention_assembles_without_spills(ws_report):
    r = ws_report
    assert r.num_records == 36
    assert r.local_memory_ops == r.local_memory_ops_plain == 0
    assert r.sass_per_record <= 8.0, r.summary()
    assert r.geometry.num_warps == 12


@pytest.mark.compile_side
def test_ws_every_warp_reaches_the_single_ret_with_its_count_store(ws_report):
    """WS lowering: all 12 warps leave through one `ret` (after the exit barrier), where each stores its
    count; warp 0 (default region) writes the CTA end pair after `barrier.sync 1` has waited for the
    partitions, so the pair closes the whole CTA."""
    ptx = ws_report.ptx
    body = ptx[ptx.index(".entry"):]
    rets = [m.start() for m in re.finditer(r"\n\s*ret;", body)]
    assert len(rets) == 1
    before = body[:rets[0]]
    fin = before.rindex("kperf: finalize")
    assert "st.global.b32 [%ke+" in before[fin:] and "%globaltimer" in before[fin:]
    assert before.rfind("barrier.sync \t1;") < fin or before.rfind("barrier.sync 1;") < fin
    # the partition dispatch loop branches to the common return: no other exit
    assert "exit;" not in body


@pytest.mark.compile_side
def test_warp_roles_match_the_partition_table_in_ptx(ws_report):
    roles = ws_report.metadata["kperf"]["warp_roles"]
    assert len(roles) == 12
    assert roles[:4] == ["default (producer, TMA)"] * 4
    assert roles[4].startswith("partition0 (consumer wg0, MMA")
    assert roles[8].startswith("partition1 (consumer wg1")
    # PTX: the default warps write one state byte per partition warp (warps 4..11):
    # 0 = partition0, 1 = partition1
    m = re.search(r"st\.shared\.v2\.b32\s+\[global_smem\+\d+\], \{(\d+), (\d+)\};", ws_report.ptx)
    states = np.frombuffer(np.array([int(m.group(1)), int(m.group(2))], "<u4").tobytes(), np.uint8)
    assert [int(p[len("partition")]) for p in (roles[w].split()[0] for w in range(4, 12))] == list(states)


def test_role_starts_take_one_warp_per_role():
    """The producer's first warp and the first consumer warpgroup's: the second consumer warpgroup runs
    the same code on other rows (granularity="role")."""
    ws = (["default (producer, TMA)"] * 4 + ["partition0 (consumer wg0, MMA, 232 regs)"] * 4
          + ["partition1 (consumer wg1, MMA, 232 regs)"] * 4)
    assert role_starts(ws) == (0, 4)
    assert role_starts(["default (consumer wg0, MMA)"] * 8 + ["partition0 (producer, TMA, 24 regs)"]
                       + ["partition1 (other)"] + ["unused"] * 2) == (0, 8, 9)
    assert role_starts([]) == ()  # not warp-specialized


@pytest.mark.compile_side
def test_role_granularity_records_one_warp_per_role(ws_report):
    """In the WS attention: the producer (warp 0) and consumer warpgroup 0 (warp 4) record; consumer
    warpgroup 1's partition gets no records at all (its warps would only run them predicated off), and
    the flows between the producer's loads and the recording consumer's waits stay."""
    r = kperf.compile(A.attn_fwd_kernel, signature=A.SIGNATURE, constexprs=A.CONSTEXPRS, target="cuda:90",
                      config=ProfileConfig(auto="mma,tma", granularity="role", store="auto"),
                      **A.COMPILE_OPTIONS)
    assert r.geometry.warps == (0, 4)
    assert r.geometry.cta_bytes < ws_report.geometry.cta_bytes
    assert r.metadata["kperf"]["warp_roles"] == ws_report.metadata["kperf"]["warp_roles"]
    parts = r.ttgir.split("    partition")
    assert "kperf.record" in parts[0] and "kperf.record" in parts[1]  # default (producer), partition0
    assert "kperf.record" not in parts[2]  # partition1: consumer warpgroup 1
    assert 0 < r.num_records < ws_report.num_records
    names = r.scopes.names()
    pairs = {(names[f["issue"][0]], names[f["complete"][0]]) for f in r.metadata["kperf"]["flows"]
             if f["kind"] == "tma"}
    assert ("tma.load attention.py:51", "tma.wait attention.py:51") in pairs


@pytest.mark.compile_side
def test_flows_pair_tma_issue_and_wait(ws_report):
    info = ws_report.metadata["kperf"]
    names = ws_report.scopes.names()
    flows = info["flows"]
    pairs = {(names[f["issue"][0]], names[f["complete"][0]]) for f in flows if f["kind"] == "tma"}
    assert ("tma.load attention.py:51", "tma.wait attention.py:51") in pairs
    assert ("tma.load attention.py:65", "tma.wait attention.py:65") in pairs


def test_selectors_presets_and_errors():
    assert parse_selectors("tma, mma") == ("mma", "tma")
    assert parse_selectors(["loops", "ttng.wait_barrier"]) == ("loops", "ttng.wait_barrier")
    assert ProfileConfig(auto="tma,mma").auto == "mma+tma"
    assert ProfileConfig.from_mode(ProfileConfig(auto="waits").to_mode()).auto == "waits"
    with pytest.raises(KperfError) as e:
        parse_selectors("mma,wgmma")
    assert "'wgmma'" in str(e.value) and "ttng.warp_group_dot" in str(e.value) and "loops" in str(e.value)
    assert set(PRESETS) == {"mma", "tma", "waits", "loops", "kernel"}
    assert "scf.for" in SELECTORS


def test_loops_preset_brackets_the_body_of_a_pipelined_gemm():
    r = kperf.compile(mm.matmul_kernel, signature=mm.SIGNATURE, constexprs=mm.CONSTEXPRS, target="cuda:90",
                      auto="loops,mma,waits", **mm.COMPILE_OPTIONS)
    names = r.scopes.names()
    loop = [n for n in names if n.startswith("loop matmul.py:")]
    assert loop
    # the source scopes and the automatic ones live together, loop scopes enclose the ones in the body
    table = {s.name: s for s in r.scopes.scopes}
    assert "mma" in table and "load" in table
    assert any(s.parent == table[loop[0]].id for s in r.scopes.scopes)
    issue = [n for n in names if n.startswith("wgmma.issue")]
    waits = [n for n in names if n.startswith("wgmma.wait(")]
    assert issue and waits
    flows = r.metadata["kperf"]["flows"]
    assert any(f["kind"] == "wgmma" for f in flows)
    assert r.local_memory_ops == 0


def test_records_in_noinline_functions_cannot_be_placed():
    @triton.jit(noinline=True)
    def helper(x_ptr, y_ptr, i):
        tl.store(y_ptr + i, tl.load(x_ptr + i) * 2)

    @triton.jit
    def k(x_ptr, y_ptr):
        helper(x_ptr, y_ptr, tl.program_id(0))

    with pytest.raises(KperfError) as e:
        kperf.compile(k, signature={"x_ptr": "*fp32", "y_ptr": "*fp32"}, target="cuda:90", auto="tt.load",
                      num_warps=4)
    msg = str(e.value)
    assert "noinline" in msg and "helper" in msg and "fix:" in msg and ".py:" in msg


def _events(rows):
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (cta, warp, scope, is_end, seq, t) in enumerate(rows):
        ev[i] = (0, cta, 0, warp, scope, is_end, seq, t, t)
    return ev[np.lexsort((ev["seq"], ev["warp"], ev["cta"]))]


def test_compute_flows_tma_pairs_kth_issue_with_kth_wait_per_consumer_group():
    rows = []
    for cta in range(2):
        for k in range(3):
            for w in range(4):  # producer warps 0..3 all record the issue
                rows += [(cta, w, 0, False, 2 * k, 100 * k + w),
                         (cta, w, 0, True, 2 * k + 1, 100 * k + 1 + w)]
            for w in range(4, 12):  # two consumer groups wait
                rows += [(cta, w, 1, False, 2 * k, 100 * k + 10),
                         (cta, w, 1, True, 2 * k + 1, 100 * k + 50 + w)]
    roles = ["producer"] * 4 + ["consumer0"] * 4 + ["consumer1"] * 4
    f = compute_flows(_events(rows), [{"kind": "tma", "issue": [0], "complete": [1]}], roles)
    assert f.dtype == FLOW_DTYPE and len(f) == 2 * 3 * 2
    assert set(f["src_warp"]) == {0} and set(f["dst_warp"]) == {4, 8}
    assert np.all(f["dst_ns"] - f["src_ns"] == np.where(f["dst_warp"] == 4, 54, 58))


def test_compute_flows_wgmma_completion_respects_pendings():
    # one warp: issue, wait(1), issue, wait(1), issue, wait(0)
    seq = [(2, False, 0), (2, True, 1), (3, False, 2), (3, True, 3),
           (2, False, 4), (2, True, 5), (3, False, 6), (3, True, 7),
           (2, False, 8), (2, True, 9), (4, False, 10), (4, True, 11)]
    rows = [(0, 0, s, e, q, 10.0 * q) for s, e, q in seq]
    spec = [{"kind": "wgmma", "issue": [2], "complete": [3, 4], "pendings": {"3": 1, "4": 0}}]
    f = compute_flows(_events(rows), spec)
    # issue 0 (t=0) completes at the second wait(1) (t=70), issue 1 (t=40) and 2 (t=80) at wait(0) (t=110)
    assert list(zip(f["src_ns"], f["dst_ns"], strict=True)) == [(0.0, 70.0), (40.0, 110.0), (80.0, 110.0)]
