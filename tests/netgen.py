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


@st.composite
def tiny_weight_cases(draw) -> tuple[pymicro.Network, np.ndarray]:
    """A network and rows where a tiny weight meets a huge value: attention weights of
    e^-110 or less on input features of up to 1e36, and sigmoid units driven to e^-110 or
    less whose outgoing weights are up to 1e34. In float64 each product is below 1e-9, so
    it must not show in the probabilities; a float32 exp that stops at a normal number
    (e^-80) lets it dominate them."""
    n, k = draw(st.integers(2, 12)), draw(st.integers(1, 4))
    m, c = draw(st.integers(1, 6)), draw(st.integers(2, 4))
    spec = Spec(n, (Attention(k), Dense(m, "sigmoid")), c)
    net = perturbed(spec, seed=draw(st.integers(0, 2**16)), scale=0.3, normalise=False)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    att, hidden, head = net.params
    dead = rng.random(n) < 0.5
    dead[rng.integers(n)] = True
    dead[rng.integers(n)] = False  # at least one live feature (the softmax's max), maybe more
    att["W_a"][:, dead] = 0.0  # the dead features' logits are their biases alone
    att["b_a"][dead] = -rng.uniform(110, 300, dead.sum()).astype(np.float32)
    off = rng.random(m) < 0.5  # sigmoid units held far below 0 by their bias
    hidden["b"][off] = -rng.uniform(110, 300, off.sum()).astype(np.float32)
    hidden["W"][off] *= np.float32(0.01)
    head["W"][:, off] *= np.float32(10.0 ** draw(st.integers(20, 34)))
    rows = draw(st.integers(1, 40))
    x = rng.normal(0, 2, (rows, n)).astype(np.float32)
    big = 10.0 ** rng.uniform(10, 36, (rows, int(dead.sum())))
    x[:, dead] = (big * rng.choice([-1.0, 1.0], big.shape)).astype(np.float32)
    return net, x
