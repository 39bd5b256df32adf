"""What several commands share: the cluster, metric, alert and live page options, the client,
links, and the session of a command that runs a campaign (:func:`campaign_session`)."""

import contextlib
from collections import namedtuple


def add_cluster_options(parser):
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


def add_metric_options(parser, chunks=True):
    """How the metrics are computed: polarity, baseline and, with ``chunks``, the chunk size."""
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


def add_live_page_options(parser):
    """Where the live page of the images as they finish listens, or none."""
    group = parser.add_argument_group("live page")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--live-page", metavar="ADDR",
                       help="host:port of the web page that shows each image's gain, noise, "
                       "dark current and tailRatio as it finishes (default: "
                       "skipperdask.live-page, 127.0.0.1:0: a free port on loopback)")
    where.add_argument("--no-live-page", action="store_true", help="no live page")


@contextlib.contextmanager
def live_page(args, client):
    """The live page the options of :func:`add_live_page_options` ask for, its link printed
    (:func:`skipperdask.plots.live.serve`); None when there is none.

    Parameters
    ----------
    args : argparse.Namespace
    client : distributed.Client
        The campaign's: the dashboard of a local cluster links to the page.

    Yields
    ------
    skipperdask.plots.live.LivePage or None
    """
    from ..config import settings

    current = settings()
    address = args.live_page or current["live-page"]
    if args.no_live_page or not address:
        yield None
        return
    from ..plots.live import serve

    with serve(address, client=client, points=current["live-page-points"]) as page:
        print(f"Live page: {page.url}", flush=True)
        yield page


def connect(args):
    """The client the options ``args`` ask for (:func:`skipperdask.campaign.connect`)."""
    from ..campaign.cluster import connect

    return connect(
        address=args.address, scheduler_file=args.scheduler_file, slurm=args.slurm,
        workers=args.workers, threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit, host=args.host, dashboard_address=args.dashboard_address,
    )


def print_dashboard(client):
    """Print the link to the client's dashboard, when it has one."""
    from ..campaign.cluster import dashboard_link

    link = dashboard_link(client)
    if link:
        print(f"Dask dashboard: {link}", flush=True)


def file_url(path):
    """The ``file://`` URL of a path."""
    import pathlib

    return pathlib.Path(path).resolve().as_uri()


def add_alert_options(parser):
    """What is done with each alert besides its printed line: ``--on-alert CMD``."""
    group = parser.add_argument_group(
        "alerts", "each flagged image and amplifier is printed as one line (alert: FILE AMP: "
        "REASON) and kept in the catalogue's flags; thresholds: skipperdask.alerts, see "
        "docs/watch.md")
    group.add_argument("--on-alert", metavar="CMD",
                       help="run CMD for each alert, with the file, amplifier and reason as "
                       "its last three arguments and as SKIPPERDASK_FILE, SKIPPERDASK_AMP, "
                       "SKIPPERDASK_REASON (no shell: quote CMD's own arguments as for one); "
                       "it runs in the background, one at a time, at most 60 s each")


def alerts_shown(page):
    """The alert rules of a command, and the ``on_record`` that shows each finished image on
    the live ``page`` with the rules' running medians and bands (None without a page).

    Returns
    -------
    (skipperdask.campaign.alerts.AlertRules, callable or None)
    """
    from ..campaign.alerts import AlertRules

    rules = AlertRules()
    if page is None:
        return rules, None
    return rules, lambda record: page.add(record, bands=rules.bands())


@contextlib.contextmanager
def alerts_reported(args):
    """The ``on_alert`` of a command: each alert printed as one line, and ``--on-alert``'s
    command run for it; the commands still queued run to their end when the block ends
    (not after a Ctrl-C)."""
    from ..campaign.notify import AlertCommand, print_alert

    with (AlertCommand(args.on_alert) if args.on_alert else contextlib.nullcontext()) as command:
        def on_alert(alert):
            print_alert(alert)
            if command is not None:
                command(alert)

        yield on_alert


def add_campaign_options(parser, metrics=True):
    """The options of a command that runs a campaign (``run``, ``watch``, ``demo``): alerts,
    cluster, metrics (with ``metrics``) and live page."""
    add_alert_options(parser)
    add_cluster_options(parser)
    if metrics:
        add_metric_options(parser)
    add_live_page_options(parser)


def metric_options(args):
    """The :class:`skipperdask.config.Options` of :func:`add_metric_options`' arguments."""
    from ..config import Options

    return Options.from_config(polarity=args.polarity, baseline=args.baseline,
                               chunk_bytes=args.chunk_bytes)


#: what a command that runs a campaign works with (:func:`campaign_session`)
Session = namedtuple("Session", "client rules on_alert on_record")


@contextlib.contextmanager
def campaign_session(args):
    """The client, alert rules and callbacks of a command that runs a campaign, from the
    options of :func:`add_campaign_options`: each alert printed (and ``--on-alert`` run), the
    dashboard's link and the live page's printed, each finished image shown on the page.

    Yields
    ------
    Session
        ``client``, ``rules`` (:class:`~skipperdask.campaign.alerts.AlertRules`), and the
        ``on_alert`` and ``on_record`` (None without a live page) of
        :func:`skipperdask.process` and :func:`skipperdask.watch`.
    """
    with alerts_reported(args) as on_alert, connect(args) as client:
        print_dashboard(client)
        with live_page(args, client) as page:
            rules, on_record = alerts_shown(page)
            yield Session(client, rules, on_alert, on_record)
