"""pymicro.runtime.sandbox: nodes fenced by fuel, a wall-clock deadline, a memory cap and no imports.

Containment: a runaway computation stopped by fuel and, separately, by the deadline; a batch
over the memory cap; truncated, bit-flipped and checksum-valid-but-malformed blobs; hand-written
hostile modules (WAT) that loop, recurse, import host functions, lie about addresses or ask for
too much memory. Each is refused or stopped with a typed error naming the cause, the host and
the other nodes carry on, and a good request on a fresh (or reset) node succeeds.
"""

import json
import struct
import threading
import time
import zlib

import numpy as np
import pytest

import pymicro
from pymicro.cli import sandbox as sandbox_cli
from pymicro import BlobError, InputError, PymicroError
from pymicro.runtime.bench import preset_blob

wasmtime = pytest.importorskip("wasmtime")
from pymicro.runtime import sandbox  # noqa: E402
from pymicro.runtime import wasm as pw  # noqa: E402
from pymicro.runtime.sandbox import (DeadlineExceeded, FuelExhausted, GuestTrap,  # noqa: E402
                             MemoryLimitExceeded, ModuleRejected, NodeStateError,
                             ProtocolViolation, SandboxBlobError, SandboxError)


@pytest.fixture(scope="module")
def blob():
    return preset_blob("momentum")


def rows(n, d=24, seed=0):
    return np.random.default_rng(seed).normal(0, 2, (n, d)).astype(np.float32)


def good_request_succeeds(blob, node=None):
    """The check after every containment test: a good request on a fresh (or given) node."""
    node = node or sandbox.create(fuel=10**9, timeout=5, memory_mb=16)
    node.upload(blob)
    x = rows(50)
    got = node.execute(x).probabilities
    assert np.array_equal(got, pymicro.load(blob, "wasm").predict(x))
    return node


def abi_wat(memory_pages=1, imports="", extra="", start=None, **bodies) -> str:
    """A module exporting the ABI; each export returns a harmless constant unless overridden."""
    defaults = {"pm_abi_version": "(i32.const 1)", "pm_tile": "(i32.const 8)",
                "pm_blob_alloc": "(i32.const 1024)", "pm_load": "(i32.const 0)",
                "pm_input_size": "(i32.const 24)", "pm_n_classes": "(i32.const 3)",
                "pm_reserve": "(i32.const 4096)", "pm_out": "(i32.const 8192)",
                "pm_run": "(i64.const 0)"}
    funcs = []
    for name, (params, results) in pw.ABI.items():
        ps = " ".join(f"(param {p})" for p in params)
        body = bodies.get(name, defaults.get(name, f"({results[0]}.const 0)"))
        funcs.append(f'(func ${name} (export "{name}") {ps} (result {results[0]}) {body})')
    start_clause = f"(start {start})" if start else ""
    return (f'(module {imports} (memory (export "memory") {memory_pages}) {extra} '
            + " ".join(funcs) + f" {start_clause})")


LOOP_FOREVER = "(loop $l (br $l)) (i32.const 0)"
LOOP_FOREVER_I64 = "(loop $l (br $l)) (i64.const 0)"


# ------------------------------------------------------------------ normal use


def test_upload_execute_report_fuel_and_time_and_match_the_wasm_backend(blob):
    node = sandbox.create(fuel=10**9, timeout=5, memory_mb=16)
    assert node.state == "empty" and node.call_path in ("c-api-unchecked", "wasmtime-py")
    up = node.upload(blob)
    assert (up.input_size, up.n_classes, up.attn_width) == (24, 3, 24)
    assert up.params == pymicro.load(blob).info.params and up.fuel_used > 0 and up.seconds > 0
    x = rows(300)
    ex = node.execute(x)
    assert ex.rows == 300 and ex.nonfinite_rows == 0 and 0 < ex.fuel_used < 10**9 and ex.seconds > 0
    assert np.array_equal(ex.probabilities, pymicro.load(blob, "wasm").predict(x))
    # fuel is deterministic: the same request costs the same once the buffers exist (the first
    # one also reserved the buffers), and the same sequence on a fresh node costs the same again
    again = [node.execute(x).fuel_used for _ in range(2)]
    assert again[0] == again[1] and abs(again[0] - ex.fuel_used) < 1000
    twin = sandbox.create(fuel=10**9, timeout=5, memory_mb=16)
    assert twin.upload(blob).fuel_used == up.fuel_used and twin.execute(x).fuel_used == ex.fuel_used
    one = node.execute(x[4])
    assert one.probabilities.shape == (3,) and np.array_equal(one.probabilities, ex.probabilities[4])
    assert one.fuel_used < ex.fuel_used
    att = node.execute(x, explain=True).attention
    np.testing.assert_array_equal(att, pymicro.load(blob, "wasm").explain(x))
    assert node.execute(np.empty((0, 24), np.float32)).probabilities.shape == (0, 3)
    assert node.requests >= 5 and node.fuel_used_total > ex.fuel_used


def test_inputs_follow_the_model_policy(blob):
    node = sandbox.create(memory_mb=16)
    node.upload(blob)
    with pytest.raises(InputError, match=r"shape \(23,\)"):
        node.execute(np.zeros(23, np.float32))
    with pytest.raises(InputError, match="dtype complex"):
        node.execute(np.zeros(24, np.complex64))
    x = rows(10)
    x[3, 5] = np.nan
    with pytest.raises(InputError, match=r"x\[3, 5\] is nan"):
        node.execute(x)
    loose = sandbox.create(nan_policy="propagate", memory_mb=16)
    loose.upload(blob)
    ex = loose.execute(x)
    assert ex.nonfinite_rows == 1 and np.isnan(ex.probabilities[3]).all()
    assert node.state == "ready"  # input errors never touch the node
    with pytest.raises(NodeStateError, match="upload"):
        sandbox.create().execute(x)


@pytest.mark.parametrize("exc", [RuntimeError, KeyError, ZeroDivisionError, AttributeError])
def test_an_input_whose_conversion_raises_is_an_input_error_in_a_node(blob, exc):
    class Obj:
        def __array__(self, *args, **kwargs):
            raise exc("broken __array__")

    node = sandbox.create(memory_mb=16)
    node.upload(blob)
    for explain in (False, True):
        with pytest.raises(InputError) as e:
            node.execute(Obj(), explain=explain)
        assert type(e.value.__cause__) is exc
    assert node.state == "ready"


def test_bad_limits_are_refused():
    for kw in ({"fuel": 0}, {"fuel": 1.5}, {"timeout": -1}, {"memory_mb": 0}, {"memory_mb": 1e6},
               {"nan_policy": "ignore"}):
        with pytest.raises(InputError):
            sandbox.create(**kw)


# ------------------------------------------------------------------ runaway: fuel


def test_a_runaway_guest_is_stopped_by_fuel(blob):
    keep = good_request_succeeds(blob)  # a node already serving, before and after
    node = sandbox.create(fuel=2_000_000, timeout=None, module=abi_wat(pm_load=LOOP_FOREVER))
    t0 = time.perf_counter()
    with pytest.raises(FuelExhausted) as e:
        node.upload(blob)
    assert time.perf_counter() - t0 < 5
    err = e.value
    assert err.cause == "fuel" and err.phase == "upload" and err.fuel_used == 2_000_000
    assert "out of fuel" in str(err) and f"node {node.id}" in str(err)
    assert isinstance(err, SandboxError) and isinstance(err, PymicroError)
    with pytest.raises(NodeStateError, match="reset"):
        node.upload(blob)
    good_request_succeeds(blob, keep)
    good_request_succeeds(blob)


def test_a_too_large_request_on_the_real_model_is_stopped_by_fuel_and_the_node_recycles(blob):
    node = sandbox.create(fuel=500_000, memory_mb=64)
    node.upload(blob)
    node.execute(rows(10))
    with pytest.raises(FuelExhausted) as e:
        node.execute(rows(20_000))
    assert e.value.phase == "execute" and node.state == "failed"
    up = node.recycle()  # a fresh store, the same blob loaded again
    assert node.state == "ready" and up.input_size == 24
    assert np.array_equal(node.execute(rows(10)).probabilities,
                          pymicro.load(blob, "wasm").predict(rows(10)))


# ------------------------------------------------------------------ runaway: the deadline


def test_a_runaway_guest_is_stopped_by_the_deadline(blob):
    node = sandbox.create(fuel=None, timeout=0.2, module=abi_wat(pm_run=LOOP_FOREVER_I64))
    node.upload(blob)
    t0 = time.perf_counter()
    with pytest.raises(DeadlineExceeded) as e:
        node.execute(rows(4))
    elapsed = time.perf_counter() - t0
    assert e.value.cause == "deadline" and "0.2 s" in str(e.value)
    assert 0.2 <= elapsed < 3.0 and 0.2 <= e.value.seconds < 3.0
    node.reset()
    assert node.state == "empty"
    good_request_succeeds(blob)


def test_the_deadline_stops_one_node_while_another_thread_keeps_serving(blob):
    runaway = sandbox.create(fuel=None, timeout=0.5, module=abi_wat(pm_run=LOOP_FOREVER_I64))
    runaway.upload(blob)
    worker = good_request_succeeds(blob)
    want = pymicro.load(blob, "wasm").predict(rows(64))
    errors, served = [], []

    def stuck():
        try:
            runaway.execute(rows(1))
        except DeadlineExceeded:
            errors.append("deadline")

    t = threading.Thread(target=stuck)
    t.start()
    while t.is_alive():  # the other node answers while the runaway one spins
        assert np.array_equal(worker.execute(rows(64)).probabilities, want)
        served.append(1)
    t.join()
    assert errors == ["deadline"] and len(served) > 1


# ------------------------------------------------------------------ memory


def test_a_batch_over_the_memory_cap_is_refused_and_the_node_stays_usable(blob):
    node = sandbox.create(memory_mb=2)
    node.upload(blob)
    with pytest.raises(MemoryLimitExceeded) as e:
        node.execute(np.zeros((100_000, 24), np.float32))
    assert e.value.cause == "memory" and "100000 rows" in str(e.value) and "2 MiB" in str(e.value)
    assert node.state == "ready"
    good_request_succeeds(blob, node)
    good_request_succeeds(blob)


def test_a_module_asking_for_more_memory_than_the_cap_is_refused():
    with pytest.raises(MemoryLimitExceeded, match="exceeds memory limits"):
        sandbox.create(memory_mb=1, module=abi_wat(memory_pages=64))


def test_a_guest_whose_memory_grow_is_refused_reports_memory(blob):
    grow = ("(if (i32.lt_s (memory.grow (i32.const 1000)) (i32.const 0)) "
            "(then (return (i32.const 0)))) (i32.const 1024)")
    node = sandbox.create(memory_mb=4, module=abi_wat(pm_blob_alloc=grow))
    with pytest.raises(MemoryLimitExceeded):
        node.upload(blob)
    assert node.state == "empty"


# ------------------------------------------------------------------ blobs


def _refit_crc(data: bytearray) -> bytes:
    data[-8:-4] = struct.pack("<I", zlib.crc32(bytes(data[:-8])))
    return bytes(data)


def test_truncated_bit_flipped_and_malformed_blobs_are_refused_by_the_nodes_parser(blob):
    node = sandbox.create(memory_mb=16)
    node.upload(blob)
    flipped = bytearray(blob)
    flipped[200] ^= 0x04
    wide = bytearray(blob)
    wide[24:28] = struct.pack("<I", 5000)  # input_size over the limit, checksum refitted
    layer = bytearray(blob)
    layer[128:132] = struct.pack("<I", 9)  # unknown layer kind, checksum refitted
    cases = [("truncated", blob[:-10]), ("bit flip", bytes(flipped)),
             ("input_size", _refit_crc(wide)), ("layer kind", _refit_crc(layer)),
             ("not a blob", b"\x7fELF" + bytes(200))]
    for what, bad in cases:
        with pytest.raises(SandboxBlobError) as e:
            node.upload(bad)
        with pytest.raises(BlobError) as native:
            pymicro._core.parse(bad)
        assert isinstance(e.value, BlobError) and e.value.cause == "blob", what
        assert e.value.offset == native.value.offset, what
        assert str(native.value) in str(e.value), what  # the same parser, the same words
        assert node.state == "empty"  # a refused blob unloads the previous one, nothing more
    good_request_succeeds(blob, node)


# ------------------------------------------------------------------ hostile modules


@pytest.mark.parametrize("imports, name", [
    ('(import "env" "read_file" (func (param i32) (result i32)))', "env.read_file"),
    ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
     "wasi_snapshot_preview1.fd_write"),
    ('(import "env" "secret" (global i32))', "env.secret"),
])
def test_a_module_that_imports_anything_is_refused_before_it_runs(blob, imports, name):
    with pytest.raises(ModuleRejected, match=f"imports {name}") as e:
        sandbox.create(module=abi_wat(imports=imports))
    assert e.value.cause == "module"
    good_request_succeeds(blob)


def test_a_start_function_that_loops_is_stopped_at_create(blob):
    spin = "(func $spin (loop $l (br $l)))"
    with pytest.raises(FuelExhausted) as e:
        sandbox.create(fuel=1_000_000, module=abi_wat(extra=spin, start="$spin"))
    assert e.value.phase == "create"
    with pytest.raises(DeadlineExceeded):
        sandbox.create(fuel=None, timeout=0.1, module=abi_wat(extra=spin, start="$spin"))
    good_request_succeeds(blob)


def test_unbounded_recursion_is_a_stack_overflow_trap(blob):
    rec = "(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))"
    node = sandbox.create(fuel=None, module=abi_wat(extra=rec, pm_load="(call $down (i32.const 0))"))
    with pytest.raises(GuestTrap, match="stack"):
        node.upload(blob)
    assert node.state == "failed"
    good_request_succeeds(blob)


def test_a_trap_inside_the_guest_is_typed(blob):
    node = sandbox.create(module=abi_wat(pm_load="(unreachable)"))
    with pytest.raises(GuestTrap, match="unreachable"):
        node.upload(blob)


def test_a_guest_that_lies_about_addresses_cannot_make_the_host_read_outside_it(blob):
    liar = sandbox.create(module=abi_wat(pm_reserve="(i32.const -16)"))  # 0xFFFFFFF0
    liar.upload(blob)
    with pytest.raises(ProtocolViolation, match="out of bounds"):
        liar.execute(rows(4))
    overlap = sandbox.create(module=abi_wat(pm_out="(i32.const 4100)"))
    overlap.upload(blob)
    with pytest.raises(ProtocolViolation, match="overlapping"):
        overlap.execute(rows(4))
    counts = sandbox.create(module=abi_wat(pm_run="(i64.const 99)"))
    counts.upload(blob)
    with pytest.raises(ProtocolViolation, match="99"):
        counts.execute(rows(4))
    shape = sandbox.create(module=abi_wat(pm_input_size="(i32.const 0)"))
    with pytest.raises(ProtocolViolation, match="input_size=0"):
        shape.upload(blob)
    good_request_succeeds(blob)


@pytest.mark.parametrize("module, match", [
    (b"\x00asm\x01\x00\x00\x00garbage", "does not compile"),
    (b"not wasm at all", "does not compile"),
    ('(module (memory (export "memory") 1))', "does not export the function pm_abi_version"),
    ('(module (func (export "pm_abi_version") (result i32) (i32.const 1)))', "linear memory"),
    (abi_wat().replace('(func $pm_run (export "pm_run") (param i32) (param i32) (result i64)',
                       '(func $pm_run (export "pm_run") (param i32) (result i64)'),
     r"export pm_run has type"),
])
def test_modules_that_are_not_wasm_or_lack_the_abi_are_rejected(blob, module, match):
    with pytest.raises(ModuleRejected, match=match):
        sandbox.create(module=module)
    good_request_succeeds(blob)


def test_a_module_from_a_file(tmp_path, blob):
    path = tmp_path / "loop.wasm"
    path.write_bytes(wasmtime.wat2wasm(abi_wat(pm_load=LOOP_FOREVER)))
    node = sandbox.create(fuel=100_000, module=path)
    with pytest.raises(FuelExhausted):
        node.upload(blob)
    with pytest.raises(ModuleRejected, match="cannot read"):
        sandbox.create(module=tmp_path / "missing.wasm")


# ------------------------------------------------------------------ lifecycle


def test_reset_recycle_and_close(blob):
    node = sandbox.create(memory_mb=16)
    assert node.recycle() is None  # nothing uploaded yet: a fresh empty store
    node.upload(blob)
    node.reset()
    assert node.state == "empty" and node.model is None
    with pytest.raises(NodeStateError):
        node.execute(rows(1))
    assert node.recycle().input_size == 24 and node.state == "ready"
    with node:
        node.execute(rows(2))
    assert node.state == "closed"
    with pytest.raises(NodeStateError, match="closed"):
        node.execute(rows(1))
    with pytest.raises(NodeStateError, match="closed"):
        node.reset()


# ------------------------------------------------------------------ CLI


def test_cli_sandbox_run(tmp_path, blob, capsys):
    bpath, xpath, opath = tmp_path / "m.pmb", tmp_path / "x.npy", tmp_path / "p.npy"
    bpath.write_bytes(blob)
    x = rows(25)
    np.save(xpath, x)
    assert sandbox_cli.sandbox_run_main([str(bpath), str(xpath), "--output", str(opath)]) == 0
    out = capsys.readouterr().out
    assert "execute: fuel" in out and "25 rows" in out and "(10 of 25 rows shown" in out
    assert np.array_equal(np.load(opath), pymicro.load(blob, "wasm").predict(x))

    assert sandbox_cli.sandbox_run_main([str(bpath), str(xpath), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"] == 25 and doc["execute"]["fuel_used"] > 0 and len(doc["probabilities"]) == 25

    assert sandbox_cli.sandbox_run_main([str(bpath), str(xpath), "--fuel", "1000"]) == 1
    assert "FuelExhausted" in capsys.readouterr().err
    np.save(xpath, np.zeros((200_000, 24), np.float32))
    assert sandbox_cli.sandbox_run_main([str(bpath), str(xpath), "--memory", "1"]) == 1
    assert "MemoryLimitExceeded" in capsys.readouterr().err
    (tmp_path / "bad.pmb").write_bytes(blob[:-3])
    assert sandbox_cli.sandbox_run_main([str(tmp_path / "bad.pmb"), str(xpath)]) == 1
    assert "SandboxBlobError" in capsys.readouterr().err


def test_cli_add_parser_hook(tmp_path, blob, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="pymicro")
    sandbox_cli.add_parser(parser.add_subparsers(dest="command"))
    bpath, xpath = tmp_path / "m.pmb", tmp_path / "x.npy"
    bpath.write_bytes(blob)
    np.save(xpath, rows(3)[0])
    args = parser.parse_args(["sandbox", "run", str(bpath), str(xpath), "--timeout", "2"])
    assert args.func(args) == 0
    assert "1 row" in capsys.readouterr().out


def test_a_row_that_overflows_float32_is_reported_by_a_node_as_natively():
    net = pymicro.Spec(6, [pymicro.Dense(4, "relu")], 3).init(0)
    net.params[0]["W"] = (net.params[0]["W"] * np.float32(1e36)).astype(np.float32)
    blob = pymicro.freeze(net)
    x = np.random.default_rng(0).normal(0, 1, (10, 6)).astype(np.float32)
    x[4] *= np.float32(1e6)
    with pytest.raises(pymicro.NumericsError) as native:
        pymicro.load(blob).predict(x)
    node = sandbox.create(fuel=10**9, timeout=5, memory_mb=16)
    node.upload(blob)
    with pytest.raises(pymicro.NumericsError) as fenced:
        node.execute(x)
    assert str(fenced.value) == str(native.value) and str(native.value).startswith("row 4: ")
    node.close()
    propagating = sandbox.create(fuel=10**9, timeout=5, memory_mb=16, nan_policy="propagate")
    propagating.upload(blob)
    got = propagating.execute(x).probabilities
    assert list(np.flatnonzero(np.isnan(got).any(axis=1))) == [4]
    good_request_succeeds(preset_blob("momentum"), propagating)


# ------------------------------------------------------------------ limits: values and compiling


@pytest.mark.parametrize("kw, name", [
    ({"timeout": float("inf")}, "timeout"), ({"timeout": 1e300}, "timeout"),
    ({"timeout": float("nan")}, "timeout"), ({"timeout": 0}, "timeout"),
    ({"timeout": -1.0}, "timeout"), ({"timeout": True}, "timeout"), ({"timeout": "1"}, "timeout"),
    ({"timeout": sandbox.MAX_TIMEOUT * 2}, "timeout"),
    ({"fuel": 2**64 + 5000}, "fuel"), ({"fuel": 2**63}, "fuel"), ({"fuel": 0}, "fuel"),
    ({"fuel": -5}, "fuel"), ({"fuel": 1.5}, "fuel"), ({"fuel": float("inf")}, "fuel"),
    ({"fuel": True}, "fuel"),
    ({"memory_mb": float("inf")}, "memory_mb"), ({"memory_mb": float("nan")}, "memory_mb"),
    ({"memory_mb": 0}, "memory_mb"), ({"memory_mb": 1e-9}, "memory_mb"),
    ({"memory_mb": 1e6}, "memory_mb"), ({"memory_mb": True}, "memory_mb"),
    ({"compile_timeout": float("inf")}, "compile_timeout"), ({"compile_timeout": 0}, "compile_timeout"),
    ({"compile_memory_mb": 1}, "compile_memory_mb"),
    ({"compile_memory_mb": float("nan")}, "compile_memory_mb"),
])
def test_every_limit_out_of_its_range_is_a_typed_error_naming_the_argument_and_range(kw, name):
    with pytest.raises(pymicro.SandboxLimitError) as e:
        sandbox.create(**kw)
    err = e.value
    assert isinstance(err, InputError) and isinstance(err, ValueError) and isinstance(err, SandboxError)
    assert f"{name} must be" in str(err) and ("[" in str(err) or "(" in str(err))


def test_limits_at_the_edges_of_their_ranges_are_accepted(blob):
    node = sandbox.create(fuel=sandbox.MAX_FUEL, timeout=sandbox.MAX_TIMEOUT,
                          memory_mb=sandbox.MAX_MEMORY_MB)
    node.upload(blob)
    assert node.execute(rows(3)).probabilities.shape == (3, 3)
    tiny = sandbox.create(fuel=None, timeout=None, memory_mb=sandbox.MIN_MEMORY_MB, module=abi_wat())
    assert tiny.fuel is None and tiny.state == "empty"  # one 64 KiB page fits the smallest cap
    assert sandbox.create(fuel=np.int64(10**9), timeout=np.float32(2.0)).fuel == 10**9


def big_module(n_funcs: int) -> bytes:
    """A valid wasm binary of many long functions (about 7 KB each): seconds to compile."""
    body = "(local.get 0)" + " (i32.const 7) (i32.mul) (local.get 0) (i32.add) (i32.const 3) (i32.xor)" * 800
    funcs = " ".join(f"(func (param i32) (result i32) {body})" for _ in range(n_funcs))
    return wasmtime.wat2wasm(f'(module (memory (export "memory") 1) {funcs})')


def test_a_module_over_the_size_limit_is_refused_before_compiling(tmp_path):
    data = b"\x00asm\x01\x00\x00\x00" + b"\x00" * sandbox.MAX_MODULE_BYTES
    for source in (data, tmp_path / "big.wasm"):
        if not isinstance(source, bytes):
            source.write_bytes(data)
        start = time.perf_counter()
        with pytest.raises(pymicro.ModuleTooLarge) as e:
            sandbox.create(module=source, timeout=0.2, fuel=1000, memory_mb=1)
        assert time.perf_counter() - start < 5  # refused, not compiled
        assert f"{len(data):,} bytes" in str(e.value) and f"{sandbox.MAX_MODULE_BYTES:,}" in str(e.value)
        assert isinstance(e.value, sandbox.ModuleRejected)


def test_compiling_a_large_module_stops_at_the_compile_deadline():
    module = big_module(500)  # about 3.6 MB: under the size limit, about a second to compile
    assert len(module) <= sandbox.MAX_MODULE_BYTES
    deadline = 0.25
    start = time.perf_counter()
    with pytest.raises(pymicro.CompileLimitExceeded, match="deadline of 0.25 s"):
        sandbox.create(module=module, timeout=0.2, fuel=1000, memory_mb=1, compile_timeout=deadline)
    # generous: 10x the deadline plus a process start, not a benchmark
    assert time.perf_counter() - start < 10 * deadline + 5


def test_compiling_under_a_tiny_memory_cap_is_a_typed_error():
    with pytest.raises(pymicro.CompileLimitExceeded, match="memory cap of 16 MiB"):
        sandbox.create(module=big_module(200), compile_memory_mb=16, compile_timeout=60)


def test_a_custom_module_compiled_in_the_child_runs_as_before(blob):
    # the same WAT twice: compiled once (the child), then taken from the cache
    node = sandbox.create(module=abi_wat(pm_run=LOOP_FOREVER_I64), fuel=10**6, timeout=5)
    again = sandbox.create(module=abi_wat(pm_run=LOOP_FOREVER_I64), fuel=10**6, timeout=5)
    assert node._module is again._module
    node.upload(blob)
    with pytest.raises(FuelExhausted):
        node.execute(rows(1))


def test_a_tiny_attention_weight_times_a_large_input_stays_tiny_in_a_node():
    # The kernels' exp once stopped at e^-80: softmax([0, -100]) * [0, 1e36] gave 1.8e1,
    # not float64's 3.7e-8, and the node answered [1.0, 2e-16] instead of [0.5, 0.5].
    net = pymicro.Spec(2, (pymicro.Attention(1),), 2).init(0)
    att, head = net.params
    att.update(W_a=np.zeros((2, 2), np.float32), b_a=np.float32([0.0, -100.0]),
               W_v=np.float32([[1.0, 1.0]]), b_v=np.zeros(1, np.float32))
    head.update(W=np.float32([[1.0], [-1.0]]), b=np.zeros(2, np.float32))
    node = sandbox.create(fuel=10**9, timeout=5, memory_mb=16)
    node.upload(pymicro.freeze(net))
    x = np.float32([[0.0, 1e36], [0.0, 1e36], [0.0, -1e36]])
    np.testing.assert_allclose(node.execute(x).probabilities, 0.5, atol=1e-6)
    np.testing.assert_allclose(node.execute(x[0]).probabilities, 0.5, atol=1e-6)
