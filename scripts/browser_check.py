#!/usr/bin/env python3
"""Checks figures as a reader sees them: each HTML file (an executed notebook exported by
nbconvert, or report/index.html) is opened in headless Chromium at a 1000 px wide window.

usage: browser_check.py FILE.html... --out DIR

For every figure -- each outermost <svg>, each <img> showing an SVG, each <figure> container --
a script injected into a temporary copy of the page measures, after load, its bounding box
against its notebook cell (or the page) and the viewport, and whether it paints anything (an
inline SVG needs child elements with a non-empty box; an image needs a decoded, non-blank
bitmap). The results come back as JSON in <pre id="avr-browser-check"> of the DOM that
`chromium --dump-dom` prints. A screenshot of each page is written to DIR/<path>.png (the file's path with '/' as '_'),
its measurements to DIR/<path>.json.

Prints one summary line per file; exits 1 naming file and figure for every figure that paints
nothing or whose right edge overflows its cell or the viewport, 2 when Chromium is missing.
Installs nothing (`make test-browser` installs Chromium first).
"""

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1000
HEIGHT = 2000
MARKER = "avr-browser-check"
# Pixels a figure may stick out before it counts as overflowing (sub-pixel rounding).
SLACK = 1.5

PROBE = r"""
<script>
(function () {
  function outcome(result) {
    var pre = document.getElementById('%(marker)s');
    if (!pre) {
      pre = document.createElement('pre');
      pre.id = '%(marker)s';
      pre.style.display = 'none';
      (document.body || document.documentElement).appendChild(pre);
    }
    pre.textContent = JSON.stringify(result);
  }
  function box(r) {
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height};
  }
  function imagePaints(img) {
    if (!img.complete || !img.naturalWidth || !img.naturalHeight) return false;
    try {
      var w = Math.min(img.naturalWidth, 400), h = Math.min(img.naturalHeight, 400);
      var c = document.createElement('canvas');
      c.width = w; c.height = h;
      var ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0, w, h);
      var d = ctx.getImageData(0, 0, w, h).data;
      for (var i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 0 && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) return true;
      }
      return false;
    } catch (e) {
      return true;  // unreadable pixels (tainted): a decoded, sized image is all we can know
    }
  }
  function check() {
    var vw = document.documentElement.clientWidth;
    var cells = Array.prototype.slice.call(document.querySelectorAll('.jp-Cell, .cell'));
    var notebook = document.querySelector('.jp-OutputArea, .output_area') !== null;
    var scope = notebook ? '.jp-OutputArea-output, .output_subarea' : 'body';
    var seen = [];
    var figures = [];
    function add(el, kind) {
      if (seen.indexOf(el) >= 0) return;
      seen.push(el);
      figures.push({el: el, kind: kind});
    }
    Array.prototype.forEach.call(document.querySelectorAll('svg, img, figure'), function (el) {
      if (!el.closest(scope)) return;
      var tag = el.tagName.toLowerCase();
      if (tag === 'svg') {
        if (el.parentElement && el.parentElement.closest('svg')) return;  // nested part
        add(el, 'svg');
      } else if (tag === 'img') {
        var src = el.getAttribute('src') || '';
        if (/^data:image\/svg\+xml|\.svg($|\?)/i.test(src)) add(el, 'img');
      } else {
        add(el, 'figure');
      }
    });
    var out = [];
    figures.forEach(function (f, index) {
      var el = f.el;
      var r = el.getBoundingClientRect();
      var cell = el.closest('.jp-Cell, .cell');
      var container = cell || document.body;
      var c = container.getBoundingClientRect();
      var painted = 0;
      if (f.kind === 'svg') {
        Array.prototype.forEach.call(
          el.querySelectorAll('rect, path, text, circle, line, polyline, polygon, image, ellipse'),
          function (child) {
            var b = child.getBoundingClientRect();
            if (b.width > 0 && b.height > 0) painted += 1;
          });
      } else if (f.kind === 'img') {
        painted = imagePaints(el) ? 1 : 0;
      } else {
        painted = r.width > 0 && r.height > 0 ? 1 : 0;
      }
      out.push({
        index: index,
        kind: f.kind,
        cell: cell ? cells.indexOf(cell) : null,
        box: box(r),
        container: box(c),
        painted: painted,
        limit: Math.min(c.right, vw),
        title: (el.querySelector && el.querySelector('text') ? el.querySelector('text').textContent : (el.getAttribute('alt') || '')).trim().slice(0, 80)
      });
    });
    outcome({
      viewport: vw,
      scrollWidth: document.documentElement.scrollWidth,
      scrollHeight: document.documentElement.scrollHeight,
      figures: out
    });
  }
  function later() { setTimeout(check, 300); }
  if (document.readyState === 'complete') later(); else window.addEventListener('load', later);
})();
</script>
"""


def chromium_args(user_dir, height):
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={user_dir}",
        f"--window-size={WIDTH},{height}",
        "--virtual-time-budget=10000",
    ]


def run_chromium(extra, url, timeout=120):
    user_dir = tempfile.mkdtemp(prefix="avr-chromium-")
    try:
        return subprocess.run(
            chromium_args(user_dir, extra.pop("height", HEIGHT)) + extra["args"] + [url],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        shutil.rmtree(user_dir, ignore_errors=True)


def with_probe(page):
    probe = PROBE % {"marker": MARKER}
    at = page.lower().rfind("</body>")
    return page + probe if at < 0 else page[:at] + probe + page[at:]


def problems(result):
    """(figure, message) for each figure that paints nothing or sticks out on the right."""
    found = []
    for f in result["figures"]:
        where = f"figure #{f['index']} ({f['kind']}" + (f", cell {f['cell']}" if f["cell"] is not None else "") + ")"
        if f["title"]:
            where += f" '{f['title']}'"
        b = f["box"]
        if f["painted"] == 0 or b["width"] <= 0 or b["height"] <= 0:
            found.append((where, f"paints nothing ({b['width']:.0f}x{b['height']:.0f} px, {f['painted']} visible elements)"))
        if b["right"] > f["limit"] + SLACK:
            found.append((where, f"right edge at {b['right']:.0f} px overflows its cell/viewport ({f['limit']:.0f} px)"))
    return found


def check_file(path, out_dir):
    """Returns (figures checked, [(figure, message)]), or raises RuntimeError."""
    base = os.path.splitext(os.path.basename(path))[0]
    # Output names from the path, so that report/index.html and x/index.html do not collide.
    name = os.path.splitext(os.path.normpath(path))[0].replace(os.sep, "_").lstrip("._") or base
    with open(path, encoding="utf-8", errors="replace") as f:
        page = f.read()
    # The copy sits next to the original so that relative links (images, styles) resolve.
    fd, probe_path = tempfile.mkstemp(prefix=f".{base}.", suffix=".browser-check.html", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(with_probe(page))
        url = "file://" + os.path.abspath(probe_path)
        dump = run_chromium({"args": ["--dump-dom"]}, url)
        m = re.search(r'<pre id="%s"[^>]*>(.*?)</pre>' % MARKER, dump.stdout, re.S)
        if not m:
            tail = (dump.stderr or "").strip().splitlines()[-3:]
            raise RuntimeError(f"no result from the page (chromium exit {dump.returncode}): {' | '.join(tail)}")
        result = json.loads(html.unescape(m.group(1)))
        height = max(HEIGHT, min(int(result.get("scrollHeight") or HEIGHT), 16000))
        shot = os.path.join(out_dir, name + ".png")
        run_chromium({"args": [f"--screenshot={os.path.abspath(shot)}"], "height": height}, url)
        if not os.path.exists(shot):
            print(f"{path}: warning: no screenshot written", file=sys.stderr)
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            json.dump(result, f, indent=1)
        return len(result["figures"]), problems(result)
    finally:
        os.unlink(probe_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE.html")
    parser.add_argument("--out", required=True, help="folder for screenshots and per-file JSON results")
    args = parser.parse_args()
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        print(f"browser check: {CHROMIUM} not found; install it (apt-get install chromium) or run `make test-browser`", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    failed = False
    for path in args.files:
        try:
            count, found = check_file(path, args.out)
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            print(f"{path}: check FAILED: {e}")
            failed = True
            continue
        print(f"{path}: {count} figures checked, {len(found)} failures")
        for where, message in found:
            print(f"  FAIL {path} {where}: {message}")
        failed |= bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
