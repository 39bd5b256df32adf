"""The ``skipperdask`` command line: a thin layer over the Python API.

Sub-commands::

    skipperdask run       the seed's command line: metrics of many files into a catalogue
    skipperdask demo      a small simulated campaign processed on a local cluster
    skipperdask simulate  write simulated images whose truth is known
    skipperdask inspect   diagnostic figure of one image
    skipperdask report    HTML report of a catalogue
"""

import argparse
import sys

from . import __version__


def _add_run(subparsers):
    parser = subparsers.add_parser(
        "run",
        help="compute the metrics of many files into a catalogue (the seed's command line)",
        description="Compute the quality metrics of skipper-CCD FITS files on a Dask cluster.",
    )
    parser.set_defaults(handler=_not_yet)


def _add_demo(subparsers):
    parser = subparsers.add_parser(
        "demo", help="simulate a small campaign and process it on a local cluster"
    )
    parser.set_defaults(handler=_not_yet)


def _add_simulate(subparsers):
    parser = subparsers.add_parser("simulate", help="write simulated images with known truth")
    parser.set_defaults(handler=_not_yet)


def _add_inspect(subparsers):
    parser = subparsers.add_parser("inspect", help="diagnostic figure of one image")
    parser.set_defaults(handler=_not_yet)


def _add_report(subparsers):
    parser = subparsers.add_parser("report", help="HTML report of a catalogue")
    parser.set_defaults(handler=_not_yet)


def _not_yet(args):
    print(f"skipperdask {args.command}: not implemented yet", file=sys.stderr)
    return 2


def build_parser():
    """The argument parser of the ``skipperdask`` command."""
    parser = argparse.ArgumentParser(
        prog="skipperdask",
        description="Image-quality metrics of skipper-CCD images, at campaign scale.",
    )
    parser.add_argument("--version", action="version", version=f"skipperdask {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_run, _add_demo, _add_simulate, _add_inspect, _add_report):
        add(subparsers)
    return parser


def main(argv=None):
    """Run the ``skipperdask`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args)
