import pytest


@pytest.fixture
def profiled_gemm():
    """Run the example GEMM (``examples/matmul.py``, 1024^3 fp16, 128 x 128 tiles) plain and under
    ``kperf.profile(**options)``; assert the outputs are identical.  Returns the kperf results, the
    number of CTAs and the records each warp writes (4 per K-iteration of 64, plus 2)."""
    def run(**options):
        import torch

        import kperf
        from kperf.examples import matmul as mm
        torch.manual_seed(0)
        M = N = K = 1024
        a = torch.randn(M, K, device="cuda", dtype=torch.float16)
        b = torch.randn(K, N, device="cuda", dtype=torch.float16)
        plain = mm.matmul(a, b)
        k = kperf.profile(mm.matmul_kernel, **options)
        out = mm.matmul(a, b, kernel=k)
        torch.cuda.synchronize()
        assert torch.equal(out, plain)
        return kperf.results(k), (M // 128) * (N // 128), 4 * (K // 64) + 2
    return run
