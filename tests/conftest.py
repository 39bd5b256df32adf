"""Shared fixtures: where the real data are, a local Dask cluster with its client, an S3
server on loopback, and a headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
which ``.ci/run`` installs)."""

import collections
import os
import pathlib
import threading
import uuid

import pytest
from distributed import Client, LocalCluster


def _find_real_data():
    """``shared/data/real`` beside the repository (or beside a worktree's parents)."""
    for folder in pathlib.Path(__file__).resolve().parents[1].parents:
        candidate = folder / "shared" / "data" / "real"
        if candidate.is_dir():
            return candidate
    return pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


REAL_DATA = _find_real_data()


@pytest.fixture(scope="session")
def real_data():
    """The directory of real DAMIC-M and SENSEI/LTA files, read in place (never copied)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA} (../shared is absent on this machine)")
    return REAL_DATA


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on loopback, with a dashboard on a free port
    (so that the command line prints its link), for the tests of one module."""
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    """A client of :func:`cluster`."""
    with Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def address(cluster, client):
    """The scheduler's address of :func:`cluster`, its client open."""
    return cluster.scheduler_address


class S3Server:
    """A real S3-compatible server (moto's, from PyPI) on loopback, that counts the bytes of
    the objects it serves.

    Attributes
    ----------
    endpoint_url : str
    storage_options : dict
        s3fs's arguments to reach it (``skipperdask.storage-options``).
    environment : dict
        The same as the usual ``AWS_*`` variables, for a process of its own.
    """

    def __init__(self):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class Quiet(MotoRequestHandler):
            def log_request(self, *args):  # a line per request would flood the test output
                pass

        self.served = collections.Counter()  # "bucket/key" -> bytes of GET bodies
        moto = DomainDispatcherApplication(create_backend_app)

        def counting(environ, start_response):
            body = moto(environ, start_response)
            if environ["REQUEST_METHOD"] == "GET" and not environ.get("QUERY_STRING"):
                body = list(body)
                self.served[environ["PATH_INFO"].lstrip("/")] += sum(map(len, body))
            return body

        self._server = make_server("127.0.0.1", 0, counting, threaded=True,
                                   request_handler=Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        self.storage_options = {"endpoint_url": self.endpoint_url, "key": "testing",
                                "secret": "testing"}
        self.environment = {"AWS_ENDPOINT_URL": self.endpoint_url,
                            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)

    def new_bucket(self):
        """A new, empty bucket's name."""
        name = f"bucket-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name

    def close(self):
        self._server.shutdown()
        self._thread.join()


@pytest.fixture(scope="session")
def s3():
    """An S3 server on 127.0.0.1 for the whole session (:class:`S3Server`)."""
    server = S3Server()
    yield server
    server.close()


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium driven by selenium, its console kept (``get_log("browser")``).
    Skipped when Chromium is absent, except in CI (``CI`` set), where that is a failure."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        message = (f"{' and '.join(missing)} not found: install Debian's chromium and "
                   "chromium-driver (as .ci/run does) for the browser tests")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.browser import WINDOW

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--disable-gpu",
                     "--disable-dev-shm-usage",
                     "--no-sandbox"):  # CI runs as root, where Chromium's sandbox cannot start
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*WINDOW)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()



@pytest.fixture
def browser(chromium):
    """:func:`chromium` on a blank page, its console emptied: what a page of an earlier test
    logs (a live page's server gone, say) is not this test's."""
    chromium.get("about:blank")
    chromium.get_log("browser")
    yield chromium
    chromium.get("about:blank")
