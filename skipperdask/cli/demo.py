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
    add_cluster_options(parser)
    parser.set_defaults(handler=run)


def run(args):
    """Simulate the demo's campaign, process it, print the tables against the truth, report."""
    from ..campaign import process
    from ..catalogue import Catalogue
    from ..plots import write_report
    from ..simulate.demo import demo_campaign, truth_comparison

    directory = os.path.abspath(args.directory or tempfile.mkdtemp(prefix="skipperdask-demo-"))
    os.makedirs(directory, exist_ok=True)
    print(f"Simulating {args.images} images in {directory} ...", flush=True)
    paths, problems = demo_campaign(directory, args.images, args.seed)
    for path, problem in problems.items():
        print(f"  {os.path.basename(path)}: {problem}")
    catalogue = os.path.join(directory, "img_preproc_out.zarr")
    table = os.path.join(directory, "img_preproc_out.txt")
    with connect(args) as client:
        print_dashboard(client)
        dataset = process(paths, catalogue, client=client, reprocess=True,
                          seed_tables={table: paths},
                          progress=False if args.no_progress else None)
    print(dataset.attrs["summary"])
    print(Catalogue(catalogue).format_seed_table(paths), end="")
    print(truth_comparison(dataset, directory))
    print(f"\nCatalogue: {catalogue}\n  open it with: xarray.open_zarr({catalogue!r})")
    print(f"CSV: {os.path.splitext(catalogue)[0] + '.csv'}\nText table: {table}")
    index = write_report(catalogue, os.path.join(directory, "report"), versus="VDD")
    print(f"Report: {file_url(index)}")
    return 0
