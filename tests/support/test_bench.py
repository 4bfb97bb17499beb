"""tinyq.bench: the one timing routine behind every speed figure of the course."""
import time

import numba
import pytest

from tinyq.bench import best_speedup, compare, time_interleaved


def sleeper(seconds):
    return lambda: time.sleep(seconds)


def test_time_interleaved_orders_and_scales_medians():
    fast, slow = time_interleaved([sleeper(0.002), sleeper(0.006)], repeats=3, min_sample_s=0.01)
    assert 0.0019 < fast < 0.004
    assert 2.0 < slow / fast < 3.5


def test_time_interleaved_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved([sleeper(0)], repeats=0)


@pytest.mark.parametrize("settle_s", [0.0, 0.01])
def test_compare_speedup_with_and_without_settling(settle_s):
    result = compare(sleeper(0.002), sleeper(0.006), repeats=3, min_sample_s=0.01, settle_s=settle_s)
    # the pauses are never counted in either side's time
    assert result.candidate_s < 0.004 and result.baseline_s < 0.009
    assert 2.0 < result.speedup < 3.5
    assert result.slowdown == pytest.approx(1 / result.speedup)


def test_compare_rejects_negative_settle():
    with pytest.raises(ValueError, match="settle_s"):
        compare(sleeper(0), sleeper(0), settle_s=-1)


def test_best_speedup_stops_at_the_bar_and_restores_threads():
    calls = []
    before = numba.get_num_threads()

    def candidate():
        calls.append(numba.get_num_threads())
        time.sleep(0.001)

    best = best_speedup(candidate, sleeper(0.004), bar=1.5, attempts=3, threads=(1,), repeats=3, settle_s=0.0)
    assert best > 1.5
    assert set(calls) == {1}            # measured at the requested thread count
    assert numba.get_num_threads() == before
    n_first_round = len(calls)
    # a bar that cannot be reached: every attempt runs, and the best of them is returned
    calls.clear()
    best = best_speedup(candidate, sleeper(0.004), bar=100.0, attempts=2, threads=(1,), repeats=3, settle_s=0.0)
    assert 1.5 < best < 100.0
    assert len(calls) > n_first_round


def test_best_speedup_rejects_empty_plans():
    with pytest.raises(ValueError, match="attempts"):
        best_speedup(sleeper(0), sleeper(0), bar=1.0, attempts=0)
