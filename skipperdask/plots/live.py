"""The live science page: while a campaign runs (``skipperdask run``, ``watch``), a web page
on 127.0.0.1 shows each image's gain, noise, dark current and tailRatio per amplifier against
time as it finishes, flagged points with their reasons on hover, the running medians and
alert bands, and the last failed files.

:class:`LivePage` is a Bokeh server in a thread of its own (its own event loop), serving one
page at ``/``; :meth:`LivePage.add` takes a finished
:class:`~skipperdask.catalogue.ImageRecord` from any thread (``process(...,
on_record=page.add)``) and every open page receives it through its websocket, without a
reload. The page keeps the last ``points`` points of each amplifier (``skipperdask.live-page-
points``): a campaign watched for weeks uses bounded memory, in the server and in the browser.
:func:`serve` is the context manager the commands use: the page, linked from the Dask
dashboard when the cluster is local (:func:`link_from_dashboard`).

Modules: this one (the server), :mod:`~.live_rows` (what an image adds, the history),
:mod:`~.live_view` (one browser's document).
"""

import asyncio
import contextlib
import logging
import select
import socket
import threading
from functools import partial

from tornado import web
from tornado.ioloop import IOLoop

from ..campaign.cluster import on_host
from ..errors import BadOptionError
from .live_rows import History

# Bokeh (0.4-0.8 s of imports) is imported by the server's own thread, while the campaign
# starts: the page's link is printed at once, the page is served a moment later.

#: where the page is linked from the Dask dashboard (``<dashboard>/skipperdask``)
DASHBOARD_ROUTE = "skipperdask"


class LivePage:
    """A Bokeh server, in a thread of its own, serving the live page of a campaign.

    Parameters
    ----------
    host : str
        The interface it listens on: loopback unless another is named.
    port : int
        0 for any free port (:attr:`url` says which).
    points : int
        Points kept per amplifier, in the server and in each browser: older ones roll over.

    The port listens when the page is made (a port in use fails there); Bokeh is imported
    and its server started in the page's thread when a browser first connects (that first
    page takes a second longer): a run nobody watches spends nothing on it. A server that
    cannot start is logged, and the campaign goes on without its page.

    Examples
    --------
    >>> with LivePage() as page:                      # doctest: +SKIP
    ...     print(page.url)
    ...     skipperdask.process(paths, "campaign.zarr", on_record=page.add)
    """

    def __init__(self, host="127.0.0.1", port=0, *, points=10_000):
        self.history = History(points)
        self.views = set()  # the open pages' PageView, guarded by history.lock
        # bound here, so that a port in use fails in the caller, not in the thread (and
        # through the standard library, which closes the socket when it cannot bind)
        listening = socket.create_server(
            (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        listening.setblocking(False)
        sockets, self.port = [listening], listening.getsockname()[1]
        self.host = host
        self.url = f"http://{_url_host(host)}:{self.port}/"
        self._ready = threading.Event()  # the server runs, failed, or was never wanted
        self._loop = None
        self._closing = False
        self._wake = socket.socketpair()  # close() wakes the thread waiting for a browser
        self._thread = threading.Thread(target=self._serve, args=(sockets,),
                                        name="skipperdask-live-page", daemon=True)
        self._thread.start()

    def _serve(self, sockets):
        # Bokeh (0.4-0.8 s of a busy machine's CPU) starts when a browser first connects, its
        # connection waiting in the socket's backlog meanwhile: most runs are never watched
        select.select([*sockets, self._wake[0]], [], [])
        if self._closing:
            for sock in sockets:
                sock.close()
            self._ready.set()
            return
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = IOLoop.current()
        try:
            from bokeh.application import Application
            from bokeh.application.handlers.function import FunctionHandler
            from bokeh.server.server import BaseServer
            from bokeh.server.tornado import BokehTornado
            from tornado.httpserver import HTTPServer

            # the page's own origins only: a page of another site cannot open its websocket
            origins = [f"{self.host}:{self.port}", f"{_url_host(self.host)}:{self.port}"]
            if self.host in ("127.0.0.1", "localhost"):
                origins += [f"localhost:{self.port}", f"127.0.0.1:{self.port}"]
            application = BokehTornado({"/": Application(FunctionHandler(self._open))},
                                       extra_websocket_origins=sorted(set(origins)))
            http = HTTPServer(application)
            http.add_sockets(sockets)
            server = BaseServer(loop, application, http)
            server.start()
            self._loop = loop
        except Exception as error:  # noqa: BLE001 (the campaign goes on without its page)
            logging.getLogger(__name__).warning("the live page %s could not start: %s",
                                                self.url, error)
            for sock in sockets:
                sock.close()
            loop.close(all_fds=True)
            return
        finally:
            self._ready.set()
        loop.start()
        server.stop(wait=False)
        loop.close(all_fds=True)

    def _open(self, document):
        """A browser opened the page: its document, from the history so far."""
        from .live_view import PageView

        with self.history.lock:  # no image is missed or shown twice while it is built
            view = PageView(document, self.history)
            self.views.add(view)
        document.on_session_destroyed(partial(self._closed, view))

    def _closed(self, view, session_context):
        with self.history.lock:
            self.views.discard(view)

    def add(self, record, bands=None):
        """Show a finished image on every open page (from any thread).

        Parameters
        ----------
        record : skipperdask.catalogue.ImageRecord
            Its metrics (``flags`` among them, when the alerts set it: the amplifiers' reasons
            joined by ``"; "``, ``""`` when none), or its error.
        bands : dict, optional
            ``{(metric, amp): (median, low, high)}``: the running median and alert band of a
            metric (``aduConversion``, ``skNoise``, ``darkCurrent``, ``tailRatio``) at this
            image's time.
        """
        with self.history.lock:
            update = self.history.record(record, bands)
            for view in self.views:
                if view.queue(update):
                    # the only thread-safe way into a Bokeh document: a callback on its loop
                    view.document.add_next_tick_callback(partial(self._show, view))

    def _show(self, view):
        """On the server's thread: what a page has not shown yet."""
        with self.history.lock:
            updates, view.pending = view.pending, []
        view.show(updates)

    def close(self):
        """Stop the server and its thread (open pages stop updating)."""
        if self._closing:
            return
        self._closing = True
        self._wake[1].send(b"\0")
        self._ready.wait()
        if self._loop is not None:
            self._loop.add_callback(self._loop.stop)
        self._thread.join()
        for end in self._wake:
            end.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


@contextlib.contextmanager
def serve(address="127.0.0.1:0", *, client=None, points=10_000):
    """The live page of a campaign, while the ``with`` block runs.

    Parameters
    ----------
    address : str
        ``host:port`` it listens on; a port alone (``":0"``, ``"8790"``) listens on
        127.0.0.1; port 0 picks a free one.
    client : distributed.Client, optional
        The campaign's client: when its cluster is local, the Dask dashboard links to the page
        (:func:`link_from_dashboard`).
    points : int
        Points kept per amplifier.

    Yields
    ------
    LivePage
        Pass its :meth:`~LivePage.add` as ``process(..., on_record=...)``; its ``url`` is the
        page's.
    """
    host, port = _host_and_port(address)
    with LivePage(host, port, points=points) as page:
        linked = client is not None and link_from_dashboard(client, page.url)
        try:
            yield page
        finally:
            if linked:  # the dashboard's route then says the page closed
                link_from_dashboard(client, None)


def link_from_dashboard(client, url):
    """Link the live page from the Dask dashboard of a local cluster: ``<dashboard>/skipperdask``
    redirects to ``url``, and the dashboard's "More..." menu lists it. Nothing happens for a
    remote cluster (its dashboard's browser may not reach this machine's loopback).

    Parameters
    ----------
    client : distributed.Client
    url : str or None
        The page; None when it closed (the route then says so).

    Returns
    -------
    bool
        Whether the dashboard links to the page.
    """
    from distributed import LocalCluster

    if not isinstance(getattr(client, "cluster", None), LocalCluster):
        return False
    return client.run_on_scheduler(_dashboard_route, url)


def _dashboard_route(url, dask_scheduler=None):
    """On the scheduler: a route of its HTTP server to ``url``, added once per scheduler."""
    application = getattr(dask_scheduler, "http_application", None)
    if application is None:  # the scheduler serves no HTTP at all
        return False
    if not hasattr(application, "skipperdask_live_page"):
        application.add_handlers(r".*$", [(rf"/{DASHBOARD_ROUTE}/?", _LivePageRedirect)])
        _menu_entry(dask_scheduler)
    application.skipperdask_live_page = url
    return True


def _menu_entry(dask_scheduler):
    """The page in the dashboard's "More..." menu. distributed builds that menu's list once
    per scheduler (``template_variables``, memoized) and every dashboard page renders from
    it; it offers no public way to add to it, so this leans on that detail and gives up
    quietly if it changes: the route still works."""
    with contextlib.suppress(ImportError, AttributeError, KeyError, TypeError):
        from distributed.dashboard.scheduler import template_variables

        template_variables(dask_scheduler)["plots"].append(
            {"url": DASHBOARD_ROUTE, "name": "Skipperdask live page"})


class _LivePageRedirect(web.RequestHandler):
    """``<dashboard>/skipperdask``: to the live page, or why not."""

    def get(self):
        url = getattr(self.application, "skipperdask_live_page", None)
        if url is None:
            self.set_status(404)
            self.finish("The skipperdask live page has closed with its campaign.")
        else:
            self.redirect(url)


def _host_and_port(address):
    host, _, port = on_host(str(address), "127.0.0.1").rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise BadOptionError(f"live page address must be host:port, not {address!r}") from None


def _url_host(host):
    """The host as a browser reaches it (all interfaces: through loopback)."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
