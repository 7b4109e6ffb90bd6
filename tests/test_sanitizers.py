"""The blob parser and the executor under AddressSanitizer and UBSan; concurrent parsing
under ThreadSanitizer (cpp/fuzz/parse_threads.cpp, at the end).

Builds cpp/fuzz/fuzz_blob.cpp with the portable driver (cpp/fuzz/driver.cpp)
and g++ (or $CXX), then runs a few seconds of structured mutations of valid
blobs through it. A C++ compiler is a requirement of the package, so a missing
one fails these tests rather than skipping them.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fuzz.fuzz_load_atheris import write_seeds

pytestmark = pytest.mark.slow  # compiles the core under ASan + UBSan: ~15 s

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer", f"-I{ROOT / 'cpp'}"]
ENV = {**os.environ,
       "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0",
       "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
SANITIZER_REPORT = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer")

CANARY = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
// Reads one byte past an exactly sized copy of any input longer than 200 bytes.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t* p = static_cast<uint8_t*>(malloc(size ? size : 1));
  memcpy(p, data, size);
  volatile uint8_t c = size > 200 ? p[size] : 0;
  (void)c;
  free(p);
  return 0;
}
"""


def compiler() -> str:
    cxx = os.environ.get("CXX") or "g++"
    path = shutil.which(cxx)
    if path is None:
        pytest.fail(f"no C++ compiler: {cxx!r} is not on PATH. pymicro needs a C++17 compiler "
                    "(g++ or clang++, with the AddressSanitizer and UBSan runtimes) to build and test "
                    "its core; install one (e.g. apt-get install g++) or set $CXX.", pytrace=False)
    return path


def compile_all(jobs, cwd):
    """Runs compiler commands in parallel; fails the test with the compiler's output."""
    procs = [(cmd, subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)) for cmd in jobs]
    for cmd, proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode:
            pytest.fail(f"compiling with sanitizers failed:\n{' '.join(cmd)}\n{out}", pytrace=False)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    cxx = compiler()
    out = tmp_path_factory.mktemp("fuzz_build")
    (out / "canary.cpp").write_text(CANARY)
    compile_all([
        [cxx, *FLAGS, "-c", str(ROOT / "cpp/fuzz/fuzz_blob.cpp"), "-o", "fuzz_blob.o"],
        [cxx, *FLAGS, "-c", str(ROOT / "cpp/fuzz/driver.cpp"), "-o", "driver.o"],
        [cxx, *FLAGS, "-c", "canary.cpp", "-o", "canary.o"],
    ], out)
    compile_all([
        [cxx, *FLAGS, "fuzz_blob.o", "driver.o", "-o", "fuzz_blob"],
        [cxx, *FLAGS, "canary.o", "driver.o", "-o", "canary"],
    ], out)
    seeds = out / "seeds"
    write_seeds(seeds)
    return out, seeds


ISA_FLAGS = {  # as CMakeLists.txt compiles cpp/arch/arch_<isa>.cpp
    "avx512": ["-DPM_FUZZ_AVX512", "-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mfma",
               "-ffp-contract=fast"],
    "avx2": ["-DPM_FUZZ_AVX2", "-mavx2", "-mfma", "-ffp-contract=fast"],
}


def isa_builds() -> list[str]:
    import pymicro

    return [isa for isa in pymicro._core.isas() if isa in ISA_FLAGS]


@pytest.fixture(scope="module")
def isa_build(build):
    """The harness once more per wide ISA this CPU runs (the kernels the wheel dispatches to)."""
    out, seeds = build
    cxx = compiler()
    isas = isa_builds()
    compile_all([[cxx, *FLAGS, *ISA_FLAGS[isa], str(ROOT / "cpp/fuzz/fuzz_blob.cpp"), "driver.o",
                  "-o", f"fuzz_blob_{isa}"] for isa in isas], out)
    return out, seeds, isas


def run(binary, *args, cwd):
    return subprocess.run([str(binary), *map(str, args)], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)


def test_the_sanitizers_are_live(build):
    """A one-byte over-read is reported and its input saved: a quiet fuzz run means something."""
    out, seeds = build
    artifacts = out / "canary-artifacts"
    artifacts.mkdir()
    result = run(out / "canary", "-runs=10", f"-artifact_prefix={artifacts}/", seeds, cwd=out)
    assert result.returncode != 0
    assert "heap-buffer-overflow" in result.stderr, result.stderr[-3000:]
    assert list(artifacts.glob("crash-*")), result.stderr[-3000:]


def test_seed_blobs_are_valid_and_clean(build):
    out, seeds = build
    result = run(out / "fuzz_blob", "-runs=0", seeds, cwd=out)
    assert result.returncode == 0 and not SANITIZER_REPORT.search(result.stderr), result.stderr[-5000:]
    n = len(list(seeds.iterdir()))
    assert f"{n} seeds ({n} valid)" in result.stderr, result.stderr


def test_mutated_blobs_under_address_and_undefined_sanitizers(build):
    out, seeds = build
    artifacts = out / "artifacts"
    artifacts.mkdir()
    result = run(out / "fuzz_blob", "-runs=40000", "-seed=1", "-max_total_time=6",
                 f"-artifact_prefix={artifacts}/", seeds, cwd=out)
    crashes = sorted(artifacts.glob("crash-*"))
    assert result.returncode == 0 and not SANITIZER_REPORT.search(result.stderr), (
        f"exit {result.returncode}; crashing inputs: {crashes}\n{result.stderr[-8000:]}")
    # Every section's checks were reached, and some mutants were valid blobs that ran.
    stats = dict(re.findall(r"([a-z-]+)=(\d+)", result.stderr.splitlines()[-1]))
    for section in ("accepted", "header", "layer-table", "tensor-table", "strings", "data", "footer",
                    "container-header", "container-deep"):
        assert int(stats.get(section, 0)) > 0, result.stderr[-2000:]


def test_mutated_blobs_through_the_wide_isa_kernels_under_the_sanitizers(isa_build):
    out, seeds, isas = isa_build
    if not isas:
        pytest.skip("this CPU runs no AVX2 or AVX-512 build; the baseline run above covers it")
    for isa in isas:
        artifacts = out / f"artifacts-{isa}"
        artifacts.mkdir()
        result = run(out / f"fuzz_blob_{isa}", "-runs=20000", "-seed=2", "-max_total_time=4",
                     f"-artifact_prefix={artifacts}/", seeds, cwd=out)
        assert result.returncode == 0 and not SANITIZER_REPORT.search(result.stderr), (
            f"{isa}: exit {result.returncode}; crashing inputs: {sorted(artifacts.glob('crash-*'))}\n"
            f"{result.stderr[-8000:]}")
        stats = dict(re.findall(r"([a-z-]+)=(\d+)", result.stderr.splitlines()[-1]))
        assert int(stats.get("accepted", 0)) > 0, result.stderr[-2000:]


# ------------------------------------------------------------------ ThreadSanitizer

TSAN_FLAGS = ["-std=c++17", "-O1", "-g", "-fsanitize=thread", "-fno-omit-frame-pointer", "-pthread",
              f"-I{ROOT / 'cpp'}"]
TSAN_ENV = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66 second_deadlock_stack=1"}


@pytest.fixture(scope="module")
def tsan_build(build):
    """cpp/fuzz/parse_threads.cpp under ThreadSanitizer, and blobs for it: the fuzz seeds
    (valid) plus a truncated and a bit-flipped one (refused at different checks)."""
    out, seeds = build
    cxx = compiler()
    probe = out / "tsan_probe.cpp"
    probe.write_text("#include <thread>\nint main() { std::thread([] {}).join(); }\n")
    made = subprocess.run([cxx, *TSAN_FLAGS, str(probe), "-o", str(out / "tsan_probe")],
                          capture_output=True, text=True, timeout=120)
    if made.returncode:
        pytest.skip(f"{cxx} cannot build a -fsanitize=thread program here (no libtsan?): "
                    f"{made.stderr.strip()[-500:]}")
    ran = subprocess.run([str(out / "tsan_probe")], env=TSAN_ENV, capture_output=True, text=True,
                         timeout=60)
    if ran.returncode:
        pytest.skip(f"ThreadSanitizer programs do not run on this machine (exit {ran.returncode}): "
                    f"{ran.stderr.strip()[-500:]}")
    compile_all([[cxx, *TSAN_FLAGS, str(ROOT / "cpp/fuzz/parse_threads.cpp"), "-o", "parse_threads"]], out)
    blobs = sorted(p for p in seeds.iterdir() if p.is_file())
    first = blobs[0].read_bytes()
    (out / "truncated.pmb").write_bytes(first[:-100])
    flipped = bytearray(first)
    flipped[200] ^= 0x10
    (out / "flipped.pmb").write_bytes(bytes(flipped))
    return out, [*blobs, out / "truncated.pmb", out / "flipped.pmb"]


def run_tsan(out, *args):
    return subprocess.run([str(out / "parse_threads"), *map(str, args)], cwd=out, env=TSAN_ENV,
                          capture_output=True, text=True, timeout=300)


def test_thread_sanitizer_is_live(tsan_build):
    """The harness's deliberate race is reported and fails the run: a quiet run means something."""
    out, blobs = tsan_build
    result = run_tsan(out, "--canary", 4, 2, *blobs[:2])
    assert result.returncode != 0
    assert "ThreadSanitizer: data race" in result.stderr, result.stderr[-3000:]


def test_concurrent_first_parses_are_free_of_data_races(tsan_build):
    """Eight threads start parsing at once in a fresh process (the CRC-32 table was once
    filled lazily on the first parse, with a plain-load flag: a race TSan reports)."""
    out, blobs = tsan_build
    result = run_tsan(out, 8, 3, *blobs)
    assert result.returncode == 0 and "ThreadSanitizer" not in result.stderr, (
        f"exit {result.returncode}\n{result.stderr[-8000:]}")
    assert re.search(rf"8 threads x 3 rounds x {len(blobs)} blobs \({len(blobs) - 2} valid\): all agree",
                     result.stderr), result.stderr
