"""Reference systems from the literature used to check the ensemble engine (Lorenz-96)."""
