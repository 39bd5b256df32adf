"""The compiled fits' own linear algebra, against numpy's (LAPACK)."""

import numpy as np

from skipperdask.fitting.engine import solve
from skipperdask.fitting.gaussian import _symmetric_eigen


def test_solve_equals_lapack_and_reports_a_singular_matrix():
    rng = np.random.default_rng(1)
    for size in (1, 3, 5, 14):
        for _ in range(50):
            matrix, rhs = rng.normal(size=(size, size)), rng.normal(size=size)
            solution, regular = solve(matrix, rhs)
            assert regular
            expected = np.linalg.solve(matrix, rhs)
            # Gaussian elimination with partial pivoting, as gesv: to rounding × condition
            tolerance = 1e-12 * np.linalg.cond(matrix) * np.abs(expected).max()
            np.testing.assert_allclose(solution, expected, rtol=0, atol=tolerance)
    assert not solve(np.zeros((3, 3)), np.ones(3))[1]
    assert not solve(np.array([[1.0, 2.0], [2.0, 4.0]]), np.ones(2))[1]


def test_symmetric_eigen_decomposes_any_scale():
    rng = np.random.default_rng(2)
    for _ in range(500):
        matrix = rng.normal(size=(3, 3)) * 10.0 ** rng.uniform(-6, 6, size=(3, 1))
        matrix = matrix + matrix.T
        values, vectors = _symmetric_eigen(matrix)
        scale = np.abs(matrix).max()
        np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, matrix, rtol=0,
                                   atol=1e-13 * scale)
        np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), rtol=0, atol=1e-13)
        np.testing.assert_allclose(np.sort(values), np.linalg.eigvalsh(matrix), rtol=0,
                                   atol=1e-13 * scale)
