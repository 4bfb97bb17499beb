"""Hidden graded tests of module 20 (gpu_kernels): run by the instructor, absent from the student
release. They compare the learner's results with the oracle in _20_hidden_oracle.py."""
import numpy as np
import pytest

import tinyq.gpu_kernels as mod
from tito.grading import kit
from _20_helpers import SOURCE_OF, VARIANTS, int_matmul, random_int8, run_emulated  # noqa: F401

oracle = kit.load_oracle("_20_hidden_oracle")     # always here: it is removed with this file


@pytest.mark.parametrize("variant", [pytest.param(v, id=v, marks=pytest.mark.points(1, exercise=SOURCE_OF[v]))
                                     for v in VARIANTS])
@pytest.mark.requires("a C++20 compiler")
def test_random_shapes_in_the_emulator(variant, only):
    only(SOURCE_OF[variant])
    rng = np.random.default_rng(2100 + VARIANTS.index(variant))
    source = mod.kernel_source(variant)
    for _ in range(4):
        m, n = (int(x) for x in rng.integers(1, 80, size=2))
        k = int(rng.choice([int(rng.integers(1, 200)), 16 * int(rng.integers(1, 9))]))
        a, w = random_int8(rng, (m, k)), random_int8(rng, (n, k))
        kit.check_equal(run_emulated(source, variant, a, w), int_matmul(a, w),
                        f"gemm_{variant} in the CPU emulator at M={m} N={n} K={k}")


@pytest.mark.points(1, exercise="launch_config")
def test_launch_config_matches_the_oracle(only):
    only("launch_config")
    rng = np.random.default_rng(2110)
    for variant in VARIANTS:
        for m, n in rng.integers(1, 100_000, size=(20, 2)):
            kit.check_equal(mod.launch_config(variant, int(m), int(n)), oracle.launch_config(variant, int(m), int(n)),
                            f"launch_config({variant!r}, {m}, {n})")


@pytest.mark.points(2, exercise="occupancy")
def test_occupancy_matches_the_oracle(only):
    only("occupancy")
    rng = np.random.default_rng(2120)
    checked = 0
    while checked < 300:
        arch = str(rng.choice(["sm_75", "sm_80", "sm_86", "sm_90"]))
        report = {"registers": int(rng.integers(0, 256)), "shared_bytes": int(rng.integers(0, 49153))}
        threads = int(rng.choice([32, 64, 96, 128, 200, 256, 512, 1024]))
        try:
            expected = oracle.occupancy(report, arch, threads)
        except ValueError:
            with pytest.raises(ValueError):
                mod.occupancy(report, arch, threads)
            continue
        got = mod.occupancy(report, arch, threads)
        call = f"occupancy({report}, {arch!r}, {threads})"
        kit.check_equal((got["blocks_per_sm"], got["warps_per_sm"], got["limited_by"]),
                        (expected["blocks_per_sm"], expected["warps_per_sm"], expected["limited_by"]), call)
        assert abs(got["occupancy"] - expected["occupancy"]) < 1e-12, call
        checked += 1
