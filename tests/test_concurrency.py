"""Concurrent callers: eight Python threads calling one model get, call after call, the bits one thread gets.

One harness, parametrised over the backends: ``native`` (one compiled model shared by
every thread) and ``wasm`` (each thread gets its own wasmtime store behind the same model).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import pymicro

THREADS = 8
# backend -> (rows per batch, rounds each thread makes over them); wasm is slower, so fewer
# rounds, and one large batch to cross its store's memory growth.
CASES = {
    "native": ([1, 9, 64, 257, 1000] * 2, 30),
    "wasm": ([1, 9, 64, 257, 5000], 10),
}


def rows(n, width, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(0, scale, (n, width)).astype(np.float32)


@pytest.mark.parametrize("backend", sorted(CASES))
def test_eight_threads_give_bit_identical_results_to_one(preset_blob, backend):
    sizes, rounds = CASES[backend]
    model = pymicro.load(preset_blob, backend)
    inputs = [rows(n, model.input_size, seed) for seed, n in enumerate(sizes)]
    want = [model.predict(x) for x in inputs]
    errors, done = [], []

    def worker(k):
        try:
            for rep in range(rounds):
                for j, x in enumerate(inputs):
                    if not np.array_equal(model.predict(x), want[j]):
                        errors.append((k, rep, j))
            done.append(k)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(done) == list(range(THREADS)), errors[:5]
