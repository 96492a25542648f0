"""The exact reduced-model parameter posterior of the ensemble twin, as a reference for EKS.

Same twin and reduced model as ``twin_letkf.py`` (same options). Instead of EKI/EKS, the log
posterior (the reduced-basis Kalman filter's marginal likelihood times the EKI priors, exactly
the target EKS samples) is maximised by L-BFGS with JAX gradients, its Hessian at the mode gives
a Laplace approximation, and importance sampling from a Student-t around it (Pareto-smoothed
weights) corrects that to the exact posterior. Prints the Laplace mode's z-scores, the
truth's squared Mahalanobis distance from the mode under the Laplace covariance with its
chi-square tail probability (the joint check: the seven marginal intervals are strongly
correlated, so "k of 7 inside" alone misleads), and the corrected table: each parameter's
truth, mean, 90% interval and whether the truth is inside.
Compare with the EKS table of ``twin_letkf.py --skip-letkf`` for the same seed and modes.

Run: ``python benchmarks/twin_exact_posterior.py`` (400 modes: about 5 minutes for the mode
and Hessian, then about 1 s per draw on one CPU core; ``--draws 400`` by default, ``--draws 0``
stops at the Laplace z-scores); ``--transition projected`` for the projected reduced model
(plus about 3 minutes to tabulate its advection).
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from twin_letkf import (  # noqa: E402
    TRUTH,
    joint_check,
    parameter_coverage,
    setup,
    twin_arguments,
)

from tracerbayes.ensemble import inversion  # noqa: E402
from tracerbayes.ensemble.fit import eki_forward, eki_log_posterior, eki_priors  # noqa: E402
from tracerbayes.ensemble.importance import importance_correct, laplace_approximation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    twin_arguments(parser)
    parser.add_argument("--draws", type=int, default=400,
                        help="importance draws (0: the Laplace approximation only)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    tw, obs, model = setup(args)
    data = model.prepare(obs, tw.times)
    space = inversion.parameter_space(eki_priors(model))
    names = space.names
    logdet = eki_forward(model, data, names, space).logdet(space.prior_mean)
    offset = float(logdet) - 10.0 * int(np.sum(np.asarray(data.valid)))
    one = eki_log_posterior(eki_forward(model, data, names, space, offset), space)
    # start at the prior medians (not the truth)
    mode, cov = laplace_approximation(one, space.prior_mean)
    truth = np.asarray(space.to_unconstrained(jnp.asarray([TRUTH[n] for n in names])))
    z = (mode - truth) / np.sqrt(np.diag(cov))
    print(f"{args.modes} modes, seed {args.seed}: Laplace mode and Hessian "
          f"{time.perf_counter() - t0:.0f} s; (mode - truth) / sd (log space): "
          + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, z, strict=True)))
    joint_check(mode - truth, cov, "the Laplace mode")
    if args.draws == 0:
        return

    def log_target(theta):
        lp = jax.vmap(one)(theta)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    t1 = time.perf_counter()
    result = importance_correct(jax.random.key(100 + args.seed), jax.jit(log_target), None,
                                args.draws, proposal=(mode, cov), scale=1.2, batch_size=40)
    phys = np.asarray(space.to_physical(jnp.asarray(result.resampled)))
    print(f"importance sampling: {args.draws} draws, {time.perf_counter() - t1:.0f} s, "
          f"Pareto k {result.pareto_k:.2f}, ESS {result.ess:.0f}")
    parameter_coverage({n: phys[None, :, i] for i, n in enumerate(names)})


if __name__ == "__main__":
    main()
