"""Twin experiments: synthetic truths, observing platforms, scenarios (never imported by the
numerics).
"""
