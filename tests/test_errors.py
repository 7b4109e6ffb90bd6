"""pymicro's error hierarchy: one module defines every class, pymicro exports them all, and each
family also subclasses the built-in exception the README's table names."""

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import pymicro
from pymicro import errors

# The README's table (section "Errors"): class -> the built-in exceptions it must also be,
# and the ones it must not be (so `except ValueError` never swallows a broken environment).
VALUE = {ValueError}
ENV = {RuntimeError}
TABLE = {
    "PymicroError": (set(), {ValueError, TypeError, RuntimeError, ImportError}),
    "SpecError": (VALUE, {RuntimeError, TypeError}),
    "ParameterBudgetError": (VALUE, {RuntimeError, TypeError}),
    "BlobError": (VALUE, {RuntimeError, TypeError}),
    "InputError": (VALUE, {RuntimeError, TypeError}),
    "InputTypeError": ({ValueError, TypeError}, {RuntimeError}),
    "NumericsError": (VALUE, {RuntimeError, TypeError}),
    "DataError": (VALUE, {RuntimeError, TypeError}),
    "TrainingError": (VALUE, {RuntimeError, TypeError}),
    "EvaluationError": (VALUE, {RuntimeError, TypeError}),
    "RegistryError": (VALUE, {RuntimeError, TypeError}),
    "BackendError": (ENV, {ValueError, TypeError}),
    "MissingDependencyError": ({RuntimeError, ImportError}, {ValueError, TypeError}),
    "GuestMemoryError": (ENV, {ValueError, TypeError}),
    "GuestProtocolError": (ENV, {ValueError, TypeError}),
    "ReasoningError": (ENV, {ValueError, TypeError}),
    "ClusterError": (ENV, {ValueError, TypeError}),
    "SandboxError": (ENV, {ValueError, TypeError}),
    "FuelExhausted": (ENV, {ValueError, TypeError}),
    "DeadlineExceeded": (ENV, {ValueError, TypeError}),
    "MemoryLimitExceeded": (ENV, {ValueError, TypeError}),
    "GuestTrap": (ENV, {ValueError, TypeError}),
    "ModuleRejected": (ENV, {ValueError, TypeError}),
    "ModuleTooLarge": (ENV, {ValueError, TypeError}),
    "CompileLimitExceeded": (ENV, {ValueError, TypeError}),
    "ProtocolViolation": (ENV, {ValueError, TypeError}),
    "NodeStateError": (ENV, {ValueError, TypeError}),
    "SandboxLimitError": ({ValueError, RuntimeError}, {TypeError}),
    "SandboxBlobError": ({ValueError, RuntimeError}, {TypeError}),
    "StreamUnavailableError": (ENV, {ValueError, TypeError}),
    "LeaseHeldError": (ENV, {ValueError, TypeError}),
    "LeaseLostError": (ENV, {ValueError, TypeError}),
    "NonTickInputsError": (VALUE, {RuntimeError, TypeError}),
}
PARENT = {  # the pymicro class each one must also be
    "ParameterBudgetError": "SpecError", "InputTypeError": "InputError",
    "MissingDependencyError": "BackendError", "GuestMemoryError": "BackendError",
    "GuestProtocolError": "BackendError", "ModuleTooLarge": "ModuleRejected",
    "CompileLimitExceeded": "ModuleRejected", "SandboxLimitError": "InputError",
    "SandboxBlobError": "BlobError", "StreamUnavailableError": "BackendError",
    "LeaseHeldError": "BackendError", "LeaseLostError": "BackendError", "NonTickInputsError": "DataError",
}


def test_every_error_class_is_defined_in_errors_py_and_exported_from_pymicro():
    defined = {n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, Exception)}
    assert defined == set(TABLE)
    for name in defined:
        assert getattr(pymicro, name) is getattr(errors, name) and name in pymicro.__all__
    # no error class defined anywhere else in the package (every module; the test extras
    # install every optional dependency, so each one imports)
    for info in pkgutil.walk_packages(pymicro.__path__, "pymicro."):
        m = importlib.import_module(info.name)
        for name, obj in vars(m).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and not issubclass(obj, Warning)
                    and not obj.__name__.startswith("_") and obj.__module__.startswith("pymicro")):
                assert obj.__module__ == "pymicro.errors", f"{info.name}.{name}"


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_error_has_the_documented_bases(name):
    cls = getattr(pymicro, name)
    assert issubclass(cls, pymicro.PymicroError) and issubclass(cls, Exception)
    is_a, is_not = TABLE[name]
    for base in is_a:
        assert issubclass(cls, base), f"{name} should be a {base.__name__}"
    for base in is_not:
        assert not issubclass(cls, base), f"{name} should not be a {base.__name__}"
    if name in PARENT:
        assert issubclass(cls, getattr(pymicro, PARENT[name]))
    if issubclass(cls, pymicro.SandboxError):
        assert issubclass(cls, errors.SandboxError) and isinstance(cls.cause, str)


def test_the_old_import_paths_of_the_sandbox_and_guest_errors_still_work():
    pytest.importorskip("wasmtime")
    from pymicro import sandbox, wasm

    for name in ("SandboxError", "FuelExhausted", "DeadlineExceeded", "MemoryLimitExceeded",
                 "GuestTrap", "ModuleRejected", "ProtocolViolation", "NodeStateError",
                 "SandboxBlobError"):
        assert getattr(sandbox, name) is getattr(pymicro, name)
    assert wasm.GuestMemoryError is pymicro.GuestMemoryError
    assert wasm.GuestProtocolError is pymicro.GuestProtocolError


def test_require_imports_a_module_or_names_the_pip_extra():
    assert errors.require("json", "none") is importlib.import_module("json")
    with pytest.raises(pymicro.MissingDependencyError) as e:
        errors.require("pymicro_no_such_module_xyz", "wasm", purpose="backend 'wasm'")
    assert "pip install 'pymicro[wasm]'" in str(e.value) and "backend 'wasm'" in str(e.value)
    assert e.value.extra == "wasm" and e.value.module == "pymicro_no_such_module_xyz"
    assert isinstance(e.value, ImportError) and isinstance(e.value, pymicro.BackendError)
    assert not isinstance(e.value, ValueError)
    assert isinstance(e.value.__cause__, ImportError)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("module, extra, call", [
    ("wasmtime", "wasm", "pymicro.load(blob, 'wasm')"),
    ("onnx", "onnx", "pymicro.export_onnx(blob)"),
])
def test_a_missing_extra_raises_missing_dependency_error_naming_it(module, extra, call):
    # the module made unimportable in a child process (None in sys.modules blocks an import)
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "import pymicro\n"
            "blob = pymicro.freeze(pymicro.preset('momentum').init(0))\n"
            "try:\n"
            f"    {call}\n"
            "except pymicro.MissingDependencyError as e:\n"
            "    assert isinstance(e, ImportError) and not isinstance(e, ValueError)\n"
            "    print('MDE', e)\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("MDE ") and f"pip install 'pymicro[{extra}]'" in r.stdout


def test_pymicro_sandbox_and_wasm_are_attributes_after_a_plain_import_loaded_lazily():
    r = _run("import sys, pymicro\n"
             "assert 'pymicro.runtime.sandbox' not in sys.modules and 'wasmtime' not in sys.modules\n"
             "assert 'sandbox' in dir(pymicro)\n"
             "print(pymicro.sandbox.DEFAULT_TIMEOUT, pymicro.sandbox.create.__name__,\n"
             "      pymicro.wasm.ABI_VERSION, 'pymicro.runtime.sandbox' in sys.modules)\n"
             "try:\n"
             "    pymicro.no_such_thing\n"
             "except AttributeError as e:\n"
             "    print('AttributeError', e)\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "10.0 create 1 True"
    assert lines[1].startswith("AttributeError") and "no_such_thing" in lines[1]
