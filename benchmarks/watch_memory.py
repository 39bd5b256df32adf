"""The memory of a ``watch`` process over thousands of images: it must not grow (beyond the
catalogue's own index of paths, a few hundred bytes an image).

    python benchmarks/watch_memory.py          # 5,000 images
    python benchmarks/watch_memory.py 10000    # this many

A writer thread copies small simulated images (32 × 64 pixels × 8 samples, twenty different
ones under new names) into a directory, in two pieces each, as fast as the watch takes them;
``watch`` runs in this process on a local cluster of two single-threaded workers, with file
system events, committing every 2 s. It prints this process's resident memory (the client,
the scheduler, the catalogue's writer: what runs for weeks) after the first 200 images and
every 500 images, and the growth after the warm-up: the first 2,000 images, by which
distributed's logs of the last 1,000 messages to each worker (``distributed.admin.
low-level-log-length``; a message holds its task) are full. The images waiting for a commit
are held too: at this rate (tens a second) up to a commit interval's worth. It is no test.
"""

import os
import shutil
import sys
import tempfile
import threading
import time

import psutil
from distributed import Client, LocalCluster

from skipperdask.campaign.watch import watch
from skipperdask.config import WatchOptions
from skipperdask.simulate import Truth, write_image
from skipperdask.simulate.daq import write_in_pieces

SHAPE = {"nrows": 32, "ncols": 64, "nskips": 8}
FIRST = 200
WARM_UP = 2000
EVERY = 500


def _writer(directory, sources, count, taken):
    """Copies the sources in turn under new names, never more than 50 ahead of the watch."""
    for index in range(count):
        while index - len(taken) > 50:
            time.sleep(0.01)
        source = sources[index % len(sources)]
        write_in_pieces(source, os.path.join(directory, f"Img_{index + 1}.fits"), pieces=2,
                        pause=0.0)


def main(count):
    work = tempfile.mkdtemp(prefix="skipperdask-watch-memory-")
    try:
        sources = [write_image(os.path.join(work, f"source_{i}.fits"), Truth(**SHAPE, seed=i))
                   for i in range(20)]
        directory = os.path.join(work, "daq")
        os.makedirs(directory)
        process = psutil.Process()
        taken, samples = [], []
        started = time.perf_counter()

        def on_record(record):
            taken.append(None)  # a count the writer reads; a list of None costs 8 bytes each
            if len(taken) == FIRST or len(taken) % EVERY == 0 or len(taken) == count:
                samples.append((len(taken), process.memory_info().rss,
                                time.perf_counter() - started))

        options = WatchOptions.from_config(observer="events", poll_seconds=0.05,
                                           settle_seconds=0.1)
        with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
            writer = threading.Thread(target=_writer, args=(directory, sources, count, taken),
                                      daemon=True)
            writer.start()
            dataset = watch(directory, os.path.join(work, "cat.zarr"), client=client,
                            watch_options=options, on_record=on_record, max_images=count,
                            commit_seconds=2.0)
            writer.join()
        print(f"watch of {count} images: {dataset.attrs['summary']}; catalogue "
              f"{dataset.sizes['image']} images")
        print(f"{'images':>8} {'RSS MiB':>9} {'seconds':>9}")
        for images, rss, seconds in samples:
            print(f"{images:>8} {rss / 2**20:>9.1f} {seconds:>9.1f}")
        warm = [sample for sample in samples if sample[0] >= WARM_UP] or samples
        (first, rss0, t0), (last, rss1, t1) = warm[0], samples[-1]
        print(f"growth after the warm-up: {(rss1 - rss0) / 2**20:+.1f} MiB over "
              f"{last - first} images ({(rss1 - rss0) / max(last - first, 1):+.0f} bytes an "
              f"image); {(last - first) / (t1 - t0):.1f} images/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
