"""skipperdask's errors: one tree, so that a caller catches :class:`SkipperError` for all of
them and the command line maps each kind to its exit status in one place
(:mod:`skipperdask.cli.errors`).

- :class:`BadFileError`: an input file cannot be read or processed (its message names it);
- :class:`BadOptionError`: an option or setting that cannot be used (also a ``ValueError``);
- :class:`OutputExistsError`: an output that would be overwritten without being asked to
  (a bad option too, and a ``FileExistsError``);
- :class:`CatalogueError`: a catalogue cannot be read or written;
- :class:`Interrupted`: a campaign stopped by Ctrl-C (a ``KeyboardInterrupt``, not a
  ``SkipperError``: catching every skipperdask error never swallows Ctrl-C).
"""


class SkipperError(Exception):
    """The root of skipperdask's errors: what went wrong, in words a physicist understands."""


class BadFileError(SkipperError):
    """A skipper-CCD file cannot be read or processed.

    Parameters
    ----------
    path : str or os.PathLike
        The file concerned.
    problem : str
        What is wrong with it.
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # keep the two fields when the error travels from a worker to the client
        return (type(self), (self.path, self.problem))


class BadOptionError(SkipperError, ValueError):
    """An option, argument or setting whose value cannot be used."""


class OutputExistsError(BadOptionError, FileExistsError):
    """An output file exists and overwriting it was not asked for."""


class CatalogueError(SkipperError):
    """A catalogue cannot be read or written."""


class Interrupted(KeyboardInterrupt):
    """A campaign stopped by Ctrl-C after committing what it had finished; its message says
    how many images are safe in which catalogue."""
