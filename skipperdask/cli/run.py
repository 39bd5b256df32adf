"""``skipperdask run``: the original tool's command line, many files' metrics into a catalogue
(:func:`skipperdask.process`)."""

import glob
import os
import sys

from ..errors import SkipperError
from ..io.storage import is_url
from .arguments import add_campaign_options, campaign_session, metric_options


def add_parser(subparsers):
    """The ``run`` sub-command and its options."""
    parser = subparsers.add_parser(
        "run",
        help="compute the metrics of many files into a catalogue (the command line of "
        "damicm-image-preproc)",
        description="Compute the quality metrics of skipper-CCD FITS files on a Dask cluster "
        "into a Zarr catalogue, a CSV table and the text table of DAMIC-M's original tool "
        "(damicm-image-preproc). Files already in the catalogue are skipped unless they "
        "changed or -a is given.",
    )
    parser.add_argument("-f", "--filenames", nargs="+", metavar="PATTERN",
                        help="file names, shell wildcards or regular expressions matched against "
                        "the names in the directory (default: Img_[0-9]+.fits)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="the original tool's text table, written in the processed "
                        "directory unless absolute (default: img_preproc_out.txt)")
    parser.add_argument("-d", "--directory", default=".", metavar="DIR",
                        help="directory of the files, or a URL of an object store's prefix "
                        "(s3://bucket/campaign; see skipperdask.storage-options) (default: the "
                        "current directory)")
    parser.add_argument("-a", "--all", action="store_true",
                        help="reprocess files already in the catalogue")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="also process the subdirectories (one text table per directory "
                        "unless -o is absolute)")
    parser.add_argument("-p", "--print", action="store_true",
                        help="print the text table instead of writing it")
    parser.add_argument("--catalogue", metavar="PATH",
                        help="the Zarr catalogue, a path or a URL (s3://bucket/cat.zarr) "
                        "(default: beside the output file, img_preproc_out.zarr, with "
                        "img_preproc_out.csv)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_campaign_options(parser)
    parser.set_defaults(handler=run)


def run(args):
    """Process the selected files into the catalogue; print the summary (and the table)."""
    from ..campaign import process, tables_for
    from ..campaign.files import DEFAULT_PATTERN, find_files
    from ..catalogue import Catalogue, natural_key
    from ..config import settings
    from ..io.storage import absolute, join

    output = args.output or settings()["output"]
    options = metric_options(args)
    paths, rejected = find_files(args.filenames, args.directory, args.recursive,
                                 options.storage_options)
    for entry in rejected:
        print(f"warning: {entry}", file=sys.stderr, flush=True)
    if not paths:
        raise SkipperError(f"no file matches {' '.join(args.filenames or [DEFAULT_PATTERN])} "
                           f"in {absolute(args.directory)}"
                           f"{_pattern_hint(args)}")
    tables = tables_for(paths, output)
    if args.catalogue:
        catalogue = absolute(args.catalogue)
    else:
        table = join(absolute(args.directory), output)
        catalogue = os.path.splitext(table)[0] + ".zarr"
    print(f"{len(paths)} files, catalogue {catalogue}", flush=True)
    with campaign_session(args) as session:
        dataset = process(paths, catalogue, client=session.client, reprocess=args.all,
                          options=options, seed_tables=None if args.print else tables,
                          progress=False if args.no_progress else None, alerts=session.rules,
                          on_alert=session.on_alert, on_record=session.on_record)
    summary = dataset.attrs["summary"]
    if rejected:
        summary += f", {len(rejected)} not processed (warnings above)"
    print(summary, flush=True)
    for error in sorted(dataset.attrs.get("errors", []), key=natural_key):
        print(f"failed: {error}", file=sys.stderr, flush=True)
    if args.print:
        print(Catalogue(catalogue, storage_options=options.storage_options)
              .format_seed_table(paths), end="")  # it ends with a newline
    return 0


def _pattern_hint(args):
    """A hint when the default pattern finds nothing but compressed images are there."""
    if args.filenames or is_url(args.directory):
        return ""
    compressed = glob.glob(os.path.join(glob.escape(args.directory), "*.fz"))
    if not compressed:
        return ""
    return (f" (the default pattern does not match .fz files; there are {len(compressed)}: "
            "try -f '*.fz')")
