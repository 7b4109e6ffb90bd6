"""Networks with non-trivial weights, and hypothesis strategies for architectures."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import pymicro
from pymicro import Attention, Dense, Dropout, Spec
from pymicro.runtime.spec import ACTIVATIONS


def perturbed(spec: Spec, seed: int = 0, scale: float = 0.3, normalise: bool = True) -> pymicro.Network:
    """spec.init(seed) with noise on every tensor (so biases matter) and a random normalisation."""
    net = spec.init(seed=seed)
    rng = np.random.default_rng(seed + 1000)
    for params in net.params:
        for key in params:
            params[key] = (params[key] + rng.normal(0, scale, params[key].shape)).astype(np.float32)
    if normalise:
        net.mean = rng.normal(0, 1, spec.input_size).astype(np.float32)
        net.std = rng.uniform(0.5, 2.0, spec.input_size).astype(np.float32)
    return net


@st.composite
def specs(draw, max_width: int = 40) -> Spec:
    layers = draw(st.lists(st.one_of(
        st.builds(Dense, st.integers(1, max_width), st.sampled_from(ACTIVATIONS)),
        st.builds(Attention, st.integers(1, 16)),
        st.builds(Dropout, st.sampled_from([0.0, 0.2, 0.5])),
    ), max_size=4))
    return Spec(draw(st.integers(1, max_width)), tuple(layers), draw(st.integers(2, 7)))


@st.composite
def networks(draw) -> pymicro.Network:
    spec = draw(specs())
    return perturbed(spec, seed=draw(st.integers(0, 2**16)), scale=draw(st.sampled_from([0.1, 0.3, 0.5])),
                     normalise=draw(st.booleans()))
