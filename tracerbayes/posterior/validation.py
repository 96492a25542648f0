"""Held-out validation: observations kept out of the fit, and how well the map predicts them.

On real data there is no truth to score a map against; observations that the fit never saw
are the next best thing. ``split_holdout`` sets a fraction of them aside (at random, whole
platforms, or whole spatial blocks, which tests the map away from the data as a user would
use it), the fit uses the rest, and ``holdout_scores`` scores the posterior predictive
distribution of every held-out value, observation noise included:

    p(y_i | y_train) = avg_s N(y_i; h_i mu_s(t_i), h_i P_s(t_i) h_i^T + (e_s error_i)^2)

(``s`` over parameter draws for the exact path; one Gaussian from the smoothed ensemble's
mean and variance at the observation for the ensemble path, ``e`` the error scale).
Reported: RMSE of the predictive mean, CRPS (Gaussian mixture, Grimit et al. 2006) and the
fraction of held-out values inside the central 90% predictive interval.

``calibration_message`` turns a coverage far from its level into a warning: further than
three binomial standard deviations ``sqrt(level (1 - level) / n)``, and at least
:data:`COVERAGE_MARGIN`, from it (held-out values close in space and time are not
independent, so the binomial spread alone would cry wolf).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["HOLDOUT_KINDS", "Holdout", "calibration_message", "holdout_scores",
           "split_holdout"]

#: How held-out observations are chosen.
HOLDOUT_KINDS = ("random", "platform", "block")
#: Smallest departure of the held-out coverage from its level that ``calibration_message``
#: reports.
COVERAGE_MARGIN = 0.05


class Holdout(NamedTuple):
    """A split of the observations: ``train`` for the fit, ``test`` to score it.

    ``test_rows`` are the held-out rows of the original observations; ``by`` and
    ``fraction`` say how they were chosen (``fraction`` as asked; the realised one is
    ``len(test) / (len(train) + len(test))``).
    """

    train: Any
    test: Any
    test_rows: np.ndarray
    by: str
    fraction: float


def _blocks(obs: Any, n_blocks: int) -> np.ndarray:
    """Label of the spatial block of every observation: an ``n_blocks`` x ``n_blocks``
    partition of the observations' bounding box."""
    x, y = np.asarray(obs.x, float), np.asarray(obs.y, float)
    ix = np.minimum(((x - x.min()) / max(np.ptp(x), 1e-300) * n_blocks).astype(int),
                    n_blocks - 1)
    iy = np.minimum(((y - y.min()) / max(np.ptp(y), 1e-300) * n_blocks).astype(int),
                    n_blocks - 1)
    return iy * n_blocks + ix


def split_holdout(obs: Any, fraction: float, by: str = "random", *, seed: int = 0,
                  n_blocks: int = 6) -> Holdout:
    """Hold out about ``fraction`` of ``obs``.

    ``by="random"``: that many rows at random. ``"platform"``: whole platforms, in random
    order, until at least the fraction is held out (at least one platform stays for the fit).
    ``"block"``: whole cells of an ``n_blocks`` x ``n_blocks`` partition of the
    observations' bounding box, in random order, likewise.
    """
    if by not in HOLDOUT_KINDS:
        raise ValueError(f"holdout by={by!r}; choose one of {HOLDOUT_KINDS}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    n = len(obs)
    if n < 2:
        raise ValueError(f"holdout needs at least 2 observations, got {n}")
    rng = np.random.default_rng(seed)
    target = max(1, int(round(float(fraction) * n)))
    if by == "random":
        test = np.zeros(n, bool)
        test[rng.choice(n, size=min(target, n - 1), replace=False)] = True
    else:
        labels = (np.asarray(obs.platform) if by == "platform"
                  else _blocks(obs, int(n_blocks)))
        groups = np.unique(labels)
        if groups.size < 2:
            raise ValueError(f"holdout by={by!r} needs at least two "
                             f"{'platforms' if by == 'platform' else 'occupied blocks'}; "
                             f"found {groups.size}: use by='random'")
        test = np.zeros(n, bool)
        for g in rng.permutation(groups)[:-1]:  # one group always stays for the fit
            if test.sum() >= target:
                break
            test |= labels == g
    rows = np.flatnonzero(test)
    return Holdout(obs.select(~test), obs.select(test), rows, by, float(fraction))


def holdout_scores(post: Any, test: Any, *, level: float = 0.9) -> dict[str, float]:
    """RMSE, CRPS and ``level`` predictive-interval coverage of held-out observations
    ``test`` under the fitted posterior ``post`` (see the module docstring)."""
    from tracerbayes.posterior.metrics import (
        coverage_mixture,
        crps_mixture,
        mixture_quantile,
    )

    means, sds = post.predict_observations(test)  # (S, n) each, noise included
    values = np.asarray(post.predicted_values(test), float)
    mean = means.mean(axis=0)
    lo, hi = 0.5 - level / 2, 0.5 + level / 2
    return {
        "n": int(values.size),
        "rmse": float(np.sqrt(np.mean((mean - values) ** 2))),
        "crps": float(crps_mixture(values, means, sds)),
        "coverage": float(coverage_mixture(values, means, sds, level=level)),
        "level": float(level),
        "interval_width": float(np.mean(mixture_quantile(means, sds, hi)
                                        - mixture_quantile(means, sds, lo))),
    }


def calibration_message(scores: dict[str, Any], method: str) -> str | None:
    """A warning when the held-out predictive intervals miss their level (see the module
    docstring), saying which way and what to change for ``method``; None when they are
    within sampling error of it."""
    n, level, coverage = int(scores["n"]), float(scores["level"]), float(scores["coverage"])
    margin = max(COVERAGE_MARGIN, 3.0 * np.sqrt(level * (1.0 - level) / max(n, 1)))
    if abs(coverage - level) <= margin:
        return None
    ensemble = method in ("enkf", "etkf", "letkf")
    if coverage < level:
        fix = ("raise method.relaxation (relaxation to prior spread, e.g. 0.5), shorten "
               "method.localisation, add members, or map with method laplace or nuts"
               if ensemble else "check the model's noise priors and the representation "
               "error (model.representation_error), or raise model.n_modes")
        return (f"the maps are overconfident: only {coverage:.0%} of {n} held-out "
                f"observations fall inside their {level:.0%} predictive intervals (expected "
                f"{level:.0%} +/- {margin:.0%}); the map sd understates the error: {fix}")
    return (f"the maps are underconfident: {coverage:.0%} of {n} held-out observations fall "
            f"inside their {level:.0%} predictive intervals (expected {level:.0%} +/- "
            f"{margin:.0%}); the map sd overstates the error, so the maps are more accurate "
            "than their uncertainty says")
