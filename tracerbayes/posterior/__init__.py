"""Posteriors: the abstract posterior, the exact (mixture) posterior of NUTS and Laplace, the
ensemble posteriors, scores (metrics)."""

from tracerbayes.posterior.base import AbstractPosterior
from tracerbayes.posterior.exact import Posterior, chain_diagnostics, parameter_summary

__all__ = ["AbstractPosterior", "Posterior", "chain_diagnostics", "parameter_summary"]
