"""``skipperdask demo``: a small simulated campaign processed on a local cluster, its values
against the truth (:mod:`skipperdask.simulate.demo`); with ``--live``, a simulated DAQ
writing images one by one into a directory that is watched (:mod:`skipperdask.simulate.daq`,
:func:`skipperdask.campaign.watch.watch`)."""

import os
import tempfile

from .arguments import add_campaign_options, campaign_session, file_url

#: images of the demos, by default
BATCH_IMAGES, LIVE_IMAGES = 12, 16


def add_parser(subparsers):
    """The ``demo`` sub-command and its options."""
    parser = subparsers.add_parser(
        "demo", help="simulate a small campaign and process it on a local cluster",
        description="Simulate a small campaign whose truth is known, process it on a local Dask "
        "cluster (watch the dashboard) and compare the measured gain, noise and dark current "
        "with the truth.",
    )
    parser.add_argument("directory", nargs="?",
                        help="where to write the campaign (default: a new temporary directory)")
    parser.add_argument("-n", "--images", type=int, metavar="N",
                        help=f"images in the campaign (default: {BATCH_IMAGES}; with --live, "
                        f"{LIVE_IMAGES}, the demo ending after the last)")
    parser.add_argument("--live", action="store_true",
                        help="simulate a DAQ writing an image every 1-2 s (some with problems: "
                        "tracks, charge loss, a half-written file completed later, a noise "
                        "jump) and watch its directory, printing each image and each alert, "
                        "until the last image or Ctrl-C")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--keep-open", action="store_true",
                        help="keep the cluster and its dashboard up after the run, until Enter "
                        "is pressed (the run itself lasts only seconds)")
    parser.add_argument("--keep-images", action="store_true",
                        help="keep the simulated FITS images of a temporary directory (by "
                        "default only the catalogue, the tables and the report stay there)")
    add_campaign_options(parser, metrics=False)
    parser.set_defaults(handler=run)


def run(args):
    """Simulate the demo's campaign, process it, print the tables against the truth, report
    (with ``--live``: :func:`run_live`)."""
    if args.live:
        return run_live(args)
    args.images = BATCH_IMAGES if args.images is None else args.images
    from ..campaign import process
    from ..catalogue import Catalogue
    from ..plots import write_report
    from ..simulate.demo import DEMO_PROBLEMS, demo_campaign, truth_comparison

    temporary = args.directory is None
    directory = os.path.abspath(args.directory or tempfile.mkdtemp(prefix="skipperdask-demo-"))
    os.makedirs(directory, exist_ok=True)
    print(f"Simulating {args.images} clean images and {len(DEMO_PROBLEMS)} with problems "
          f"({args.images + len(DEMO_PROBLEMS)} files) in {directory} ...", flush=True)
    paths, problems = demo_campaign(directory, args.images, args.seed)
    for path, problem in problems.items():
        print(f"  {os.path.basename(path)}: {problem}")
    catalogue = os.path.join(directory, "img_preproc_out.zarr")
    table = os.path.join(directory, "img_preproc_out.txt")
    with campaign_session(args) as session:
        if not args.keep_open:
            print("  (the dashboard closes with the demo, in seconds: --keep-open keeps it up)")
        dataset = process(paths, catalogue, client=session.client, reprocess=True,
                          seed_tables={table: paths},
                          progress=False if args.no_progress else None, alerts=session.rules,
                          on_alert=session.on_alert, on_record=session.on_record)
        if args.keep_open:
            input("The dashboard stays up: press Enter to close it ... ")
    print(dataset.attrs["summary"])
    print(Catalogue(catalogue).format_seed_table(paths), end="")
    print(truth_comparison(dataset, directory))
    print(f"\nCatalogue: {catalogue}\n  open it with: xarray.open_zarr({catalogue!r})")
    print(f"CSV: {os.path.splitext(catalogue)[0] + '.csv'}\nText table: {table}")
    index = write_report(catalogue, os.path.join(directory, "report"), versus="VDD")
    print(f"Report: {file_url(index)}")
    if temporary and not args.keep_images:
        for path in paths:
            os.remove(path)
        print(f"(the {len(paths)} simulated images were deleted; --keep-images keeps them)")
    return 0


def run_live(args):
    """A simulated DAQ writes images into a directory that is watched: each image and each
    alert printed as it comes, until the last image or Ctrl-C."""
    from ..campaign.watch import watch
    from ..config import WatchOptions
    from ..simulate.daq import SimulatedDAQ, live_plan

    images = LIVE_IMAGES if args.images is None else args.images
    temporary = args.directory is None
    directory = os.path.abspath(args.directory or tempfile.mkdtemp(prefix="skipperdask-live-"))
    os.makedirs(directory, exist_ok=True)
    plan = live_plan(images, args.seed)
    print(f"A simulated DAQ writes {images} images into {directory}, one every 1-2 s, each in "
          "pieces; with problems:", flush=True)
    for planned in plan:
        if planned.problem:
            print(f"  {planned.name}: {planned.problem}")
    catalogue = os.path.join(directory, "img_preproc_out.zarr")
    daq = SimulatedDAQ(directory, plan, seed=args.seed)
    # a demo's images are small and come fast: taken a second after they stop changing
    watch_options = WatchOptions.from_config(settle_seconds=1.0)
    with campaign_session(args) as session:

        def on_record(record):  # each finished image, flagged, before its commit
            print(_image_line(record), flush=True)
            if session.on_record is not None:
                session.on_record(record)

        print(f"Watching {directory}; Ctrl-C stops", flush=True)
        daq.start()
        try:
            dataset = watch(directory, catalogue, client=session.client,
                            watch_options=watch_options, alerts=session.rules,
                            on_alert=session.on_alert, on_record=on_record, max_images=images)
        finally:
            daq.stop()
    print(dataset.attrs["summary"])
    print(f"Catalogue: {catalogue} (its flags variable holds the alerts)\n"
          f"CSV: {os.path.splitext(catalogue)[0] + '.csv'}")
    if temporary and not args.keep_images:
        for path in daq.written:
            os.remove(path)
        print(f"(the {len(daq.written)} simulated images were deleted; --keep-images keeps "
              "them)")
    return 0


def _image_line(record):
    """One finished image in a line: its first amplifier's gain, noise and dark current."""
    name = os.path.basename(record.path)
    if record.metrics is None:
        return f"{name}: failed"
    first = record.metrics.isel(amp=0)
    return (f"{name}: gain {float(first.aduConversion):.3f} ADU/e-, noise "
            f"{float(first.skNoise):.3f} ADU, dark current {float(first.darkCurrent):.4f} "
            "e-/pixel")
