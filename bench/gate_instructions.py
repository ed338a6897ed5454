"""bench-gate: instructions per request against the committed budget (bench/budget.json); CI fails past it.

For each route of the budget (a seed route, a 404, a route with a flag evaluated, and any route added
there later) and each mode (untraced, traced by opentelemetry-datadog, traced by datadog-opentelemetry:
common.MODES), the release service runs under callgrind as `make bench-instructions` measures it
(bench_instructions.measure: the difference of two runs, `requests` and `requests + extra` requests,
divided by `extra`; spans to the null sink), two runs at a time. A figure more than `tolerance_percent`
above its budget fails the gate, which prints the old and new figures and how to accept them.

    python3 bench/gate_instructions.py            # the gate (make bench-gate, run by make test)
    python3 bench/gate_instructions.py --update   # measure and write the figures (make bench-budget-update)

A new route: add {"name", "path", "status"} (and "env", settings of its own, e.g. a flag file) to
"routes" in budget.json and run `make bench-budget-update`."""

import argparse
import json
import os
import sys
import time

from bench_instructions import SERVICE, measure
from common import MODES, ROOT, mode_env, null_sink

BUDGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "budget.json")


def measure_budget(budget, sink_url, jobs):
    """{route name: {mode: instructions per request}} for every route and mode of the budget: two
    callgrind runs each, `jobs` at a time."""
    runs = []
    for route in budget["routes"]:
        # A route's own settings (a flag file): paths relative to the repository.
        settings = {k: os.path.join(ROOT, v) if k.endswith("_PATH") else v for k, v in route.get("env", {}).items()}
        for mode in MODES:
            for count in (budget["requests"], budget["requests"] + budget["extra"]):
                runs.append(((route["name"], mode, count), SERVICE, mode_env(mode, sink_url, settings),
                             [(route["path"], route["status"], count)], 0))
    totals = measure(runs, jobs)
    figures = {}
    for route in budget["routes"]:
        figures[route["name"]] = {}
        for mode in MODES:
            first = totals[(route["name"], mode, budget["requests"])]
            second = totals[(route["name"], mode, budget["requests"] + budget["extra"])]
            value = (second - first) / budget["extra"]
            figures[route["name"]][mode] = round(value)
            print(f"  {route['name']:6} {route['path']:15} {mode:21} {value:>9,.0f} instructions per request",
                  flush=True)
    return figures


def check(budget, figures):
    """Prints budget against measured figures; returns the figures over budget."""
    tolerance = budget["tolerance_percent"]
    over = []
    print(f"\n{'route':6} {'mode':21} {'budget':>9} {'measured':>9} {'change':>8}")
    for route in budget["routes"]:
        for mode in MODES:
            old, new = route.get(mode), figures[route["name"]][mode]
            if old is None:
                print(f"{route['name']:6} {mode:21} {'none':>9} {new:>9,}   no budget yet")
                over.append((route["name"], mode, old, new))
                continue
            change = 100.0 * (new - old) / old
            verdict = "OVER BUDGET" if change > tolerance else ("below: consider updating" if change < -tolerance
                                                                 else "ok")
            print(f"{route['name']:6} {mode:21} {old:>9,} {new:>9,} {change:>+7.1f}%  {verdict}")
            if change > tolerance:
                over.append((route["name"], mode, old, new))
    return over


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write the measured figures into budget.json")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time (default 2)")
    args = parser.parse_args()
    with open(BUDGET) as f:
        budget = json.load(f)
    started = time.monotonic()
    sink, sink_url = null_sink()
    with sink:
        figures = measure_budget(budget, sink_url, args.jobs)
    over = check(budget, figures)
    print(f"\n{len(budget['routes']) * len(MODES)} figures ({len(budget['routes']) * len(MODES) * 2} callgrind runs, "
          f"{args.jobs} at a time) in {time.monotonic() - started:.0f} s")
    if args.update:
        for route in budget["routes"]:
            route.update(figures[route["name"]])
        budget["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
        with open(BUDGET, "w") as f:
            json.dump(budget, f, indent=2)
            f.write("\n")
        print(f"wrote the figures above into {os.path.relpath(BUDGET)}: commit it, saying why they moved")
        return 0
    if over:
        print(f"\nThe instruction budget is exceeded by more than {budget['tolerance_percent']}%:")
        for name, mode, old, new in over:
            print(f"  {name} {mode}: budget {old if old is None else f'{old:,}'}, now {new:,}")
        print("If the increase is intended (a feature, a layer added to the request path), accept it with\n"
              "  make bench-budget-update\n"
              "and commit bench/budget.json with the reason; otherwise profile it with\n"
              "  make bench-instructions (bench/README.md says how the figures are taken).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
