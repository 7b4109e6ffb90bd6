"""Fuzz pymicro.load(data) + predict with atheris (libFuzzer for Python).

    python tests/fuzz/fuzz_load_atheris.py --write-seeds corpus/   # the seed blobs
    python tests/fuzz/fuzz_load_atheris.py -runs=3000 -seed=1 corpus/

Any exception other than a pymicro.PymicroError is a crash, and so is a
prediction that is not a probability (or NaN). A custom mutator lets libFuzzer
mutate the bytes and then, three times in four, rewrites total_size, the footer
magic and the CRC, so that mutants get past the checksum into the deep checks.

The C++ core is not instrumented here, so libFuzzer's coverage feedback comes
from pymicro's Python code only; cpp/fuzz/fuzz_blob.cpp fuzzes the parser and
the executor themselves. ``seed_blobs()`` is also the seed set of
tests/test_sanitizers.py.
"""

from __future__ import annotations

import random
import struct
import sys
import zlib
from pathlib import Path

import numpy as np


def seed_blobs() -> dict[str, bytes]:
    """Valid blobs covering every layer kind, activation, flag and string list."""
    import pymicro
    from pymicro import Attention, Dense, Spec

    def normalise(net, seed):
        rng = np.random.default_rng(seed)
        net.mean = rng.normal(0, 1, net.spec.input_size).astype(np.float32)
        net.std = rng.uniform(0.5, 2.0, net.spec.input_size).astype(np.float32)
        return net

    seeds = {}
    for name in pymicro.PRESETS:
        seeds[name] = pymicro.freeze(pymicro.preset(name).init(0))
        seeds[f"{name}-norm"] = pymicro.freeze(normalise(pymicro.preset(name).init(1), 1))
    every_activation = Spec(
        7, (Dense(5, "relu"), Dense(6, "tanh"), Attention(3), Dense(5, "sigmoid"), Dense(9, "gelu"),
            Dense(4, "linear"), Attention(2)), 4, name="activations",
        labels=("bas", "flat", "haut", "très haut"),
        feature_names=("rsi", "macd", "vol", "ret_1", "ret_5", "spread", "données"))
    seeds["activations-norm"] = pymicro.freeze(normalise(every_activation.init(2), 2),
                                               note="é", empty="", source="seed")
    seeds["smallest"] = pymicro.freeze(Spec(1, (), 2).init(3))
    # Wide enough for several 4-output panels and several tiles; large weights saturate.
    wide = Spec(13, (Attention(17), Dense(21, "gelu"), Dense(3, "sigmoid")), 9, name="wide").init(4)
    for params in wide.params:
        for key in params:
            params[key] = params[key] * 25.0
    seeds["wide-saturated"] = pymicro.freeze(wide)
    # Ensemble containers (PMBC): every combiner, members with and without normalisation,
    # overlapping columns and a five-class member mapped onto three labels.
    from pymicro.runtime.ensemble import freeze_ensemble

    members = [seeds["momentum-norm"], seeds["reversal"], seeds["sentiment-norm"]]
    cols = [list(range(24)), list(range(10, 42)), list(range(4, 52))]
    seeds["ensemble-soft"] = freeze_ensemble(members, columns=cols, weights=[1.0, 2.0, 0.5],
                                             note="é")
    seeds["ensemble-majority"] = freeze_ensemble(members[:2], combiner="majority_vote",
                                                 columns=cols[:2])
    meta = Spec(9, (Dense(4, "tanh"),), 3, name="meta", labels=("down", "flat", "up"))
    seeds["ensemble-stacked"] = freeze_ensemble(
        members, combiner="stacked", columns=cols, meta=normalise(meta.init(5), 5),
        feature_names=[f"f{i}" for i in range(52)])
    return seeds


def write_seeds(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, blob in seed_blobs().items():
        path = directory / f"{name}.pmb"
        path.write_bytes(blob)
        paths.append(path)
    return paths


def repair(data: bytes) -> bytes:
    """total_size, footer magic and CRC made to agree with the bytes."""
    if len(data) < 136:
        return data
    buf = bytearray(data)
    struct.pack_into("<Q", buf, 16, len(buf))
    buf[-4:] = b"PMBE"
    struct.pack_into("<I", buf, len(buf) - 8, zlib.crc32(memoryview(buf)[:-8]))
    return bytes(buf)


def _instrument(atheris, package: str) -> None:
    """Coverage feedback from the package's Python functions.

    atheris.instrument_imports() misses modules that an editable install's import
    hook loads, and instrument_all() takes about 20 s (it rewrites numpy too).
    """
    import inspect

    seen = set()
    for name, module in list(sys.modules.items()):
        if name != package and not name.startswith(package + "."):
            continue
        for obj in vars(module).values():
            members = vars(obj).values() if inspect.isclass(obj) else (obj,)
            for f in members:
                f = f.fget if isinstance(f, property) else f
                if inspect.isfunction(f) and f.__module__ == name and id(f) not in seen:
                    seen.add(id(f))
                    atheris.instrument_func(f)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        for path in write_seeds(sys.argv[2]):
            print(path)
        return

    import atheris

    import pymicro

    _instrument(atheris, "pymicro")

    def check_probabilities(p, shape):
        assert p.shape == shape and p.dtype == np.float32, (p.shape, p.dtype)
        finite = p[~np.isnan(p)]
        assert np.all((finite >= 0) & (finite <= 1 + 1e-6)), p

    def test_one_input(data: bytes) -> None:
        try:
            model = pymicro.load(data)
        except pymicro.PymicroError:
            return
        rng = np.random.default_rng(zlib.crc32(data))
        d, c = model.input_size, model.n_classes
        try:
            check_probabilities(model.predict(rng.normal(0, 3, d).astype(np.float32)), (c,))
            check_probabilities(model.predict(rng.normal(0, 3, (9, d)).astype(np.float32)), (9, c))
            if model._impl.attn_width:
                e = model.explain(rng.normal(0, 3, d).astype(np.float32))
                if hasattr(e, "attention"):  # an ensemble: each member's attention, and shares
                    widths = [a.shape[-1] for a in e.attention.values() if a is not None]
                    assert sum(widths) == model._impl.attn_width
                    assert e.share.shape == (len(e.members),)
                else:
                    assert e.shape == (model._impl.attn_width,)
            info = model.info
            assert info.input_size == d and info.n_classes == c and len(info.labels) == c
        except pymicro.PymicroError:
            pass  # e.g. a row that overflows after a hostile normalisation: refused, not a crash

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        data = atheris.Mutate(data, max_size)
        return repair(data) if random.Random(seed).random() < 0.75 else data

    atheris.Setup(sys.argv, test_one_input, custom_mutator=mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
