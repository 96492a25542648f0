"""Methods as objects (tracerbayes.methods): settings checked when built, the config's
``method:`` sections generated from the same classes, the string convenience equal to the
object, and ``auto`` handing its settings to the method it picks."""

import dataclasses

import numpy as np
import pytest
from test_laplace import problem

import tracerbayes as tb
from tracerbayes import methods
from tracerbayes.cli.config.sections import METHODS as CONFIG_METHODS
from tracerbayes.cli.config.sections import method_object
from tracerbayes.schema import SettingsError


def _settings(cls):
    return {f.name: f.default for f in dataclasses.fields(cls) if "kind" in f.metadata}


@pytest.mark.parametrize(("build", "message"), [
    (lambda: tb.NUTS(num_warmup=0), "NUTS: num_warmup: expected an integer >= 1, got 0"),
    (lambda: tb.NUTS(target_accept=1.5), "NUTS: target_accept: expected a number > 0 and <= 1"),
    (lambda: tb.NUTS(chain_method="paralel"), "did you mean 'parallel'?"),
    (lambda: tb.NUTS(dense_mass="yes"), "NUTS: dense_mass: expected true or false, got 'yes'"),
    (lambda: tb.Laplace(map_modes="many"), "Laplace: map_modes: expected 'auto' "),
    (lambda: tb.LETKF(localisation="3 days"), "LETKF: localisation: '3 days' is a"),
    (lambda: tb.LETKF(localisation=-1.0),
     "LETKF: localisation: expected length in km, > 0, got -1"),
    (lambda: tb.ETKF(inflation=0.9), "ETKF: inflation: expected a number >= 1, got 0.9"),
    (lambda: tb.EnKF(parameters={"diffusivity": "big"}),
     "EnKF: parameters.diffusivity: expected a number, got 'big'"),
    (lambda: tb.EKI(eks_iterations=10, eks_burn_in=10),
     "EKI: eks_burn_in: must be below eks_iterations \\(10\\), got 10"),
])
def test_settings_are_checked_when_the_method_is_built(build, message):
    with pytest.raises(SettingsError, match=message):
        build()


def test_every_problem_is_named_at_once_and_quantities_are_converted():
    with pytest.raises(SettingsError) as err:
        tb.NUTS(num_warmup=-1, num_chains=0)
    assert [key for key, _ in err.value.problems] == ["num_warmup", "num_chains"]
    assert tb.LETKF(localisation="150000 m").localisation == 150.0
    assert tb.LETKF(localisation=np.float32(40)).localisation == 40.0
    assert tb.NUTS(num_samples=np.int64(7)).num_samples == 7  # NumPy integers are integers
    assert tb.EnKF(parameters=None).parameters == "prior"


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_config_sections_are_the_method_classes_plus_the_runs_keys(name):
    """One declaration: the same keys, defaults and descriptions, plus seed and
    allow_unconverged; a section's method object is the plain method."""
    cls, section = methods.METHODS[name], CONFIG_METHODS[name]
    assert issubclass(section, cls) and cls.name == name
    assert _settings(section) == {**_settings(cls), "seed": 0, "allow_unconverged": False}
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(section)}
    assert all(docs[f.name] == f.metadata["doc"] for f in dataclasses.fields(cls))
    plain = method_object(section(seed=4))
    assert type(plain) is cls and plain == cls()


def test_a_method_name_with_settings_is_the_method_object():
    model, obs, times = problem()
    obs = dataclasses.replace(obs, units="degC")
    by_name = tb.fit(model, obs, times, "laplace", map_draws=4, map_modes=10, progress=False)
    by_object = tb.fit(model, obs, times, tb.Laplace(map_draws=4, map_modes=10),
                       progress=False)
    assert by_name.method == by_object.method == "laplace"
    assert by_object.maps(n_draws=2)["mean"].attrs["units"] == "degC"  # from the observations
    for name, draws in by_name.samples.items():
        np.testing.assert_allclose(draws, by_object.samples[name], rtol=1e-12)
    with pytest.raises(TypeError, match="method 'laplace' has no setting num_warmup"):
        tb.fit(model, obs, times, "laplace", num_warmup=10)
    with pytest.raises(TypeError, match="method must be a method object"):
        tb.fit(model, obs, times, methods.NUTS)  # the class, not an object


def test_auto_hands_its_settings_to_the_method_it_picks():
    model, _, times = problem()
    chosen, reason = tb.Auto(num_warmup=50, num_chains=2, map_draws=7).choose(model, times)
    assert chosen == tb.NUTS(num_warmup=50, num_chains=2) and "within the budget" in reason
    chosen, reason = tb.Auto(num_warmup=10**9, map_draws=7).choose(model, times)
    assert chosen == tb.Laplace(map_draws=7) and "exceeds the budget" in reason
