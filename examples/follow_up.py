"""The first look an analyst takes at a campaign's catalogue.

Opens the Zarr catalogue with xarray, plots, per amplifier, the noise after averaging against
time, the single-electron resolution against a header voltage and the dark current against
the exposure, and lists the images to look at: failed files, missing gains, charge lost
between samples, noise and tail outliers.

Run it on the catalogue that ``skipperdask demo DIR`` or ``skipperdask run`` wrote::

    skipperdask demo /tmp/demo
    python examples/follow_up.py /tmp/demo/img_preproc_out.zarr --figure follow_up.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")  # a file, no window: also runs on a cluster's login node

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

#: header voltages tried in turn for the second panel
VOLTAGES = ("VDD", "VR", "VSUB", "H1AH", "V1AH")


def _outliers(values, ok, mads):
    """Over (image, amp): more than ``mads`` normal-scaled MADs from the amplifier's median."""
    good = values.where(ok)
    median = good.median("image")
    mad = 1.4826 * abs(good - median).median("image")
    return abs(values - median) > mads * mad


def flagged_images(ds, *, charge_loss_sigmas=5.0, outlier_mads=5.0):
    """The images to look at, and why.

    Parameters
    ----------
    ds : xarray.Dataset
        A catalogue (``xr.open_zarr``).
    charge_loss_sigmas : float
        dSdskip more than this many standard errors below zero: charge lost between samples.
    outlier_mads : float
        skNoise or tailRatio more than this many (normal-scaled) MADs from the amplifier's
        median over the campaign: a noisy image, or tracks and charge-transfer problems.

    Returns
    -------
    list of (str, str, str)
        (path, amplifier or "", reason).
    """
    flags = [
        (str(path), "", f"failed: {error}")
        for path, status, error in zip(ds.path.values, ds.status.values, ds.error.values,
                                       strict=True)
        if status != "ok"
    ]
    ok = ds.status == "ok"
    tests = {
        "no gain: {aduConversion_reason}": ok & ds.amp_present & ds.aduConversion.isnull(),
        "charge loss: dSdskip = {dSdskip:.3g} +/- {dSdskip_err:.2g}": (
            ds.dSdskip < -charge_loss_sigmas * ds.dSdskip_err
        ),
        "noise outlier: skNoise = {skNoise:.3g} ADU": _outliers(ds.skNoise, ok, outlier_mads),
        "tail outlier: tailRatio = {tailRatio:.3g}": _outliers(ds.tailRatio, ok, outlier_mads),
    }
    names = ("aduConversion_reason", "dSdskip", "dSdskip_err", "skNoise", "tailRatio")
    for template, test in tests.items():
        for i, a in zip(*np.nonzero(test.values), strict=True):
            entry = ds.isel(image=i, amp=a)
            values = {name: entry[name].values.item() for name in names}
            flags.append((str(ds.path.values[i]), str(ds.amp.values[a]), template.format(**values)))
    return flags


def plot_campaign(ds, figure_path):
    """Noise against time, resolution against a voltage, dark current against exposure."""
    ok = ds.status == "ok"
    voltage = next((v for v in VOLTAGES if v in ds), None)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    for amp in ds.amp.values[ds.amp_present.any("image").values]:

        def good(name, amp=amp):
            # header keywords are per image, or per image and amplifier
            values = ds[name].where(ok)
            return values.sel(amp=amp) if "amp" in values.dims else values

        axes[0].errorbar(ds.time.values, good("skNoise"), good("skNoise_err"), fmt="o", label=amp)
        if voltage is not None:
            axes[1].plot(good(voltage), good("resolution"), "o", label=amp)
        if "EXPOSURE" in ds:
            axes[2].errorbar(good("EXPOSURE"), good("darkCurrent"), good("darkCurrent_err"),
                             fmt="o", label=amp)
    axes[0].set(xlabel="time (UTC)", ylabel="skNoise (ADU)", title="noise after averaging")
    axes[0].tick_params(axis="x", labelrotation=30)
    axes[1].set(xlabel=f"{voltage} (header)", ylabel="skNoise / aduConversion (e-)",
                title="single-electron resolution")
    axes[2].set(xlabel="EXPOSURE (header)", ylabel="darkCurrent (e-/pixel)", title="dark current")
    for ax in axes:
        ax.legend(title="amp", fontsize="small")
    fig.savefig(figure_path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalogue", help="the Zarr catalogue (img_preproc_out.zarr)")
    parser.add_argument("--figure", default="follow_up.png", help="where to save the plots")
    args = parser.parse_args(argv)

    with xr.open_zarr(args.catalogue) as ds:
        ds = ds.load()
    ok = ds.status == "ok"
    print(f"{ds.sizes['image']} images ({int(ok.sum())} ok), amplifiers {list(ds.amp.values)}")
    print("\nper amplifier, median over the good images:")
    summary = ds[["skNoise", "aduConversion", "darkCurrent", "resolution"]].where(ok)
    print(summary.median("image").to_dataframe().to_string(float_format="%.4g"))

    plot_campaign(ds, args.figure)
    print(f"\nfigure: {args.figure}")

    flags = flagged_images(ds)
    print(f"\n{len(flags)} flags:")
    for path, amp, reason in flags:
        print(f"  {path} {amp}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
