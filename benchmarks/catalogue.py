"""The catalogue's cost at campaign scale: adding 50 images to catalogues of 10², 10³, 10⁴ (and
10⁵) images of 4 amplifiers and ~150 header keywords, the store's size, the time to open it
and to read one variable whole.

    python benchmarks/catalogue.py            # 10², 10³, 10⁴, 10⁵ images
    python benchmarks/catalogue.py 100 1000   # these sizes only

The catalogues are built by committing records directly (batches of 5,000 images), not by
processing files. It prints figures; it is no test. The cost of adding 50 images should not
grow with the catalogue (an append writes its own rows, one partial chunk per array and the
metadata).
"""

import os
import shutil
import sys
import tempfile
import time

import numpy as np
import xarray as xr

from skipperdask.catalogue import Catalogue, ImageRecord

AMPS = ["CCD_A", "CCD_B", "CCD_C", "CCD_D"]
METRICS = ["aveImgS", "dSdskip", "imgNoise", "skNoise", "darkCurrent", "aduConversion",
           "pedestal", "resolution", "fitChi2", "pixVar", "clustVar", "tailRatio",
           "maskedFraction", "baselineDrift"]
NSAMP = [1, 2, 4, 8, 16, 32, 64, 100]


def metrics(rng):
    n = len(AMPS)
    variables = {}
    for name in METRICS:
        variables[name] = ("amp", rng.uniform(0.5, 50, n))
        variables[f"{name}_err"] = ("amp", rng.uniform(0.01, 1, n))
        variables[f"{name}_reason"] = ("amp", np.array([""] * n, dtype=object))
    variables["nskips"] = ("amp", np.full(n, 100, dtype=np.int64))
    variables["polarity"] = ("amp", np.full(n, -1, dtype=np.int64))
    variables["polarity_source"] = ("amp", np.array(["header"] * n, dtype=object))
    variables["noise_vs_n"] = (("amp", "nsamp"), rng.uniform(0.1, 5, (n, len(NSAMP))))
    return xr.Dataset(variables, coords={"amp": AMPS, "nsamp": NSAMP})


def record(k, rng):
    """Image k: 130 primary keywords (DAMIC-M's 133), 5 per amplifier, and a few strings."""
    header = {f"KEY{i:03d}": float(rng.normal()) for i in range(130)}
    header.update({"DATE-OBS": f"2025-{1 + k % 12:02d}-07T17:02:13", "RUNID": "Image_5_Low"})
    amp_headers = {a: {f"AMPKEY{i}": float(rng.normal()) for i in range(5)} for a in AMPS}
    return ImageRecord(f"/campaign/run{k // 1000:04d}/Img_{k}.fits", 200_000_000 + k,
                       1.7e9 + k, metrics(rng), header=header, amp_headers=amp_headers,
                       elapsed=1.0)


def size_of(path):
    total = 0
    count = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
            count += 1
    return total, count


def main(sizes):
    rng = np.random.default_rng(1)
    folder = tempfile.mkdtemp(prefix="skipperdask-catalogue-bench-")
    store = os.path.join(folder, "catalogue.zarr")
    csv = os.path.join(folder, "catalogue.csv")
    catalogue = Catalogue(store, header_variables=400)
    held = 0
    print(f"{'images':>8} {'add 50':>8} {'(csv)':>8} {'store':>9} {'objects':>8} "
          f"{'csv':>9} {'open':>7} {'read skNoise':>13} {'build':>7}", flush=True)
    try:
        for size in sizes:
            started = time.perf_counter()
            while held < size - 50:
                n = min(5000, size - 50 - held)
                catalogue.add([record(held + i, rng) for i in range(n)], csv=csv)
                held += n
            build = time.perf_counter() - started
            batch = [record(held + i, rng) for i in range(50)]
            started = time.perf_counter()
            catalogue.add(batch, csv=csv)
            add = time.perf_counter() - started
            held += 50
            # the same again, without the CSV, to separate the two
            batch = [record(held + i, rng) for i in range(50)]
            started = time.perf_counter()
            catalogue.add(batch)
            add_store = time.perf_counter() - started
            held += 50
            started = time.perf_counter()
            ds = xr.open_zarr(store)
            opened = time.perf_counter() - started
            started = time.perf_counter()
            ds.skNoise.values  # noqa: B018
            read = time.perf_counter() - started
            nbytes, objects = size_of(store)
            print(f"{held:>8} {add:>7.2f}s {add - add_store:>7.2f}s {nbytes / 1e6:>7.1f}MB "
                  f"{objects:>8} {os.path.getsize(csv) / 1e6:>7.1f}MB {opened:>6.2f}s "
                  f"{read:>12.3f}s {build:>6.1f}s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [100, 1000, 10_000, 100_000])
