"""The host-side integer helpers agree with Triton's own."""

import triton

from seqlab.utils.intmath import cdiv, next_power_of_2


def test_cdiv_matches_triton():
    assert all(cdiv(a, b) == triton.cdiv(a, b) for a in range(0, 300) for b in range(1, 70))


def test_next_power_of_2_matches_triton():
    assert [next_power_of_2(n) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert all(next_power_of_2(n) == triton.next_power_of_2(n) for n in range(1, 5000))
