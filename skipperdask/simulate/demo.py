"""The demo's campaign: clean simulated images and the three problems the tool must show, and
its measured values against the truth."""

import csv
import os

from .files import simulate_campaign, write_image
from .truth import Truth

#: the files with a problem that the demo adds to its clean images
DEMO_PROBLEMS = ("Img_101.fits", "Img_102.fits", "Img_103.fits")


def demo_campaign(directory, n_images, seed):
    """A clean simulated campaign, plus the three problems the tool must show: tracks,
    charge lost between samples, and a damaged file.

    Parameters
    ----------
    directory : str
        Where to write it.
    n_images : int
        Clean images.
    seed : int

    Returns
    -------
    paths : list of str
        Every file, the problems last.
    problems : dict of str to str
        The problem of each file that has one.
    """
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


def truth_comparison(dataset, directory):
    """Measured against simulated gain, noise and dark current, one line per image.

    Parameters
    ----------
    dataset : xarray.Dataset
        The campaign's catalogue.
    directory : str
        The campaign's directory, with its ``truth.csv``.

    Returns
    -------
    str
    """
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
