"""Proton at kperf's record sites on the warp-specialized attention kernel, on CPU (sm_90 target).

bench.proton_override: dump -> kperf auto insertion (mma,tma) -> proton.record lines -> Triton's
own override with Proton's real lowering passes.  Everything up to the cubin runs without a GPU; the
timing and the event counts from Proton's runtime buffer need one
(``python3 -m bench.overhead --only attention``).
"""

import pathlib

import numpy as np
import pytest
import triton
from triton.runtime.cache import _base32

from bench import proton_override as po
from kperf.dialect.errors import KperfError
from kperf.dialect.ttgir_text import scan


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proton_override")
    saved = triton.knobs.cache.dir
    triton.knobs.cache.dir = str(tmp / "cache")
    try:
        src = po.attention_source(8192)
        info = po.build_folders(tmp, src)
        kernel = po.compile_with_proton(info["proton_dir"], src)
        plain_proton = po.compile_with_proton(tmp / "empty", src)  # no override file: no records
    finally:
        triton.knobs.cache.dir = saved
    return tmp, src, info, kernel, plain_proton


def _only(folder):
    files = sorted(pathlib.Path(folder).glob("*/*.ttgir"))
    assert len(files) == 1
    return files[0]


@pytest.mark.compile_side
def test_folder_is_tritons_override_key(folders):
    tmp, src, info, _, _ = folders
    assert info["hash_folder"] == _base32(src.hash())
    assert _only(info["proton_dir"]).relative_to(info["proton_dir"]) == pathlib.Path(
        info["hash_folder"], "attn_fwd_kernel.ttgir")


@pytest.mark.compile_side
def test_proton_lines_match_kperf_lines(folders):
    tmp, _, info, _, _ = folders
    k_text = _only(info["kperf_dir"]).read_text()
    p_text = _only(info["proton_dir"]).read_text()
    k_lines, p_lines = k_text.splitlines(), p_text.splitlines()
    assert len(k_lines) == len(p_lines)
    changed = [(a, b) for a, b in zip(k_lines, p_lines, strict=True) if a != b]
    assert len(changed) == info["records"] == 36
    for a, b in changed:  # only the op keyword differs
        assert b == a.replace("kperf.record", "proton.record", 1)
    ks, ps = scan(k_text).sites, scan(p_text).sites
    assert [(s.lineno, s.op.kind, s.op.name, s.block) for s in ks] == \
           [(s.lineno, s.op.kind, s.op.name, s.block) for s in ps]
    assert "kperf.record" not in p_text
    assert sum(s.op.name.startswith("wgmma") for s in ps) == 8
    assert sum(s.op.name.startswith("tma.wait") for s in ps) == 12


@pytest.mark.compile_side
def test_tritons_override_compiles_with_protons_lowering(folders):
    _, _, info, kernel, plain_proton = folders
    assert kernel.asm["ttgir"].count("proton.record") == info["records"]  # the override was applied
    assert plain_proton.asm["ttgir"].count("proton.record") == 0
    assert kernel.metadata.profile_scratch_size > 0 == plain_proton.metadata.profile_scratch_size
    assert kernel.metadata.shared > plain_proton.metadata.shared  # Proton's buffer is in shared memory
    ptx = kernel.asm["ptx"]
    assert ptx.count("%clock") >= info["records"] > plain_proton.asm["ptx"].count("%clock")
    assert len(kernel.asm["cubin"]) > 0


@pytest.mark.compile_side
def test_carriers_are_refused(folders):
    tmp, _, info, _, _ = folders
    from kperf.passes.materialize import MaterializePass
    carriers = MaterializePass().apply(_only(info["kperf_dir"]).read_text()).text
    with pytest.raises(KperfError, match="no Proton equivalent"):
        po.proton_text(carriers)


def test_proton_event_counts():
    n_ctas, warps, buf_bytes = 3, 4, 4 * 8 * 10  # 10 events per warp fit
    scratch = 128 * ((16 + 4 * warps + buf_bytes + 127) // 128)
    words = np.zeros((n_ctas, scratch // 4), np.uint32)
    words[:, 0], words[:, 3] = po.PROTON_PREAMBLE, buf_bytes
    words[:, 4:4 + warps] = [[4, 10, 12, 0], [25, 1, 1, 1], [0, 0, 0, 0]]
    words[2, 0] = 0  # a CTA whose header was never written
    got = po.proton_event_counts(words.tobytes(), scratch, n_ctas, warps)
    assert got["ctas_with_header"] == 2 and got["events_per_warp_capacity"] == 10
    assert got["events_recorded"] == 26 + 28
    assert got["events_kept"] == 4 + 10 + 10 + 0 + 10 + 1 + 1 + 1
    assert got["events_dropped"] == 2 + 15
    assert "1 of 3 CTAs" in got["problem"]
