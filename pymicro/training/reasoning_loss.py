"""The seed's reasoning-aware loss, made concrete, and an honest ablation of it.

The seed adds ``0.1 * (1 - confidence)`` of an external reasoner to the cross-entropy. Here
the "domain reasoning" is a stated rule per preset, computed from the row's own features
(so it is causal and reproducible), and the penalty is the probability mass the network
puts on the classes that rule says are contradicted:

    loss = CE(y, p) + w * mean_rows( sum_c p_c * contradicts(rule(x), c) )

Rules (signal +1 = expect up, -1 = expect down, 0 = no opinion):

* momentum: trend following, +1 when ``ret_20 > 0`` and ``sma_dist_50 > 0``, -1 when both < 0;
* reversal: mean reversion, -1 when ``zscore_close_20 > 2`` (stretched up), +1 when < -2;
* sentiment: +1 when ``momentum_score > 0`` and ``signal_agreement_score > 0``, -1 when both < 0.

A +1 signal contradicts the down classes (down; strong_down and down for 5 classes); -1
contradicts the up classes. :func:`ablation` trains with and without the penalty on the
same seeds and data, and reports the out-of-sample difference whichever way it goes.
"""

from __future__ import annotations

import numpy as np

from pymicro.errors import TrainingError
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.metrics import balanced_accuracy, majority_class
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import load
from pymicro.training.train import train
from pymicro.training.trainer import spec_for

RULES = {
    "momentum": ("ret_20", "sma_dist_50", "trend following: 20-day return and distance from the 50-day mean agree"),
    "reversal": ("zscore_close_20", None, "mean reversion: the close is more than 2 standard deviations from its 20-day mean"),
    "sentiment": ("momentum_score", "signal_agreement_score", "momentum score and signal agreement agree"),
}


def rule_signal(X: np.ndarray, feature_names, preset: str) -> np.ndarray:
    """-1, 0 or +1 per row: what the preset's domain rule expects (see the module docstring)."""
    if preset not in RULES:
        raise TrainingError(f"no domain rule for preset {preset!r}; rules exist for {sorted(RULES)}")
    names = list(feature_names)
    first, second, _ = RULES[preset]
    missing = [f for f in (first, second) if f is not None and f not in names]
    if missing:
        raise TrainingError(f"the {preset} rule needs features {missing}, which the data does not have")
    a = np.asarray(X, np.float64)[:, names.index(first)]
    if preset == "reversal":
        return np.where(a > 2.0, -1, np.where(a < -2.0, 1, 0)).astype(np.int8)
    b = np.asarray(X, np.float64)[:, names.index(second)]
    return np.where((a > 0) & (b > 0), 1, np.where((a < 0) & (b < 0), -1, 0)).astype(np.int8)


def contradiction_mask(signal: np.ndarray, n_classes: int) -> np.ndarray:
    """(rows, classes) 0/1: the classes each row's rule signal contradicts."""
    if n_classes not in (3, 5):
        raise TrainingError(f"contradiction masks are defined for 3 or 5 classes, not {n_classes}")
    down = [0] if n_classes == 3 else [0, 1]
    up = [2] if n_classes == 3 else [3, 4]
    mask = np.zeros((len(signal), n_classes), np.float32)
    mask[np.ix_(signal > 0, down)] = 1.0
    mask[np.ix_(signal < 0, up)] = 1.0
    return mask


def ablation(preset: str = "momentum", weights=(0.0, 0.1, 0.5), seeds=(0, 1, 2), *, data=None, symbols=None,
             epochs: int = 40, batch_size: int = 64, patience: int = 8, horizon: int = 5,
             progress=None) -> dict:
    """Train each (weight, seed) on the same chronological split; report test figures per weight,
    the paired difference to weight 0 across seeds, and a plain verdict."""

    if 0.0 not in weights:
        weights = (0.0, *weights)
    frame = load_embedded(symbols) if data is None else data
    split = make_dataset(frame, preset, horizon=horizon).split()
    spec = spec_for(preset, feature_names=split.train.feature_names, name=f"{preset}-ablation")
    signal_tr = rule_signal(split.train.X, split.train.feature_names, preset)
    mask = contradiction_mask(signal_tr, spec.n_classes)
    signal_te = rule_signal(split.test.X, split.test.feature_names, preset)
    test_contra = contradiction_mask(signal_te, spec.n_classes)
    majority = majority_class(split.train.y, spec.n_classes)
    runs = {}
    total, done = len(weights) * len(seeds), 0
    for w in weights:
        for seed in seeds:
            result = train(spec, split.train.X, split.train.y, split.validation.X, split.validation.y,
                           epochs=epochs, batch_size=batch_size, patience=patience, seed=seed,
                           rule_mask=mask if w > 0 else None, rule_weight=float(w))
            pred = load(freeze(result.network)).predict(split.test.X).argmax(axis=1)
            runs[(w, seed)] = {
                "accuracy": float((pred == split.test.y).mean()),
                "balanced_accuracy": balanced_accuracy(split.test.y, pred, spec.n_classes),
                "contradicts_rule": float(test_contra[np.arange(len(pred)), pred].mean()),
                "epochs": result.epochs_run,
            }
            done += 1
            if progress:
                progress(done, total, {"weight": w, "seed": seed, **runs[(w, seed)]})
    base = np.array([runs[(0.0, s)]["accuracy"] for s in seeds])
    table = []
    for w in weights:
        acc = np.array([runs[(w, s)]["accuracy"] for s in seeds])
        bal = np.array([runs[(w, s)]["balanced_accuracy"] for s in seeds])
        diff = acc - base
        table.append({
            "rule_weight": w, "accuracy_mean": float(acc.mean()), "accuracy_sd": float(acc.std(ddof=1)) if len(seeds) > 1 else 0.0,
            "balanced_accuracy_mean": float(bal.mean()),
            "contradicts_rule_mean": float(np.mean([runs[(w, s)]["contradicts_rule"] for s in seeds])),
            "accuracy_diff_vs_0": float(diff.mean()), "seeds_better": int((diff > 0).sum()),
            "seeds_worse": int((diff < 0).sum()),
        })
    n_test = len(split.test)
    # Noise from two sources: the finite test set (s.e. of a difference in accuracy between
    # two models on n_test rows, conservative) and the training seed (sd of paired differences).
    se_rows = float(np.sqrt(2 * 0.25 / n_test))
    best = max(table[1:], key=lambda r: abs(r["accuracy_diff_vs_0"])) if len(table) > 1 else table[0]
    diffs = np.array([runs[(best["rule_weight"], s)]["accuracy"] for s in seeds]) - base
    se_seeds = float(diffs.std(ddof=1) / np.sqrt(len(seeds))) if len(seeds) > 1 else float("inf")
    bal_change = best["balanced_accuracy_mean"] - table[0]["balanced_accuracy_mean"]
    effect = (f"penalty weight {best['rule_weight']} moves out-of-sample accuracy by {best['accuracy_diff_vs_0']:+.1%} "
              f"and balanced accuracy by {bal_change:+.1%} ({best['seeds_better']} of {len(seeds)} seeds better)")
    if abs(best["accuracy_diff_vs_0"]) < 2 * max(se_rows, se_seeds):
        verdict = (f"No measurable effect: {effect}; that is within noise (2 s.e.: {2 * se_rows:.1%} from the "
                   f"{n_test} test rows, {2 * se_seeds:.1%} across seeds).")
    else:
        verdict = (f"Measurable: {effect}, beyond 2 s.e. of test-set noise ({2 * se_rows:.1%}) and seed noise "
                   f"({2 * se_seeds:.1%}).")
    return {"preset": preset, "rule": RULES[preset][2], "seeds": list(seeds), "test_rows": n_test,
            "test_start": str(np.datetime64(split.test_start, "D")),
            "majority_accuracy": float((split.test.y == majority).mean()),
            "rule_active_share_train": float((signal_tr != 0).mean()), "table": table, "verdict": verdict,
            "runs": [{"rule_weight": w, "seed": s, **r} for (w, s), r in runs.items()]}
