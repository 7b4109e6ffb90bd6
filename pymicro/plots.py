"""Plots of training runs (matplotlib, optional: ``pip install matplotlib``)."""

from __future__ import annotations

import os
from pathlib import Path

from pymicro.errors import PymicroError, require


def _pyplot():
    matplotlib = require("matplotlib", "plots", purpose="plotting")
    matplotlib.use("Agg", force=True)  # files only: never a window, works without a display
    import matplotlib.pyplot as plt

    return plt


def plot_history(history, path: str | os.PathLike, *, title: str | None = None, best_epoch: int | None = None) -> Path:
    """Write a PNG of the loss and accuracy curves of a training run; return its path.

    ``history`` is a :class:`pymicro.training.train.TrainResult` or its ``history`` dict
    (``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``: one value per epoch).
    ``best_epoch`` (1-based; taken from a TrainResult) is marked on both panels.
    """
    if hasattr(history, "history"):
        best_epoch = best_epoch if best_epoch is not None else getattr(history, "best_epoch", None)
        history = history.history
    needed = ("train_loss", "val_loss", "train_acc", "val_acc")
    missing = [k for k in needed if k not in history]
    if missing:
        raise PymicroError(f"history lacks {missing}; it needs per-epoch lists of {needed}")
    lengths = {len(history[k]) for k in needed}
    if len(lengths) != 1 or 0 in lengths:
        raise PymicroError(f"history lists must be non-empty and of one length, got {sorted(lengths)}")
    plt = _pyplot()
    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    try:
        ax_loss.plot(epochs, history["train_loss"], label="train")
        ax_loss.plot(epochs, history["val_loss"], label="validation")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("cross-entropy (class-weighted)")
        ax_loss.set_title("loss")
        ax_acc.plot(epochs, history["train_acc"], label="train")
        ax_acc.plot(epochs, history["val_acc"], label="validation")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_title("accuracy")
        for ax in (ax_loss, ax_acc):
            if best_epoch:
                ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
