"""One browser's live page (:mod:`~.live`): a Bokeh document built from the page's history,
then kept up to date by streaming each finished image into its sources.

Every model a test or a curious user may look up is named: ``summary`` (the line above the
figures), ``figure-<metric>``, ``points-<amp>`` and ``bands-<amp>`` (one source per amplifier,
shared by the four figures), ``failures`` and ``alerts`` (the tables' sources). In the browser,
``Bokeh.documents[0].get_model_by_name("points-0").data.time.length`` counts the points of
amplifier ``0``.
"""

from bokeh.layouts import column, gridplot
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    DataTable,
    Div,
    HoverTool,
    Legend,
    TableColumn,
)
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from .drawing import LABELS
from .live_rows import (
    ALERT_COLUMNS,
    BAND_COLUMNS,
    FAILURE_COLUMNS,
    LAST_ROWS,
    LIVE_METRICS,
    POINT_COLUMNS,
    columns,
)

TITLE = "skipperdask: images as they finish"


class PageView:
    """The document of one browser session: built from ``history`` (a
    :class:`~.live_rows.History`, whose lock the caller holds), then updated by :meth:`show`
    on the document's own thread (the server's) with what :meth:`queue` kept."""

    def __init__(self, document, history):
        self.document = document
        self.points_kept = history.points_kept
        self.points, self.bands = {}, {}  # amp -> ColumnDataSource
        self.pending = []  # updates not shown yet, guarded by the history's lock
        self.summary = Div(text=history.summary(), name="summary",
                           styles={"font-size": "1.1em"})
        time_range = DataRange1d()  # one time axis: zoom one figure, zoom all
        self.figures = {}
        for metric in LIVE_METRICS:
            plot = figure(height=260, sizing_mode="stretch_width", x_axis_type="datetime",
                          x_range=time_range, title=LABELS.get(metric, metric),
                          name=f"figure-{metric}", tools="pan,xwheel_zoom,box_zoom,reset,save",
                          output_backend="webgl")
            plot.add_layout(Legend(click_policy="hide", title="amplifier"), "right")
            plot.add_tools(HoverTool(renderers=[], tooltips=[
                ("file", "@file"), ("amplifier", "@amp"), ("time", "@time{%F %T}"),
                (metric, f"@{metric}"), ("flags", "@flags")],
                formatters={"@time": "datetime"}))
            self.figures[metric] = plot
        self.failures = ColumnDataSource(columns(history.failures, FAILURE_COLUMNS),
                                         name="failures")
        self.alerts = ColumnDataSource(columns(history.alerts, ALERT_COLUMNS), name="alerts")
        for amp, rows in history.points.items():
            self._amp(amp).stream(columns(rows, POINT_COLUMNS + LIVE_METRICS))
        for amp, rows in history.bands.items():
            self._bands(amp).stream(columns(rows, BAND_COLUMNS))
        document.title = TITLE
        document.add_root(column(
            Div(text=f"<h2 style='margin:0'>{TITLE}</h2>"), self.summary,
            gridplot([self.figures[m] for m in LIVE_METRICS], ncols=2,
                     sizing_mode="stretch_width"),
            _table("Last alerts", self.alerts, {"image time": 140, "file": 180, "amp": 70,
                                                 "reasons": 1000}),
            _table("Last failed files", self.failures, {"failed at": 140, "file": 180,
                                                         "error": 1070}),
            sizing_mode="stretch_width"))

    def queue(self, update):
        """Keep ``update`` for the next :meth:`show` (under the history's lock); True when
        nothing was waiting, so that the caller schedules that :meth:`show`."""
        self.pending.append(update)
        return len(self.pending) == 1

    def show(self, updates):
        """Show the :class:`~.live_rows.Update` of images finished since the last call, in
        one message per source (on the document's thread): a burst of images (the backlog
        of a watched directory) costs the browser a few messages, not thousands."""
        points, bands, failures, alerts = {}, {}, [], []
        for update in updates:
            for amp, point in update.points.items():
                points.setdefault(amp, []).append(point)
            for amp, band in update.bands.items():
                bands.setdefault(amp, []).append(band)
            failures += [update.failure] if update.failure else []
            alerts += update.alerts
        for amp, rows in points.items():
            self._amp(amp).stream(columns(rows[-self.points_kept:],
                                          POINT_COLUMNS + LIVE_METRICS),
                                  rollover=self.points_kept)
        for amp, rows in bands.items():
            self._bands(amp).stream(columns(rows[-self.points_kept:], BAND_COLUMNS),
                                    rollover=self.points_kept)
        if failures:
            self.failures.data = _newest_first(self.failures.data, failures, FAILURE_COLUMNS)
        if alerts:
            self.alerts.data = _newest_first(self.alerts.data, alerts, ALERT_COLUMNS)
        if updates:
            self.summary.text = updates[-1].summary

    def _colour(self, amp):
        amps = list(dict.fromkeys([*self.points, *self.bands, amp]))
        return Category10_10[amps.index(amp) % len(Category10_10)]

    def _amp(self, amp):
        """The points' source of amplifier ``amp``, its glyphs added to every figure first."""
        if amp not in self.points:
            colour = self._colour(amp)
            source = ColumnDataSource({name: [] for name in POINT_COLUMNS + LIVE_METRICS},
                                      name=f"points-{amp}")
            for metric, plot in self.figures.items():
                glyphs = plot.scatter("time", metric, source=source, marker="marker",
                                      size="size", fill_color=colour, line_color="outline",
                                      line_width=1.5, legend_label=str(amp),
                                      name=f"points-{metric}-{amp}")
                hover = plot.select_one(HoverTool)
                hover.renderers = [*hover.renderers, glyphs]
            self.points[amp] = source
        return self.points[amp]

    def _bands(self, amp):
        """The bands' source of amplifier ``amp``: its running medians (lines) and alert
        bands (shaded), in every figure."""
        if amp not in self.bands:
            colour = self._colour(amp)
            source = ColumnDataSource({name: [] for name in BAND_COLUMNS}, name=f"bands-{amp}")
            for metric, plot in self.figures.items():
                plot.varea("time", f"{metric}_low", f"{metric}_high", source=source,
                           fill_color=colour, fill_alpha=0.12, legend_label=str(amp))
                plot.line("time", f"{metric}_median", source=source, line_color=colour,
                          line_dash="dashed", legend_label=str(amp))
            self.bands[amp] = source
        return self.bands[amp]


def _table(title, source, widths):
    table = DataTable(source=source, height=180, sizing_mode="stretch_width", index_position=None,
                      reorderable=False,  # it would need jquery-ui
                      columns=[TableColumn(field=name, title=name, width=width)
                               for name, width in widths.items()])
    return column(Div(text=f"<h3 style='margin:0.4em 0'>{title}</h3>"), table,
                  sizing_mode="stretch_width")


def _newest_first(data, new_rows, names):
    """A table's columns with ``new_rows`` on top (the newest last in ``new_rows``), at most
    :data:`~.live_rows.LAST_ROWS` rows."""
    old = [dict(zip(names, values, strict=True))
           for values in zip(*(data[name] for name in names), strict=True)]
    return columns([*reversed(list(new_rows)), *old][:LAST_ROWS], names)
