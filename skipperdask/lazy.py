"""A package's public names imported on first use (PEP 562), so that importing one light
module of a package does not import its heavy siblings: a campaign's client needs
``io.layout`` but not numba and dask.array, ``run``'s live page ``plots.live`` but not
matplotlib and scipy.stats, the command line's parser ``simulate.truth`` but not the
simulation itself."""

import importlib


def lazy_exports(package, exports):
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of a package whose names are imported
    from its modules on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict of str to tuple of str
        Relative module name (``".layout"``) -> the names it gives the package.

    Returns
    -------
    (callable, callable, list of str)
    """
    module_of = {name: module for module, names in exports.items() for name in names}
    names = sorted(module_of)

    def __getattr__(name):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module_of[name], package), name)

    def __dir__():
        return names

    return __getattr__, __dir__, names
