"""Hidden graded tests of module 16 (observers): properties, per-channel cases and edge cases."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinyq.observers as tob
from _16_helpers import signed_hist, uniform_with_outliers

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32)


# ---------------------------------------------------------------- channel_view
@pytest.mark.points(1, exercise="channel_view")
@PROPERTY
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), elements=finite),
       data=st.data())
def test_channel_view_rows_are_channels(only, x, data):
    only("channel_view")
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    v = np.asarray(tob.channel_view(x, axis))
    assert v.shape == (x.shape[axis], x.size // x.shape[axis])
    for c in range(x.shape[axis]):
        assert sorted(v[c].tolist()) == sorted(np.take(x, c, axis=axis).ravel().tolist())
    assert np.asarray(tob.channel_view(x)).shape == (1, x.size)


# ---------------------------------------------------------------- MinMaxObserver
@pytest.mark.points(1, exercise="MinMaxObserver")
@PROPERTY
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 4)), elements=finite),
       cuts=st.lists(st.integers(0, 12), max_size=4))
def test_minmax_is_independent_of_batching(only, x, cuts):
    only("MinMaxObserver")
    per_tensor, per_channel = tob.MinMaxObserver(), tob.MinMaxObserver(axis=1)
    for part in np.split(x, sorted(cuts)):        # includes empty parts: ignored
        per_tensor(part)
        per_channel(part)
    assert per_tensor.calculate_range(symmetric=False) == (x.min(), x.max())
    lo, hi = per_channel.calculate_range(symmetric=False)
    np.testing.assert_array_equal(lo, x.min(axis=0))
    np.testing.assert_array_equal(hi, x.max(axis=0))
    lo, hi = per_channel.calculate_range(symmetric=True)
    np.testing.assert_array_equal(hi, np.abs(x).max(axis=0))
    np.testing.assert_array_equal(lo, -np.abs(x).max(axis=0))


# ---------------------------------------------------------------- MovingAverageMinMaxObserver
@pytest.mark.points(1, exercise="MovingAverageMinMaxObserver")
def test_moving_average_per_channel_sequence(only):
    only("MovingAverageMinMaxObserver")
    rng = np.random.default_rng(5)
    batches = [rng.normal(size=(4, 3, 5)) * (1 + k) for k in range(5)]
    obs = tob.MovingAverageMinMaxObserver(averaging_constant=0.1, axis=1)
    m_lo = m_hi = None
    for b in batches:
        obs(b)
        lo, hi = b.min(axis=(0, 2)), b.max(axis=(0, 2))
        m_lo = lo if m_lo is None else m_lo + 0.1 * (lo - m_lo)
        m_hi = hi if m_hi is None else m_hi + 0.1 * (hi - m_hi)
    got_lo, got_hi = obs.calculate_range(symmetric=False)
    np.testing.assert_allclose(got_lo, m_lo, rtol=1e-9)
    np.testing.assert_allclose(got_hi, m_hi, rtol=1e-9)
    np.testing.assert_allclose(obs.calculate_range()[1], np.maximum(-m_lo, m_hi), rtol=1e-9)


@pytest.mark.points(1, exercise="MovingAverageMinMaxObserver")
def test_moving_average_constant_one_and_empty(only):
    only("MovingAverageMinMaxObserver")
    obs = tob.MovingAverageMinMaxObserver(averaging_constant=1.0)
    obs(np.array([-5.0, 9.0]))
    obs(np.array([-1.0, 2.0]))
    obs(np.empty((2, 0)))                          # ignored: no update towards anything
    assert obs.calculate_range(symmetric=False) == pytest.approx((-1.0, 2.0))
    scale, zp = obs.calculate_qparams(bits=8, symmetric=False, signed=False)
    assert float(scale) == pytest.approx(3 / 255, rel=1e-6) and int(zp) == 85


# ---------------------------------------------------------------- PercentileObserver
@pytest.mark.points(1, exercise="PercentileObserver")
def test_percentile_per_channel_union_of_batches(only):
    only("PercentileObserver")
    rng = np.random.default_rng(6)
    batches = [rng.standard_t(3, size=(7, 3, 11)) for _ in range(3)]
    obs = tob.PercentileObserver(percentile=99.0, axis=1)
    for b in batches:
        obs(b)
    data = np.concatenate([np.moveaxis(b, 1, 0).reshape(3, -1) for b in batches], axis=1)
    lo, hi = obs.calculate_range()
    np.testing.assert_allclose(hi, np.percentile(np.abs(data), 99.0, axis=1), rtol=1e-9)
    np.testing.assert_allclose(lo, -hi)
    lo, hi = obs.calculate_range(symmetric=False)
    np.testing.assert_allclose(lo, np.percentile(data, 0.5, axis=1), rtol=1e-9)
    np.testing.assert_allclose(hi, np.percentile(data, 99.5, axis=1), rtol=1e-9)


@pytest.mark.points(1, exercise="PercentileObserver")
def test_percentile_hundred_is_minmax_and_symmetric_uses_magnitudes(only):
    only("PercentileObserver")
    obs = tob.PercentileObserver(percentile=100.0)
    obs(np.array([-10.0, 1.0, 2.0, 3.0]))
    assert obs.calculate_range(symmetric=False) == pytest.approx((-10.0, 3.0))
    assert obs.calculate_range() == pytest.approx((-10.0, 10.0))
    scale, zp = obs.calculate_qparams()
    assert float(scale) == pytest.approx(10 / 127, rel=1e-6) and int(zp) == 0


# ---------------------------------------------------------------- MSEObserver
@pytest.mark.points(1, exercise="MSEObserver")
def test_mse_observer_per_channel(only):
    only("MSEObserver")
    rng = np.random.default_rng(7)
    ch0 = np.append(rng.uniform(-1, 1, 20_000), [5.0, -5.0])
    ch1 = np.append(rng.uniform(-0.1, 0.1, 20_000), [0.1, -0.1])
    obs = tob.MSEObserver(axis=0)
    obs(np.stack([ch0, ch1]))
    lo, hi = obs.calculate_range(bits=4)
    assert hi.shape == (2,)
    assert 0.85 <= hi[0] <= 1.05, hi                 # outliers clipped
    assert 0.085 <= hi[1] <= 0.105, hi               # no outliers: near the uniform optimum 14/15 * 0.1
    np.testing.assert_allclose(lo, -hi)


@pytest.mark.points(1, exercise="MSEObserver")
def test_mse_observer_asymmetric_relu(only):
    only("MSEObserver")
    x = np.abs(uniform_with_outliers(8, n=30_000, outliers=(5.0,)))
    obs = tob.MSEObserver()
    obs(x[:10_000])
    obs(x[10_000:])
    lo, hi = obs.calculate_range(bits=4, symmetric=False)
    assert lo == 0.0 and 0.9 <= hi <= 1.05, (lo, hi)
    clean = tob.MSEObserver()
    clean(x[:-1])                                    # no outlier, 8 bits: keeps (nearly) the full range
    assert clean.calculate_range(bits=8, symmetric=False)[1] >= 0.95


# ---------------------------------------------------------------- HistogramObserver
@pytest.mark.points(1, exercise="HistogramObserver")
@PROPERTY
@given(parts=st.lists(hnp.arrays(np.float64, st.integers(0, 40),
                                 elements=st.floats(-50, 50, allow_nan=False, allow_subnormal=False, width=32)
                                 | st.just(0.0)), min_size=1, max_size=5))
def test_histogram_streaming_conserves_counts(only, parts):
    only("HistogramObserver")
    obs = tob.HistogramObserver(bins=16, method="l2")
    for p in parts:
        obs(p)
    values = np.concatenate(parts)
    if values.size == 0:
        assert obs.n_batches == 0
        return
    hist, amax = obs.histogram()
    assert np.asarray(hist).shape == (32,)
    assert amax == pytest.approx(np.abs(values).max())
    assert float(np.sum(hist)) == pytest.approx(np.count_nonzero(values))
    assert obs.zeros[0] == np.count_nonzero(values == 0)
    nonempty = [p for p in parts if p.size]
    if len(nonempty) == 1 and amax > 0:            # one batch: exactly numpy's histogram
        np.testing.assert_allclose(hist, signed_hist(nonempty[0], 16)[0])


@pytest.mark.points(1, exercise="HistogramObserver")
def test_histogram_observer_ranges_per_channel(only):
    only("HistogramObserver")
    x = uniform_with_outliers(9, n=100_000)
    data = np.stack([x, np.zeros_like(x), np.abs(x)], axis=1)   # channels on axis 1
    ent = tob.HistogramObserver(bins=2048, method="entropy", axis=1)
    for part in np.array_split(data, 3):
        ent(part)
    lo, hi = ent.calculate_range(bits=8)
    assert lo.shape == (3,) and hi[1] == 0.0 and lo[1] == 0.0            # all-zero channel
    assert 0.95 <= hi[0] <= 1.1 and lo[0] == -hi[0], (lo, hi)
    lo, hi = ent.calculate_range(bits=8, symmetric=False)
    assert lo[2] == 0.0 and 0.95 <= hi[2] <= 1.1, (lo, hi)              # ReLU-like channel
    l2 = tob.HistogramObserver(bins=512, method="l2")
    l2(np.array([0.0, 0.2, 0.7, 1.0]))
    lo, hi = l2.calculate_range(bits=8, symmetric=False)
    assert lo == 0.0 and 0.99 <= hi <= 1.0                             # clamped to the observed max


# ---------------------------------------------------------------- l2_search
@pytest.mark.points(1, exercise="l2_search")
def test_l2_search_asymmetric_relu(only):
    only("l2_search")
    hist, amax = signed_hist(np.abs(uniform_with_outliers(10, outliers=(5.0, 4.5))), 2048)
    lo, hi = tob.l2_search(hist, amax, bits=4, symmetric=False)
    assert lo == 0.0 and abs(hi - 30 / 31) < 0.03, (lo, hi)     # unsigned 4-bit optimum: 30/31


@pytest.mark.points(1, exercise="l2_search")
def test_l2_search_edge_cases(only):
    only("l2_search")
    assert tuple(map(float, tob.l2_search(np.zeros(64), 3.0))) == (0.0, 0.0)
    hist, amax = signed_hist(np.random.default_rng(11).uniform(-1, 1, 100_000), 1024)
    lo, hi = tob.l2_search(hist, amax, bits=8)
    assert hi >= 0.98 and lo == -hi                 # no outliers at 8 bits: (almost) no clipping


# ---------------------------------------------------------------- entropy_search
@pytest.mark.points(1, exercise="entropy_search")
def test_entropy_search_asymmetric_relu(only):
    only("entropy_search")
    hist, amax = signed_hist(np.abs(uniform_with_outliers(12)), 2048)
    lo, hi = tob.entropy_search(hist, amax, bits=8, symmetric=False)
    assert lo == 0.0 and 0.97 <= hi <= 1.06, (lo, hi)


@pytest.mark.points(1, exercise="entropy_search")
def test_entropy_search_edge_cases(only):
    only("entropy_search")
    assert tuple(map(float, tob.entropy_search(np.zeros(64), 2.0))) == (0.0, 0.0)
    hist, amax = signed_hist(uniform_with_outliers(13, n=10_000), 64)   # 64 bins < 128 levels
    lo, hi = tob.entropy_search(hist, amax, bits=8)
    assert (lo, hi) == pytest.approx((-amax, amax))
    lo, hi = tob.entropy_search(hist, amax, bits=4)                     # 8 levels: now it can clip
    assert 0.9 <= hi <= 1.3, hi


# ---------------------------------------------------------------- group_qparams
@pytest.mark.points(1, exercise="group_qparams")
def test_group_qparams_asymmetric_and_leading_axes(only):
    only("group_qparams")
    w = np.array([[1.0, -2.0, 3.0, -4.0, 0.5, 0.5, 0.5, 0.5]])
    s, z = tob.group_qparams(w, group_size=4, bits=4, symmetric=False)
    np.testing.assert_allclose(s, [[7 / 15, 0.5 / 15]], rtol=1e-6)
    assert np.asarray(z).tolist() == [[9, 0]]
    s, z = tob.group_qparams(np.random.default_rng(14).normal(size=(2, 3, 256)), group_size=64)
    assert np.shape(s) == (2, 3, 4) and np.shape(z) == (2, 3, 4)
    bad = np.ones((2, 8))
    bad[0, 3] = np.nan
    with pytest.raises(ValueError) as err:
        tob.group_qparams(bad, group_size=4)
    assert "group_qparams" in str(err.value) and re.search(r"\b1\b", str(err.value)), str(err.value)


@pytest.mark.points(1, exercise="group_qparams")
@PROPERTY
@given(w=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.sampled_from([8, 16, 32])),
                    elements=st.floats(-100, 100, allow_nan=False, allow_subnormal=False, width=32)),
       group=st.sampled_from([4, 8]), bits=st.sampled_from([4, 8]))
def test_group_qparams_cover_each_group(only, w, group, bits):
    only("group_qparams")
    s, z = tob.group_qparams(w, group_size=group, bits=bits)
    groups = np.abs(w).reshape(w.shape[0], -1, group).max(axis=-1)
    qmax = 2 ** (bits - 1) - 1
    expected = np.where(groups > 0, groups / qmax, 1.0)
    np.testing.assert_allclose(s, expected.astype(np.float32), rtol=1e-6)
    assert np.all(np.asarray(z) == 0)
