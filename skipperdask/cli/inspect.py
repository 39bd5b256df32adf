"""``skipperdask inspect``: the diagnostic figures of one image
(:func:`skipperdask.plots.inspect_image`)."""

import os

from .arguments import add_metric_options


def add_parser(subparsers):
    """The ``inspect`` sub-command and its options."""
    parser = subparsers.add_parser(
        "inspect", help="diagnostic figure of one image",
        description="Draw the diagnostics of one image, one PNG per amplifier: the average "
        "image, its histogram with the fitted Gaussian-smeared Poisson and residuals, the "
        "entropy of each sample with the dSdskip line, the noise against the number of "
        "averaged samples, and the single-sample noise fits.",
    )
    parser.add_argument("file", help="the FITS file")
    parser.add_argument("--amp", metavar="A",
                        help="only this amplifier: its name (EXTNAME) or position (default: all)")
    parser.add_argument("-o", "--output", metavar="PNG",
                        help="the figure; with several amplifiers _<amp> is added before the "
                        "suffix (default: <file name>_<amp>.png in the current directory)")
    add_metric_options(parser, chunks=False)
    parser.set_defaults(handler=run)


def run(args):
    """Draw the figures; print their paths."""
    from ..plots import inspect_image

    paths = inspect_image(args.file, amp=args.amp, output=args.output,
                          polarity=args.polarity, baseline=args.baseline)
    for path in paths:
        print(os.path.abspath(path))
    return 0
