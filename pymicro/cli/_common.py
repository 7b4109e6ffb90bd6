"""What several subcommands print: the short form of a spec, a training progress bar, the figures table."""

from __future__ import annotations

import numpy as np

from pymicro.errors import InputError, require
from pymicro.tables import table


def load_rows(path) -> np.ndarray:
    """The array in a .npy file (no pickles), or an InputError naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {str(path)!r} as a .npy array: {e}") from None


def probability_rows(labels, probs) -> tuple[list, list]:
    """(header, rows) of a probability table: the row, each class's probability, the top class."""
    body = [[i, *(f"{p:.4f}" for p in r), labels[int(np.argmax(r))]] for i, r in enumerate(np.atleast_2d(probs))]
    return ["row", *labels, "class"], body

def _short(spec) -> str:
    """'24 > att8 > 16 > 8 > 3' for the momentum preset."""
    from pymicro.runtime.spec import Attention, Dense

    parts = [str(spec.input_size)]
    for layer in spec.layers:
        if isinstance(layer, Attention):
            parts.append(f"att{layer.k}")
        elif isinstance(layer, Dense):
            parts.append(str(layer.out) + ("" if layer.activation == "relu" else f" {layer.activation}"))
    return " > ".join(parts + [str(spec.n_classes)])


def _progress_bar(total: int, desc: str):
    """A tqdm bar and a trainer callback that advances it."""
    tqdm = require("tqdm", "train", purpose="progress bars").tqdm

    bar = tqdm(total=total, desc=desc, unit="epoch", leave=True)

    def update(epoch: int, epochs: int, metrics: dict) -> None:
        bar.total = epochs
        bar.update(epoch - bar.n)
        bar.set_postfix(train_loss=f"{metrics['train_loss']:.3f}", val_loss=f"{metrics['val_loss']:.3f}",
                        val_acc=f"{metrics['val_acc']:.3f}")

    return bar, update


def _performance_table(perf: dict) -> str:
    lo, hi = perf["accuracy_ci"]
    rows = [["model (native runtime)", f"{perf['accuracy']:.1%}", f"{lo:.1%} - {hi:.1%}",
             f"{perf['balanced_accuracy']:.1%}"],
            [f"majority class ({perf['labels'][perf['majority_class']]})", f"{perf['majority_accuracy']:.1%}", "",
             f"{perf['majority_balanced_accuracy']:.1%}"]]
    text = table(["out-of-sample", "accuracy", "95% CI", "balanced acc."], rows)
    text += (f"\n{perf['n']} test rows; p-value of beating the majority class: "
             f"{perf.get('p_value', perf['p_value_vs_majority']):.3f} ({perf.get('p_value_method', 'binomial')}); "
             f"CI: {perf.get('ci_method', 'Wilson')}")
    if perf.get("test_class_frequencies"):
        text += "\ntest-split class frequencies: " + ", ".join(
            f"{lab} {f:.1%}" for lab, f in zip(perf["labels"], perf["test_class_frequencies"]))
    if perf.get("per_symbol"):
        text += "\n\n" + table(["symbol", "test rows", "accuracy", "majority", "balanced acc."],
                                [[s, v["n"], f"{v['accuracy']:.1%}", f"{v['majority_accuracy']:.1%}",
                                  f"{v['balanced_accuracy']:.1%}"] for s, v in perf["per_symbol"].items()])
    return text


def add_store_argument(parser, what: str = "") -> None:
    """The model store option every registry command shares (one help text, one default)."""
    parser.add_argument("--store", help=f"model store folder{what} (default: $PYMICRO_HOME/models; "
                                        "PYMICRO_HOME defaults to ~/.pymicro)")
