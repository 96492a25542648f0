"""Posteriors: the exact (mixture) posterior of NUTS, the ensemble posteriors, scores (metrics)."""

from tracerbayes.posterior.exact import Posterior, chain_diagnostics, parameter_summary

__all__ = ["Posterior", "chain_diagnostics", "parameter_summary"]
