"""``skipperdask report``: the HTML report of a catalogue
(:func:`skipperdask.plots.write_report`)."""

import os

from .arguments import file_url


def add_parser(subparsers):
    """The ``report`` sub-command and its options."""
    parser = subparsers.add_parser(
        "report", help="HTML report of a catalogue",
        description="Write a self-contained HTML report of a campaign's catalogue (index.html "
        "and PNG figures beside it; open it in any browser, no server needed): the metrics "
        "against time per amplifier, flagged images, distributions, failed files.",
    )
    parser.add_argument("catalogue", help="the Zarr catalogue (e.g. img_preproc_out.zarr)")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="directory of the report (default: report/ beside the catalogue)")
    parser.add_argument("--versus", metavar="KEY",
                        help="also plot the metrics against this header keyword, e.g. VDD")
    parser.add_argument("--tail-ratio-limit", type=float, default=10.0, metavar="X",
                        help="flag images whose tailRatio is above X (default: 10)")
    parser.add_argument("--dsdskip-limit", type=float, default=-10.0, metavar="X",
                        help="flag images whose dSdskip is below X milli-nats/sample "
                        "(default: -10)")
    parser.set_defaults(handler=run)


def run(args):
    """Write the report; print its link."""
    from ..plots import write_report

    output = args.output or os.path.join(
        os.path.dirname(os.path.abspath(args.catalogue.rstrip(os.sep))), "report")
    index = write_report(args.catalogue, output, versus=args.versus,
                         tail_ratio_limit=args.tail_ratio_limit,
                         dsdskip_limit=args.dsdskip_limit)
    print(f"Report: {file_url(index)}")
    return 0
