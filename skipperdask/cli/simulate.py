"""``skipperdask simulate``: simulated images whose truth is known
(:func:`skipperdask.simulate.simulate_campaign`)."""


def add_parser(subparsers):
    """The ``simulate`` sub-command and its options."""
    from ..simulate import DRIFT_KINDS, DTYPES, Truth

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
    parser.add_argument(
        "--noise-ramp", metavar="FRACTION", type=float, default=None,
        help="the read noise rises by this fraction over the campaign (default: 0 when --noise "
        "is given, so that every image has that noise, else 0.2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(handler=run, truth_fields=[o[1] for o in truth_options])


def run(args):
    """Write the simulated images; print their paths."""
    from ..simulate import simulate_campaign

    overrides = {
        field: getattr(args, field)
        for field in [*args.truth_fields, "averaged", "compressed"]
        if getattr(args, field) is not None
    }
    ramp = args.noise_ramp
    if ramp is None:  # --noise 3 means noise 3 on every image
        ramp = 0.0 if args.read_noise is not None else 0.2
    paths = simulate_campaign(
        args.directory,
        args.images,
        seed=args.seed,
        noise_ramp=ramp,
        n_averaged=args.n_averaged,
        overwrite=args.overwrite,
        **overrides,
    )
    for path in paths:
        print(path)
    return 0
