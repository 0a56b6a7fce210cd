"""The two-level linear scan equals the plain recurrence for every length, tile remainders included."""
import pytest
import torch

from engine.mamba import linear_scan_


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 63, 64, 65, 200])
def test_linear_scan_matches_the_recurrence(n):
    g = torch.Generator().manual_seed(n)
    a = torch.rand(n, 3, 5, generator=g)                 # decays in (0, 1)
    u = torch.randn(n, 3, 5, generator=g)
    h0 = torch.randn(3, 5, generator=g)
    want, h = [], h0
    for t in range(n):
        h = a[t] * h + u[t]
        want.append(h)
    got = u.clone()
    last = linear_scan_(a, got, h0)
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, want[-1], rtol=1e-5, atol=1e-5)
