"""What the browser tests share (the ``browser`` fixture is in ``conftest.py``): the console's
errors, waiting for the page's JavaScript, the text of a page whose widgets live in shadow
roots (Bokeh 3's), a screenshot in the test's folder."""

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

#: the window's size (the fixture's)
WINDOW = (1400, 1100)
#: the text of the page, shadow roots included
DEEP_TEXT = """
function deep(root) {
  let text = "";
  for (const node of root.querySelectorAll("*")) {
    if (node.shadowRoot) text += " " + deep(node.shadowRoot);
  }
  return (root.textContent || "") + " " + text;
}
return deep(document.documentElement);
"""


def console_errors(driver):
    """The browser console's errors since the last call (selenium reads them once)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(driver, script, predicate=bool, timeout=30):
    """The value of ``script`` (a JavaScript function body) once ``predicate`` holds."""
    found = []

    def check(driver):
        value = driver.execute_script(script)
        found[:] = [value]
        return predicate(value)

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except TimeoutException as error:
        raise AssertionError(f"after {timeout} s, {script!r} gives {found[:1]}") from error
    return found[0]


def screenshot(driver, folder, name):
    """A PNG of the whole page in ``folder``; its path is printed (pytest -s shows it)."""
    width = driver.execute_script("return document.documentElement.scrollWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(max(width, 1400), min(max(height, 900), 4000))
    path = folder / name
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)
    print(f"screenshot: {path}")
    return path
