"""The ``skipperdask`` command line: a thin layer over the Python API, one module per command.

Sub-commands::

    skipperdask run       the original tool's command line: metrics of many files into a catalogue
    skipperdask watch     a DAQ's directory processed live, each image once it is whole, alerts
    skipperdask demo      a small simulated campaign processed on a local cluster
    skipperdask simulate  write simulated images whose truth is known
    skipperdask inspect   diagnostic figure of one image
    skipperdask report    HTML report of a catalogue

Each module has ``add_parser(subparsers)`` and ``run(args)``; :func:`main` turns the errors
they raise into a message and an exit status, here only (:data:`EXIT_STATUS`).
"""

import argparse
import logging
import os
import sys
import traceback

from ..errors import BadOptionError, Interrupted, SkipperError
from ..version import __version__
from . import demo, inspect, report, run, simulate, watch

#: the exit status of each kind of error, the first that matches: a bad option is a usage
#: error (2, as argparse's own); any other problem (a bad file, a catalogue, the disk) is 1
EXIT_STATUS = ((BadOptionError, 2), (SkipperError, 1), (OSError, 1))

#: the exit status after Ctrl-C: 128 + SIGINT, as a shell reports a process it interrupted
INTERRUPTED = 130

_COMMANDS = (run, watch, demo, simulate, inspect, report)


def build_parser():
    """The argument parser of the ``skipperdask`` command."""
    parser = argparse.ArgumentParser(
        prog="skipperdask",
        description="Image-quality metrics of skipper-CCD images, at campaign scale.",
    )
    parser.add_argument("--version", action="version", version=f"skipperdask {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="details: an error's traceback, and the log messages of this "
                        "process (client, scheduler) from INFO level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None):
    """Run the ``skipperdask`` command; returns the exit status.

    An error of :data:`EXIT_STATUS` is printed on standard error as
    ``skipperdask COMMAND: message``, one line, with its traceback before it only with
    ``-v``.
    """
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("distributed").setLevel(logging.INFO)
    try:
        return args.handler(args)
    except tuple(kind for kind, _ in EXIT_STATUS) as error:
        if args.verbose:
            traceback.print_exc()
        print(f"skipperdask {args.command}: {_one_line(error)}", file=sys.stderr)
        return next(status for kind, status in EXIT_STATUS if isinstance(error, kind))
    except KeyboardInterrupt as error:  # Ctrl-C: one line, the shell's status for SIGINT
        message = str(error) if isinstance(error, Interrupted) else "interrupted"
        print(f"\nskipperdask {args.command}: {message}", file=sys.stderr, flush=True)
        return INTERRUPTED


def _one_line(error):
    """An error's message on one line; an OSError's with its file (``[Errno 28] …`` alone
    names nothing)."""
    if isinstance(error, OSError) and not isinstance(error, SkipperError) and error.strerror:
        where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f)
        return f"{where}: {error.strerror}" if where else error.strerror
    return " ".join(str(error).split())


def console_main():
    """The ``skipperdask`` program: :func:`main`, and after a Ctrl-C an immediate exit.

    By then the catalogue is committed and the cluster closed; what the interpreter would
    still do at exit (joining the threads of distributed's pools) took up to a second,
    which a user who pressed Ctrl-C should not wait for.
    """
    status = main()
    if status == INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status
