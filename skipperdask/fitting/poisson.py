"""The Poisson and normal functions the fits call in their loops, through ``scipy.special``.

``scipy.stats``' distribution methods check and broadcast their arguments on every call
(100-200 µs each): the tail ratio's root search and the cluster mask's thresholds called them
hundreds of times per amplifier, a third of the analysis of a DAMIC-M image.
"""

import numpy as np
from scipy import special


def normal_sf(x):
    """The standard normal upper tail, ``scipy.stats.norm.sf(x)``."""
    return special.ndtr(-np.asarray(x, dtype=float))


def poisson_pmf(k, lam):
    """``scipy.stats.poisson.pmf(k, lam)`` for whole ``k >= 0`` and ``lam >= 0``."""
    k = np.asarray(k, dtype=float)
    return np.exp(special.xlogy(k, lam) - lam - special.gammaln(k + 1))


def poisson_isf(q, lam):
    """The smallest whole ``k`` with P(K > k) <= ``q`` for K ~ Poisson(``lam``):
    ``scipy.stats.poisson.isf(q, lam)`` (0 when ``lam`` is 0).

    Parameters
    ----------
    q : float
        A probability, 0 < q < 1.
    lam : float
        The mean, >= 0.
    """
    if lam <= 0:
        return 0
    # the answer lies below lam + 10 sqrt(lam) + 50 for any q >= 1e-16
    k = np.arange(int(lam + 10 * np.sqrt(lam) + 50) + 1)
    upper = special.pdtrc(k, lam)  # P(K > k)
    return int(k[np.argmax(upper <= q)]) if upper[-1] <= q else int(k[-1])
