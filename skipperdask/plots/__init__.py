"""Pictures an analyst looks at: the diagnostics of one image and the report of a campaign.

- :func:`inspect_image` (``skipperdask inspect``): one figure per amplifier with the average
  image, the fitted Gaussian-smeared Poisson, the entropy slope, the noise against the number
  of averaged samples and the single-sample noise fits (:func:`image_figure` builds it from an
  :class:`~skipperdask.metrics.AmpAnalysis`).
- :func:`write_report` (``skipperdask report``): a self-contained HTML page of a catalogue,
  PNG figures beside it, relative links, no script and no server.

Figures are :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas: no pyplot
state, no display, safe in threads. What a panel plots is kept on its axes, so that tests (and
curious users) can check it against the metrics: ``ax.skipperdask_fit`` is a dict of the
parameters of the curve drawn, and lines carry a ``gid`` naming what they show. A metric that is
missing is not a blank panel: its reason is written in it.

- :mod:`skipperdask.plots.live` (``skipperdask run``'s live page): a Bokeh server in a thread
  showing each image's metrics as it finishes (``serve``, ``LivePage``); imported on demand,
  not here, as it brings the Bokeh server.

Modules: :mod:`~.diagnostics` (one image), :mod:`~.campaign_figures` and :mod:`~.report` (a
campaign), :mod:`~.drawing` (what they draw with), :mod:`~.live`, :mod:`~.live_rows` and
:mod:`~.live_view` (the live page).
"""

from ..lazy import lazy_exports

# imported on first use: run's live page needs no matplotlib figure, fit or scipy.stats
_EXPORTS = {
    ".campaign_figures": ("distributions_figure", "flagged_images", "header_keywords",
                          "keyword_unit", "metric_figure", "versus_figure"),
    ".diagnostics": ("image_figure", "inspect_image"),
    ".report": ("write_report",),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
