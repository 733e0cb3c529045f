"""Browser-test support: Debian's Chromium, operator accounts, and a watcher for page problems.

The watcher collects what "no console errors and no CSP violations" means in a real browser:
console messages of type error, uncaught page errors, ``securitypolicyviolation`` events (reported
through a binding that an init script calls; Playwright injects it outside the page's CSP) and
server errors (5xx) on any request the page makes.
"""

import os
import re
import shutil
from contextlib import contextmanager

import bcrypt
import pytest
from live import ROOT, LiveServer

SCREENSHOTS = ROOT / "docs" / "screenshots"
STEP_MS = 10_000  # a page load or a form post

CHROMIUM = "/usr/bin/chromium"
MISSING_CHROMIUM = "Debian's chromium not found: apt-get install -y chromium"

# Without the background-networking flags Chromium keeps trying to reach Google's services, which
# on a closed network makes every launch and navigation slow.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Page side of the CSP check: the browser fires this event for every blocked script, style,
# connection or frame, whether or not it also logs a console message.
CSP_REPORTER = """
document.addEventListener('securitypolicyviolation', (event) => {
  window.__reportCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || '(inline)'}`
    + ` in ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
}, true);
"""

# What a browser legitimately logs while the server is down: refused connections and htmx's
# report of the failed request. Tolerated only inside ``BrowserProblems.tolerating``.
SERVER_DOWN = re.compile(
    r"net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE|CONNECTION_CLOSED)"
    r"|htmx:(sendError|afterRequest)"
)


def http_status(*codes: int) -> re.Pattern:
    """Chromium's console line for an answer with one of ``codes`` (it logs every 4xx/5xx).

    A test that deliberately provokes such an answer (409 for a conflict, 422 for a form error)
    tolerates exactly that line, for exactly that step.
    """
    alternatives = "|".join(str(code) for code in codes)
    return re.compile(
        rf"Failed to load resource: the server responded with a status of ({alternatives})\b"
    )


def answered(*codes: int) -> re.Pattern:
    """Both records of a deliberate 5xx answer: Chromium's console line and the watcher's own.

    A 503 that the page shows with "Try again" (a held lock) is the expected answer of that
    step, not a server failure.
    """
    alternatives = "|".join(str(code) for code in codes)
    return re.compile(rf"{http_status(*codes).pattern}|server error ({alternatives}) on ")


# The check for "nothing scrolls sideways", evaluated in the page; the test asserts on its answer.
# Besides the two widths, it names the elements that stick out, so a failure says what to fix.
OVERFLOW_REPORT = r"""
() => {
  const width = window.innerWidth;
  const wide = [];
  for (const element of document.body.querySelectorAll('*')) {
    const box = element.getBoundingClientRect();
    if (box.width && box.right > width + 0.5) {
      const name = element.tagName.toLowerCase() + (element.id ? '#' + element.id : '')
        + (element.className && typeof element.className === 'string'
           ? '.' + element.className.trim().split(/\s+/).join('.') : '');
      wide.push(`${name} right=${Math.round(box.right)}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: width,
          wide: wide.slice(0, 10)};
}
"""


def find_chromium() -> str | None:
    """Return Debian's Chromium executable, or None when it is not installed."""
    found = shutil.which("chromium")
    if found:
        return found
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else None


def browser_test(test):
    """Mark a test as a (slow) browser test."""
    return pytest.mark.slow(pytest.mark.browser(test))


@contextmanager
def launch_chromium():
    """Yield Debian's Chromium under Playwright (the test is skipped when it is not installed)."""
    from playwright.sync_api import expect, sync_playwright

    executable = find_chromium()
    if executable is None:
        pytest.skip(MISSING_CHROMIUM)
    expect.set_options(timeout=STEP_MS)  # Playwright's 5 s default is short on a loaded CI runner
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def save_screenshot(page, name):
    """Write docs/screenshots/NAME.png (full page, at the page's width) when SAVE_SCREENSHOTS=1."""
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # caret="initial": hiding the caret leaves style="" on inputs, which htmx's settle step
        # then copies onto swapped-in elements, a CSP violation of the harness's own making.
        page.screenshot(
            path=SCREENSHOTS / f"{name}.png", full_page=True, animations="disabled", caret="initial"
        )


def expect_no_sideways_scroll(page, what):
    """The page is no wider than the window (measured in the page, asserted here)."""
    report = page.evaluate(OVERFLOW_REPORT)
    assert report["scrollWidth"] <= report["innerWidth"], (what, report)


def write_users_file(path, accounts: dict) -> None:
    """Write an htpasswd file of bcrypt hashes (``htpasswd -nB`` format), cheap rounds."""
    lines = []
    for name, password in accounts.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{name}:{hashed}\n")
    with open(path, "w") as handle:
        handle.writelines(lines)


class BrowserServer(LiveServer):
    """A LiveServer that names its database; ``stop()`` then ``start()`` keeps port and URL."""

    @property
    def db_path(self) -> str:
        return self.env["PIPELINE_DB"]


class BrowserProblems:
    """Everything that went wrong in the pages of the browser contexts attached to it."""

    def __init__(self):
        self.problems: list[str] = []
        self.tolerated: list[str] = []
        self._tolerate: re.Pattern | None = None

    def attach(self, context) -> None:
        context.expose_function("__reportCspViolation", self._on_csp)
        context.add_init_script(CSP_REPORTER)
        context.on("console", self._on_console)
        context.on("weberror", lambda error: self._add(f"page error: {error.error}"))
        context.on("response", self._on_response)

    def _add(self, problem: str) -> None:
        if self._tolerate is not None and self._tolerate.search(problem):
            self.tolerated.append(problem)
        else:
            self.problems.append(problem)

    def _on_console(self, message) -> None:
        if message.type == "error":
            self._add(f"console error: {message.text} ({message.location.get('url', '?')})")
        elif "Content Security Policy" in message.text:
            self._add(f"CSP console message ({message.type}): {message.text}")

    def _on_csp(self, description: str) -> None:
        self._add(f"CSP violation: {description}")

    def _on_response(self, response) -> None:
        if response.status >= 500:
            self._add(f"server error {response.status} on {response.request.method} {response.url}")

    @contextmanager
    def tolerating(self, pattern: re.Pattern):
        """Record problems matching ``pattern`` as tolerated while the block runs."""
        self._tolerate = pattern
        try:
            yield
        finally:
            self._tolerate = None

    def assert_clean(self) -> None:
        assert not self.problems, "problems in the browser:\n" + "\n".join(self.problems)
