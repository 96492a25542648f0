"""Dense linear algebra with a fixed amount of work, for ``vmap`` and ``grad``.

:func:`expm` is the matrix exponential by scaling and squaring with the degree-13 Padé
approximant of Higham (2005), Algorithm 2.3 of [1], but always with the same degree and the
same (guarded) number of squarings. ``jax.scipy.linalg.expm`` chooses the degree with
branches on the norm; under ``vmap`` (NUTS chains run vectorised) every branch is computed for
every chain, which on a CPU made it about 17 times slower than one chain. Here the work is
identical for every input, so vectorised chains cost what separate ones do.

References
----------
.. [1] N. J. Higham, "The scaling and squaring method for the matrix exponential revisited",
   SIAM J. Matrix Anal. Appl. 26(4), 1179-1193, 2005.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["expm", "MAX_SQUARINGS"]

#: Squarings applied at most: inputs with 1-norm up to ``THETA_13 * 2**MAX_SQUARINGS``
#: (about 88,000) are exact to round-off; :func:`expm` returns NaN beyond, never a wrong value.
MAX_SQUARINGS = 14

# Largest 1-norm for which the [13/13] Padé approximant is accurate to double precision
# (Table 2.3 of [1]).
THETA_13 = 5.371920351148152

# Coefficients b_0 ... b_13 of the [13/13] Padé approximant of exp(x) (Eq. (2.12) of [1]):
# b_j = (26 - j)! 13! / (26! j! (13 - j)!).
_B = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
      129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
      40840800.0, 960960.0, 16380.0, 182.0, 1.0)


def _pade13(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Numerator and denominator ``(V + U, V - U)`` of the [13/13] Padé approximant."""
    b = _B
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2)
             + b[7] * a6 + b[5] * a4 + b[3] * a2 + b[1] * eye)
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 \
        + b[0] * eye
    return v + u, v - u


def expm(a: jax.Array) -> jax.Array:
    """``exp(a)`` of a square matrix (or a batch of them, leading axes), fixed work.

    Scaling ``a / 2^s`` with ``s = max(0, ceil(log2(||a||_1 / theta_13)))``, the [13/13] Padé
    approximant, then ``s`` squarings out of :data:`MAX_SQUARINGS` guarded ones (Algorithm 2.3
    of [1] without the lower-degree branches). Differentiable; the scaling exponent is treated
    as a constant (as in every scaling-and-squaring method). Inputs whose norm needs more
    than :data:`MAX_SQUARINGS` squarings give NaN.
    """
    if a.ndim > 2:
        return jax.vmap(expm)(a)
    norm = jnp.max(jnp.sum(jnp.abs(a), axis=0))
    exponent = jnp.ceil(jnp.log2(jax.lax.stop_gradient(norm) / THETA_13))
    squarings = jnp.clip(exponent, 0, None)
    scaled = a / (2.0**squarings)
    numerator, denominator = _pade13(scaled)
    r = jnp.linalg.solve(denominator, numerator)

    def square(i, x):
        return jax.lax.cond(i < squarings, lambda y: y @ y, lambda y: y, x)

    r = jax.lax.fori_loop(0, MAX_SQUARINGS, square, r)
    return jnp.where(squarings <= MAX_SQUARINGS, r, jnp.nan)
