"""The pictures of the docs, photographed from real runs' pages in headless Chromium (browser.py):
`make screenshots` runs `make local` and a `FAULT=` run, then this.

    .venv/bin/python local/screenshots.py --run local/last-run --fault-run DIR --out docs

- service-page-fault.png: the fault run's service page, from its header to the graphs of all
  resources (the fault's marker, the monitors' thresholds and states);
- trace-waterfall.png: traces.html opened at the slowest `POST /api/visits` trace: loadgen's span,
  the service's, its two `mysql.query` spans, the INSERT's tags;
- service-map.png: the service map of the run (loadgen -> apm-demo -> MySQL).

local/test_screenshots.py checks that every picture the docs name is one of these, is there and is
small, and that this script still makes each of them from a run.
"""

import argparse
import json
import sys
from pathlib import Path

import browser
import traces as T

SERVICE = "apm-demo"
# The docs' budget for one picture.
MAX_BYTES = 300_000
PICTURES = ("service-page-fault.png", "trace-waterfall.png", "service-map.png")


def waterfall_trace(run):
    """The slowest `POST /api/visits` trace (loadgen -> apm-demo -> INSERT and SELECT), else the
    slowest trace with a query span."""
    traces = json.loads((run / "traces.json").read_text())
    candidates = [t for t in traces if T.is_request(t, SERVICE) and T.touches_database(t)]
    posts = [t for t in candidates if T.resource_of(t, SERVICE).startswith("POST ")]
    return T.trace_id(max(posts or candidates, key=T.duration))


def quiet(visit):
    """A picture of a page that logged an error or asked for the network would lie."""
    if visit.errors or visit.requests:
        raise RuntimeError(f"{visit.page.url}: console errors {visit.errors}, requests {visit.requests}")


def photograph(run, fault_run, out, chromium=None):
    """Writes the PICTURES into `out` from the two runs' pages, with `chromium` (a browser.chromium()),
    or one of its own; returns their paths."""
    if chromium is None:
        with browser.chromium() as chromium:
            return photograph(run, fault_run, out, chromium)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with browser.offline_page(chromium) as visit:
        page = visit.page
        page.goto((fault_run / "service.html").as_uri())
        page.wait_for_function("Object.keys(window.serviceCharts || {}).length > 0")
        top = page.locator("header").bounding_box()
        bottom = page.locator("#graphs").bounding_box()
        page.set_viewport_size({"width": browser.VIEWPORT["width"], "height": int(bottom["y"] + bottom["height"] + 20)})
        written.append(out / PICTURES[0])
        page.screenshot(path=written[-1], clip={"x": 0, "y": top["y"], "width": browser.VIEWPORT["width"],
                                                "height": bottom["y"] + bottom["height"] + 12 - top["y"]})
        quiet(visit)
    with browser.offline_page(chromium) as visit:
        page = visit.page
        trace = waterfall_trace(run)
        page.goto((run / "traces.html").as_uri() + f"#t-{trace}")
        opened = page.locator(f"#t-{trace}")
        opened.locator("details.span", has_text=T.QUERY_SPAN).first.evaluate("span => { span.open = true; }")
        written.append(out / PICTURES[1])
        opened.screenshot(path=written[-1])
        page.goto((run / "service.html").as_uri())
        written.append(out / PICTURES[2])
        page.locator("#map").screenshot(path=written[-1])
        quiet(visit)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a `make local` run's OUT directory")
    parser.add_argument("--fault-run", type=Path, required=True, help="a `FAULT=... make local` run's OUT directory")
    parser.add_argument("--out", type=Path, required=True, help="where the PNGs go")
    args = parser.parse_args()
    for path in photograph(args.run.resolve(), args.fault_run.resolve(), args.out):
        size = path.stat().st_size
        print(f"{path}: {size // 1000} KB")
        if size > MAX_BYTES:
            sys.exit(f"{path} is {size} bytes, over the docs' {MAX_BYTES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
