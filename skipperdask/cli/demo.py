"""``skipperdask demo``: a small simulated campaign processed on a local cluster, its values
against the truth (:mod:`skipperdask.simulate.demo`)."""

import os
import tempfile

from .arguments import add_cluster_options, connect, file_url, print_dashboard


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
    parser.add_argument("-n", "--images", type=int, default=12, metavar="N",
                        help="images in the campaign (default: 12)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--keep-open", action="store_true",
                        help="keep the cluster and its dashboard up after the run, until Enter "
                        "is pressed (the run itself lasts only seconds)")
    parser.add_argument("--keep-images", action="store_true",
                        help="keep the simulated FITS images of a temporary directory (by "
                        "default only the catalogue, the tables and the report stay there)")
    add_cluster_options(parser)
    parser.set_defaults(handler=run)


def run(args):
    """Simulate the demo's campaign, process it, print the tables against the truth, report."""
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
    with connect(args) as client:
        print_dashboard(client)
        if not args.keep_open:
            print("  (the dashboard closes with the demo, in seconds: --keep-open keeps it up)")
        dataset = process(paths, catalogue, client=client, reprocess=True,
                          seed_tables={table: paths},
                          progress=False if args.no_progress else None)
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
