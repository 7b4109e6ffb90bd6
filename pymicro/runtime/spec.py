"""Architecture specs: what a micro network is, before it has weights.

A :class:`Spec` is an input width, a list of hidden layers and a softmax head of
``n_classes``. The head is always ``Dense(n_classes, "linear")`` followed by a
softmax; it is appended by the spec, not listed by the caller. Parameter and
FLOP counts are computed from the spec, never quoted.

``Attention(k)`` is interpretable feature attention. For an input ``x`` of width n::

    a = softmax(W_a @ x + b_a)      # n weights, one per input feature
    h = W_v @ (a * x) + b_v         # width k

FLOPs count each multiply, add, exp, tanh and division as one operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pymicro.errors import ParameterBudgetError, SpecError
from pymicro.runtime.activations import BY_NAME, NAMES

ACTIVATIONS = NAMES  # pymicro/activations.py is the table
MAX_PARAMS = 10_000  # the micro budget; Spec(allow_large=True) lifts it
MAX_WIDTH = 4096  # the core's hard limit on any layer width
MAX_LAYERS = 64


@dataclass(frozen=True)
class Dense:
    """Fully connected layer ``y = act(W x + b)``; ``gelu`` is the tanh approximation."""

    out: int
    activation: str = "relu"


@dataclass(frozen=True)
class Attention:
    """Feature attention of output width ``k`` (see the module docstring)."""

    k: int


@dataclass(frozen=True)
class Dropout:
    """Dropout with rate ``p`` during training; the identity in a frozen blob."""

    p: float


Layer = Dense | Attention | Dropout


def _layer_params(layer: Layer, n_in: int) -> int:
    if isinstance(layer, Dense):
        return n_in * layer.out + layer.out
    if isinstance(layer, Attention):
        return n_in * n_in + n_in + n_in * layer.k + layer.k
    return 0


def _layer_flops(layer: Layer, n_in: int) -> int:
    if isinstance(layer, Dense):
        return 2 * n_in * layer.out + BY_NAME[layer.activation].flops * layer.out
    if isinstance(layer, Attention):
        n = n_in
        # logits (2n^2), softmax (subtract, exp, sum, divide: 4n), gate (n), values (2nk)
        return 2 * n * n + 4 * n + n + 2 * n * layer.k
    return 0


def _width_out(layer: Layer, n_in: int) -> int:
    if isinstance(layer, Dense):
        return layer.out
    if isinstance(layer, Attention):
        return layer.k
    return n_in


@dataclass(frozen=True)
class Spec:
    """An architecture: input width, hidden layers and a softmax head.

    More than 10,000 parameters raise :class:`ParameterBudgetError` unless
    ``allow_large=True``.
    """

    input_size: int
    layers: tuple[Layer, ...]
    n_classes: int
    name: str = "custom"
    labels: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    allow_large: bool = False
    head: Dense = field(init=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "layers", tuple(self.layers))
        except TypeError:
            raise SpecError(f"layers must be a sequence of Dense, Attention and Dropout, got "
                            f"{self.layers!r}") from None
        object.__setattr__(self, "head", Dense(self.n_classes, "linear"))
        if self.labels is None:
            object.__setattr__(self, "labels", tuple(f"class_{i}" for i in range(self.n_classes)))
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(self.feature_names))
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.input_size, int) or not 1 <= self.input_size <= MAX_WIDTH:
            raise SpecError(f"input_size must be an int in 1..{MAX_WIDTH}, got {self.input_size!r}")
        if not isinstance(self.n_classes, int) or not 2 <= self.n_classes <= 256:
            raise SpecError(f"n_classes must be an int in 2..256, got {self.n_classes!r}")
        if len(self.labels) != self.n_classes:
            raise SpecError(f"labels has {len(self.labels)} entries, n_classes is {self.n_classes}")
        if self.feature_names is not None and len(self.feature_names) != self.input_size:
            raise SpecError(
                f"feature_names has {len(self.feature_names)} entries, input_size is {self.input_size}"
            )
        n_weighted = sum(not isinstance(layer, Dropout) for layer in self.layers) + 1
        if n_weighted > MAX_LAYERS:
            raise SpecError(f"{n_weighted} weighted layers; the core runs at most {MAX_LAYERS}")
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({type(layer).__name__})"
            if isinstance(layer, Dense):
                if not isinstance(layer.out, int) or not 1 <= layer.out <= MAX_WIDTH:
                    raise SpecError(f"{where}: out must be an int in 1..{MAX_WIDTH}, got {layer.out!r}")
                if layer.activation not in ACTIVATIONS:
                    raise SpecError(
                        f"{where}: unknown activation {layer.activation!r}; choose one of {ACTIVATIONS}"
                    )
            elif isinstance(layer, Attention):
                if not isinstance(layer.k, int) or not 1 <= layer.k <= MAX_WIDTH:
                    raise SpecError(f"{where}: k must be an int in 1..{MAX_WIDTH}, got {layer.k!r}")
            elif isinstance(layer, Dropout):
                if isinstance(layer.p, bool) or not isinstance(layer.p, (int, float)) \
                        or not 0.0 <= float(layer.p) < 1.0:
                    raise SpecError(f"{where}: dropout p must be a number in [0, 1), got {layer.p!r}")
            else:
                raise SpecError(f"{where}: not a layer: {layer!r} (use Dense, Attention or Dropout)")
        if self.params > MAX_PARAMS and not self.allow_large:
            raise ParameterBudgetError(
                f"spec {self.name!r} has {self.params:,} parameters; a micro network has at most "
                f"{MAX_PARAMS:,}. Shrink it, or pass allow_large=True if you mean it."
            )

    def weighted_layers(self) -> list[tuple[Layer, int, int]]:
        """(layer, n_in, n_out) for every layer that has weights, head included."""
        out, width = [], self.input_size
        for layer in (*self.layers, self.head):
            n_out = _width_out(layer, width)
            if not isinstance(layer, Dropout):
                out.append((layer, width, n_out))
            width = n_out
        return out

    @property
    def params(self) -> int:
        return sum(_layer_params(layer, n_in) for layer, n_in, _ in self.weighted_layers())

    @property
    def flops(self) -> int:
        head_softmax = 4 * self.n_classes
        body = sum(_layer_flops(layer, n_in) for layer, n_in, _ in self.weighted_layers())
        return body + head_softmax

    def describe(self) -> str:
        parts = [f"Input({self.input_size})"]
        for layer in self.layers:
            if isinstance(layer, Dense):
                parts.append(f"Dense({layer.out}, {layer.activation})")
            elif isinstance(layer, Attention):
                parts.append(f"Attention({layer.k})")
            else:
                parts.append(f"Dropout({layer.p})")
        parts.append(f"Softmax({self.n_classes})")
        return " -> ".join(parts)

    def init(self, seed: int = 0) -> "Network":
        """A network with Glorot-uniform weights and zero biases, fully determined by ``seed``."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SpecError(f"seed must be a non-negative int, got {seed!r}")
        rng = np.random.default_rng(seed)

        def glorot(rows: int, cols: int) -> np.ndarray:
            limit = np.sqrt(6.0 / (rows + cols))
            return rng.uniform(-limit, limit, size=(rows, cols)).astype(np.float32)

        params = []
        for layer, n_in, n_out in self.weighted_layers():
            if isinstance(layer, Attention):
                params.append({
                    "W_a": glorot(n_in, n_in), "b_a": np.zeros(n_in, np.float32),
                    "W_v": glorot(n_out, n_in), "b_v": np.zeros(n_out, np.float32),
                })
            else:
                params.append({"W": glorot(n_out, n_in), "b": np.zeros(n_out, np.float32)})
        return Network(self, params)


@dataclass
class Network:
    """A spec with weights: one dict of float32 arrays per weighted layer.

    Dense layers hold ``W`` (out, in) and ``b`` (out,); attention layers hold
    ``W_a`` (n, n), ``b_a`` (n,), ``W_v`` (k, n) and ``b_v`` (k,).
    ``mean`` and ``std`` (input width each) normalise inputs as ``(x - mean) / std``;
    the core applies them, so serving computes what training saw.
    """

    spec: Spec
    params: list[dict[str, np.ndarray]]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


_PRESETS = {
    "momentum": lambda: Spec(
        24, (Attention(8), Dense(16), Dense(8)), 3, name="momentum", labels=("down", "flat", "up")
    ),
    "reversal": lambda: Spec(
        32, (Dense(24), Dropout(0.2), Dense(12), Dense(6)), 3, name="reversal",
        labels=("down", "flat", "up"),
    ),
    "sentiment": lambda: Spec(
        48, (Attention(16), Dense(32), Dense(16), Dense(8)), 5, name="sentiment",
        labels=("strong_sell", "sell", "hold", "buy", "strong_buy"),
    ),
}

PRESETS = tuple(_PRESETS)


def preset(name: str) -> Spec:
    """The spec of a named preset: ``momentum``, ``reversal`` or ``sentiment``."""
    try:
        return _PRESETS[name]()
    except (KeyError, TypeError):
        raise SpecError(f"unknown preset {name!r}; choose one of {PRESETS}") from None
