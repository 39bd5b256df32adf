"""The live page (issue 16): a real Bokeh server in its thread, a real campaign on a local
cluster feeding it, a real headless Chromium showing it: points appear as images finish,
flagged points carry their reasons, failed files are listed, the Dask dashboard links to it,
and it keeps a bounded number of points."""

import asyncio
import dataclasses
import os
import urllib.request

import pytest
import tornado.httpclient
import tornado.websocket
import xarray as xr
from selenium.webdriver.common.actions.action_builder import ActionBuilder

from skipperdask.campaign import process
from skipperdask.errors import BadOptionError
from skipperdask.plots.live import LivePage, serve
from skipperdask.simulate import Truth, simulate_campaign, write_image
from tests.browser import DEEP_TEXT, console_errors, screenshot, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SMALL = {"nrows": 40, "ncols": 80, "nskips": 16, "gain": 10.0, "read_noise": 4.0}
REASON = "skNoise 7.2 sigma above its running median"


def count(name):
    """JavaScript: the number of points of a named source of the page (-1 before it loads)."""
    return (f"const d = window.Bokeh && Bokeh.documents[0];"
            f"const s = d && d.get_model_by_name({name!r});"
            f"return s ? s.get_length() : -1;")


def column(name, field):
    return (f"const s = Bokeh.documents[0].get_model_by_name({name!r});"
            f"return s ? Array.from(s.data[{field!r}]) : [];")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Three two-amplifier images (one with tracks) and a file that is no FITS file."""
    directory = tmp_path_factory.mktemp("live")
    paths = [str(p) for p in simulate_campaign(directory, 2, **SMALL, namps=2)]
    paths.append(str(write_image(directory / "Img_3.fits",
                                 Truth(**SMALL, namps=2, tracks=3, seed=3))))
    broken = directory / "Img_4.fits"
    broken.write_text("not a FITS file")
    return [*paths, str(broken)]


@pytest.fixture(scope="module")
def records(client, campaign, tmp_path_factory):
    """The records of the campaign as ``process`` hands them over (failed file included),
    without the flags its alerts gave them (one image has tracks): the tests flag their own."""
    found = []
    process(campaign, tmp_path_factory.mktemp("records") / "records.zarr", client=client,
            on_record=found.append, progress=False)
    unflagged = [dataclasses.replace(r, metrics=r.metrics.drop_vars("flags")) if r.ok else r
                 for r in found]
    return sorted(unflagged, key=lambda r: r.path)


def flagged(record, name):
    """``record`` as the alerts hand it over, renamed: a ``flags`` variable, AMP1 flagged."""
    flags = xr.DataArray([REASON, ""], dims="amp", coords={"amp": record.metrics["amp"]})
    return dataclasses.replace(record, path=os.path.join(os.path.dirname(record.path), name),
                               metrics=record.metrics.assign(flags=flags))


def hover(browser, metric, amp, index):
    """Move the mouse over point ``index`` of ``amp`` in the figure of ``metric``."""
    x, y = browser.execute_script(f"""
        const doc = Bokeh.documents[0];
        const view = Bokeh.index.find_one(doc.get_model_by_name('figure-{metric}'));
        const data = doc.get_model_by_name('points-{amp}').data;
        const box = view.canvas_view.el.getBoundingClientRect();
        return [box.left + view.frame.x_scale.compute(data.time[{index}]),
                box.top + view.frame.y_scale.compute(data['{metric}'][{index}])];""")
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(round(x), round(y))
    actions.perform()


def test_points_appear_in_chromium_as_images_finish(client, campaign, browser, tmp_path):
    with serve(client=client) as page:
        assert page.url.startswith("http://127.0.0.1:")
        browser.get(page.url)
        assert wait_for(browser, "return document.title") == "skipperdask: images as they finish"
        assert wait_for(browser, count("failures"), lambda n: n == 0) == 0
        assert wait_for(browser, count("points-AMP1"), lambda n: n == -1) == -1  # none known yet

        process(campaign, tmp_path / "live.zarr", client=client, on_record=page.add,
                progress=False)
        # each image's point per amplifier, without a reload (through the websocket)
        assert wait_for(browser, count("points-AMP1"), lambda n: n == 3) == 3
        assert wait_for(browser, count("points-AMP2"), lambda n: n == 3) == 3
        names = sorted(wait_for(browser, column("points-AMP1", "file")))
        assert names == ["Img_1.fits", "Img_2.fits", "Img_3.fits"]
        assert all(v > 0 for v in wait_for(browser, column("points-AMP2", "skNoise")))
        assert wait_for(browser, column("failures", "file"), bool) == ["Img_4.fits"]
        assert "not a FITS file" in wait_for(browser, column("failures", "error"), bool)[0]
        assert wait_for(browser, "return Bokeh.documents[0].get_model_by_name('summary').text",
                        lambda t: "4</b> images" in t and "1</b> failed" in t)

        # a page opened now starts from what happened so far
        browser.get(page.url)
        assert wait_for(browser, count("points-AMP1"), lambda n: n == 3) == 3
        assert wait_for(browser, column("failures", "file"), bool) == ["Img_4.fits"]

        # the Dask dashboard of the local cluster links to it
        dashboard = client.dashboard_link.rsplit("/", 1)[0]
        browser.get(f"{dashboard}/skipperdask")
        assert browser.current_url == page.url
        browser.get(f"{dashboard}/status")
        assert wait_for(browser, "return Array.from(document.querySelectorAll('a'))"
                        ".map(a => a.getAttribute('href'))", lambda h: "skipperdask" in h)
        assert not console_errors(browser)
    with pytest.raises(urllib.error.HTTPError, match="404") as closed:
        urllib.request.urlopen(f"{dashboard}/skipperdask")  # the page closed with its campaign
    closed.value.close()


def test_flagged_points_bands_and_failures_read_in_chromium(records, browser, tmp_path):
    good = [r for r in records if r.ok]
    with LivePage() as page:
        browser.get(page.url)
        wait_for(browser, count("failures"), lambda n: n == 0)
        for index, record in enumerate(records):
            page.add(record, bands={("skNoise", "AMP1"): (1.0 + index / 100, 0.9, 1.1),
                                    ("aduConversion", "AMP1"): (10.0, 9.5, 10.5)})
        page.add(flagged(good[0], "Img_9.fits"), bands={("skNoise", "AMP1"): (1.05, 0.9, 1.2)})
        assert wait_for(browser, count("points-AMP1"), lambda n: n == 4) == 4
        flags = wait_for(browser, column("points-AMP1", "flags"), lambda f: REASON in f)
        assert flags == ["", "", "", REASON]
        assert wait_for(browser, column("points-AMP2", "flags")) == ["", "", "", ""]
        assert wait_for(browser, column("points-AMP1", "marker"))[-1] == "diamond"
        assert wait_for(browser, column("bands-AMP1", "skNoise_high"),
                        lambda h: len(h) == 4) == [1.1, 1.1, 1.1, 1.2]
        assert wait_for(browser, column("alerts", "file"), bool) == ["Img_9.fits"]
        assert wait_for(browser, column("failures", "file"), bool) == ["Img_4.fits"]
        # the reason on hover, beside the file's name
        hover(browser, "skNoise", "AMP1", 3)
        text = wait_for(browser, DEEP_TEXT, lambda t: "flags:" in t)
        assert REASON in text and "Img_9.fits" in text
        screenshot(browser, tmp_path, "live-page.png")
        assert not console_errors(browser)


def test_points_roll_over_so_memory_stays_bounded(records, browser):
    good = next(r for r in records if r.ok)
    with LivePage(points=3) as page:
        browser.get(page.url)
        wait_for(browser, count("failures"), lambda n: n == 0)
        for index in range(10):
            page.add(dataclasses.replace(good, path=f"/data/Img_{index}.fits"),
                     bands={("skNoise", "AMP1"): (1.0, 0.9, 1.1)})
        page.add(next(r for r in records if not r.ok))
        assert [len(page.history.points[amp]) for amp in ("AMP1", "AMP2")] == [3, 3]
        assert len(page.history.bands["AMP1"]) == 3
        assert [row["file"] for row in page.history.points["AMP1"]] == [
            "Img_7.fits", "Img_8.fits", "Img_9.fits"]
        assert page.history.images == 11 and page.history.failed == 1
        # in the browser too, the burst shown at once
        assert wait_for(browser, column("points-AMP1", "file"), lambda f: "Img_9.fits" in f) == [
            "Img_7.fits", "Img_8.fits", "Img_9.fits"]
        assert wait_for(browser, count("bands-AMP1")) == 3


def test_listens_on_loopback_and_refuses_other_origins():
    with serve(":0") as page:
        assert page.host == "127.0.0.1" and page.url.startswith("http://127.0.0.1:")

        async def open_websocket(origin):  # its own origin works: the browser tests
            request = tornado.httpclient.HTTPRequest(
                page.url.replace("http", "ws") + "ws", headers={"Origin": origin})
            await tornado.websocket.websocket_connect(request)

        with pytest.raises(tornado.httpclient.HTTPClientError, match="403"):
            asyncio.run(open_websocket("http://example.com"))


def test_a_port_in_use_or_a_bad_address_is_said_at_once():
    with LivePage() as page:
        with pytest.raises(OSError, match="in use"):
            LivePage(port=page.port)
    with pytest.raises(BadOptionError, match="host:port"):
        with serve("127.0.0.1:http"):
            pass
