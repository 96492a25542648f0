"""Dense Gaussian references shared by the tests (no pytest fixtures here)."""

import numpy as np


def stacked_moments(m0, P0, F, Q):
    """Mean (T n,) and covariance (T n, T n) of the trajectory ``x_{0:T-1}``.

    ``F, Q`` have shape (T - 1, n, n). ``x = G (x_0, w_0, ..., w_{T-2})`` with ``G`` the
    block lower-triangular matrix of transition products.
    """
    F, Q = np.asarray(F), np.asarray(Q)
    T, n = F.shape[0] + 1, F.shape[1]
    G = np.zeros((T * n, T * n))
    for k in range(T):
        block = np.eye(n)
        # x_k = F_{k-1} ... F_j (innovation j), innovation 0 = x_0, innovation j = w_{j-1}.
        for j in range(k, -1, -1):
            G[k * n:(k + 1) * n, j * n:(j + 1) * n] = block
            if j > 0:
                block = block @ F[j - 1]
    D = np.zeros((T * n, T * n))
    D[:n, :n] = P0
    for j in range(1, T):
        D[j * n:(j + 1) * n, j * n:(j + 1) * n] = Q[j - 1]
    mean = G[:, :n] @ np.asarray(m0)
    return mean, G @ D @ G.T
