"""Ensemble data assimilation: EnKF, ETKF, LETKF, inflation, localisation, cycle, smoother.

All functions are pure JAX and jit-able; ensembles ``E`` have shape (N_e, n), one member per
row. Float64 is recommended (``jax.config.update("jax_enable_x64", True)`` at your entry
point); nothing here changes JAX's configuration.
"""

from tracerbayes.ensemble.analysis import (
    enkf,
    enkf_transform,
    etkf,
    etkf_transform,
    letkf,
    observe,
    random_rotation,
)
from tracerbayes.ensemble.cycle import (
    CycleObservations,
    CycleResult,
    ObsAtTime,
    Stencil,
    enkf_analysis,
    etkf_analysis,
    letkf_analysis,
    run_cycle,
)
from tracerbayes.ensemble.inflation import (
    AdaptiveInflation,
    adaptive_inflation_update,
    additive,
    innovation_inflation,
    mass_free_additive,
    mass_free_multiplicative,
    multiplicative,
    project_mass_free,
    relax_to_prior_spread,
)
from tracerbayes.ensemble.localisation import (
    EARTH_RADIUS_KM,
    WeightNodes,
    distance_rows,
    distance_table,
    euclidean,
    gaspari_cohn,
    great_circle_km,
    mass_safe_letkf,
    ring_distance,
)
from tracerbayes.ensemble.smoother import (
    SmootherEnsembles,
    ensemble_smoother,
    etkf_transform_step,
)
from tracerbayes.ensemble.tracer import (
    NoiseField,
    TracerTransition,
    initial_ensemble,
    noise_field,
    sample_noise,
    state_coordinates,
    stencil_observations,
    tracer_transition,
    weight_nodes,
)
from tracerbayes.ensemble.window import (
    GlobalUpdate,
    LocalUpdate,
    WindowCheckpoint,
    WindowResult,
    smooth_window,
)

__all__ = [
    "AdaptiveInflation",
    "CycleObservations",
    "CycleResult",
    "GlobalUpdate",
    "LocalUpdate",
    "NoiseField",
    "Stencil",
    "TracerTransition",
    "WeightNodes",
    "WindowCheckpoint",
    "WindowResult",
    "EARTH_RADIUS_KM",
    "ObsAtTime",
    "SmootherEnsembles",
    "adaptive_inflation_update",
    "additive",
    "distance_rows",
    "distance_table",
    "enkf",
    "enkf_analysis",
    "enkf_transform",
    "ensemble_smoother",
    "etkf",
    "etkf_analysis",
    "etkf_transform",
    "etkf_transform_step",
    "euclidean",
    "gaspari_cohn",
    "great_circle_km",
    "initial_ensemble",
    "innovation_inflation",
    "letkf",
    "letkf_analysis",
    "mass_free_additive",
    "mass_free_multiplicative",
    "mass_safe_letkf",
    "multiplicative",
    "noise_field",
    "observe",
    "project_mass_free",
    "random_rotation",
    "relax_to_prior_spread",
    "ring_distance",
    "run_cycle",
    "sample_noise",
    "smooth_window",
    "state_coordinates",
    "stencil_observations",
    "tracer_transition",
    "weight_nodes",
]
