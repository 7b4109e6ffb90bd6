"""Training a :class:`~pymicro.Spec` in tinygrad, into a :class:`~pymicro.Network` that freezes.

    result = pymicro.training.train.train(spec, X_train, y_train, X_val, y_val, epochs=50)
    pymicro.freeze(result.network, "model.pmb")

What the trainer does, exactly:

* **The network** mirrors the spec layer for layer: ``Dense`` is ``act(x @ W.T + b)``
  (gelu is the tanh approximation, as in :mod:`pymicro.runtime.reference`), ``Attention`` is
  ``a = softmax(x @ W_a.T + b_a); h = (a * x) @ W_v.T + b_v``, ``Dropout`` is inverted
  dropout in training and the identity otherwise, and the head's softmax is folded into
  the cross-entropy on its logits. Weights start from ``spec.init(seed)``.
* **Normalisation**: per-feature mean and standard deviation of the *training* split only
  (a constant feature gets std 1). The network trains on ``(x - mean) / std`` and the
  returned Network carries ``mean``/``std``, which the blob applies in the core.
* **Batches**: every epoch visits each training row once, in an order shuffled *within the
  training split* by a generator seeded from ``seed`` (``shuffle=False``: chronological).
  Validation rows are never trained on. The last, short batch is padded with rows of
  weight zero, so every row counts and the jitted step keeps one shape.
* **Loss**: class-weighted cross-entropy, ``sum(w[y] * -log p[y]) / sum(w[y])`` per batch
  (PyTorch's ``CrossEntropyLoss(weight=w)``). ``class_weight="balanced"`` gives
  ``w[c] = n / (n_classes * count[c])`` from the training labels (a class absent from
  training gets 1). Validation loss uses the same weights.
* **Optimiser**: Adam (tinygrad's, b1=0.9, b2=0.999, eps=1e-8), the whole step jitted
  with ``TinyJit`` and run inside ``Context(TRAINING=1)``.
* **Early stopping**: after each epoch the loss and accuracy of both splits are measured
  in eval mode (no dropout); when validation loss has not improved for ``patience``
  epochs training stops, and the weights of the best epoch are returned.
* **Repeatability**: the same seed, data and device give bit-identical weights
  (numpy-seeded init and shuffling, ``Tensor.manual_seed(seed)`` for dropout; this
  resets tinygrad's global random state).
* **Device and compiler**: :mod:`pymicro.training.toolchain` runs first (a C compiler for
  tinygrad's CPU device, falling back to a ziglang wrapper; ``DEV=CPU`` unless set). The
  device is ``device=`` if given, else ``$DEV`` if the user set it, else the first GPU
  backend tinygrad can open and run a kernel on (CUDA, NV, AMD, METAL), else CPU.
* **Speed**: all weights are one flat tensor (see :class:`TinyNet`), each epoch's rows
  are uploaded once and the jitted step slices its batch with a bound ``Variable``, so a
  step costs about 1 ms at batch 32 on a 2-core Zen 4 (about 36 kernel launches; tinygrad's
  CPU device spends ~20 µs of Python on each). ``JITBEAM=2`` in the environment makes
  tinygrad search for faster kernels: minutes of compiling, cached on disk.
* **Compiled once per shape and process**: tracing, scheduling and compiling a step costs
  seconds, far more than a small training itself. So the epoch and evaluation buffers are
  sized in power-of-four buckets of rows (the padding rows weigh zero and are never read by
  a step), and the jitted step, its network and optimiser are kept per process for each
  (layers, batch size, buckets, device): a later training of the same shapes loads its
  initial weights and a fresh Adam state into those buffers and replays the captured
  kernels (bit-identical to a fresh start; ``compile_cache=False`` turns this off and uses
  exact sizes). Dropout masks are drawn in numpy from the training generator, so a rate is
  data rather than a compiled constant. ``pad_to`` trains the network inside a larger one
  of the same layers, whose extra weights are zero and masked (inert, zero gradient), so
  networks of different widths share one compiled step (the tuner's trials); the result
  is cut back to the spec's shapes and computes the same function.
"""

from __future__ import annotations

import gc
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from pymicro.errors import TrainingError, require
from pymicro.runtime.activations import BY_NAME as ACTIVATIONS_BY_NAME
from pymicro.runtime.spec import Attention, Dense, Dropout, Network, Spec, _width_out
from pymicro.training import toolchain as _toolchain

EVAL_CHUNK = 4096  # rows per evaluation call

__all__ = ["TinyNet", "TrainResult", "class_weights", "clear_compiled", "compiled_engines", "normalization",
           "tinygrad_predict", "train"]


# ----------------------------------------------------------------------------- helpers

def _tinygrad():
    """Import tinygrad after the compiler and DEV are in place."""
    _toolchain.prepare()
    return require("tinygrad", "train", purpose="training")


def _tinygrad_version() -> str:
    try:
        from importlib.metadata import version

        return version("tinygrad")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return "unknown"


def class_weights(y, n_classes: int, class_weight="balanced") -> np.ndarray:
    """Per-class loss weights (float32, length ``n_classes``) from the *training* labels.

    ``"balanced"``: ``n / (n_classes * count[c])`` (scikit-learn's rule; a class that does
    not occur gets 1). ``None``: all ones. A sequence or ``{class: weight}`` dict: as given.
    """
    y = np.asarray(y)
    if class_weight is None:
        return np.ones(n_classes, np.float32)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise TrainingError(f"class_weight must be 'balanced', None, a sequence or a dict; got {class_weight!r}")
        counts = np.bincount(y.astype(np.int64), minlength=n_classes).astype(np.float64)
        w = np.ones(n_classes, np.float64)
        present = counts > 0
        w[present] = len(y) / (n_classes * counts[present])
        return w.astype(np.float32)
    if isinstance(class_weight, dict):
        w = np.ones(n_classes, np.float32)
        for c, v in class_weight.items():
            if not (isinstance(c, (int, np.integer)) and 0 <= c < n_classes):
                raise TrainingError(f"class_weight has key {c!r}; classes are 0..{n_classes - 1}")
            w[c] = v
    else:
        w = np.asarray(class_weight, np.float32)
        if w.shape != (n_classes,):
            raise TrainingError(f"class_weight has shape {w.shape}; it needs {n_classes} entries")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise TrainingError(f"class weights must be finite, >= 0 and not all 0; got {w.tolist()}")
    return w


def normalization(X_train) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float32) of the training rows; a constant feature gets std 1."""
    X = np.asarray(X_train, np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    mean32, std32 = mean.astype(np.float32), std.astype(np.float32)
    std32[~(std32 > 0)] = 1.0
    return mean32, std32


def _check_xy(X, y, spec: Spec, which: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != spec.input_size:
        raise TrainingError(f"X_{which} has shape {X.shape}; the spec needs (rows, {spec.input_size})")
    if X.shape[0] == 0:
        raise TrainingError(f"X_{which} has no rows")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TrainingError(f"X_{which} must be real numbers, got dtype {X.dtype}")
    X = X.astype(np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise TrainingError(f"X_{which}[{r}, {c}] is {X[r, c]}; drop or fill non-finite rows before training")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise TrainingError(f"y_{which} has shape {y.shape}; it needs one label per row of X_{which} ({len(X)},)")
    if not np.issubdtype(y.dtype, np.number) or np.any(np.asarray(y, np.float64) != np.round(np.asarray(y, np.float64))):
        raise TrainingError(f"y_{which} must hold integer class indices, got dtype {y.dtype}")
    yi = y.astype(np.int64)
    if yi.min() < 0 or yi.max() >= spec.n_classes:
        i = int(np.argmax((yi < 0) | (yi >= spec.n_classes)))
        raise TrainingError(f"y_{which}[{i}] is {yi[i]}; labels must be in 0..{spec.n_classes - 1}")
    return np.ascontiguousarray(X), yi


# ----------------------------------------------------------------------------- the net

class TinyNet:
    """The tinygrad mirror of a :class:`Network`: same tensors, same math.

    All weights live in one flat float32 tensor (``flat``, blob order: layer by layer,
    ``W`` then ``b``, or ``W_a, b_a, W_v, b_v``), and each layer's tensors are views into
    it. One parameter tensor means one Adam update and far fewer kernels per step than one
    tensor per weight (tinygrad's CPU device pays ~20 µs of Python per kernel launch).
    Each view carries ``contiguous_backward`` so its gradient is reduced on its own
    before being scattered into the flat gradient (without it tinygrad fuses all the
    weight-gradient reductions into one slow kernel). ``__call__`` returns the head's
    logits for normalised inputs; :meth:`probabilities` normalises and applies the softmax.
    """

    def __init__(self, network: Network, device: str | None = None, mask: np.ndarray | None = None):
        tg = _tinygrad()
        Tensor = tg.Tensor
        self.spec = network.spec
        self.device = _toolchain.select_device(device)
        self.layout: list[list[tuple[str, tuple[int, ...], int]]] = []
        chunks, offset = [], 0
        for layer in network.params:
            entries = []
            for key, value in layer.items():
                a = np.ascontiguousarray(value, np.float32)
                entries.append((key, a.shape, offset))
                chunks.append(a.ravel())
                offset += a.size
            self.layout.append(entries)
        self.flat = Tensor(np.concatenate(chunks), device=self.device).realize()
        # ``mask`` (0/1, like ``flat``): weights the forward pass multiplies by, so masked weights
        # are inert and get a zero gradient (a network zero-padded to a larger shape, see train()).
        self.mask = None if mask is None else Tensor(np.asarray(mask, np.float32), device=self.device).realize()
        self.mean = None if network.mean is None else Tensor(np.asarray(network.mean, np.float32), device=self.device)
        self.std = None if network.std is None else Tensor(np.asarray(network.std, np.float32), device=self.device)
        plan, i = [], 0
        for layer in (*self.spec.layers, self.spec.head):
            if isinstance(layer, Dropout):
                plan.append(("dropout", float(layer.p), None))
            elif isinstance(layer, Attention):
                plan.append(("attention", None, i))
                i += 1
            else:
                assert isinstance(layer, Dense)
                plan.append(("dense", layer.activation, i))
                i += 1
        self.plan = plan

    def parameters(self) -> list:
        """The trainable tensors (one flat tensor holding every weight)."""
        return [self.flat]

    @property
    def n_params(self) -> int:
        return sum(int(t.numel()) for t in self.parameters())

    def views(self) -> list[dict]:
        """One dict per weighted layer of tinygrad views into ``flat``, shaped as in the Network."""
        out = []
        flat = self.flat if self.mask is None else self.flat * self.mask
        for entries in self.layout:
            layer = {}
            for key, shape, offset in entries:
                n = int(np.prod(shape))
                layer[key] = flat[offset:offset + n].reshape(shape).contiguous_backward()
            out.append(layer)
        return out

    def __call__(self, x, dropout_masks=None):
        """Logits for already-normalised inputs ``x`` (batch, input_size).

        ``dropout_masks``: None (evaluation: dropout is the identity) or one tensor per Dropout
        layer, shaped like its input, holding ``keep / (1 - p)`` (drawn by the caller, so the
        rate is data, not a compiled constant)."""
        params = self.views()
        h = x
        d = 0
        for kind, arg, i in self.plan:
            if kind == "dropout":
                if dropout_masks is not None:
                    h = h * dropout_masks[d]
                d += 1
            elif kind == "attention":
                p = params[i]
                a = (h @ p["W_a"].T + p["b_a"]).softmax(-1)
                h = (a * h) @ p["W_v"].T + p["b_v"]
            else:
                p = params[i]
                h = _activate(h @ p["W"].T + p["b"], arg)
        return h

    def normalize(self, x):
        return x if self.mean is None else (x - self.mean) / self.std

    def probabilities(self, x):
        return self(self.normalize(x)).softmax(-1)

    def numpy_params(self) -> list[dict[str, np.ndarray]]:
        """The current weights as the Network's list of dicts of float32 arrays."""
        flat = self.flat.numpy()
        return [{key: flat[offset:offset + int(np.prod(shape))].reshape(shape).copy()
                 for key, shape, offset in entries} for entries in self.layout]

    def to_network(self, mean=None, std=None) -> Network:
        return Network(self.spec, self.numpy_params(), mean, std)


def _activate(z, activation: str):
    act = ACTIVATIONS_BY_NAME.get(activation)  # pymicro/activations.py
    if act is None:
        raise TrainingError(f"unknown activation {activation!r}")
    return act.tinygrad(z)


# ----------------------------------------------------------------------------- result

@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``network`` is ready for :func:`pymicro.freeze` (best-epoch weights, training-split
    normalisation). ``history`` has one entry per epoch run under ``train_loss``,
    ``val_loss``, ``train_acc``, ``val_acc`` (eval mode, class-weighted losses, plain
    accuracies) and ``seconds`` (wall time of that epoch, evaluation included).
    ``best_epoch`` is 1-based. ``seconds_per_epoch`` is the median epoch time (the first
    epoch, which compiles the kernels, counts only when fewer than 3 ran).
    """

    network: Network
    history: dict[str, list[float]]
    best_epoch: int
    seconds: float
    seconds_per_epoch: float
    device: str
    epochs_run: int = 0
    stopped_early: bool = False
    class_weights: np.ndarray | None = None
    compiler: str | None = None
    settings: dict = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        """The history's metrics at the best epoch."""
        i = self.best_epoch - 1
        return {k: v[i] for k, v in self.history.items()}


# ----------------------------------------------------------------------------- compiled steps

MIN_ROWS_BUCKET = 1024  # the smallest epoch buffer (rows); buffers grow in powers of four
MAX_ENGINES = 16  # compiled training engines kept per process (least recently used dropped)


def _bucket(rows: int, floor: int) -> int:
    """The power of four >= max(rows, floor) (floor a power of four): buffer shapes come from a few
    buckets, not the data size (a larger buffer costs only memory: steps never read its padding)."""
    b = int(floor)
    while b < rows:
        b *= 4
    return b


def _layer_key(layer) -> tuple:
    if isinstance(layer, Dropout):
        return ("dropout",)  # the rate travels as data (the masks), not in the kernels
    if isinstance(layer, Attention):
        return ("attention", int(layer.k))
    return ("dense", int(layer.out), str(layer.activation))


def _align(spec: Spec, padded: Spec) -> list[float]:
    """Check that ``padded`` holds ``spec`` (the same layers in order, each at least as wide; a Dropout
    of ``padded`` may stand where ``spec`` has none) and return each padded Dropout's rate (0: none)."""
    def bad(why):
        return TrainingError(f"pad_to {padded.describe()} cannot hold {spec.describe()}: {why}")

    if padded.input_size != spec.input_size or padded.n_classes != spec.n_classes:
        raise bad("inputs and classes must be equal")
    if padded.head.activation != spec.head.activation:
        raise bad("the heads differ")
    rates, j, real = [], 0, list(spec.layers)
    for layer in padded.layers:
        r = real[j] if j < len(real) else None
        if isinstance(layer, Dropout):
            if isinstance(r, Dropout):
                rates.append(float(r.p))
                j += 1
            else:
                rates.append(0.0)
            continue
        if r is None or type(r) is not type(layer):
            raise bad(f"layer {j} is {r!r}, padded {layer!r}")
        if isinstance(layer, Dense) and (r.activation != layer.activation or r.out > layer.out):
            raise bad(f"layer {j}: {r!r} does not fit {layer!r}")
        if isinstance(layer, Attention) and r.k > layer.k:
            raise bad(f"layer {j}: {r!r} does not fit {layer!r}")
        j += 1
    if j != len(real):
        raise bad(f"layers {real[j:]} have no place")
    for (lr, n_in, _), (lp, p_in, _) in zip(spec.weighted_layers(), padded.weighted_layers()):
        if isinstance(lr, Attention) and n_in != p_in:
            raise bad("an attention layer's input cannot be padded (its softmax would see the padding)")
    return rates


def _embed(network: Network, padded: Spec) -> tuple[list[dict], np.ndarray]:
    """``network``'s weights zero-padded into ``padded``'s shapes, and the 0/1 mask of the real ones
    (flat, blob order)."""
    params, mask = [], []
    for got, want in zip(network.params, padded.init(0).params):
        layer = {}
        for key, shape_like in want.items():
            a = np.zeros(shape_like.shape, np.float32)
            m = np.zeros(shape_like.shape, np.float32)
            v = np.asarray(got[key], np.float32)
            sl = tuple(slice(0, d) for d in v.shape)
            a[sl] = v
            m[sl] = 1.0
            layer[key] = a
            mask.append(m.ravel())
        params.append(layer)
    return params, np.concatenate(mask)


def _cut(params: list[dict], spec: Spec) -> list[dict]:
    """Padded weights back to ``spec``'s shapes."""
    out = []
    for got, want in zip(params, spec.init(0).params):
        out.append({k: np.ascontiguousarray(got[k][tuple(slice(0, d) for d in v.shape)]) for k, v in want.items()})
    return out


class _Engine:
    """One compiled training setup: a :class:`TinyNet`, its Adam and the jitted step and evaluation
    functions, for one network shape, batch size, buffer sizes and device. A later training of the
    same shapes loads its own weights and a fresh optimiser state into the same buffers and replays
    the captured kernels: no tracing, scheduling or compiling (which cost seconds per shape)."""

    def __init__(self, spec: Spec, dev: str, bs: int, capacity: int, eval_capacity: int, chunk: int,
                 masked: bool, rule_weight: float):
        from tinygrad import Tensor, TinyJit, Variable
        from tinygrad.nn.optim import Adam

        self.spec, self.dev, self.bs, self.capacity = spec, dev, bs, capacity
        self.eval_capacity = eval_capacity
        self.chunk = chunk
        start = spec.init(0)
        mask = None
        if masked:
            mask = np.concatenate([np.asarray(v, np.float32).ravel() for p in start.params for v in p.values()])
        self.net = net = TinyNet(start, dev, mask=mask)
        self.opt = opt = Adam(net.parameters(), lr=1e-3)
        # the optimiser's state as realized buffers from the start (Adam makes them lazily): load()
        # then writes them in place, with no kernel to compile (which a Dask worker thread must not do:
        # tinygrad's compile cache is a SQLite connection bound to the thread that opened it)
        opt.m = [Tensor(np.zeros(t.shape, np.float32), device=dev).realize() for t in opt.m]
        opt.v = [Tensor(np.zeros(t.shape, np.float32), device=dev).realize() for t in opt.v]
        opt.b1_t, opt.b2_t = (Tensor(np.ones(t.shape, np.float32), device=dev).realize() for t in (opt.b1_t, opt.b2_t))
        opt.lr = Tensor(np.full(opt.lr.shape, 1e-3, np.float32), device=dev).realize()
        self.step_var = Variable("pymicro_step", 0, capacity // bs - 1)
        self.chunk_var = Variable("pymicro_chunk", 0, eval_capacity // self.chunk - 1)
        self.busy = False
        self.uses = 0
        chunk = self.chunk

        @TinyJit
        def train_step(x_epoch, yw_epoch, i, *drops):
            x = x_epoch.shrink(((i * bs, i * bs + bs), None))
            yw = yw_epoch.shrink(((i * bs, i * bs + bs), None))
            d = [m.shrink(((i * bs, i * bs + bs), None)) for m in drops]
            loss = -(net(x, d).log_softmax(-1) * yw).sum()
            opt.zero_grad()
            loss.backward()
            Tensor.realize(loss, *opt.schedule_step())
            return loss

        @TinyJit
        def train_step_rules(x_epoch, yw_epoch, rm_epoch, i, *drops):
            x = x_epoch.shrink(((i * bs, i * bs + bs), None))
            yw = yw_epoch.shrink(((i * bs, i * bs + bs), None))
            rm = rm_epoch.shrink(((i * bs, i * bs + bs), None))
            d = [m.shrink(((i * bs, i * bs + bs), None)) for m in drops]
            logits = net(x, d)
            loss = -(logits.log_softmax(-1) * yw).sum() + float(rule_weight) * (logits.softmax(-1) * rm).sum()
            opt.zero_grad()
            loss.backward()
            Tensor.realize(loss, *opt.schedule_step())
            return loss

        @TinyJit
        def logits_chunk(x_all, j):
            return net(x_all.shrink(((j * chunk, j * chunk + chunk), None))).realize()

        self.train_step, self.train_step_rules, self.logits_chunk = train_step, train_step_rules, logits_chunk

    def _write(self, t, values: np.ndarray) -> None:
        """Overwrite the realized tensor ``t``'s buffer (the one the captured kernels use) with ``values``:
        straight into host memory where the device allows it (the CPU device: no kernel, nothing to
        compile, safe from any thread), else with an assign."""
        from tinygrad import Tensor

        values = np.ascontiguousarray(values, np.float32).reshape(t.shape)
        try:
            buf = t.uop.buffer
            if hasattr(buf.allocator, "_as_buffer") and buf.dtype.itemsize == 4 and buf.size == values.size:
                view = np.frombuffer(buf.as_memoryview(force_zero_copy=True), dtype=np.float32)
                view[:] = values.ravel()
                return
        except Exception:  # noqa: BLE001 - any device without host-visible memory: the assign below
            pass
        t.assign(Tensor(values, device=self.dev, dtype=t.dtype)).realize()

    def load(self, params: list[dict], mask: np.ndarray | None, learning_rate: float) -> None:
        """Start a training: these weights (and mask), Adam's moments at zero, its step count at 0."""
        flat = np.concatenate([np.asarray(v, np.float32).ravel() for p in params for v in p.values()])
        self._write(self.net.flat, flat)
        if mask is not None:
            self._write(self.net.mask, mask)
        opt = self.opt
        for t in (*opt.m, *opt.v):
            self._write(t, np.zeros(t.shape, np.float32))
        for t in (opt.b1_t, opt.b2_t):
            self._write(t, np.ones(t.shape, np.float32))
        self.set_lr(learning_rate)

    def set_lr(self, lr: float) -> None:
        self._write(self.opt.lr, np.full(self.opt.lr.shape, lr, np.float32))

    def logits(self, x_all, rows: int) -> np.ndarray:
        parts = [self.logits_chunk(x_all, self.chunk_var.bind(j)).numpy() for j in range(-(-rows // self.chunk))]
        return np.concatenate(parts)[:rows]


_ENGINES: OrderedDict = OrderedDict()
_ENGINE_STATS = {"built": 0, "reused": 0}


def compiled_engines() -> dict:
    """How many compiled training engines this process built and reused (and holds now)."""
    return {**_ENGINE_STATS, "held": len(_ENGINES)}


def clear_compiled() -> None:
    """Drop this process's compiled training engines (the next training compiles again)."""
    _ENGINES.clear()


def _engine(spec: Spec, dev: str, bs: int, capacity: int, eval_capacity: int, chunk: int, masked: bool,
            rule_weight: float, cache: bool) -> _Engine:
    key = (spec.input_size, tuple(_layer_key(x) for x in spec.layers), _layer_key(spec.head), spec.n_classes,
           dev, bs, capacity, eval_capacity, chunk, masked, rule_weight)
    e = _ENGINES.get(key) if cache else None
    if e is not None and not e.busy:  # busy: a training inside a progress callback of another
        _ENGINES.move_to_end(key)
        _ENGINE_STATS["reused"] += 1
        return e
    e = _Engine(spec, dev, bs, capacity, eval_capacity, chunk, masked, rule_weight)
    _ENGINE_STATS["built"] += 1
    if cache and key not in _ENGINES:
        _ENGINES[key] = e
        while len(_ENGINES) > MAX_ENGINES:
            _ENGINES.popitem(last=False)
    return e


# ----------------------------------------------------------------------------- training

def _weighted_targets(y: np.ndarray, w: np.ndarray, n_classes: int) -> np.ndarray:
    yw = np.zeros((len(y), n_classes), np.float32)
    yw[np.arange(len(y)), y] = w[y]
    return yw


def _eval_metrics(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    sw = w[y].astype(np.float64)
    loss = float(-(sw * logp[np.arange(len(y)), y]).sum() / max(sw.sum(), 1e-30))
    acc = float((logits.argmax(axis=1) == y).mean())
    return loss, acc


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused around training steps (reference counting goes on).

    tinygrad's ``backward`` iterates its global registry of live tensors while
    ``Tensor.__del__`` pops from it; a cyclic collection in the middle (any allocation can
    trigger one, in any thread: a Dask worker's event loop too) finalises tensors of old
    graphs and raises "dictionary changed size during iteration" (seen in federated rounds on
    Dask workers). The pause is process-wide, short (one epoch's steps) and restored."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

def train(spec: Spec, X_train, y_train, X_val, y_val, *, epochs: int = 100, batch_size: int = 32,
          learning_rate: float = 1e-3, seed: int = 0, patience: int | None = 10,
          class_weight="balanced", progress: Callable[[int, int, dict], None] | None = None,
          shuffle: bool = True, device: str | None = None, rule_mask=None,
          rule_weight: float = 0.0, init: Network | None = None,
          lr_schedule: str | None = None, pad_to: Spec | None = None,
          compile_cache: bool = True, batch_rows: int | None = None) -> TrainResult:
    """Train ``spec`` on the given splits and return the best-validation-loss network.

    ``X_*``: (rows, spec.input_size) real arrays, raw (normalisation is learnt here from
    ``X_train``). ``y_*``: integer class indices. ``patience``: epochs without a better
    validation loss before stopping (None: run every epoch). ``progress(epoch, total,
    metrics)`` is called after each epoch (epoch is 1-based). ``device``: a tinygrad device
    name, "auto" or None (``$DEV`` if set, else a GPU tinygrad can use, else CPU).
    See the module docstring for the exact procedure.

    ``rule_mask`` (train rows x classes, 0/1) and ``rule_weight``: the reasoning-aware loss
    (see :mod:`pymicro.training.reasoning_loss`): each batch's loss gains ``rule_weight`` times the
    mean probability the network puts on classes a domain rule says contradict it. Early
    stopping still watches the plain validation cross-entropy.

    ``init`` (warm start, for fine-tuning): a Network of this spec whose weights training
    starts from instead of ``spec.init(seed)``; its ``mean``/``std``, when it has them, are
    kept (the weights were learnt on inputs scaled that way) instead of re-estimated.
    ``lr_schedule="cosine"``: epoch ``e`` of ``E`` trains at
    ``learning_rate * (1 + cos(pi * (e - 1) / E)) / 2``; None keeps it constant.
    Federated rounds start from the averaged weights the same way (the nodes share one
    normalisation).

    ``pad_to``: a Spec of the same layers, each at least as wide (a Dropout may stand where the
    spec has none), in which the network is trained with its extra weights masked to zero (see
    the module docstring). ``compile_cache``: reuse this process's compiled step for these
    shapes (default); False compiles afresh with exact buffer sizes. ``batch_rows`` (>= batch_size):
    the compiled step's rows; each batch of ``batch_size`` rows is padded with rows of weight zero
    (the same loss and gradient), so trainings of different batch sizes can share one compiled step.
    """
    if not isinstance(spec, Spec):
        raise TrainingError(f"train() needs a pymicro Spec (e.g. pymicro.preset('momentum')), got {type(spec).__name__}")
    for name, value, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
            raise TrainingError(f"{name} must be an int >= {lo}, got {value!r}")
    if batch_rows is not None and (isinstance(batch_rows, bool) or not isinstance(batch_rows, (int, np.integer))
                                   or batch_rows < batch_size):
        raise TrainingError(f"batch_rows must be None or an int >= batch_size ({batch_size!r}), got {batch_rows!r}")
    if patience is not None and (not isinstance(patience, (int, np.integer)) or patience < 1):
        raise TrainingError(f"patience must be an int >= 1 or None, got {patience!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise TrainingError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TrainingError(f"seed must be an int >= 0, got {seed!r}")
    Xtr, ytr = _check_xy(X_train, y_train, spec, "train")
    Xva, yva = _check_xy(X_val, y_val, spec, "val")
    if not (isinstance(rule_weight, (int, float)) and math.isfinite(rule_weight) and rule_weight >= 0):
        raise TrainingError(f"rule_weight must be a finite number >= 0, got {rule_weight!r}")
    penalised = rule_weight > 0
    if penalised:
        mask_rules = np.asarray(rule_mask, dtype=np.float32) if rule_mask is not None else None
        if mask_rules is None or mask_rules.shape != (len(Xtr), spec.n_classes) or \
                not np.isin(mask_rules, (0, 1)).all():
            raise TrainingError(f"rule_weight > 0 needs rule_mask of 0/1 with shape ({len(Xtr)}, {spec.n_classes})")
    if lr_schedule not in (None, "cosine"):
        raise TrainingError(f"lr_schedule must be None or 'cosine', got {lr_schedule!r}")
    if init is not None:
        if not isinstance(init, Network) or len(init.params) != len(spec.weighted_layers()) or any(
                {k: v.shape for k, v in got.items()} != {k: v.shape for k, v in want.items()}
                for got, want in zip(init.params, spec.init(0).params)):
            raise TrainingError("init must be a Network with the spec's layer shapes (the parent's architecture)")
    weights = class_weights(ytr, spec.n_classes, class_weight)

    t_start = time.perf_counter()
    _tinygrad()
    from tinygrad import Context, Tensor

    if pad_to is not None and not isinstance(pad_to, Spec):
        raise TrainingError(f"pad_to must be a pymicro Spec or None, got {type(pad_to).__name__}")
    shape = spec if pad_to is None else pad_to
    rates = _align(spec, shape)  # each Dropout of the network trained: its rate
    dev = _toolchain.select_device(device)
    if init is not None and (not isinstance(init, Network) or init.spec != spec):
        raise TrainingError("init must be a Network of the same spec as the one being trained")
    if init is not None and init.mean is not None and init.std is not None:
        mean, std = np.asarray(init.mean, np.float32), np.asarray(init.std, np.float32)
    else:
        mean, std = normalization(Xtr)
    Xtr_n = ((Xtr - mean) / std).astype(np.float32)
    Xva_n = ((Xva - mean) / std).astype(np.float32)

    Tensor.manual_seed(int(seed))
    rng = np.random.default_rng(int(seed))
    start = spec.init(seed=int(seed)) if init is None else init
    if pad_to is None:
        start_params, mask = [{k: np.array(v, np.float32) for k, v in p.items()} for p in start.params], None
    else:
        start_params, mask = _embed(start, shape)

    n, bs = len(Xtr_n), int(batch_size)
    steps = -(-n // bs)
    B = bs if batch_rows is None else int(batch_rows)  # rows of the compiled step: bs real, B - bs weigh 0
    # where each of the epoch's rows goes: batch i of bs rows at rows i * B .. i * B + bs
    place = np.arange(n) // bs * B + np.arange(n) % bs
    # Buffer sizes come from power-of-four buckets (and the step index's range from them), so
    # trainings on a few more or fewer rows share one compiled step (see _Engine).
    # compile_cache=False: exact sizes and a new engine each time (what every training did before).
    if compile_cache:
        capacity = -(-_bucket(max(steps, 2) * B, MIN_ROWS_BUCKET) // B) * B
        eval_capacity = _bucket(max(len(Xtr_n), len(Xva_n)), MIN_ROWS_BUCKET)
        chunk = min(EVAL_CHUNK, eval_capacity // 2)
    else:
        capacity = max(steps, 2) * B
        chunk = min(EVAL_CHUNK, -(-max(len(Xtr_n), len(Xva_n)) // 32) * 32)
        eval_capacity = max(-(-len(Xtr_n) // chunk), -(-len(Xva_n) // chunk), 2) * chunk
    engine = _engine(shape, dev, B, capacity, eval_capacity, chunk, mask is not None,
                     float(rule_weight) if penalised else 0.0, compile_cache)
    engine.busy = True
    try:
        engine.load(start_params, mask, float(learning_rate))
        net = engine.net
        yw_train = _weighted_targets(ytr, weights, spec.n_classes)
        widths = []  # the input width of each Dropout of the trained network: (padded, real)
        w_pad, w_real = shape.input_size, spec.input_size
        real_layers = iter(spec.layers)
        for layer in shape.layers:
            if isinstance(layer, Dropout):
                widths.append((w_pad, w_real))
                continue
            r = next(real_layers)
            while isinstance(r, Dropout):
                r = next(real_layers)
            w_pad, w_real = _width_out(layer, w_pad), _width_out(r, w_real)

        def padded(a: np.ndarray):
            out = np.zeros((eval_capacity, a.shape[1]), np.float32)
            out[:len(a)] = a
            return Tensor(out, device=dev).realize()

        xt_all, xv_all = padded(Xtr_n), padded(Xva_n)

        history: dict[str, list[float]] = {k: [] for k in ("train_loss", "val_loss", "train_acc", "val_acc",
                                                            "seconds")}
        best_loss, best_epoch, best_params, since_best = math.inf, 0, None, 0
        stopped_early = False
        epoch = 0
        for epoch in range(1, int(epochs) + 1):
            t_epoch = time.perf_counter()
            if lr_schedule == "cosine":  # the jitted step reads opt.lr from its buffer
                engine.set_lr(learning_rate * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2)
            order = rng.permutation(n) if shuffle else np.arange(n)
            x_epoch = np.zeros((capacity, spec.input_size), np.float32)
            yw_epoch = np.zeros((capacity, spec.n_classes), np.float32)
            x_epoch[place] = Xtr_n[order]
            yw_epoch[place] = yw_train[order]
            batch_weight = yw_epoch.reshape(-1, B, spec.n_classes).sum(axis=(1, 2))
            yw_epoch /= np.where(batch_weight > 0, batch_weight, 1.0).repeat(B)[:, None]
            x_dev, yw_dev = Tensor(x_epoch, device=dev).realize(), Tensor(yw_epoch, device=dev).realize()
            drops = []
            for p, (w_pad, w_real) in zip(rates, widths):
                m = np.ones((capacity, w_pad), np.float32)
                if p > 0:  # drawn for the real width only, so padding does not change the draws
                    m[place, :w_real] = (rng.random((n, w_real)) >= p).astype(np.float32) / np.float32(1.0 - p)
                drops.append(Tensor(m, device=dev).realize())
            if penalised:
                rm_epoch = np.zeros((capacity, spec.n_classes), np.float32)
                rm_epoch[place] = mask_rules[order]
                real = np.zeros(capacity, np.float32)
                real[place] = 1.0
                rm_epoch /= np.maximum(real.reshape(-1, B).sum(axis=1), 1.0).repeat(B)[:, None]
                rm_dev = Tensor(rm_epoch, device=dev).realize()
            with Context(TRAINING=1), _cyclic_gc_paused():
                for s in range(steps):
                    if penalised:
                        engine.train_step_rules(x_dev, yw_dev, rm_dev, engine.step_var.bind(s), *drops)
                    else:
                        engine.train_step(x_dev, yw_dev, engine.step_var.bind(s), *drops)
            with Context(TRAINING=0):
                tr_logits = engine.logits(xt_all, len(Xtr_n))
                va_logits = engine.logits(xv_all, len(Xva_n))
            tr_loss, tr_acc = _eval_metrics(tr_logits, ytr, weights)
            va_loss, va_acc = _eval_metrics(va_logits, yva, weights)
            if not (math.isfinite(tr_loss) and math.isfinite(va_loss)):
                raise TrainingError(f"training diverged at epoch {epoch} (loss {tr_loss}, val loss {va_loss}); "
                                    f"lower learning_rate (now {learning_rate})")
            seconds = time.perf_counter() - t_epoch
            for k, v in (("train_loss", tr_loss), ("val_loss", va_loss), ("train_acc", tr_acc),
                         ("val_acc", va_acc), ("seconds", seconds)):
                history[k].append(v)
            if va_loss < best_loss:
                best_loss, best_epoch, since_best = va_loss, epoch, 0
                best_params = net.numpy_params()
            else:
                since_best += 1
            if progress is not None:
                progress(epoch, int(epochs), {"train_loss": tr_loss, "val_loss": va_loss, "train_acc": tr_acc,
                                              "val_acc": va_acc, "seconds": seconds, "best_epoch": best_epoch})
            if patience is not None and since_best >= patience:
                stopped_early = epoch < epochs
                break
    finally:
        engine.busy = False
        engine.uses += 1
    if pad_to is not None:
        best_params = _cut(best_params, spec)

    network = Network(spec, best_params, mean, std)
    total = time.perf_counter() - t_start
    times = history["seconds"]
    per_epoch = float(np.median(times[1:] if len(times) >= 3 else times))
    return TrainResult(
        network=network, history=history, best_epoch=best_epoch, seconds=total,
        seconds_per_epoch=per_epoch, device=dev, epochs_run=epoch, stopped_early=stopped_early,
        class_weights=weights, compiler=_toolchain.compiler_kind(),
        settings={"epochs": int(epochs), "batch_size": bs, "learning_rate": float(learning_rate),
                  "seed": int(seed), "patience": patience, "shuffle": bool(shuffle),
                  "rule_weight": float(rule_weight), "warm_start": init is not None, "batch_rows": B,
                  "lr_schedule": lr_schedule, "pad_to": None if pad_to is None else pad_to.describe(),
                  "class_weight": class_weight if isinstance(class_weight, (str, type(None))) else "custom",
                  "tinygrad": _tinygrad_version()})


def tinygrad_predict(result_or_model, X, *, device: str | None = None) -> np.ndarray:
    """Class probabilities of raw rows ``X`` computed by tinygrad itself (float32).

    Takes a :class:`TrainResult`, a :class:`Network` or a :class:`TinyNet`; applies the
    network's normalisation and softmax as the blob does. For parity checks against the
    frozen blob.
    """
    if isinstance(result_or_model, TrainResult):
        result_or_model = result_or_model.network
    if isinstance(result_or_model, Network):
        model = TinyNet(result_or_model, device)
    elif isinstance(result_or_model, TinyNet):
        model = result_or_model
    else:
        raise TrainingError(f"tinygrad_predict takes a TrainResult, Network or TinyNet, got {type(result_or_model).__name__}")
    X = np.asarray(X, np.float32)
    single = X.ndim == 1
    X2 = X.reshape(1, -1) if single else X
    if X2.ndim != 2 or X2.shape[1] != model.spec.input_size:
        raise TrainingError(f"X has shape {X.shape}; the network takes (rows, {model.spec.input_size})")
    from tinygrad import Context, Tensor

    with Context(TRAINING=0):
        probs = model.probabilities(Tensor(np.ascontiguousarray(X2), device=model.device)).numpy()
    return probs[0] if single else probs
