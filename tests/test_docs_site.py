"""The documentation site builds with ``mkdocs build --strict`` (no broken link, no missing page, no
docstring the API reference cannot render) and renders in a real browser: the built site is served on
loopback and opened with headless Chromium (Debian's ``chromium``, driven through its command line):
the home page, a setting's page and the results gallery render, every image on them loads, and no
internal link of the site is broken. Screenshots are saved under the test's tmp folder."""
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PAGES = {"home": "", "setting": "settings/supervised/", "gallery": "gallery/"}
# what each page must show once rendered (its own words, from its markdown)
EXPECT = {"home": "Findings at a glance", "setting": "Supervised shifts", "gallery": "Results gallery"}
CHECK_PAGE = "__check.html"  # a same-origin page that opens a page in a frame and reports what loaded
CHECK_HTML = """<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="f" width="1280" height="1000"></iframe>
<script>
const f = document.getElementById("f");
f.onload = async () => {
  const d = f.contentDocument, imgs = [...d.images];
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })));
  document.getElementById("out").textContent = JSON.stringify({
    text: d.body.innerText.slice(0, 20000),
    images: imgs.map(i => [i.getAttribute("src"), i.naturalWidth]),
    links: [...d.querySelectorAll("a[href]")].map(a => a.href)});
};
f.src = "/" + new URLSearchParams(location.search).get("page");
</script></body></html>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (bash scripts/install.sh docs)")
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    with open(out / CHECK_PAGE, "w") as f:
        f.write(CHECK_HTML)
    return out


def test_the_site_builds_strict_with_every_page_of_the_nav(site):
    for page in ("index.html", "getting-started/index.html", "gallery/index.html", "findings/index.html",
                 "reference/core/index.html", "settings/lm/index.html"):
        assert (site / page).is_file(), page
    assert (site / "reproduce" / "supervised_default.png").is_file()  # served from results/reproduce/


def test_no_internal_link_of_the_built_site_is_broken(site):
    """Every relative href/src of every built page names a file of the site (anchors aside)."""
    broken = []
    for dirpath, _, files in os.walk(site):
        for name in files:
            if not name.endswith(".html") or name == CHECK_PAGE:
                continue
            page = os.path.join(dirpath, name)
            with open(page) as f:
                text = f.read()
            for url in re.findall(r'(?:href|src)="([^"#?]+)', text):
                if re.match(r"^[a-z]+:|^//", url):
                    continue
                target = os.path.normpath(os.path.join(site, url.lstrip("/")) if url.startswith("/")
                                          else os.path.join(dirpath, urllib.parse.unquote(url)))
                if not (os.path.isfile(target) or os.path.isfile(os.path.join(target, "index.html"))):
                    broken.append(f"{os.path.relpath(page, site)} -> {url}")
    assert not broken, broken[:20]


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (Debian package chromium; bash scripts/install.sh docs installs it)")
    return path


def _browser(args: list[str], profile) -> str:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.parametrize("name", list(PAGES))
def test_pages_render_in_chromium_with_every_image_and_link(name, served, tmp_path):
    page = PAGES[name]
    dom = _browser(["--virtual-time-budget=15000", "--dump-dom",
                    f"{served}/{CHECK_PAGE}?page={urllib.parse.quote(page)}"], tmp_path / "profile")
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert m and m.group(1) != "pending", "the page did not finish loading in the browser"
    report = json.loads(html.unescape(m.group(1)))
    assert EXPECT[name] in report["text"]
    assert report["images"] or name == "setting"
    not_loaded = [src for src, width in report["images"] if width == 0]
    assert not not_loaded, f"images that did not load on {name}: {not_loaded}"
    if name == "gallery":  # every entry's curves are there
        assert sum("reproduce/" in src for src, _ in report["images"]) >= 20
    internal = {u.split("#")[0] for u in report["links"] if u.startswith(served)}
    broken = []
    for url in sorted(internal):
        try:
            urllib.request.urlopen(url, timeout=30).close()
        except urllib.error.HTTPError as e:
            broken.append(f"{url} ({e.code})")
    assert not broken, broken
    shot = tmp_path / f"{name}.png"
    _browser([f"--screenshot={shot}", "--window-size=1280,1600", f"{served}/{page}"], tmp_path / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
