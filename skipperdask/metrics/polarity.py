"""Which way charge goes in an image's values, when only the default said it: the data
decide from the tails of the average image."""

#: the data decide the polarity from the tails of the average image beyond this many of its
#: most extreme pixels on each side (a few bad pixels must not decide)
POLARITY_TAIL_PIXELS = 10
#: ... when one tail reaches this many times farther from the median than the other
POLARITY_TAIL_RATIO = 1.5



def charge_side(values):
    """On which side of the zero-charge peak the charge of an image lies, from its values.

    Charge only adds: dark current, clusters and tracks make a long tail on the charge side
    of the median, while the other side ends where the noise of the emptiest pixels ends
    (in an illuminated flat field: at the level of its empty pixels, far closer than the
    tracks reach). The tails are measured beyond the ``POLARITY_TAIL_PIXELS`` most extreme
    pixels on each side: the side whose tail reaches ``POLARITY_TAIL_RATIO`` times farther
    from the median than the other holds the charge.

    Parameters
    ----------
    values : skipperdask.statistics.ValueCounts
        The average image.

    Returns
    -------
    int
        +1: charge raises the values; -1: it lowers them; 0: the data cannot tell (too few
        pixels, or tails of similar lengths, as in an image of noise alone).
    """
    if values.size <= 2 * POLARITY_TAIL_PIXELS:
        return 0
    low, high = values.order_statistics(
        [POLARITY_TAIL_PIXELS - 1, values.size - POLARITY_TAIL_PIXELS])
    median = float(values.quantile(0.5))
    below, above = median - float(low), float(high) - median
    if above > POLARITY_TAIL_RATIO * below:
        return 1
    if below > POLARITY_TAIL_RATIO * above:
        return -1
    return 0


def settle_polarity(statistics, source):
    """The statistics in the frame where charge raises the value, and what decided it.

    When nothing but the default decided the polarity (``source == "default"``), the data
    decide (:func:`charge_side`) and the statistics are flipped if they say the other way;
    when the data cannot tell, the default stands.

    Parameters
    ----------
    statistics : skipperdask.statistics.ImageStatistics
        Computed with the provisional polarity ``statistics.plan.polarity``.
    source : {"option", "header", "name", "default"}
        What decided that polarity (:func:`skipperdask.io.resolve_polarity`).

    Returns
    -------
    statistics : skipperdask.statistics.ImageStatistics
    source : {"option", "header", "name", "data", "default"}
    """
    if source != "default":
        return statistics, source
    side = charge_side(statistics.average_values)
    if side == 0:
        return statistics, "default"
    return (statistics if side > 0 else statistics.flipped()), "data"


