"""What a GPU buys: the ensemble cycle, the exact log-likelihood gradient and NUTS chains.

Three tables, each row timed on the default JAX device (its name is printed):

(a) one LETKF cycle (N_e = 64, ~330 observations, weight stride 4) at 1024^2 and 2048^2
    cells, through the configurations and subprocess workers of
    ``benchmarks/letkf_scale.py`` (:func:`letkf_scale.measure`; compilation excluded);
(b) the gradient of the exact log density of the island twin (48 x 48, 30 daily maps,
    ~1000 observations) for K = 60, 150, 400 modes, with the sequential and the parallel
    (associative-scan) Kalman filter: compile time and run time (median of ``--repeats``)
    separately, and the relative difference of the two log densities;
(c) NUTS on the island twin (K = 60) with its chains vectorised and in parallel
    (NumPyro's ``chain_method``; on a CPU the host is split into as many devices as chains),
    wall time including compilation.

``--small`` shrinks everything to fit a small CPU in a few minutes (grids 128^2 and 256^2,
K = 20 and 60, short chains). The tables also go to ``--out``.

    python benchmarks/gpu.py --small --out benchmarks/results/gpu_cpu_small.txt
    python benchmarks/gpu.py --out benchmarks/results/gpu_h200.txt         # on a GPU

On a CPU, jaxlib 0.10's concurrency-optimised XLA scheduler can deadlock running the
gradient of the parallel filter (independent LAPACK calls at once); this script switches it
off (``XLA_FLAGS``, before JAX starts), as a CPU user of ``NUTS(filter="parallel")`` must.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

CHAINS = 4
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_enable_concurrency_optimized_scheduler=false"
                           + f" --xla_force_host_platform_device_count={CHAINS}")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from letkf_scale import measure  # noqa: E402
from numpyro.infer.util import initialize_model  # noqa: E402

from tracerbayes.exact.kalman_parallel import KalmanFilter  # noqa: E402
from tracerbayes.exact.model import AdvectionDiffusionModel, Priors  # noqa: E402
from tracerbayes.fitting import fit  # noqa: E402
from tracerbayes.methods import NUTS  # noqa: E402
from tracerbayes.observations.core import Observations  # noqa: E402
from tracerbayes.twin import experiment as twin  # noqa: E402


def ensemble_rows(grids: list[int], cycles: int) -> list[str]:
    """(a): seconds per LETKF cycle, N_e = 64, stride 4 (letkf_scale's headline setup)."""
    lines = [f"{'grid':>9}{'cells':>10}{'N_e':>5}{'obs/cyc':>8}{'s/cycle':>9}{'analysis s':>11}"
             f"{'peak MiB':>9}"]
    for n in grids:
        r = measure(n, 64, 330, cycles, None, 0, stride=4)
        lines.append(f"{f'{n}^2':>9}{r['cells']:>10}{r['members']:>5}{r['obs']:>8.0f}"
                     f"{r['cycle_s']:>9.2f}{r['analysis_s']:>11.2f}{r['peak_mib']:>9.0f}")
    return lines


def twin_problem(modes: int):
    exp = twin.island_twin(jax.random.key(1), truth_modes=60)
    obs = Observations.from_dataframe(exp.observations, x="x", y="y", platform="platform")
    model = AdvectionDiffusionModel(exp.grid, exp.velocity, Priors.for_observations(obs),
                                    n_modes=modes)
    return exp, obs, model, model.prepare(obs, exp.times)


def gradient_rows(modes: list[int], repeats: int) -> list[str]:
    """(b): compile and run time of the log-density gradient, both filters."""
    lines = [f"{'K':>5}{'T':>4}{'m':>5}{'filter':>12}{'compile s':>10}{'run ms':>10}"
             f"{'rel. diff':>11}"]
    for K in modes:
        _, _, model, data = twin_problem(K)
        point = initialize_model(jax.random.key(0),
                                 lambda model=model, data=data: model(data)).param_info.z
        values = {}
        for kalman in KalmanFilter:
            potential = initialize_model(
                jax.random.key(0), lambda model=model, data=data, k=kalman: model(data, k)
            ).potential_fn
            t0 = time.perf_counter()
            compiled = jax.jit(jax.value_and_grad(potential)).lower(point).compile()
            t_compile = time.perf_counter() - t0
            jax.block_until_ready(compiled(point))
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                values[kalman] = jax.block_until_ready(compiled(point))[0]
                runs.append(time.perf_counter() - t0)
            seq = values[KalmanFilter.SEQUENTIAL]
            diff = abs(float(values[kalman] - seq)) / abs(float(seq))
            T, m = data.values.shape
            lines.append(f"{K:>5}{T:>4}{m:>5}{kalman.value:>12}{t_compile:>10.1f}"
                         f"{1e3 * float(np.median(runs)):>10.1f}{diff:>11.1e}")
            print(lines[-1], flush=True)
    return lines


def nuts_rows(modes: int, warmup: int, samples: int) -> list[str]:
    """(c): NUTS wall time (compilation included), chains vectorised and in parallel."""
    exp, obs, model, _ = twin_problem(modes)
    lines = [f"{'K':>5}{'chains':>7}{'warm-up':>8}{'draws':>6}{'chain_method':>14}"
             f"{'wall s':>8}{'steps/draw':>11}"]
    for chain_method in ("vectorized", "parallel"):
        method = NUTS(num_warmup=warmup, num_samples=samples, num_chains=CHAINS,
                      chain_method=chain_method, init="prior")
        t0 = time.perf_counter()
        post = fit(model, obs, exp.times, method, seed=1, progress=False)
        wall = time.perf_counter() - t0
        steps = float(np.mean(post.sample_stats["num_steps"]))
        lines.append(f"{modes:>5}{CHAINS:>7}{warmup:>8}{samples:>6}{chain_method:>14}"
                     f"{wall:>8.1f}{steps:>11.1f}")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="sizes for a small CPU")
    ap.add_argument("--repeats", type=int, default=5, help="timed gradient evaluations")
    ap.add_argument("--out", default=None, help="also write the tables here")
    args = ap.parse_args()
    small = args.small
    device = jax.devices()[0]
    head = [f"device: {device.device_kind} ({device.platform}), {jax.device_count()} device(s); "
            f"jax {jax.__version__}; {'--small' if small else 'full sizes'}"]
    print(head[0], flush=True)
    tables = [("(b) exact log-density gradient, island twin: sequential vs parallel filter",
               lambda: gradient_rows([20, 60] if small else [60, 150, 400], args.repeats)),
              ("(c) NUTS on the island twin, chains vectorised vs parallel",
               lambda: nuts_rows(20 if small else 60, 20 if small else 200,
                                 20 if small else 200)),
              ("(a) LETKF cycle, N_e = 64, stride 4",
               lambda: ensemble_rows([128, 256] if small else [1024, 2048], 2 if small else 5))]
    for title, rows in tables:
        print(f"\n{title}", flush=True)
        lines = rows()
        print("\n".join(lines), flush=True)
        head += ["", title, *lines]
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(head) + "\n")


if __name__ == "__main__":
    main()
