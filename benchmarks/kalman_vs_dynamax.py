"""Log-likelihood + gradient: tracerbayes's Kalman filter against dynamax's, same matrices.

Both filters get identical linear-Gaussian models (time-varying observation operators, a
diagonal observation-error covariance, shared transition and process covariance) and are
differentiated with respect to two scalar parameters that scale the transition and the
process noise, as NUTS would. Run side by side in one process::

    pip install dynamax            # the peer (pulls tfp-nightly)
    python benchmarks/kalman_vs_dynamax.py

Prints a table: state size n, times T, observations per time m, both log-likelihoods'
relative difference, median wall time of one jitted value-and-gradient for each, and the
ratio dynamax / tracerbayes (> 1: tracerbayes faster).
"""

from __future__ import annotations

import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from dynamax.linear_gaussian_ssm import (  # noqa: E402
    ParamsLGSSM,
    ParamsLGSSMDynamics,
    ParamsLGSSMEmissions,
    ParamsLGSSMInitial,
    lgssm_filter,
)

from tracerbayes.exact.kalman import (  # noqa: E402
    KalmanObservations,
    LinearGaussianSSM,
    kalman_log_likelihood,
)


def problem(n: int, T: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n)) / np.sqrt(n)
    F = 0.95 * a / np.max(np.abs(np.linalg.eigvals(a)))
    b = rng.normal(size=(n, n)) / np.sqrt(n)
    Q = 0.1 * (b @ b.T) + 0.01 * np.eye(n)
    P0 = np.eye(n)
    m0 = rng.normal(size=n)
    H = rng.normal(size=(T, m, n)) / np.sqrt(n)
    r = rng.uniform(0.1, 0.5, size=(T, m))
    y = rng.normal(size=(T, m))
    return {k: jnp.asarray(v) for k, v in dict(F=F, Q=Q, P0=P0, m0=m0, H=H, r=r, y=y).items()}


def ours(theta, p):
    ssm = LinearGaussianSSM(p["m0"], p["P0"], theta[0] * p["F"], theta[1] * p["Q"])
    obs = KalmanObservations(p["y"], p["H"], p["r"], jnp.ones(p["y"].shape, dtype=bool))
    return kalman_log_likelihood(ssm, obs)


def peer(theta, p):
    n = p["m0"].size
    T, m = p["y"].shape
    params = ParamsLGSSM(
        initial=ParamsLGSSMInitial(mean=p["m0"], cov=p["P0"]),
        dynamics=ParamsLGSSMDynamics(weights=theta[0] * p["F"], bias=jnp.zeros(n),
                                     input_weights=jnp.zeros((n, 0)), cov=theta[1] * p["Q"]),
        emissions=ParamsLGSSMEmissions(weights=p["H"], bias=jnp.zeros(m),
                                       input_weights=jnp.zeros((m, 0)),
                                       cov=jax.vmap(jnp.diag)(p["r"])),
    )
    return lgssm_filter(params, p["y"]).marginal_loglik


def timed(f, *args, repeats: int = 7) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    theta = jnp.array([1.0, 1.0])
    print(f"{'n':>5} {'T':>4} {'m':>4} {'rel. diff':>10} {'ours [ms]':>10} "
          f"{'dynamax [ms]':>13} {'ratio':>7}")
    for n, T, m in [(20, 30, 10), (50, 30, 30), (100, 30, 30), (100, 30, 100), (200, 30, 30)]:
        p = problem(n, T, m)
        f_ours = jax.jit(jax.value_and_grad(ours))
        f_peer = jax.jit(jax.value_and_grad(peer))
        (v1, _), (v2, _) = f_ours(theta, p), f_peer(theta, p)
        rel = abs(float(v1) - float(v2)) / abs(float(v2))
        t1, t2 = timed(f_ours, theta, p), timed(f_peer, theta, p)
        print(f"{n:>5} {T:>4} {m:>4} {rel:>10.1e} {1e3 * t1:>10.2f} {1e3 * t2:>13.2f} "
              f"{t2 / t1:>7.2f}")


if __name__ == "__main__":
    main()
