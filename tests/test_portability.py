"""The kernels are portable C++: the baseline build compiles for aarch64 (checked with zig's clang)."""

import subprocess
import sys
from pathlib import Path

CPP = Path(__file__).resolve().parent.parent / "cpp"


def test_the_portable_kernels_compile_for_aarch64(tmp_path):
    out = tmp_path / "arch_generic.o"
    cmd = [sys.executable, "-m", "ziglang", "c++", "-target", "aarch64-linux-gnu", "-std=c++17", "-O2",
           "-ffp-contract=fast", "-fno-exceptions", f"-I{CPP}", "-c", str(CPP / "arch" / "arch_generic.cpp"),
           "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    header = out.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
