"""Resumable runs: NUTS and the LETKF save checkpoints as they go, and a fit continued from
one gives the posterior of the same fit never interrupted (same seed), to the last bit.

Interruptions are real: an exception raised right after the k-th checkpoint is saved (as
Ctrl-C would be), SIGKILL and SIGTERM sent to a ``tracerbayes run`` process. Every
comparison is against an uninterrupted fit; nothing about the inference is replaced.
"""

import functools
import hashlib
import json
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from numpyro.infer import NUTS as NUTSKernel
from test_cli import TINY, _Run, tiny_config

import tracerbayes as tb
import tracerbayes.fitting
from tracerbayes.cli import config as tbc
from tracerbayes.cli.main import main
from tracerbayes.cli.resume import CHECKPOINT
from tracerbayes.exact import resumable
from tracerbayes.io.checkpoint import Checkpoint, CheckpointError
from tracerbayes.io.files import LOCK_NAME

NUTS_FIT = {"method": "nuts", "num_warmup": 20, "num_samples": 20, "num_chains": 2, "seed": 1,
            "init": "prior", "progress": False}
LETKF_FIT = {"method": "letkf", "ensemble_size": 16, "seed": 1, "parameters": None,
             "progress": False}


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """The tiny basin's model, simulated observations and analysis times."""
    folder = tmp_path_factory.mktemp("tiny")
    config = tiny_config(folder)
    assert main(["simulate", str(config), "-q"]) == 0
    cfg = tbc.load_config(config)
    grid, obs = tbc.build_grid(cfg), tbc.build_observations(cfg)
    times = tbc.build_times(cfg, obs)
    return tbc.build_model(cfg, grid, obs, n_times=len(times)), obs, times


class Interrupted(KeyboardInterrupt):
    """Raised right after a chosen checkpoint save, as Ctrl-C would be."""


def interrupt_after(monkeypatch, saves: int) -> None:
    """Make the ``saves``-th :meth:`Checkpoint.save` from now raise :class:`Interrupted`
    once its archive is written."""
    original, count = Checkpoint.save, [0]

    def save(self, name, arrays, meta):
        original(self, name, arrays, meta)
        count[0] += 1
        if count[0] == saves:
            raise Interrupted

    monkeypatch.setattr(Checkpoint, "save", save)


def saved_iterations(folder) -> int:
    """Iterations done in the NUTS checkpoint under ``folder`` (0 if none yet)."""
    loaded = Checkpoint(folder).load("nuts")
    return 0 if loaded is None else loaded[1]["iterations"]


def assert_same_draws(a, b) -> None:
    assert a.samples.keys() == b.samples.keys() and a.sample_stats.keys() == b.sample_stats.keys()
    for name in a.samples:
        np.testing.assert_array_equal(a.samples[name], b.samples[name], err_msg=name)
    for name in a.sample_stats:
        np.testing.assert_array_equal(a.sample_stats[name], b.sample_stats[name], err_msg=name)


# ------------------------------------------------------------------ NUTS, in process
def correlated_model():
    """A correlated Gaussian and a log-normal scale: dense mass adaptation and a transform."""
    numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(2),
                                                jnp.array([[1.0, 0.9], [0.9, 1.0]])))
    numpyro.sample("scale", dist.LogNormal(0.0, 0.5))


def sample_correlated(folder, every: int, chain_method: str):
    """30 warm-up and 30 sampling iterations of 2 chains, checkpointed in ``folder``."""
    settings = {"chain_method": chain_method}
    checkpoint = Checkpoint(folder)
    return resumable.sample_nuts(jax.random.key(3), NUTSKernel(correlated_model), None,
                                 num_warmup=30, num_samples=30, num_chains=2,
                                 chain_method=chain_method, every=every, checkpoint=checkpoint,
                                 settings=settings,
                                 saved=resumable.load_nuts(checkpoint, settings),
                                 say=lambda line: None)


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_sampler_resumed_mid_warmup_equals_one_uninterrupted_segment(tmp_path, monkeypatch,
                                                                     chain_method):
    whole = sample_correlated(tmp_path / "whole", 60, chain_method)
    interrupt_after(monkeypatch, 3)  # the start, then 10 and 20 of the 30 warm-up iterations
    with pytest.raises(Interrupted):
        sample_correlated(tmp_path / "cut", 10, chain_method)
    monkeypatch.undo()
    assert saved_iterations(tmp_path / "cut") == 20
    resumed = sample_correlated(tmp_path / "cut", 10, chain_method)
    assert resumed.samples["x"].shape == (2, 30, 2)
    for name in whole.samples:
        np.testing.assert_array_equal(resumed.samples[name], whole.samples[name])
    for name in resumable.EXTRA_FIELDS:
        np.testing.assert_array_equal(resumed.fields[name], whole.fields[name])
    # and they are the target's: correlation 0.9, a positive scale with median 1
    x = whole.samples["x"].reshape(-1, 2)
    assert np.corrcoef(x.T)[0, 1] > 0.6 and 0.5 < np.median(whole.samples["scale"]) < 2.0


@pytest.mark.slow
def test_nuts_resumed_mid_warmup_equals_one_uninterrupted_segment(problem, tmp_path,
                                                                  monkeypatch):
    model, obs, times = problem
    # Reference: the whole run (20 warm-up + 20 sampling iterations) as one segment.
    whole = tb.fit(model, obs, times, checkpoint=tmp_path / "whole", checkpoint_every=40,
                   **NUTS_FIT)
    # Segments of 10, interrupted after the second save (the start, then 10 iterations:
    # in the middle of the warm-up's adaptation), then resumed.
    folder = tmp_path / "cut"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        tb.fit(model, obs, times, checkpoint=folder, checkpoint_every=10, **NUTS_FIT)
    monkeypatch.undo()
    assert saved_iterations(folder) == 10
    resumed = tb.fit(model, obs, times, checkpoint=folder, checkpoint_every=10, **NUTS_FIT)
    assert saved_iterations(folder) == 40
    assert resumed.samples["diffusivity"].shape == (2, 20)
    assert_same_draws(resumed, whole)
    maps, reference = resumed.maps(n_draws=8), whole.maps(n_draws=8)
    for name in ("mean", "sd"):
        np.testing.assert_allclose(maps[name].values, reference[name].values, rtol=1e-12,
                                   atol=1e-12 * float(np.nanmax(np.abs(reference["mean"]))))


def test_a_nuts_checkpoint_of_other_settings_or_data_is_refused(problem, tmp_path,
                                                                monkeypatch):
    model, obs, times = problem
    folder = tmp_path / "checkpoint"
    interrupt_after(monkeypatch, 1)  # the first save: the initial state
    with pytest.raises(Interrupted):
        tb.fit(model, obs, times, checkpoint=folder, **NUTS_FIT)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=(
            r"checkpoint .*nuts\.npz was written by a fit with num_samples=20, seed=1; this "
            r"fit has num_samples=30, seed=2: fit with the same settings")):
        tb.fit(model, obs, times, checkpoint=folder, **{**NUTS_FIT, "num_samples": 30, "seed": 2})
    fewer = obs.select(np.arange(len(obs)) % 2 == 0)
    with pytest.raises(CheckpointError, match="the NUTS checkpoint is of another problem: the "
                                              "potential energy at its starting points"):
        tb.fit(model, fewer, times, checkpoint=folder, **NUTS_FIT)


# ------------------------------------------------------------------ LETKF, in process
@pytest.mark.parametrize("lag", [None, 2])
def test_letkf_resumed_and_chunked_equal_one_uninterrupted_scan(problem, tmp_path,
                                                                monkeypatch, lag):
    model, obs, times = problem
    whole = tb.fit(model, obs, times, lag=lag, **LETKF_FIT)  # one scan over the 5 cycles
    folder = tmp_path / "cut"
    interrupt_after(monkeypatch, 4)  # chunk 0 and its carry, chunk 1 and its carry
    with pytest.raises(Interrupted):
        tb.fit(model, obs, times, lag=lag, checkpoint=folder, checkpoint_every=2, **LETKF_FIT)
    monkeypatch.undo()
    assert json.loads(str(np.load(folder / "ensemble.npz")["meta"]))["done"] == 4
    resumed = tb.fit(model, obs, times, lag=lag, checkpoint=folder, checkpoint_every=2,
                     **LETKF_FIT)
    np.testing.assert_array_equal(resumed.members, whole.members)
    for name in whole.cycle:
        np.testing.assert_array_equal(resumed.cycle[name], whole.cycle[name], err_msg=name)
    with pytest.raises(CheckpointError, match="ensemble_size=16.*ensemble_size=8"):
        tb.fit(model, obs, times, lag=lag, checkpoint=folder, **{**LETKF_FIT, "ensemble_size": 8})


# ------------------------------------------------------------------ the command line
RUN = (TINY.replace("num_chains: 1", "num_chains: 2").replace("num_samples: 20",
                                                                "num_samples: 40")
       .replace("output: {directory: out, maps: png}",
                "output: {directory: out, maps: none, diagnostics: false, "
                "checkpoint_every: 10}"))


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("tracerbayes: ")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def run_config(tmp_path):
    """The tiny config (2 chains of 20 + 40 iterations, checkpoints every 10, posterior.nc
    only) with its simulated observations."""
    config = tiny_config(tmp_path)
    config.write_text(RUN)
    assert main(["simulate", str(config), "-q", "-o", str(tmp_path)]) == 0
    return config


def test_cli_refuses_a_checkpoint_without_resume_and_another_runs_with_it(
        run_config, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    folder = out / CHECKPOINT
    folder.mkdir(parents=True)
    other = tmp_path / "other.yaml"
    (folder / "identity.json").write_text(json.dumps(
        {"config": str(other), "sha256": "0" * 64, "seed": 1}))
    calls = []

    @functools.wraps(tracerbayes.fitting.fit)  # keeps the signature the config checks
    def refuse(*args, **options):
        calls.append(options)
        raise AssertionError("the fit ran")

    monkeypatch.setattr(tracerbayes.fitting, "fit", refuse)
    assert main(["run", str(run_config), "-q", "-o", str(out)]) == 1
    assert one_error_line(capsys) == (
        f"tracerbayes: error: output folder {out} holds the checkpoint of an interrupted run "
        f"of {other} (seed 1): pass --resume to continue it, or --overwrite to discard it "
        "and start afresh")
    assert main(["run", str(run_config), "-q", "-o", str(out), "--resume"]) == 1
    assert one_error_line(capsys) == (
        f"tracerbayes: error: the checkpoint in {folder} is of a run of {other} (sha256 "
        f"000000000000, seed 1), not of this run of {run_config.resolve()} (sha256 "
        f"{sha256_of(run_config)[:12]}, seed 1): resume with that config and seed, or pass "
        "--overwrite without --resume to discard the checkpoint and start afresh")
    assert calls == [] and (folder / "identity.json").exists()


@pytest.mark.slow
def test_cli_run_terminated_then_killed_resumes_to_the_uninterrupted_posterior(
        run_config, tmp_path, capsys):
    out, runs = tmp_path / "resumed", []
    folder = out / CHECKPOINT
    try:
        # The reference, uninterrupted (--resume without a checkpoint: from the start).
        runs.append(run := _Run(run_config, tmp_path / "whole", "--resume"))
        assert run.proc.wait(timeout=900) == 0, run.proc.stderr.read()
        assert "--resume: no checkpoint in" in "".join(run.lines)
        # SIGTERM in the warm-up (20 iterations), once 10 are saved: exit 143, the last
        # complete checkpoint left (no temporary, no lock), ready for --resume.
        runs.append(run := _Run(run_config, out))
        run.wait_for(lambda: saved_iterations(folder) >= 10)
        rc, err = run.stop(signal.SIGTERM)
        assert rc == 143, err
        stopped_at = saved_iterations(folder)
        assert 10 <= stopped_at < 60 and not (out / "posterior.nc").exists()
        assert not list(out.rglob("*.part")) and not (out / LOCK_NAME).exists()
        # Without --resume the folder is refused; another seed cannot resume it.
        assert main(["run", str(run_config), "-q", "-o", str(out)]) == 1
        assert "holds the checkpoint of an interrupted run" in one_error_line(capsys)
        assert main(["run", str(run_config), "-q", "-o", str(out), "--resume",
                     "--seed", "2"]) == 1
        assert "seed 1), not of this run of" in one_error_line(capsys)
        # Resumed, then SIGKILL once the checkpoint holds a segment of draws.
        runs.append(run := _Run(run_config, out, "--resume"))
        run.wait_for(lambda: saved_iterations(folder) >= max(stopped_at, 20) + 10)
        assert run.stop(signal.SIGKILL)[0] == -signal.SIGKILL
        assert "--resume: continuing the checkpoint" in "".join(run.lines)
        assert 30 <= saved_iterations(folder) < 60
        draws = Checkpoint(folder).load("nuts")[0]["z.diffusivity"]
        assert draws.shape[0] == 2 and draws.shape[1] >= 10
        runs.append(run := _Run(run_config, out, "--resume"))
        assert run.proc.wait(timeout=900) == 0, run.proc.stderr.read()
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not folder.exists()
    with (xr.open_dataset(out / "posterior.nc") as resumed,
          xr.open_dataset(tmp_path / "whole" / "posterior.nc") as whole):
        scale = float(np.nanmax(np.abs(whole["mean"].values)))
        for name in ("mean", "sd", "quantiles"):
            np.testing.assert_allclose(resumed[name].values, whole[name].values, rtol=1e-12,
                                       atol=1e-12 * scale, err_msg=name)
        summary = {k: v for k, v in whole.attrs.items() if k.startswith("posterior_")}
        assert summary and {k: resumed.attrs[k] for k in summary} == summary
    shutil.rmtree(tmp_path / "jax_cache", ignore_errors=True)
