"""Throughput and memory of skipperdask on a simulated campaign and on a real image.

Run from the repository root::

    python benchmarks/campaign.py                 # the full run, about 3 minutes on 2 cores
    python benchmarks/campaign.py --quick         # a smoke run of a minute or so
    python benchmarks/campaign.py --clusters 0.3  # dense images: 30 % of pixels in clusters
    python benchmarks/campaign.py --sizes 200 800 --small 300 --plots docs

It writes its own simulated campaign in a temporary directory, raw images as the detectors
give them (tracks, blobs and X-rays over a few % of the pixels, a hot column), and prints,
side by side:
the read limit (plain sequential reads of the same bytes, cold and warm page cache), the
full metrics pipeline (``skipperdask.process`` on a local cluster of one worker process
per core) in GB/s of raw input and as a fraction of the warm read limit (and, when the
page cache can be dropped, on a cold cache against the cold read limit), the cluster's
start-up, a naive serial numpy baseline, images per second on small images, the speed-up
from 1 to 2 workers (per image size, and over the whole large-image campaign in one run),
and the peak memory of each worker on an image twice its memory limit. Then, when
``../shared/data/real`` is beside the repository, the real DAMIC-M image copied 40 times is
processed by ``skipperdask run`` as a user runs it, on a cluster already started: files per
second of the run (by its own summary: from its first file to its catalogue committed; as
for the raw images, the start-up is reported apart) and of the whole command (Python's
start-up, the imports, the connection), and the gain, λ and χ²ᵣ of each CCD read back from
the catalogue. It ends with a
table of the targets, PASS or FAIL.
"""

import argparse
import functools
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
# the worker processes must import this checkout's skipperdask, not an installed one
sys.path.insert(0, str(REPOSITORY))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import psutil  # noqa: E402
from astropy.io import fits  # noqa: E402

from skipperdask.campaign import connect, process  # noqa: E402
from skipperdask.simulate import Truth, cluster_fraction, write_image  # noqa: E402

MB = 1_000_000
NCOLS, NSKIPS = 500, 100  # a large raw image: rows of 500 pixels × 100 samples, uint32
#: pixels of a raw image in clusters (tracks, blobs, X-rays), as in real raw images
CLUSTER_FRACTION = 0.03
#: baseline of a raw image, ADU: room below it for the thousands of electrons of an X-ray or
#: a track crossing (charge lowers raw values) without saturating at 0
RAW_PEDESTAL = 1e6
#: the real images: ``shared/data/real`` beside the repository, or beside a worktree's parents
REAL_DATA = next((folder / "shared" / "data" / "real" for folder in REPOSITORY.parents
                  if (folder / "shared" / "data" / "real").is_dir()),
                 REPOSITORY.parent / "shared" / "data" / "real")
REAL_IMAGE = "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"
#: the read limit's buffer: 1 MiB stays in the processor's cache, the fastest plain read
#: measured here (page cache: 25 GB/s, as cat and dd bs=1M; 14 GB/s with 64 MiB)
READ_BLOCK = 2**20


@functools.cache
def cluster_counts(nrows, ncols, fraction):
    """Tracks (and blobs) and X-rays per amplifier that put about ``fraction`` of the pixels
    in clusters, half of them in tracks and half in X-rays.

    Found by rescaling the counts until :func:`skipperdask.simulate.cluster_fraction` (of
    seed 0) hits the target: tracks' length, and overlaps in dense images, rule out a formula.
    """
    if not fraction:
        return 0, 0
    each = 1 - math.sqrt(1 - fraction)  # tracks and X-rays overlap as independent hits

    def covered(tracks, xrays):
        return cluster_fraction(Truth(nrows=nrows, ncols=ncols, nskips=1, tracks=tracks,
                                      xrays=xrays))

    tracks = xrays = 1
    for _ in range(4):
        tracks = max(1, round(tracks * each / max(covered(tracks, 0), 1e-9)))
        xrays = max(1, round(xrays * each / max(covered(0, xrays), 1e-9)))
    return tracks, xrays


def raw_truth(nrows, ncols, nskips, seed, clusters=CLUSTER_FRACTION, **fields):
    """A raw image as the detectors give them: uint32 samples, dark current, tracks and X-rays
    over ``clusters`` of the pixels, and a hot column when there are clusters."""
    tracks, xrays = cluster_counts(nrows, ncols, clusters)
    return Truth(nrows=nrows, ncols=ncols, nskips=nskips, tracks=tracks, xrays=xrays,
                 hot_columns=1 if clusters else 0, pedestal=RAW_PEDESTAL, seed=seed, **fields)


def large_truth(size_mb, seed, clusters, nskips=NSKIPS):
    """A realistic raw image (:func:`raw_truth`) of about ``size_mb`` MB."""
    nrows = max(4, round(size_mb * MB / (NCOLS * nskips * 4)))
    return raw_truth(nrows, NCOLS, nskips, seed, clusters)


def write_campaign(directory, truths):
    directory.mkdir(parents=True, exist_ok=True)
    return [str(write_image(directory / f"Img_{i + 1}.fits", t)) for i, t in enumerate(truths)]


def drop_caches():
    """Empty the page cache (root only); False when not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as control:
            control.write("3\n")
        return True
    except OSError:
        return False


def read_rate(paths):
    """GB/s of plain sequential reads of the files, into one reused buffer."""
    buffer = bytearray(READ_BLOCK)
    view = memoryview(buffer)
    total = 0
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total / 1e9 / (time.perf_counter() - start)


def nbytes(paths):
    return sum(os.path.getsize(p) for p in paths)


def campaign_rate(paths, client, catalogue):
    """GB/s of one run over every file (warm page cache)."""
    read_rate(paths)
    return nbytes(paths) / 1e9 / run_pipeline(paths, client, catalogue)


def remove_catalogue(catalogue):
    """Delete a catalogue: its link and its versions."""
    if os.path.islink(catalogue):
        os.remove(catalogue)
    shutil.rmtree(catalogue, ignore_errors=True)
    shutil.rmtree(f"{catalogue}.versions", ignore_errors=True)


def run_pipeline(paths, client, catalogue):
    """Seconds of ``skipperdask.process`` over the files into a new catalogue."""
    remove_catalogue(catalogue)
    start = time.perf_counter()
    dataset = process(paths, catalogue, client=client, reprocess=True, progress=False)
    seconds = time.perf_counter() - start
    failed = [e for e in dataset["error"].values if e] if "error" in dataset else []
    if failed:
        raise RuntimeError(f"the pipeline failed on some files: {failed[:3]}")
    return seconds


def naive_statistics(path, max_samples=50, max_levels=None):
    """The seed's way: the whole cube in memory, plain numpy, one pass per statistic."""
    with fits.open(path) as hdus:
        nskips = int(hdus[0].header["NDCMS"])
        data = hdus[0].data.astype(np.float64)
    cube = -data.reshape(data.shape[0], -1, nskips)  # raw polarity: charge lowers the value
    average = cube.mean(axis=2)
    levels = [1 << k for k in range(int(math.log2(nskips)) + 1)] + [nskips]
    partial = [cube[:, :, :n].mean(axis=2) for n in levels]
    pixel_variance = cube[:, :, 2:].var(axis=2, ddof=1)
    histograms = [np.unique(np.floor(cube[:, :, s]), return_counts=True)
                  for s in range(min(nskips, max_samples))]
    average_histogram = np.unique(np.floor(average - average.min()), return_counts=True)
    return average, partial, pixel_variance, histograms, average_histogram


class RssSampler:
    """The peak resident memory of every worker process, sampled in a background thread."""

    def __init__(self, client, interval=0.05):
        self.client, self.interval = client, interval
        self.peak = {}
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = self.client.run(lambda: psutil.Process().memory_info().rss)
            except Exception:  # a worker was killed for its memory and is restarting
                self.failures += 1
                rss = {}
            for worker, value in rss.items():
                self.peak[worker] = max(self.peak.get(worker, 0), value)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cluster(workers, memory_limit=None):
    return connect(workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                   dashboard_address="127.0.0.1:0")


def warm_image(path):
    """A small image computed in this process: modules imported, numba's cached kernels
    loaded, the fits' first calls made."""
    from skipperdask.campaign import file_task
    from skipperdask.config import Options

    file_task(path, Options.from_config())


def warm_up(client, path, catalogue):
    """Every worker computes one small image, then one goes through the pipeline."""
    start = time.perf_counter()
    client.run(warm_image, path)
    run_pipeline([path], client, catalogue)
    return time.perf_counter() - start


def profile_stages(large_path, small_path, catalogue):
    """Seconds of each stage of one image, in this process, one thread (warm cache)."""
    from skipperdask.campaign.task import file_record, file_task, split_statistics
    from skipperdask.catalogue import Catalogue
    from skipperdask.config import Options
    from skipperdask.io import scan_file
    from skipperdask.metrics import measure
    from skipperdask.statistics import ImageStatistics

    options = Options.from_config()
    stages = {}
    for label, path in (("large", large_path), ("small", small_path)):
        layout = scan_file(path)
        (chunks,) = split_statistics(layout, options)  # one amplifier: its row chunks
        read_rate([path])
        chunks[0].compute()  # compiled, buffer touched
        start = time.perf_counter()
        parts = [chunk.compute() for chunk in chunks]
        stages[f"{label}: read + statistics kernel"] = time.perf_counter() - start
        start = time.perf_counter()
        statistics = [ImageStatistics.combine(parts)]
        stages[f"{label}: combine chunks"] = time.perf_counter() - start
        def fits_and_metrics(statistics=statistics, layout=layout):
            return measure(statistics, options, polarity_source=layout.polarity_source,
                           amp_names=[a.name for a in layout.amps], path=layout.path)

        fits_and_metrics()  # its first call loads the compiled fits, as a worker's first image
        start = time.perf_counter()
        metrics = fits_and_metrics()
        stages[f"{label}: fits and metrics (metrics.analyse)"] = time.perf_counter() - start
    records = [file_task(small_path, options).record for _ in range(20)]
    store = Catalogue(catalogue)
    store.add(records)
    start = time.perf_counter()
    store.add([file_record(layout, metrics, 0.0)])
    stages["catalogue: add 1 record to a store of 20"] = time.perf_counter() - start
    return stages


def real_image_run(directory, client, copies, timeout):
    """``skipperdask run`` over ``copies`` copies of the real image, on the running cluster.

    The command runs as a user runs it, in its own process (``--address``: the cluster's
    start-up is not counted), stopped after ``timeout`` seconds; the catalogue is committed
    as images finish, so what it holds then is what was done.

    Returns
    -------
    (files, seconds, summary, catalogue) : (int, float, str, xarray.Dataset or None)
        The files in the catalogue, the seconds of the whole command (Python's start-up, the
        imports and the connection to the cluster included), the command's summary line
        (empty when stopped; its time is the run's own, to the catalogue committed) and the
        catalogue.
    """
    import xarray as xr

    directory.mkdir()
    for index in range(copies):
        shutil.copyfile(REAL_DATA / REAL_IMAGE, directory / f"copy_{index + 1:03d}.fz")
    command = [sys.executable, "-m", "skipperdask", "run", "-d", str(directory), "-f", r".*\.fz",
               "--address", client.scheduler.address, "--no-progress"]
    start = time.perf_counter()
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        summary = ""
    else:
        if finished.returncode:
            raise RuntimeError(f"skipperdask run failed:\n{finished.stderr[-2000:]}")
        summary = finished.stdout.strip().splitlines()[-1]
    seconds = time.perf_counter() - start
    store = directory / "img_preproc_out.zarr"
    catalogue = xr.open_zarr(store).load() if store.exists() else None
    files = 0 if catalogue is None else int((catalogue["error"] == "").sum())
    return files, seconds, summary, catalogue


def summary_seconds(summary):
    """The seconds a campaign's summary line says it took (NaN when it says none)."""
    found = re.search(r" in ([0-9.]+) s", summary)
    return float(found.group(1)) if found else math.nan


def print_real_image(catalogue):
    """The gain, λ and χ²ᵣ of each CCD, from the catalogue (one line per CCD)."""
    first = catalogue.isel(image=0)
    for amp in catalogue["amp"].values:
        m = first.sel(amp=amp)
        copies = [catalogue[name].sel(amp=amp).values
                  for name in ("aduConversion", "darkCurrent", "fitChi2")]
        same = all(np.array_equal(v, np.full_like(v, v[0]), equal_nan=True) for v in copies)
        reason = str(m["aduConversion_reason"].values) or "-"
        print(f"  {amp}: gain {float(m['aduConversion']):.4f} ± "
              f"{float(m['aduConversion_err']):.4f} ADU/e-, λ {float(m['darkCurrent']):.4f} ± "
              f"{float(m['darkCurrent_err']):.4f} e-/pixel, χ²ᵣ {float(m['fitChi2']):.3f}, "
              f"reason {reason}{'' if same else ' (NOT the same in every copy)'}")


def plot(results, directory):
    """Throughput against image size and against worker count, as a PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    by_size, by_workers = figure.subplots(1, 2)
    sizes = sorted(results["pipeline"])
    by_size.plot(sizes, [results["pipeline"][s] for s in sizes], "o-",
                 label="skipperdask, 2 workers")
    by_size.plot(sizes, [results["one_worker"][s] for s in sizes], "o--",
                 label="skipperdask, 1 worker")
    by_size.axhline(results["read_warm"], color="grey", ls="--", label="read limit (warm)")
    if results.get("read_cold"):
        by_size.axhline(results["read_cold"], color="grey", ls=":", label="read limit (cold)")
    by_size.axhline(2.0, color="red", lw=0.8, label="target 2 GB/s")
    by_size.plot([results["naive_size"]], [results["naive"]], "s", label="naive numpy, serial")
    by_size.set(xlabel="raw image size (MB)", ylabel="GB/s of raw input", xscale="log",
                title="Throughput against image size (3 GB per size)", ylim=(0, None))
    by_size.set_xticks(sizes, [f"{s:g}" for s in sizes])
    by_size.minorticks_off()
    by_size.legend(fontsize=8)
    workers = sorted(results["scaling"])
    by_workers.plot(workers, [results["scaling"][w] for w in workers], "o-", label="measured")
    base = results["scaling"][workers[0]]
    by_workers.plot(workers, [base * w / workers[0] for w in workers], "k:", label="linear")
    by_workers.set(xlabel="worker processes (1 thread each)", ylabel="GB/s of raw input",
                   xticks=workers, ylim=(0, None),
                   title="Throughput against worker count (9 GB, one run)")
    by_workers.legend(fontsize=8)
    path = pathlib.Path(directory) / "performance.png"
    figure.savefig(path, dpi=100)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[200, 500, 1000],
                        help="sizes of the large raw images, MB (default 200 500 1000)")
    parser.add_argument("--gb-per-size", type=float, default=3.0,
                        help="raw data per size: images of a size are repeated up to this")
    parser.add_argument("--small", type=int, default=600, help="small images (default 600)")
    parser.add_argument("--memory-limit", type=float, default=600,
                        help="memory limit of each worker in the memory test, MB (default 600)")
    parser.add_argument("--plots", default=str(REPOSITORY / "docs"),
                        help="directory of the plot (default docs/); '' for none")
    parser.add_argument("--workdir", help="where to write the campaign (default a temp dir)")
    parser.add_argument("--clusters", type=float, default=CLUSTER_FRACTION,
                        help="fraction of a raw image's pixels in tracks, blobs and X-rays "
                        f"(default {CLUSTER_FRACTION}; 0.3 for dense images, 0 for none)")
    parser.add_argument("--real-copies", type=int, default=40,
                        help="copies of the real DAMIC-M image processed (default 40)")
    parser.add_argument("--real-timeout", type=float, default=60,
                        help="seconds the real-image run may take before it is stopped "
                        "(default 60)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.gb_per_size, args.small, args.real_copies = [200], 0.4, 60, 10

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"load average {load:.2f} at start")
    results = {"pipeline": {}, "scaling": {}}
    top = pathlib.Path(tempfile.mkdtemp(prefix="skipperdask-bench-", dir=args.workdir))
    try:
        # ---- the campaign -------------------------------------------------------------
        start = time.perf_counter()
        large = {}
        for size in args.sizes:
            count = max(2, math.ceil(args.gb_per_size * 1000 / size))
            truths = [large_truth(size, i, args.clusters) for i in range(count)]
            large[size] = write_campaign(top / f"large-{size:g}MB", truths)
        small_truth = dict(nrows=40, ncols=50, nskips=100)  # 800 kB each
        small = write_campaign(top / "small", [raw_truth(**small_truth, seed=i,
                                                         clusters=args.clusters)
                                               for i in range(args.small)])
        memory_image_mb = 2.2 * args.memory_limit
        # many samples per pixel, as real raw images: the statistics are then small beside
        # the pixels (see docs/performance.md)
        memory_image = write_campaign(
            top / "memory", [large_truth(memory_image_mb, 7, args.clusters, 400)])
        example = large_truth(min(args.sizes), 0, args.clusters)
        print(f"raw images: {cluster_fraction(example):.1%} of the pixels in clusters "
              f"({example.tracks} tracks and blobs, {example.xrays} X-rays per "
              f"{example.nrows} × {example.ncols} pixels), {example.hot_columns} hot column")
        all_large = [p for paths in large.values() for p in paths]
        print(f"wrote {nbytes(all_large) / 1e9:.2f} GB of large images ({len(all_large)} files), "
              f"{args.small} small images of {nbytes(small[:1]) / 1e6:.2f} MB and a "
              f"{nbytes(memory_image) / 1e6:.0f} MB image in {time.perf_counter() - start:.0f} s")

        # ---- read limit ---------------------------------------------------------------
        cold = drop_caches()
        results["read_cold"] = read_rate(all_large) if cold else None
        results["read_warm"] = max(read_rate(all_large) for _ in range(2))
        print(f"read limit: cold {results['read_cold'] or float('nan'):.2f} GB/s"
              f"{'' if cold else ' (cannot drop caches: not measured)'}, "
              f"warm {results['read_warm']:.2f} GB/s")

        # ---- naive serial baseline ----------------------------------------------------
        naive_path = large[min(large)][0]
        read_rate([naive_path])
        start = time.perf_counter()
        naive_statistics(naive_path)
        results["naive"] = os.path.getsize(naive_path) / 1e9 / (time.perf_counter() - start)
        results["naive_size"] = min(large)
        print(f"naive numpy baseline (statistics only, no fits), {min(large):g} MB image: "
              f"{results['naive']:.3f} GB/s")

        # ---- where the time goes, one thread ----------------------------------------
        results["profile"] = profile_stages(naive_path, small[0], top / "profile.zarr")
        for stage, seconds in results["profile"].items():
            print(f"  one thread: {stage:52} {seconds * 1000:8.1f} ms")
        kernel = os.path.getsize(naive_path) / 1e9 / results["profile"][
            "large: read + statistics kernel"]
        print(f"  one thread: read + statistics kernel {kernel:.2f} GB/s")

        # ---- pipeline, 2 workers ------------------------------------------------------
        catalogue = str(top / "catalogue.zarr")
        start = time.perf_counter()
        with cluster(2) as client:
            results["startup"] = time.perf_counter() - start
            results["warmup"] = warm_up(client, small[0], catalogue)
            print(f"cluster start-up {results['startup']:.2f} s, first image (warm-up) "
                  f"{results['warmup']:.2f} s")
            for size, paths in large.items():
                read_rate(paths)  # warm page cache, as the warm read limit
                seconds = run_pipeline(paths, client, catalogue)
                results["pipeline"][size] = nbytes(paths) / 1e9 / seconds
                print(f"pipeline, 2 workers, {len(paths)} × {size:g} MB: {seconds:.2f} s, "
                      f"{results['pipeline'][size]:.2f} GB/s, "
                      f"{results['pipeline'][size] / results['read_warm']:.2f} of warm read")
            results["scaling"][2] = campaign_rate(all_large, client, catalogue)
            read_rate(small)
            seconds = run_pipeline(small, client, catalogue)
            results["small"] = len(small) / seconds
            print(f"small images ({nbytes(small[:1]) / 1e6:.2f} MB, {small_truth['nskips']} "
                  f"samples): {results['small']:.1f} images/s")
            if cold:  # what a campaign read from disk sees: the disk's pace, or the pipeline's
                cold_paths = large[min(large)]
                drop_caches()
                rate = nbytes(cold_paths) / 1e9 / run_pipeline(cold_paths, client, catalogue)
                print(f"pipeline, 2 workers, cold page cache, {len(cold_paths)} × "
                      f"{min(large):g} MB: {rate:.2f} GB/s, {rate / results['read_cold']:.2f} "
                      f"of the cold read limit")
        # ---- 1 worker: the same runs -------------------------------------------------
        one_worker = results["one_worker"] = {}
        with cluster(1) as client:
            warm_up(client, small[0], catalogue)
            for size, paths in large.items():
                read_rate(paths)
                one_worker[size] = nbytes(paths) / 1e9 / run_pipeline(paths, client, catalogue)
            results["scaling"][1] = campaign_rate(all_large, client, catalogue)
        for size in large:
            print(f"1 worker {one_worker[size]:.2f} GB/s, 2 workers "
                  f"{results['pipeline'][size]:.2f} GB/s on {size:g} MB images: speed-up "
                  f"{results['pipeline'][size] / one_worker[size]:.2f}×")
        results["speedup"] = results["scaling"][2] / results["scaling"][1]
        print(f"the whole large-image campaign ({len(all_large)} images, "
              f"{nbytes(all_large) / 1e9:.1f} GB) in one run: 1 worker "
              f"{results['scaling'][1]:.2f} GB/s, 2 workers {results['scaling'][2]:.2f} GB/s: "
              f"speed-up {results['speedup']:.2f}×")

        # ---- memory -------------------------------------------------------------------
        limit = int(args.memory_limit * MB)
        with cluster(2, memory_limit=limit) as client:
            warm_up(client, small[0], catalogue)
            idle = client.run(lambda: psutil.Process().memory_info().rss)
            with RssSampler(client) as sampler:
                seconds = run_pipeline(memory_image, client, catalogue)
            results["memory_peak"] = sampler.peak
            # a worker that went over its limit was restarted by its nanny: a new address
            restarted = len(set(sampler.peak) - set(idle)) + sampler.failures
            results["memory_ok"] = restarted == 0
        memory_image_bytes = nbytes(memory_image)
        peaks = ", ".join(f"{v / MB:.0f}" for v in sampler.peak.values())
        idles = ", ".join(f"{v / MB:.0f}" for v in idle.values())
        print(f"memory: {memory_image_bytes / 1e6:.0f} MB image, limit {limit / MB:.0f} MB per "
              f"worker: done in {seconds:.1f} s, peak RSS per worker {peaks} MB (idle {idles} MB),"
              f" workers restarted for their memory: {restarted}")

        # ---- the real image, by the command line --------------------------------------
        if not (REAL_DATA / REAL_IMAGE).exists():
            print(f"real DAMIC-M image: skipped, {REAL_DATA / REAL_IMAGE} is absent")
        else:
            start = time.perf_counter()
            with cluster(2) as client:
                results["real_startup"] = time.perf_counter() - start
                # a first copy through the same command: the workers' first compressed file
                real_image_run(top / "real-warm-up", client, 1, args.real_timeout)
                files, seconds, summary, catalogue = real_image_run(
                    top / "real", client, args.real_copies, args.real_timeout)
            results["real_command_rate"] = files / seconds
            run_seconds = summary_seconds(summary)
            # the run's own time, as for the raw images: the command's start-up apart
            results["real_rate"] = files / run_seconds if summary else results[
                "real_command_rate"]
            stopped = "" if summary else f", stopped after {args.real_timeout:g} s"
            print(f"real DAMIC-M image ({REAL_IMAGE}), {args.real_copies} copies, skipperdask "
                  f"run on 2 workers (cluster start-up {results['real_startup']:.2f} s, not "
                  f"counted): {files} files processed in {run_seconds:.2f} s by the run's own "
                  f"summary, {results['real_rate']:.2f} files/s; the whole command (Python, "
                  f"imports, connection) {seconds:.2f} s{stopped}, "
                  f"{results['real_command_rate']:.2f} files/s")
            if summary:
                print(f"  its summary: {summary}")
            if files:
                print_real_image(catalogue)
    finally:
        shutil.rmtree(top, ignore_errors=True)

    # ---- the table ----------------------------------------------------------------------
    large_sizes = [s for s in results["pipeline"] if 200 <= s <= 2000] or list(results["pipeline"])
    worst = min(results["pipeline"][s] for s in large_sizes)
    peak = max(results["memory_peak"].values())
    rows = [
        ("large images, GB/s end to end (worst size)", f"{worst:.2f}", ">= 2", worst >= 2),
        ("  ... / warm read limit", f"{worst / results['read_warm']:.2f}", ">= 0.35",
         worst / results["read_warm"] >= 0.35),
        ("  ... / naive numpy baseline", f"{worst / results['naive']:.1f}x", "", None),
        ("small images, images/s", f"{results['small']:.1f}", ">= 50", results["small"] >= 50),
        ("1 -> 2 workers speed-up (whole large campaign)", f"{results['speedup']:.2f}x", ">= 1.7",
         results["speedup"] >= 1.7),
        (f"image {memory_image_bytes / 1e6:.0f} MB, peak worker RSS (MB), no restart",
         f"{peak / MB:.0f}", f"< {limit / MB:.0f}", results["memory_ok"] and peak < limit),
        ("cluster start-up, s", f"{results['startup']:.2f}", "<= 4", results["startup"] <= 4),
    ]
    if "real_rate" in results:
        rows.append(("real DAMIC-M image, files/s (skipperdask run)",
                     f"{results['real_rate']:.2f}", ">= 8", results["real_rate"] >= 8))
        rows.append(("  ... the whole command, its start-up included",
                     f"{results['real_command_rate']:.2f}", "", None))
    print()
    print(f"{'figure':48} {'measured':>10} {'target':>9}  result")
    print("-" * 78)
    for name, value, target, ok in rows:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:48} {value:>10} {target:>9}  {verdict}")
    print(f"(read limit cold {results['read_cold'] or float('nan'):.2f} GB/s, warm "
          f"{results['read_warm']:.2f} GB/s; cluster start-up {results['startup']:.2f} s; "
          f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end)")
    if args.plots:
        print(f"plot: {plot(results, args.plots)}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
