"""The CLIP linear probe: logistic regression on stored image embeddings, identity-grouped
outer folds (one person never straddles train and test), C chosen by inner cross-validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 4, 15))


class ClipProbeError(ValueError):
    """The probe cannot be fitted as configured (labels, folds, identities)."""


def identity_groups(identities: Sequence[str | None], image_ids: Sequence[str]) -> np.ndarray:
    """Group per image: its identity, or the image itself when the identity is unknown."""
    groups = []
    for identity, image_id in zip(identities, image_ids):
        if identity is None or (isinstance(identity, float) and np.isnan(identity)) or str(identity) == "":
            groups.append(f"image:{image_id}")
        else:
            groups.append(f"identity:{identity}")
    return np.asarray(groups, dtype=object)


@dataclass
class ProbeResult:
    probabilities: np.ndarray  # (n, len(classes)), each row from the fold model that never saw it
    classes: list[str]
    fold: np.ndarray  # (n,) outer test fold of each image
    C: np.ndarray  # (n,) the C chosen (inner CV) by that image's fold model
    folds: list[dict[str, Any]]  # per fold: index, C, n_train, n_test, identities


def _logistic_cv(Cs: Sequence[float], cv: list, scoring: str, max_iter: int, seed: int) -> Any:
    import inspect

    from sklearn.linear_model import LogisticRegressionCV

    params = inspect.signature(LogisticRegressionCV).parameters
    kwargs: dict[str, Any] = {
        "Cs": list(Cs), "cv": cv, "scoring": scoring, "solver": "lbfgs", "max_iter": int(max_iter),
        "random_state": seed,
    }
    if "use_legacy_attributes" in params:  # sklearn >= 1.8: l2 via l1_ratios, new attributes
        kwargs.update(l1_ratios=(0.0,), use_legacy_attributes=False)
    else:  # pragma: no cover - older scikit-learn
        kwargs.update(penalty="l2")
    return LogisticRegressionCV(**kwargs)


def linear_probe(
    embeddings: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[Any],
    *,
    folds: int = 5,
    inner_folds: int = 3,
    Cs: Sequence[float] = DEFAULT_CS,
    scoring: str = "neg_log_loss",
    max_iter: int = 1000,
    seed: int = 0,
) -> ProbeResult:
    """Out-of-fold logistic-regression probabilities, grouped by `groups` (identities).

    Outer `StratifiedGroupKFold(folds)`; per outer fold a `LogisticRegressionCV` picks C with an
    inner `StratifiedGroupKFold(inner_folds)` over the training groups, refits on all of them
    and predicts the held-out groups. Raises ClipProbeError when a label has too few groups.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedGroupKFold

    X = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray([str(l) for l in labels], dtype=object)
    g = np.asarray(groups, dtype=object)
    n = len(y)
    if X.ndim != 2 or X.shape[0] != n or len(g) != n:
        raise ClipProbeError(f"linear probe: {X.shape[0] if X.ndim else 0} embeddings, {n} labels, {len(g)} groups; they must match")
    if folds < 2 or inner_folds < 2:
        raise ClipProbeError("linear probe: `folds` and `inner_folds` must be at least 2")
    classes = sorted(set(y))
    if len(classes) < 2:
        raise ClipProbeError(f"linear probe: all images have the label {classes}; it needs at least two labels")
    per_label = {c: len(set(g[y == c])) for c in classes}
    short = {c: k for c, k in per_label.items() if k < folds}
    if short:
        raise ClipProbeError(
            "linear probe: label(s) "
            + ", ".join(f"{c!r} ({k} identities)" for c, k in sorted(short.items()))
            + f" have fewer identities than folds={folds}, so some test fold would lack them and "
            f"identity-grouped folds cannot be stratified. Fix: add identities, drop those images, "
            f"or lower `folds:` (min {min(short.values())} here; the training part of each fold must "
            f"still hold >= inner_folds={inner_folds} identities per label)"
        )
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = np.full((n, len(classes)), np.nan)
    fold_of = np.full(n, -1, dtype=int)
    c_of = np.full(n, np.nan)
    fold_info: list[dict[str, Any]] = []
    for k, (train, test) in enumerate(outer.split(X, y, g)):
        y_train, g_train = y[train], g[train]
        train_per_label = {c: len(set(g_train[y_train == c])) for c in classes}
        thin = {c: m for c, m in train_per_label.items() if m < inner_folds}
        if thin:
            raise ClipProbeError(
                f"linear probe: in outer fold {k} the training identities of label(s) "
                + ", ".join(f"{c!r} ({m})" for c, m in sorted(thin.items()))
                + f" are fewer than inner_folds={inner_folds}. Fix: lower `inner_folds:` or `folds:`, "
                f"or add identities for those labels"
            )
        inner = StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
        inner_splits = list(inner.split(X[train], y_train, g_train))
        for j, (itr, _ite) in enumerate(inner_splits):
            missing = sorted(set(classes) - set(y_train[itr]))
            if missing:
                raise ClipProbeError(
                    f"linear probe: outer fold {k}, inner fold {j} trains without label(s) "
                    f"{', '.join(missing)}; lower `inner_folds:` or add identities for them"
                )
        clf = _logistic_cv(Cs, inner_splits, scoring, max_iter, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[train], y_train)
        chosen = float(np.ravel(clf.C_)[0])
        order = [list(clf.classes_).index(c) for c in classes]
        proba[test] = clf.predict_proba(X[test])[:, order]
        fold_of[test] = k
        c_of[test] = chosen
        fold_info.append(
            {
                "fold": k,
                "C": chosen,
                "n_train": len(train),
                "n_test": len(test),
                "n_train_groups": len(set(g_train)),
                "n_test_groups": len(set(g[test])),
            }
        )
    if (fold_of < 0).any():  # pragma: no cover - StratifiedGroupKFold covers every sample
        raise ClipProbeError("linear probe: some images were never in a test fold")
    return ProbeResult(probabilities=proba, classes=classes, fold=fold_of, C=c_of, folds=fold_info)


def canonical_label_set() -> set[str] | None:
    try:
        from inference.datasets.labels import load_label_map

        return set(load_label_map().mapping.get("canonical", {}).values()) or None
    except (OSError, ValueError, KeyError):  # pragma: no cover - the seed ships with the repo
        return None


