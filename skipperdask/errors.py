"""The package's own error class: every message names the file and the problem."""


class SkipperError(Exception):
    """A skipper-CCD file cannot be read or processed.

    Parameters
    ----------
    path : str or os.PathLike
        The file concerned.
    problem : str
        What is wrong with it, in words a physicist understands.
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # keep the two fields when the error travels from a worker to the client
        return (type(self), (self.path, self.problem))
