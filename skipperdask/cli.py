"""The ``skipperdask`` command line: a thin layer over the Python API.

Sub-commands::

    skipperdask run       the seed's command line: metrics of many files into a catalogue
    skipperdask demo      a small simulated campaign processed on a local cluster
    skipperdask simulate  write simulated images whose truth is known
    skipperdask inspect   diagnostic figure of one image
    skipperdask report    HTML report of a catalogue
"""

import argparse
import os
import sys

from . import __version__


def _add_cluster_options(parser):
    """Where the work runs: Dask's own conventions (``--address``, ``--scheduler-file``)."""
    group = parser.add_argument_group(
        "cluster", "default: a local cluster on this machine, listening on 127.0.0.1 only"
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument("--address", metavar="ADDR",
                       help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    where.add_argument("--scheduler-file", metavar="FILE",
                       help="scheduler file written by `dask scheduler --scheduler-file`")
    where.add_argument("--slurm", action="store_true",
                       help="start the workers as SLURM jobs with dask-jobqueue "
                       "(the `jobqueue.slurm` dask.config profile; see deploy/README.md)")
    group.add_argument("--workers", metavar="N", type=int,
                       help="worker processes of a local or SLURM cluster (default: one per core)")
    group.add_argument("--threads-per-worker", metavar="N", type=int,
                       help="threads per worker (default: skipperdask.threads-per-worker, 1)")
    group.add_argument("--memory-limit", metavar="SIZE",
                       help="memory per worker, e.g. 4GiB (default: the machine's memory shared)")
    group.add_argument("--host", metavar="HOST",
                       help="interface the local cluster listens on (default: 127.0.0.1)")
    group.add_argument("--dashboard-address", metavar="ADDR",
                       help="where the dashboard listens (default: 127.0.0.1:8787; :0 for any "
                       "free port)")


def _add_metric_options(parser, chunks=True):
    group = parser.add_argument_group("metrics")
    group.add_argument("--polarity", type=int, choices=(-1, 1),
                       help="sign of charge in the stored values, overriding the rule: +1 when "
                       "the header says IMAGE='averaged' or the file name contains Avg, else "
                       "the side of each amplifier's charge tail, else -1")
    group.add_argument("--baseline", choices=("none", "row-median"),
                       help="subtract each row's median in the pixel pass (default: none; a "
                       "drift along rows is otherwise measured on the fitted peaks and "
                       "removed, see baselineDrift; use row-median where a reason asks for it)")
    if chunks:
        group.add_argument("--chunk-bytes", metavar="SIZE",
                           help="stored pixels one statistics task reads when a file is split "
                           "over the workers (default: 64MiB; most files of a campaign are one "
                           "task each, see skipperdask.whole-file-memory)")


def _add_run(subparsers):
    parser = subparsers.add_parser(
        "run",
        help="compute the metrics of many files into a catalogue (the seed's command line)",
        description="Compute the quality metrics of skipper-CCD FITS files on a Dask cluster "
        "into a Zarr catalogue, a CSV table and the seed's text table. Files already in the "
        "catalogue are skipped unless they changed or -a is given.",
    )
    parser.add_argument("-f", "--filenames", nargs="+", metavar="PATTERN",
                        help="file names, shell wildcards or regular expressions matched against "
                        "the names in the directory (default: Img_[0-9]+.fits)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="the seed's text table, written in the processed directory unless "
                        "absolute (default: img_preproc_out.txt)")
    parser.add_argument("-d", "--directory", default=".", metavar="DIR",
                        help="directory of the files (default: the current directory)")
    parser.add_argument("-a", "--all", action="store_true",
                        help="reprocess files already in the catalogue")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="also process the subdirectories (one text table per directory "
                        "unless -o is absolute)")
    parser.add_argument("-p", "--print", action="store_true",
                        help="print the text table instead of writing it")
    parser.add_argument("--catalogue", metavar="PATH",
                        help="the Zarr catalogue (default: beside the output file, "
                        "img_preproc_out.zarr, with img_preproc_out.csv)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cluster_options(parser)
    _add_metric_options(parser)
    parser.set_defaults(handler=_run)


def _connect(args):
    from .cluster import connect

    return connect(
        address=args.address, scheduler_file=args.scheduler_file, slurm=args.slurm,
        workers=args.workers, threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit, host=args.host, dashboard_address=args.dashboard_address,
    )


def _run(args):
    from . import config
    from .files import select_files, tables_for
    from .pipeline import Options, process

    output = args.output or config.get("output", "img_preproc_out.txt")
    paths = select_files(args.filenames, args.directory, args.recursive)
    if not paths:
        print(f"skipperdask run: no file matches {args.filenames or 'Img_[0-9]+.fits'} in "
              f"{os.path.abspath(args.directory)}", file=sys.stderr)
        return 1
    tables = tables_for(paths, output)
    if args.catalogue:
        catalogue = args.catalogue
    else:
        table = os.path.join(os.path.abspath(args.directory), output)
        catalogue = os.path.splitext(table)[0] + ".zarr"
    options = Options.from_config(polarity=args.polarity, baseline=args.baseline,
                                  chunk_bytes=args.chunk_bytes)
    print(f"{len(paths)} files, catalogue {os.path.abspath(catalogue)}", flush=True)
    with _connect(args) as client:
        _print_dashboard(client)
        dataset = process(paths, catalogue, client=client, reprocess=args.all, options=options,
                          seed_tables=None if args.print else tables,
                          progress=False if args.no_progress else None)
    print(dataset.attrs["summary"], flush=True)
    if args.print:
        from .catalogue import Catalogue

        print(Catalogue(catalogue).format_seed_table(paths), end="")  # it ends with a newline
    return 0


def _print_dashboard(client):
    from .cluster import dashboard_link

    link = dashboard_link(client)
    if link:
        print(f"Dask dashboard: {link}", flush=True)


def _add_demo(subparsers):
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
    _add_cluster_options(parser)
    parser.set_defaults(handler=_demo)


def _demo(args):
    import tempfile

    from .catalogue import Catalogue
    from .pipeline import process
    from .plots import write_report

    directory = os.path.abspath(args.directory or tempfile.mkdtemp(prefix="skipperdask-demo-"))
    os.makedirs(directory, exist_ok=True)
    print(f"Simulating {args.images} images in {directory} ...", flush=True)
    paths, problems = _demo_campaign(directory, args.images, args.seed)
    for path, problem in problems.items():
        print(f"  {os.path.basename(path)}: {problem}")
    catalogue = os.path.join(directory, "img_preproc_out.zarr")
    table = os.path.join(directory, "img_preproc_out.txt")
    with _connect(args) as client:
        _print_dashboard(client)
        dataset = process(paths, catalogue, client=client, reprocess=True,
                          seed_tables={table: paths},
                          progress=False if args.no_progress else None)
    print(dataset.attrs["summary"])
    print(Catalogue(catalogue).format_seed_table(paths), end="")
    print(_truth_comparison(dataset, directory))
    print(f"\nCatalogue: {catalogue}\n  open it with: xarray.open_zarr({catalogue!r})")
    print(f"CSV: {os.path.splitext(catalogue)[0] + '.csv'}\nText table: {table}")
    index = write_report(catalogue, os.path.join(directory, "report"), versus="VDD")
    print(f"Report: {_file_url(index)}")
    return 0


def _demo_campaign(directory, n_images, seed):
    """A clean simulated campaign, plus the three problems the tool must show: tracks,
    charge lost between samples, and a damaged file. Returns the paths and the problems."""
    from .simulate import Truth, simulate_campaign, write_image

    shape = {"nrows": 200, "ncols": 400, "nskips": 25}
    paths = [os.path.abspath(p) for p in simulate_campaign(
        directory, n_images, seed=seed, overwrite=True, **shape)]
    problems = {}
    for name, truth, problem in (
        ("Img_101.fits", Truth(**shape, tracks=40, seed=seed + 101), "many tracks"),
        ("Img_102.fits", Truth(**shape, dark_current=1.0, charge_loss=0.03, seed=seed + 102),
         "charge lost between samples"),
    ):
        paths.append(os.path.abspath(write_image(os.path.join(directory, name), truth,
                                                 overwrite=True)))
        problems[paths[-1]] = problem
    damaged = os.path.join(directory, "Img_103.fits")
    with open(paths[0], "rb") as source, open(damaged, "wb") as target:
        target.write(source.read(os.path.getsize(paths[0]) // 2))
    paths.append(damaged)
    problems[damaged] = "truncated on purpose: a bad file becomes an entry with its error"
    return paths, problems


def _truth_comparison(dataset, directory):
    """Measured against simulated gain, noise and dark current, one line per image."""
    import csv

    with open(os.path.join(directory, "truth.csv")) as f:
        truth = {row["filename"]: row for row in csv.DictReader(f)}
    lines = ["\nmeasured (truth), first amplifier:",
             f"{'file':<14}{'gain ADU/e-':>20}{'noise of average':>22}{'dark current':>22}"]
    for i, path in enumerate(dataset["path"].values):
        row = truth.get(os.path.basename(str(path)))
        if row is None:
            continue
        m = dataset.isel(image=i, amp=0)
        averaged_noise = float(row["read_noise"]) / float(row["nskips"]) ** 0.5
        lines.append(
            f"{os.path.basename(str(path)):<14}"
            f"{float(m['aduConversion']):>12.3f} ({float(row['gain']):.3f})"
            f"{float(m['skNoise']):>14.3f} ({averaged_noise:.3f})"
            f"{float(m['darkCurrent']):>14.4f} ({float(row['dark_current']):.4f})"
        )
    return "\n".join(lines)


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
        ("--xrays", "xrays", int, None, "Fe-55-like X-ray clusters per amplifier"),
        ("--hot-columns", "hot_columns", int, None, "hot columns per amplifier"),
        ("--hot-column-current", "hot_column_current", float, None,
         "extra electrons per pixel of a hot column"),
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
    _add_metric_options(parser, chunks=False)
    parser.set_defaults(handler=_inspect)


def _inspect(args):
    from .errors import SkipperError
    from .plots import inspect_image

    try:
        paths = inspect_image(args.file, amp=args.amp, output=args.output,
                              polarity=args.polarity, baseline=args.baseline)
    except (SkipperError, ValueError, OSError) as error:
        print(f"skipperdask inspect: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(os.path.abspath(path))
    return 0


def _add_report(subparsers):
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
    parser.set_defaults(handler=_report)


def _report(args):
    from .plots import write_report

    output = args.output or os.path.join(
        os.path.dirname(os.path.abspath(args.catalogue.rstrip(os.sep))), "report")
    try:
        index = write_report(args.catalogue, output, versus=args.versus,
                             tail_ratio_limit=args.tail_ratio_limit,
                             dsdskip_limit=args.dsdskip_limit)
    except (ValueError, OSError) as error:
        print(f"skipperdask report: {error}", file=sys.stderr)
        return 2
    print(f"Report: {_file_url(index)}")
    return 0


def _file_url(path):
    import pathlib

    return pathlib.Path(path).resolve().as_uri()


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
