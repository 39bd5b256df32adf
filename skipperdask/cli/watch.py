"""``skipperdask watch``: a DAQ's directory processed live, each image once it is whole, with
alerts (:func:`skipperdask.campaign.watch.watch`)."""

import os

from .arguments import add_campaign_options, campaign_session, metric_options


def add_parser(subparsers):
    """The ``watch`` sub-command and its options."""
    parser = subparsers.add_parser(
        "watch", help="process the images of a directory as the DAQ writes them, with alerts",
        description="Process every matching image of DIR that the catalogue lacks, then each "
        "new one as soon as it is whole (its size is what its FITS headers declare and it "
        "stopped changing), until Ctrl-C. Each flagged image and amplifier is printed as one "
        "line and kept in the catalogue's flags (docs/watch.md).",
    )
    parser.add_argument("directory", metavar="DIR", help="the directory the DAQ writes into")
    parser.add_argument("-f", "--filenames", nargs="+", metavar="PATTERN",
                        help="file names, shell wildcards or regular expressions, as for run "
                        "(default: Img_[0-9]+.fits)")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="also watch the subdirectories")
    parser.add_argument("--catalogue", metavar="PATH",
                        help="the Zarr catalogue (default: DIR/img_preproc_out.zarr, with "
                        "img_preproc_out.csv beside it, as run writes them)")
    parser.add_argument("--polling", action="store_true",
                        help="look for new files every skipperdask.watch.poll-seconds instead "
                        "of waiting for file-system events (automatic on NFS and other network "
                        "file systems, which deliver none)")
    add_campaign_options(parser)
    parser.set_defaults(handler=run)


def run(args):
    """Watch the directory until Ctrl-C (which :func:`skipperdask.cli.main` reports)."""
    from ..campaign.arrivals import polls
    from ..campaign.files import find_files
    from ..campaign.watch import watch
    from ..config import WatchOptions, settings

    directory = os.path.abspath(args.directory)
    find_files(args.filenames, directory, args.recursive)  # a bad DIR: said before any cluster
    catalogue = args.catalogue or os.path.join(
        directory, os.path.splitext(settings()["output"])[0] + ".zarr")
    options = metric_options(args)
    watch_options = WatchOptions.from_config(observer="polling" if args.polling else None)
    with campaign_session(args) as session:
        how = (f"polling every {watch_options.poll_seconds:g} s"
               if polls(directory, watch_options.observer) else "file-system events")
        print(f"Watching {directory} ({how}), catalogue {os.path.abspath(catalogue)}; "
              "Ctrl-C stops", flush=True)
        dataset = watch(directory, catalogue, patterns=args.filenames,
                        recursive=args.recursive, client=session.client, options=options,
                        watch_options=watch_options, alerts=session.rules,
                        on_alert=session.on_alert, on_record=session.on_record)
    print(dataset.attrs["summary"], flush=True)  # when stopped other than by Ctrl-C
    return 0
