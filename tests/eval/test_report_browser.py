"""The report in a real browser: headless Chromium decodes every figure and thumbnail, and the page requests
nothing from the network (its Content-Security-Policy would block and report any attempt).

Needs Debian's ``chromium`` (``apt-get install chromium``); skipped where it is not installed. A copy of the page
gets a small probe script (and ``script-src 'unsafe-inline'`` in its policy, nothing else loosened) that writes the
images' natural sizes, the resource-timing entries and any policy violations into the DOM, which ``--dump-dom``
prints.
"""

import html
import json
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=15000"]
PROBE = """<script>
window.__blocked = [];
document.addEventListener('securitypolicyviolation', e => window.__blocked.push(e.blockedURI || e.violatedDirective));
window.addEventListener('load', () => {
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({
    images: [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth, complete: i.complete})),
    figures: [...document.querySelectorAll('figure[id]')].map(f => f.id),
    resources: performance.getEntriesByType('resource').map(r => r.name),
    blocked: window.__blocked});
  document.body.appendChild(pre);
});
</script>"""


def render(page: str, tmp_path) -> dict:
    """Load ``page`` (with the probe) in headless Chromium; return what the probe saw."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the browser check needs it")
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    assert csp in page
    probed = page.replace(csp, csp + "; script-src 'unsafe-inline'").replace("</title>", "</title>" + PROBE, 1)
    path = tmp_path / "probed.html"
    path.write_text(probed)
    profile = tmp_path / "profile"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=180)
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the probe did not run (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def test_every_figure_and_thumbnail_is_drawn_and_nothing_is_fetched(evaluated, tmp_path):
    from streetvision.eval.report import FIGURES, GALLERY

    page = evaluated[3][-1].read_text()
    seen = render(page, tmp_path)
    assert set(FIGURES) <= set(seen["figures"])
    assert len(seen["images"]) == page.count("<img ") > len(FIGURES)  # figures plus gallery thumbnails
    undrawn = [img["alt"] for img in seen["images"] if not (img["complete"] and img["width"] > 0)]
    assert not undrawn, f"images not decoded: {undrawn}"
    assert f'id="{GALLERY}"' in page
    assert seen["resources"] == [] and seen["blocked"] == []


def test_the_probe_notices_a_page_that_reaches_for_the_network(evaluated, tmp_path):
    page = evaluated[3][-1].read_text().replace(
        "<h1>", '<img alt="remote" src="http://198.51.100.1/pixel.png"><h1>', 1)
    seen = render(page, tmp_path)
    assert seen["blocked"], "a remote image should be blocked and reported by the page's policy"
    assert any(img["alt"] == "remote" and img["width"] == 0 for img in seen["images"])
