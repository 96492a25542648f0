"""The marginalised linear-Gaussian state-space model as a NumPyro ``Distribution``.

``LinearGaussianStateSpace(ssm, operators, variances, valid)`` is the distribution of all
(padded) observations ``y_{0:T-1}`` of the model in :mod:`tracerbayes.exact.kalman` with the state
integrated out. Its ``log_prob`` is the Kalman-filter log-likelihood, so it can be used
inside any NumPyro model::

    numpyro.sample("y", LinearGaussianStateSpace(ssm, H, r, valid), obs=values)

Padded entries of ``value`` (where ``valid`` is False) are ignored by ``log_prob`` and are
returned as zeros by ``sample``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from tracerbayes.exact.kalman import (
    KalmanObservations,
    LinearGaussianSSM,
    kalman_filter,
    kalman_log_likelihood,
)

__all__ = ["LinearGaussianStateSpace"]


class LinearGaussianStateSpace(dist.Distribution):
    """Observations of a linear-Gaussian state-space model, the state integrated out.

    Parameters
    ----------
    ssm : LinearGaussianSSM
        Initial moments, transition and process covariance (any of them may depend on
        sampled parameters).
    operators : array, shape (T, m, n)
        Observation operator rows per time (padded).
    variances : array, shape (T, m)
        Observation-error variances (padded rows: any positive value).
    valid : bool array, shape (T, m)
        Which rows are real observations.

    The event shape is ``(T, m)``; there are no batch dimensions.
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.independent(constraints.real, 2)
    pytree_data_fields = ("ssm", "operators", "variances", "valid")

    def __init__(self, ssm: LinearGaussianSSM, operators: Any, variances: Any, valid: Any,
                 *, validate_args: bool | None = None):
        self.ssm = ssm
        self.operators = jnp.asarray(operators)
        self.variances = jnp.asarray(variances)
        self.valid = jnp.asarray(valid, dtype=bool)
        event_shape = tuple(self.variances.shape)
        if self.operators.shape[:2] != event_shape or self.valid.shape != event_shape:
            raise ValueError(
                f"operators {self.operators.shape}, variances {self.variances.shape} and "
                f"valid {self.valid.shape} must agree on (T, m)"
            )
        super().__init__(batch_shape=(), event_shape=event_shape, validate_args=validate_args)

    def _padded(self, value: Any) -> KalmanObservations:
        return KalmanObservations(jnp.asarray(value), self.operators, self.variances, self.valid)

    def log_prob(self, value: Any) -> jax.Array:
        """Kalman-filter log-likelihood of the valid entries of ``value`` (T, m)."""
        value = jnp.asarray(value)
        if value.ndim > 2:
            flat = value.reshape((-1,) + value.shape[-2:])
            out = jax.vmap(lambda v: kalman_log_likelihood(self.ssm, self._padded(v)))(flat)
            return out.reshape(value.shape[:-2])
        return kalman_log_likelihood(self.ssm, self._padded(value))

    def pointwise_log_likelihood(self, value: Any) -> jax.Array:
        """Per-observation terms ``log p(y_{k,i} | y_{0:k-1}, y_{k,<i})``, (T, m), 0 on padding.

        They sum to :meth:`log_prob`. For a sequential model these are one-step-ahead
        predictive densities: PSIS-LOO over them approximates leave-one-out of each
        observation given the past only (leave-future-out), not given all other data.
        """
        return kalman_filter(self.ssm, self._padded(value), update="joint").log_likelihood_terms

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw observations by simulating states and adding observation noise."""
        n_draws = 1
        for s in sample_shape:
            n_draws *= s
        keys = jax.random.split(key, n_draws)
        draws = jax.vmap(self._sample_one)(keys)
        return draws.reshape(tuple(sample_shape) + self.event_shape)

    def _sample_one(self, key: jax.Array) -> jax.Array:
        T = self.event_shape[0]
        transition = _per_step(self.ssm.transition, T)
        process_cov = _per_step(self.ssm.process_cov, T)
        k0, kw, ke = jax.random.split(key, 3)
        x0 = _gaussian(k0, self.ssm.initial_mean, self.ssm.initial_cov)

        def step(x, inputs):
            k, F, Q = inputs
            x_next = F @ x + _gaussian(k, jnp.zeros_like(x), Q)
            return x_next, x_next

        _, rest = jax.lax.scan(step, x0, (jax.random.split(kw, T - 1), transition, process_cov))
        states = jnp.concatenate([x0[None], rest])
        noise = jax.random.normal(ke, self.event_shape, dtype=states.dtype)
        y = jnp.einsum("tmn,tn->tm", self.operators, states) + jnp.sqrt(self.variances) * noise
        return jnp.where(self.valid, y, 0.0)


def _per_step(matrix: Any, T: int) -> jax.Array:
    matrix = jnp.asarray(matrix)
    if matrix.ndim == 3:
        return matrix
    return jnp.broadcast_to(matrix, (T - 1,) + matrix.shape)


def _gaussian(key: jax.Array, mean: jax.Array, cov: jax.Array) -> jax.Array:
    """One draw of N(mean, cov) for a positive semi-definite ``cov`` (eigen factor)."""
    vals, vecs = jnp.linalg.eigh(0.5 * (cov + cov.T))
    factor = vecs * jnp.sqrt(jnp.clip(vals, 0.0, None))
    return mean + factor @ jax.random.normal(key, mean.shape, dtype=mean.dtype)
