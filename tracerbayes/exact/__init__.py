"""The exact path: Kalman filter/smoother (sequential and parallel), priors, the reduced model, the
NumPyro Distribution.
"""
