"""NUTS in segments, checkpointed after each one, so that a killed run can be resumed.

NumPyro's ``MCMC.run`` compiles warm-up and sampling into one loop: a run killed midway
loses everything. Here the same kernel (:class:`numpyro.infer.NUTS`) is initialised once for
the whole run, so its warm-up adapter knows ``num_warmup``, and its transition
``NUTS.sample`` is iterated by one compiled ``lax.scan`` of ``every`` iterations at a time.
The adapter needs no more: the step size (dual averaging), the mass matrix (Welford windows)
and the maximum tree depth all follow the iteration counter ``state.i`` and ``num_warmup``,
and ``state.i`` is part of the state. After each segment the state (``HMCState``: position,
gradient, adaptation state, counter and PRNG keys) and the draws so far are saved
(:class:`~tracerbayes.io.checkpoint.Checkpoint`); a fit given that checkpoint goes on from
the last segment saved.

Exactly the same draws, whether resumed or not: every segment, in an uninterrupted run too,
starts from the state as restored from its saved NumPy copy, so a resumed run computes the
same operations on the same inputs. Nor do the draws depend on ``every``: the scan compiles
one NumPyro transition, however the run is cut. They are NumPyro's draws in distribution but
not bit for bit: ``MCMC.run`` compiles its loop differently, and NUTS amplifies a difference
in the last bit.

Chains are batched as NumPyro batches them (the kernel initialised with one key per chain is
vectorised over chains); ``parallel`` maps that over one device per chain with ``pmap``,
``sequential`` over chains in turn with ``lax.map``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tracerbayes.io.checkpoint import Checkpoint, CheckpointError

__all__ = ["EXTRA_FIELDS", "Draws", "NutsCheckpoint", "load_nuts", "sample_nuts"]

#: Sampler statistics collected with every draw.
EXTRA_FIELDS = ("diverging", "num_steps", "energy", "accept_prob", "potential_energy")
#: Name of the NUTS archive in a checkpoint folder.
ARCHIVE = "nuts"


class Draws(NamedTuple):
    """The draws of a segmented run, read by
    :meth:`~tracerbayes.posterior.exact.Posterior.from_mcmc` as those of a finished ``MCMC``.

    Attributes
    ----------
    samples : dict of name -> (chain, draw, ...) array
        Constrained parameter values.
    fields : dict of name -> (chain, draw) array
        The :data:`EXTRA_FIELDS`.
    """

    samples: dict[str, np.ndarray]
    fields: dict[str, np.ndarray]

    def get_samples(self, group_by_chain: bool = True) -> dict[str, np.ndarray]:
        return self.samples

    def get_extra_fields(self, group_by_chain: bool = True) -> dict[str, np.ndarray]:
        return self.fields


class NutsCheckpoint(NamedTuple):
    """What a NUTS checkpoint holds (:func:`load_nuts`).

    Attributes
    ----------
    iterations : int
        Iterations done (warm-up and sampling).
    state : list of ndarray
        The leaves of the kernel's state after them (key data for PRNG keys).
    starts : dict of name -> (chain, ...) ndarray, or None
        The unconstrained starting points (None: drawn from the prior by the kernel).
    initial_energy : (chain,) ndarray
        Potential energy at the starting points: equal only for the same problem.
    z, fields : dict of name -> (chain, draw, ...) ndarray
        Unconstrained draws and their statistics kept so far.
    """

    iterations: int
    state: list[np.ndarray]
    starts: dict[str, np.ndarray] | None
    initial_energy: np.ndarray
    z: dict[str, np.ndarray]
    fields: dict[str, np.ndarray]


def _group(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}


def load_nuts(checkpoint: Checkpoint, settings: dict[str, Any]) -> NutsCheckpoint | None:
    """The NUTS checkpoint in ``checkpoint``, or None; :class:`CheckpointError` when it was
    written with other ``settings``."""
    saved = checkpoint.load(ARCHIVE)
    if saved is None:
        return None
    arrays, meta = saved
    checkpoint.check(ARCHIVE, meta, settings)
    state = [arrays[f"state.{i}"] for i in range(meta["state_leaves"])]
    starts = _group(arrays, "start.") or None
    return NutsCheckpoint(meta["iterations"], state, starts, arrays["initial_energy"],
                          _group(arrays, "z."), _group(arrays, "field."))


def _is_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_numpy(state: Any) -> list[np.ndarray]:
    """The leaves of ``state`` as NumPy arrays (the data of PRNG keys)."""
    return [np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
            for leaf in jax.tree.leaves(state)]


def _from_numpy(template: Any, leaves: list[np.ndarray]) -> Any:
    """A state shaped as ``template`` holding ``leaves`` (from :func:`_to_numpy`)."""
    slots, treedef = jax.tree.flatten(template)
    if len(slots) != len(leaves):
        raise CheckpointError(f"the checkpoint's sampler state has {len(leaves)} arrays, this "
                              f"fit's {len(slots)}: it is of another problem")
    restored = []
    for slot, leaf in zip(slots, leaves, strict=True):
        if _is_key(slot):
            restored.append(jax.random.wrap_key_data(jnp.asarray(leaf),
                                                     impl=jax.random.key_impl(slot)))
        elif leaf.shape != slot.shape or leaf.dtype != slot.dtype:
            raise CheckpointError(f"the checkpoint's sampler state holds a {leaf.dtype}"
                                  f"{list(leaf.shape)} array where this fit has a "
                                  f"{slot.dtype}{list(slot.shape)}: it is of another problem")
        else:
            restored.append(jnp.asarray(leaf))
    return jax.tree.unflatten(treedef, restored)


def _segment(kernel: Any, length: int) -> Callable[[Any], tuple[Any, Any]]:
    """``length`` transitions of ``kernel`` from a state of a batch of chains; returns the
    last state and the positions and statistics of every iteration, (length, batch, ...)."""

    def run(state):
        def step(state, _):
            state = kernel.sample(state, (), {})
            return state, (state.z, {name: getattr(state, name) for name in EXTRA_FIELDS})

        return jax.lax.scan(step, state, None, length=length)

    return run


def _chainwise(run: Callable, chain_method: str) -> Callable[[Any], tuple[Any, Any]]:
    """``run`` (see :func:`_segment`) compiled for all chains as ``chain_method`` says;
    the collected values come back as (chain, length, ...)."""
    if chain_method == "vectorized":
        batched = jax.jit(run)

        def vectorized(state):
            state, collected = batched(state)
            return state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), collected)

        return vectorized
    mapped = (jax.pmap(run) if chain_method == "parallel"
              else jax.jit(lambda states: jax.lax.map(run, states)))

    def chain_by_chain(state):  # each chain a batch of one
        state, collected = mapped(jax.tree.map(lambda x: x[:, None], state))
        return (jax.tree.map(lambda x: x[:, 0], state),
                jax.tree.map(lambda x: x[:, :, 0], collected))

    return chain_by_chain


def _save(checkpoint: Checkpoint, settings: dict[str, Any], saved: NutsCheckpoint) -> None:
    arrays = {f"state.{i}": leaf for i, leaf in enumerate(saved.state)}
    arrays.update({f"start.{k}": v for k, v in (saved.starts or {}).items()})
    arrays.update({f"z.{k}": v for k, v in saved.z.items()})
    arrays.update({f"field.{k}": v for k, v in saved.fields.items()})
    arrays["initial_energy"] = saved.initial_energy
    checkpoint.save(ARCHIVE, arrays, {"settings": settings, "iterations": saved.iterations,
                                      "state_leaves": len(saved.state)})


def _appended(saved: dict[str, np.ndarray], new: dict[str, Any], first: int
              ) -> dict[str, np.ndarray]:
    """``saved`` draws (chain, draw, ...) followed by ``new[:, first:]``."""
    new = {k: np.asarray(v)[:, first:] for k, v in new.items()}
    if not saved:
        return new
    return {k: np.concatenate([saved[k], new[k]], axis=1) for k in new}


def _started(key: jax.Array, kernel: Any, init_params: Any, num_warmup: int,
             num_chains: int, saved: NutsCheckpoint | None) -> tuple[Any, NutsCheckpoint]:
    """The kernel initialised for the whole run (one key per chain, as ``MCMC.run``), and
    the checkpoint to go on from: ``saved`` once checked to be of this problem, else the
    start."""
    state = kernel.init(jax.random.split(key, num_chains), num_warmup, init_params,
                        model_args=(), model_kwargs={})
    energy = np.asarray(state.potential_energy)
    if saved is None:
        starts = None if init_params is None else {k: np.asarray(v)
                                                   for k, v in init_params.items()}
        return state, NutsCheckpoint(0, _to_numpy(state), starts, energy, {}, {})
    if not np.array_equal(saved.initial_energy, energy):
        raise CheckpointError(
            f"the NUTS checkpoint is of another problem: the potential energy at its starting "
            f"points was {saved.initial_energy.tolist()}, here it is {energy.tolist()} (the "
            "observations, the model or its priors differ): remove the checkpoint to start "
            "afresh")
    return state, saved


def sample_nuts(key: jax.Array, kernel: Any, init_params: dict[str, Any] | None, *,
                num_warmup: int, num_samples: int, num_chains: int, chain_method: str,
                every: int, checkpoint: Checkpoint, settings: dict[str, Any],
                saved: NutsCheckpoint | None = None,
                say: Callable[..., None] = print) -> Draws:
    """Run ``kernel`` for ``num_warmup + num_samples`` iterations per chain in segments of
    ``every``, saving a checkpoint after each (see the module docstring).

    Parameters
    ----------
    key : JAX key
        Split into one key per chain, as ``MCMC.run`` does.
    kernel : numpyro.infer.NUTS
        Not yet initialised.
    init_params : dict of name -> (chain, ...) array, or None
        Unconstrained starting points (None: the kernel's own initialisation).
    num_warmup, num_samples, num_chains : int
        Per chain, as for ``MCMC``.
    chain_method : {'vectorized', 'parallel', 'sequential'}
    every : int
        Iterations per segment (and between checkpoints).
    checkpoint : Checkpoint
        Where the checkpoint is saved.
    settings : dict
        Recorded in the checkpoint; :func:`load_nuts` refuses a checkpoint with other ones.
    saved : NutsCheckpoint, optional
        The checkpoint to go on from (:func:`load_nuts`), checked against this problem.
    say : callable
        Receives a progress line after each segment.
    """
    if chain_method == "parallel" and jax.local_device_count() < num_chains:
        warnings.warn(f"{num_chains} chains but {jax.local_device_count()} devices: the "
                      "chains are drawn sequentially", UserWarning, stacklevel=2)
        chain_method = "sequential"
    template, saved = _started(key, kernel, init_params, num_warmup, num_chains, saved)
    if saved.iterations == 0:
        _save(checkpoint, settings, saved)
    total, runs = num_warmup + num_samples, {}
    state, done, z, fields = (_from_numpy(template, saved.state), saved.iterations, saved.z,
                              saved.fields)
    while done < total:
        length = min(int(every), total - done)
        if length not in runs:
            runs[length] = _chainwise(_segment(kernel, length), chain_method)
        state, (positions, statistics) = runs[length](state)
        first = max(0, num_warmup - done)
        z, fields = _appended(z, positions, first), _appended(fields, statistics, first)
        done += length
        leaves = _to_numpy(state)
        state = _from_numpy(template, leaves)  # as a resumed run would see it
        _save(checkpoint, settings, saved._replace(iterations=done, state=leaves, z=z,
                                                   fields=fields))
        phase = "warm-up" if done <= num_warmup else "sampling"
        say(f"  NUTS {done}/{total} iterations ({phase}); checkpoint {checkpoint.folder}")
    constrain = jax.jit(jax.vmap(jax.vmap(kernel.postprocess_fn((), {}))))
    samples = {k: np.asarray(v) for k, v in constrain(z).items()}
    return Draws(samples, fields)
