"""Public graded tests of module 20 (gpu_kernels). Hidden tests add more cases at grading time.

Three kinds of tests, and what each needs:
* exactness in the CPU emulator (tinyq.cuda_emulator): a C++20 compiler (`requires("a C++20 compiler")`;
  elsewhere skipped as "needs a C++20 compiler", out of the maximum);
* compile reports with NVRTC: `pip install -e '.[nvrtc]'` (also in `.[gpu]`) (skipped as "needs cuda.bindings" without);
* on a CUDA device: exactness and speed against cuBLAS FP32 (fixture `gpu`: "needs GPU" elsewhere).
"""
import numpy as np
import pytest

import tinyq.gpu_kernels as mod
from tito.grading.kit import check_equal
from _20_helpers import (BLOCK_OF, SHARED_LIMIT, SOURCE_OF, VARIANTS, int_matmul,  # noqa: F401
                         random_int8, run_emulated)

EMULATOR_SHAPES = [(1, 1, 1), (1, 5, 3), (3, 1, 33), (17, 9, 40), (8, 70, 64), (65, 66, 100), (31, 33, 257)]
EMULATOR_POINTS = {"naive": 4, "tiled": 5, "dp4a": 5, "mma": 6}


# ---------------------------------------------------------------- exact results in the CPU emulator
def _emulator_case(variant):
    rng = np.random.default_rng(2000 + VARIANTS.index(variant))
    source = mod.kernel_source(variant)
    assert isinstance(source, str) and f"gemm_{variant}" in source
    for m, n, k in EMULATOR_SHAPES:
        a, w = random_int8(rng, (m, k)), random_int8(rng, (n, k))
        check_equal(run_emulated(source, variant, a, w), int_matmul(a, w),
                    f"gemm_{variant} in the CPU emulator at M={m} N={n} K={k}")
    a, w = np.full((9, 96), -128, np.int8), np.full((7, 96), -128, np.int8)     # extreme values
    check_equal(run_emulated(source, variant, a, w), int_matmul(a, w), f"gemm_{variant} with all -128")


@pytest.mark.points(EMULATOR_POINTS["naive"], exercise="naive_source")
@pytest.mark.requires("a C++20 compiler")
def test_naive_exact_in_the_emulator(only):
    only("naive_source")
    _emulator_case("naive")


@pytest.mark.points(EMULATOR_POINTS["tiled"], exercise="tiled_source")
@pytest.mark.requires("a C++20 compiler")
def test_tiled_exact_in_the_emulator(only):
    only("tiled_source")
    _emulator_case("tiled")


@pytest.mark.points(EMULATOR_POINTS["dp4a"], exercise="dp4a_source")
@pytest.mark.requires("a C++20 compiler")
def test_dp4a_exact_in_the_emulator(only):
    only("dp4a_source")
    _emulator_case("dp4a")


@pytest.mark.points(EMULATOR_POINTS["mma"], exercise="mma_source")
@pytest.mark.requires("a C++20 compiler")
def test_mma_exact_in_the_emulator(only):
    only("mma_source")
    _emulator_case("mma")


# ---------------------------------------------------------------- compile reports (NVRTC on the CPU)
def _arches(variant):
    return ("sm_80", "sm_90") if variant == "mma" else ("sm_75", "sm_80", "sm_90")


def _compiles_cleanly(variant):
    for arch in _arches(variant):
        r = mod.compile_report(variant, arch)
        assert r["spill_store_bytes"] == 0 and r["spill_load_bytes"] == 0, (
            f"gemm_{variant} spills registers on {arch}: {r['spill_store_bytes']} bytes stored to local memory")
        assert r["shared_bytes"] <= SHARED_LIMIT, (
            f"gemm_{variant} declares {r['shared_bytes']} bytes of static shared memory on {arch} (max 48 KiB)")
        assert 0 < r["registers"] <= 255, r


def _per_variant(points):
    """One case per variant, each graded as that variant's exercise."""
    return [pytest.param(v, id=v, marks=pytest.mark.points(points, exercise=SOURCE_OF[v])) for v in VARIANTS]


@pytest.mark.requires("cuda.bindings", "nvidia.cuda_nvrtc")
@pytest.mark.parametrize("variant", _per_variant(1))
def test_compiles_for_every_arch_without_spills(variant, only):
    only(SOURCE_OF[variant])
    _compiles_cleanly(variant)


@pytest.mark.requires("cuda.bindings", "nvidia.cuda_nvrtc")
@pytest.mark.points(1, exercise="tiled_source")
def test_tiled_uses_shared_memory_and_barriers(only):
    only("tiled_source")
    for arch in ("sm_75", "sm_80"):
        r = mod.compile_report("tiled", arch)
        assert r["shared_bytes"] >= 2 * 32 * 32, f"gemm_tiled holds {r['shared_bytes']} bytes of shared tiles on {arch}"
        assert r["ld_shared"] >= 4 and r["bar_sync"] >= 2, (
            f"gemm_tiled on {arch}: {r['ld_shared']} ld.shared and {r['bar_sync']} bar.sync in its PTX")


@pytest.mark.requires("cuda.bindings", "nvidia.cuda_nvrtc")
@pytest.mark.points(2, exercise="dp4a_source")
def test_dp4a_issues_dp4a_and_wide_loads(only):
    only("dp4a_source")
    for arch in ("sm_75", "sm_80", "sm_90"):
        r = mod.compile_report("dp4a", arch)
        assert r["dp4a"] >= 16, f"gemm_dp4a on {arch}: {r['dp4a']} dp4a instructions in its PTX (a 4x4 tile issues 16 per word)"
        assert r["ld_shared"] >= 8 and r["bar_sync"] >= 2, r
        assert r["ld_global_v4"] >= 1, f"gemm_dp4a on {arch}: no 16-byte global load (ld.global.v4)"


@pytest.mark.requires("cuda.bindings", "nvidia.cuda_nvrtc")
@pytest.mark.points(2, exercise="mma_source")
def test_mma_issues_int8_tensor_core_instructions(only):
    only("mma_source")
    for arch in ("sm_80", "sm_90"):
        r = mod.compile_report("mma", arch)
        assert r["mma"] >= 8, (f"gemm_mma on {arch}: {r['mma']} mma.sync.m16n8k32 s8 instructions in its PTX "
                               "(2 x 4 tiles per warp issue 8 per step)")
        assert r["dp4a"] == 0 and r["bar_sync"] >= 2, r


# ---------------------------------------------------------------- launch_config
@pytest.mark.points(3, exercise="launch_config")
def test_launch_config_covers_the_output(only):
    only("launch_config")
    check_equal(mod.launch_config("dp4a", 100, 130), ((3, 2, 1), (16, 16, 1)), 'launch_config("dp4a", 100, 130)')
    cases = {("naive", 1, 1): ((1, 1, 1), (32, 8, 1)), ("naive", 9, 33): ((2, 2, 1), (32, 8, 1)),
             ("tiled", 32, 32): ((1, 1, 1), (32, 8, 1)), ("tiled", 33, 65): ((3, 2, 1), (32, 8, 1)),
             ("mma", 64, 64): ((1, 1, 1), (128, 1, 1)), ("mma", 4096, 4097): ((65, 64, 1), (128, 1, 1)),
             ("dp4a", 1, 4096): ((64, 1, 1), (16, 16, 1))}
    for (variant, m, n), expected in cases.items():
        got = mod.launch_config(variant, m, n)
        check_equal(got, expected, f"launch_config({variant!r}, {m}, {n})")
        assert all(type(v) is int for part in got for v in part), "return plain Python ints"


@pytest.mark.points(1, exercise="launch_config")
def test_launch_config_rejects_bad_arguments(only):
    only("launch_config")
    check_equal(mod.launch_config("tiled", 1, 1), ((1, 1, 1), (32, 8, 1)), 'launch_config("tiled", 1, 1)')
    for bad in (("cublas", 4, 4), ("naive", 0, 4), ("mma", 4, 0), ("naive", 8 * 65535 + 1, 1)):
        with pytest.raises(ValueError):
            mod.launch_config(*bad)


# ---------------------------------------------------------------- occupancy
OCCUPANCY_CASES = [   # (registers, shared bytes, threads, arch) -> blocks, warps, occupancy, limited by
    ((32, 4608, 256, "sm_80"), (8, 64, 1.0, "warps")),
    ((128, 0, 256, "sm_90"), (2, 16, 0.25, "registers")),
    ((40, 8448, 256, "sm_80"), (6, 48, 0.75, "registers")),
    ((16, 40000, 64, "sm_75"), (1, 2, 2 / 32, "shared")),
    ((16, 0, 32, "sm_80"), (32, 32, 0.5, "blocks")),
    ((64, 48 * 1024, 128, "sm_80"), (3, 12, 12 / 64, "shared")),
    ((255, 0, 1024, "sm_75"), (0, 0, 0, "registers")),        # no block fits: ValueError
]


@pytest.mark.points(3, exercise="occupancy")
def test_occupancy_follows_the_rules(only):
    only("occupancy")
    for (regs, smem, threads, arch), (blocks, warps, occ, limit) in OCCUPANCY_CASES[:-1]:
        got = mod.occupancy({"registers": regs, "shared_bytes": smem}, arch, threads)
        call = f"occupancy(registers={regs}, shared_bytes={smem}, {arch!r}, {threads})"
        check_equal((got["blocks_per_sm"], got["warps_per_sm"], got["limited_by"]), (blocks, warps, limit), call)
        assert abs(got["occupancy"] - occ) < 1e-12, f"{call}: occupancy {got['occupancy']}, expected {occ}"


@pytest.mark.points(1, exercise="occupancy")
def test_occupancy_rejects_what_cannot_run(only):
    only("occupancy")
    assert mod.occupancy({"registers": 32, "shared_bytes": 0}, "sm_90", 128)["blocks_per_sm"] == 16
    (regs, smem, threads, arch), _ = OCCUPANCY_CASES[-1]
    with pytest.raises(ValueError):
        mod.occupancy({"registers": regs, "shared_bytes": smem}, arch, threads)
    for report, arch, threads in (({"registers": 32, "shared_bytes": 0}, "sm_99", 128),
                                  ({"registers": 32, "shared_bytes": 0}, "sm_80", 0),
                                  ({"registers": 32, "shared_bytes": 0}, "sm_80", 1025),
                                  ({"registers": 256, "shared_bytes": 0}, "sm_80", 128)):
        with pytest.raises(ValueError):
            mod.occupancy(report, arch, threads)


# ---------------------------------------------------------------- gemm_int8_gpu (emulated on the CPU)
@pytest.mark.points(2, exercise="gemm_int8_gpu")
@pytest.mark.requires("a C++20 compiler")
def test_gemm_int8_gpu_in_the_emulator(only):
    only("gemm_int8_gpu")
    rng = np.random.default_rng(2030)
    for m, n, k in [(1, 1, 1), (13, 40, 33), (70, 9, 64)]:
        a, w = random_int8(rng, (m, k)), random_int8(rng, (n, k))
        c = mod.gemm_int8_gpu(a, w, "naive", emulate=True)
        assert isinstance(c, np.ndarray) and c.dtype == np.int32, type(c)
        check_equal(c, int_matmul(a, w), f"gemm_int8_gpu(a {a.shape}, w {w.shape}, 'naive', emulate=True)")
    big = random_int8(rng, (20, 64))
    view = big[::2, ::2]                                         # not contiguous: the host makes it so
    check_equal(mod.gemm_int8_gpu(view, view, "naive", emulate=True), int_matmul(view, view),
                "gemm_int8_gpu(a strided view, ...)")


@pytest.mark.points(2, exercise="gemm_int8_gpu")
@pytest.mark.requires("a C++20 compiler")
def test_gemm_int8_gpu_rejects_bad_operands(only):
    only("gemm_int8_gpu")
    ones = np.ones((2, 3), np.int8)
    check_equal(mod.gemm_int8_gpu(ones, ones, "naive", emulate=True), np.full((2, 2), 3, np.int32),
                "gemm_int8_gpu(ones 2x3, ones 2x3)")
    with pytest.raises(TypeError):
        mod.gemm_int8_gpu(ones.astype(np.float32), ones, "naive", emulate=True)
    with pytest.raises(TypeError):
        mod.gemm_int8_gpu(ones, ones.view(np.uint8), "naive", emulate=True)
    for a, w, variant in ((ones, ones, "cublas"), (ones, np.ones((2, 4), np.int8), "naive"),
                          (np.ones(3, np.int8), ones, "naive"), (np.ones((0, 3), np.int8), ones, "naive"),
                          (np.ones((1, 131072), np.int8), np.ones((1, 131072), np.int8), "naive")):
        with pytest.raises(ValueError):
            mod.gemm_int8_gpu(a, w, variant, emulate=True)


# ---------------------------------------------------------------- on a CUDA device
GPU_SHAPES = [(1, 1, 1), (17, 17, 17), (255, 257, 255), (257, 255, 257), (64, 64, 4096), (129, 1, 33), (2, 300, 1000)]


@pytest.mark.parametrize("variant", _per_variant(2))
def test_exact_on_the_gpu(variant, gpu, only):
    only(SOURCE_OF[variant])
    cp = gpu
    if variant == "mma" and int(cp.cuda.Device().compute_capability) < 80:
        pytest.skip("needs GPU: int8 mma.sync m16n8k32 needs sm_80 or newer")
    from tinyq.cuda_nvrtc import raw_kernel
    from _20_helpers import NAME_OF, grid_for
    rng = np.random.default_rng(2040)
    kernel = raw_kernel(mod.kernel_source(variant), NAME_OF[variant])
    for m, n, k in GPU_SHAPES:
        a, w = random_int8(rng, (m, k)), random_int8(rng, (n, k))
        c = cp.full((m, n), -0x5A5A5A5A, cp.int32)            # poisoned before each run
        kernel(grid_for(variant, m, n), BLOCK_OF[variant],
               (cp.asarray(a), cp.asarray(w), c, np.int32(m), np.int32(n), np.int32(k)))
        check_equal(cp.asnumpy(c), int_matmul(a, w), f"gemm_{variant} on the GPU at M={m} N={n} K={k}")


def _speed(cp, variant):
    from tinyq.cuda_nvrtc import gpu_compare
    size = 4096
    rng = np.random.default_rng(2050)
    a = cp.asarray(random_int8(rng, (size, size)))
    w = cp.asarray(random_int8(rng, (size, size)))
    check = mod.gemm_int8_gpu(a[:64], w[:64], variant)
    check_equal(cp.asnumpy(check), int_matmul(cp.asnumpy(a[:64]), cp.asnumpy(w[:64])), f"gemm_int8_gpu(..., {variant!r})")
    a_f, w_f = a.astype(cp.float32), w.astype(cp.float32)
    r = gpu_compare(lambda: mod.gemm_int8_gpu(a, w, variant), lambda: cp.matmul(a_f, w_f.T), repeats=7)
    print(f"gemm_{variant} 4096^3: {2 * size**3 / r['candidate_s'] / 1e12:.1f} TOP/s, "
          f"cuBLAS FP32 {2 * size**3 / r['baseline_s'] / 1e12:.1f} TFLOP/s: {r['speedup']:.2f}x")
    return r["speedup"]


DP4A_BAR, DP4A_FLOOR = 1.5, 0.75      # the reference issues 16 dp4a per 8 shared loads
MMA_BAR, MMA_FLOOR = 4.0, 1.5         # int8 tensor cores against FP32 on the CUDA cores


@pytest.mark.perf
@pytest.mark.points(3, exercise="dp4a_source")
def test_dp4a_speed_vs_cublas_fp32(gpu, perf, only):
    only("dp4a_source")
    perf.record(_speed(gpu, "dp4a"), bar=DP4A_BAR, floor=DP4A_FLOOR, unit="× cuBLAS FP32")


@pytest.mark.perf
@pytest.mark.points(4, exercise="mma_source")
def test_mma_speed_vs_cublas_fp32(gpu, perf, only):
    only("mma_source")
    if int(gpu.cuda.Device().compute_capability) < 80:
        pytest.skip("needs GPU: int8 mma.sync m16n8k32 needs sm_80 or newer")
    perf.record(_speed(gpu, "mma"), bar=MMA_BAR, floor=MMA_FLOOR, unit="× cuBLAS FP32")
