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
    from .simulate import DRIFT_KINDS, DTYPES, Truth

    parser = subparsers.add_parser(
        "simulate",
        help="write simulated images with known truth",
        description="Write a small simulated campaign (Img_1.fits, Img_2.fits, ... and "
        "truth.csv) whose gain, noise, dark current and defects are known.",
    )
    parser.add_argument("directory", help="where to write the images (created if needed)")
    parser.add_argument(
        "-n", "--images", metavar="N", type=int, default=5, help="number of images (default: 5)"
    )
    truth_options = [  # option, Truth field, type, choices, help
        ("--nrows", "nrows", int, None, "rows per amplifier"),
        ("--ncols", "ncols", int, None, "columns per amplifier"),
        ("--nskips", "nskips", int, None, "samples per pixel (NDCMS)"),
        ("--gain", "gain", float, None, "gain, ADU per electron"),
        ("--noise", "read_noise", float, None, "single-sample read noise, ADU"),
        ("--dark-current", "dark_current", float, None, "electrons per pixel at 600 s exposure"),
        ("--pedestal", "pedestal", float, None, "baseline of an empty pixel, ADU"),
        ("--polarity", "polarity", int, (-1, 1), "-1: charge lowers the value; +1: raises it"),
        ("--drift", "drift", float, None, "baseline drift along rows, ADU per row"),
        ("--drift-kind", "drift_kind", str, DRIFT_KINDS, "how the baseline drifts"),
        ("--tracks", "tracks", int, None, "tracks and blobs of charge per amplifier"),
        ("--track-charge", "track_charge", float, None, "electrons per pixel of a track"),
        ("--charge-loss", "charge_loss", float, None, "probability to lose an e- per sample"),
        ("--amps", "namps", int, None, "amplifiers per file, one HDU each"),
        ("--dtype", "dtype", str, DTYPES, "storage type"),
    ]
    resolved_later = {"polarity": "-1 raw, +1 averaged", "dtype": "uint32 raw, float32 averaged"}
    for option, field, kind, choices, text in truth_options:
        default = resolved_later.get(field, getattr(Truth, field))
        parser.add_argument(
            option, dest=field, type=kind, choices=choices, help=f"{text} (default: {default})"
        )
    parser.add_argument(
        "--averaged", action="store_true", default=None, help="write averaged images (Avg_Img_*)"
    )
    parser.add_argument(
        "--n-averaged",
        metavar="N",
        type=int,
        default=0,
        help="write the last N images averaged (default: 0)",
    )
    parser.add_argument(
        "--compress",
        dest="compressed",
        action="store_true",
        default=None,
        help="tile-compressed HDUs (.fits.fz, lossless)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(handler=_simulate, truth_fields=[o[1] for o in truth_options])


def _simulate(args):
    from .simulate import simulate_campaign

    overrides = {
        field: getattr(args, field)
        for field in [*args.truth_fields, "averaged", "compressed"]
        if getattr(args, field) is not None
    }
    try:
        paths = simulate_campaign(
            args.directory,
            args.images,
            seed=args.seed,
            n_averaged=args.n_averaged,
            overwrite=args.overwrite,
            **overrides,
        )
    except (FileExistsError, ValueError) as error:
        print(f"skipperdask simulate: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


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
