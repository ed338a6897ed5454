// The service page's graphs (local/service_page.py writes the page and the data in #run-data), drawn
// with uPlot. Marks that must be found and read, the fault's moment, the monitors' thresholds and the
// distribution's percentiles, are elements over the plot, placed at their values on every redraw.
"use strict";

const D = JSON.parse(document.getElementById("run-data").textContent);
// The graphs drawn, by the chart's name ("service:requests", "GET /api/trace:latency"...): the
// browser tests read their plotted data and scales here.
const charts = (window.serviceCharts = {});
const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
const LEVELS = { warning: "#f08c00", critical: "#e03131" };
const PERCENTILE_TONES = { p50: 0.45, p95: 0.7, p99: 1 };

function ms(value) {
  if (value == null) return "-";
  return value < 1 ? value.toPrecision(2) + " ms" : value < 100 ? value.toFixed(1) + " ms" : Math.round(value) + " ms";
}

// The marks of one graph: the fault's moment (x), thresholds (y), percentile lines (x).
function mark(u, className, text, axis, value) {
  const el = document.createElement("div");
  el.className = className;
  el.dataset.axis = axis;
  el.dataset.value = value;
  if (text) {
    const label = document.createElement("span");
    label.textContent = text;
    el.appendChild(label);
  }
  u.over.appendChild(el);
}

function placeMarks(u) {
  for (const el of u.over.querySelectorAll("[data-axis]")) {
    const at = u.valToPos(+el.dataset.value, el.dataset.axis);
    el.style[el.dataset.axis === "x" ? "left" : "top"] = at + "px";
    el.hidden = !(at >= 0 && at <= (el.dataset.axis === "x" ? u.over.clientWidth : u.over.clientHeight));
  }
}

function addMarks(u, spec) {
  if (spec.fault) mark(u, "fault-marker", "FAULT=" + D.fault.flag, "x", D.fault.at);
  for (const [level, value] of spec.thresholds || []) {
    mark(u, "threshold " + level, (level === "critical" ? "alert " : "warning ") + spec.format(value), "y", value);
  }
  for (const [name, value] of spec.percentiles || []) mark(u, "percentile", name, "x", value);
  placeMarks(u);
}

// Time ticks as the clock reads in UTC (08:00:05).
function clock(u, vals) {
  return vals.map((v) => new Date(v * 1e3).toISOString().slice(11, 19));
}

// A log axis's ticks and grid lines at the powers of ten only.
function decades(u, axis, min, max) {
  const out = [];
  for (let e = Math.round(Math.log10(min)); 10 ** e <= max * 1.0001; e++) out.push(10 ** e);
  return out;
}

function range(spec) {
  // Every threshold stays in view, so that a reader sees how far the line is from it.
  const levels = (spec.thresholds || []).map(([, v]) => v);
  if (spec.log) {
    return (u, min, max) => {
      const low = Math.min(min ?? 1, ...levels), high = Math.max(max ?? 1, ...levels);
      return [10 ** Math.floor(Math.log10(low)), 10 ** Math.ceil(Math.log10(high) + 1e-9)];
    };
  }
  return (u, min, max) => [0, Math.max(max ?? 0, ...levels.map((v) => v * 1.2), spec.floor || 1)];
}

function draw(el, spec) {
  const width = el.clientWidth || 420;
  const opts = {
    title: spec.title,
    width,
    height: 190,
    tzDate: utc,
    cursor: { points: { size: 6 } },
    legend: { live: true },
    scales: {
      x: { time: spec.time !== false, ...(spec.x || {}) },
      y: spec.log ? { distr: 3, log: 10, range: range(spec) } : { range: range(spec) },
    },
    axes: [
      { label: spec.xLabel || "time (UTC)", labelSize: 20, size: 34, space: 64, values: spec.xValues || clock },
      {
        label: spec.yLabel,
        labelSize: 20,
        size: spec.log ? 66 : 52,
        values: (u, vals) => vals.map((v) => (v == null ? "" : spec.format(v))),
        grid: { stroke: "#0000001a", width: 1 },
        ...(spec.log ? { splits: decades, ticks: { show: false } } : {}),
      },
    ],
    series: [
      { label: spec.xLabel ? "latency" : "time", value: spec.xLegend || ((u, v) => (v == null ? "-" : clock(u, [v])[0])) },
      ...spec.series.map((s) => ({
        label: s.label,
        stroke: s.colour,
        fill: spec.bars ? s.colour + "99" : undefined,
        width: 1.5,
        spanGaps: false,
        paths: spec.bars ? uPlot.paths.bars({ size: [0.92, 100], align: 1 }) : undefined,
        points: { show: !spec.bars, size: 4 },
        value: (u, v) => (v == null ? "-" : spec.format(v)),
      })),
    ],
    hooks: { ready: [(u) => addMarks(u, spec)], draw: [placeMarks] },
  };
  const u = new uPlot(opts, [spec.xData || D.seconds, ...spec.series.map((s) => s.values)], el);
  charts[el.dataset.chart] = u;
}

function shade(hex, tone) {
  // The resource's colour, lighter for the lower percentiles.
  const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return "#" + c.map((v) => Math.round(255 - (255 - v) * tone).toString(16).padStart(2, "0")).join("");
}

function thresholdsOf(graph) {
  const t = D.thresholds[graph];
  return t ? [["warning", t.warning], ["critical", t.critical]] : [];
}

function perSecond(v) {
  return v >= 10 ? Math.round(v) + "" : (+v.toFixed(1)) + "";
}

// The four graphs of the service (resources given: a line per resource) or of one resource.
function specs(series, distribution, totals, colour, resources) {
  const fault = !!D.fault;
  const perResource = (values) => resources.map((r) => ({ label: r.name, colour: r.colour, values: values(r) }));
  const step = distribution.step;
  return {
    requests: {
      fault, title: resources ? "Requests/s by resource" : "Requests and errors/s", yLabel: "per second",
      format: perSecond,
      series: resources
        ? perResource((r) => r.series.hits)
        : [{ label: "requests/s", colour, values: series.hits },
           { label: "errors/s", colour: LEVELS.critical, values: series.errors }],
    },
    error_rate: {
      fault, title: resources ? "Error rate by resource" : "Error rate", yLabel: "% of requests",
      format: (v) => +v.toFixed(1) + "%", floor: 1, thresholds: thresholdsOf("error_rate"),
      series: resources
        ? perResource((r) => r.series.error_rate)
        : [{ label: "error rate", colour, values: series.error_rate }],
    },
    latency: {
      fault, title: resources ? "p99 latency by resource" : "Latency p50, p95, p99", yLabel: "ms (log)", log: true,
      format: ms, thresholds: thresholdsOf("p99"),
      series: resources
        ? perResource((r) => r.series.p99).map((s) => ({ ...s, label: s.label + " p99" }))
        : ["p50", "p95", "p99"].map((p) => ({ label: p, colour: shade(colour, PERCENTILE_TONES[p]), values: series[p] })),
    },
    distribution: {
      title: "Latency distribution", yLabel: "requests", xLabel: "latency (log)", time: false, bars: true,
      format: (v) => Math.round(v) + "", xData: distribution.edges,
      x: { range: (u, min, max) => [(min ?? 0) - step / 2, (max ?? 0) + 1.5 * step] },
      xValues: (u, vals) => vals.map((v) => ms(10 ** v)),
      xLegend: (u, v) => (v == null ? "-" : ms(10 ** v) + " to " + ms(10 ** (v + step))),
      percentiles: ["p50", "p95", "p99"].map((p) => [p, Math.log10(totals[p + "_ms"])]),
      series: [{ label: "requests", colour, values: distribution.counts }],
    },
  };
}

function drawAll() {
  const service = specs(D.all.series, D.all.distribution, D.all.totals, "#632ca6", D.resources);
  for (const [kind, spec] of Object.entries(service)) {
    draw(document.querySelector(`[data-chart="service:${kind}"]`), spec);
  }
  for (const r of D.resources) {
    const own = specs(r.series, r.distribution, r.totals, r.colour, null);
    for (const [kind, spec] of Object.entries(own)) {
      draw(document.querySelector(`[data-chart="${CSS.escape(r.name)}:${kind}"]`), spec);
    }
  }
}

// The resource table sorts by the column clicked (numbers most first, names A to Z).
function sortable(table) {
  table.querySelectorAll("th").forEach((th, column) => {
    th.addEventListener("click", () => {
      const rows = [...table.tBodies[0].rows];
      const value = (row) => row.cells[column].dataset.value;
      const numeric = column > 0;
      rows.sort((a, b) => (numeric ? +value(b) - +value(a) : value(a).localeCompare(value(b))));
      table.tBodies[0].append(...rows);
      table.querySelectorAll("th").forEach((h) => h.classList.toggle("sorted", h === th));
    });
  });
  table.querySelector('th[data-key="hits"]').classList.add("sorted");
}

drawAll();
sortable(document.getElementById("resource-table"));
