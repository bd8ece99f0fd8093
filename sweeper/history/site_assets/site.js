// The history report: builds the page from the JSON in #history-data. Every value from the
// history goes into the page as text (textContent), and into plot labels escaped, never as
// markup.
"use strict";

const data = JSON.parse(document.getElementById("history-data").textContent);

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function header(table, names) {
  const row = table.createTHead().insertRow();
  for (const name of names) {
    const th = document.createElement("th");
    th.textContent = name;
    row.appendChild(th);
  }
}

function fmt(value) {
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(2) : value;
}

// Plotly renders a few HTML-like tags in labels: entities keep every label plain text.
function plain(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function searchable(element, values) {
  element.dataset.search = values.map((v) => JSON.stringify(v)).join(" ").toLowerCase();
}

function buildFindings() {
  const table = document.getElementById("findings");
  if (data.findings.length === 0) {
    table.insertRow().insertCell().textContent = "No regressions or improvements.";
    return;
  }
  header(table, ["id", "kind", "workload", "model", "system", "mode", "batch sizes",
    "metric", "change %", "before", "after", "since", "evidence"]);
  const body = table.createTBody();
  for (const f of data.findings) {
    const row = body.insertRow();
    row.className = f.kind + " filterable";
    cell(row, f.id);
    cell(row, f.kind + (f.acked ? " (acked)" : ""), "kind");
    for (const key of ["workload", "model", "system", "mode"]) cell(row, f[key]);
    cell(row, f.batch_sizes.join(", "));
    cell(row, f.metric);
    cell(row, f.change_pct === null ? "" : (f.change_pct > 0 ? "+" : "") + f.change_pct);
    cell(row, fmt(f.before));
    cell(row, fmt(f.after));
    cell(row, f.since.slice(0, 19));
    cell(row, f.evidence);
    searchable(row, [f.workload, f.model, f.system, f.mode, f.data, f.batch_sizes, f.metric]);
  }
}

function buildSeries() {
  const table = document.getElementById("series");
  const columns = ["workload", "model", "system", "mode", "data", "precision", "instances",
    "batch_size", "runs", "last_run", "last_status", "last_value", "last_ok"];
  header(table, columns);
  const body = table.createTBody();
  for (const s of data.series) {
    const row = body.insertRow();
    row.className = "filterable";
    for (const key of columns) cell(row, fmt(s[key]));
    searchable(row, [s.workload, s.model, s.system, s.mode, s.data, s.precision,
      "batch_size=" + s.batch_size, s.environment]);
  }
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

// Titles on the left: Plotly's toolbar (top right) never covers them.
const TITLE = { x: 0.01, xanchor: "left", font: { size: 13 } };

// A time axis over one instant would show milliseconds: a day around it instead.
function timeAxis(times) {
  const instants = [...new Set(times.map((t) => new Date(t).getTime()))];
  if (instants.length !== 1) return { type: "date" };
  const day = 24 * 3600 * 1000;
  return { type: "date", range: [new Date(instants[0] - day / 2).toISOString(),
    new Date(instants[0] + day / 2).toISOString()] };
}

function trendPlot(element, configuration) {
  const traces = [];
  configuration.traces.forEach((t, i) => {
    const color = PALETTE[i % PALETTE.length];
    const hasBand = t.low.every((v) => v !== null) && t.high.every((v) => v !== null);
    if (hasBand) {
      traces.push({ x: t.time, y: t.high, mode: "lines", line: { width: 0 },
        hoverinfo: "skip", showlegend: false, legendgroup: String(i) });
      traces.push({ x: t.time, y: t.low, mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: color + "33", hoverinfo: "skip", showlegend: false,
        legendgroup: String(i) });
    }
    traces.push({ x: t.time, y: t.value, mode: "lines+markers", name: plain(t.name),
      legendgroup: String(i), line: { color }, text: t.changed.map(plain),
      hovertemplate: "%{y:.2f}<br>%{x}<br>%{text}<extra>" + plain(t.name) + "</extra>" });
    const marked = t.changed.map((c, j) => (c ? j : -1)).filter((j) => j >= 0);
    if (marked.length) {
      traces.push({ x: marked.map((j) => t.time[j]), y: marked.map((j) => t.value[j]),
        mode: "markers", marker: { symbol: "diamond-open", size: 12 }, showlegend: false,
        text: marked.map((j) => plain(t.changed[j])), hovertemplate: "changed: %{text}<extra></extra>" });
    }
  });
  Plotly.newPlot(element, traces, {
    title: { text: "throughput over time", ...TITLE },
    xaxis: timeAxis(configuration.traces.flatMap((t) => t.time)),
    yaxis: { title: { text: "throughput (" + (configuration.unit || "samples/s") + ")" } },
    margin: { t: 40, r: 10, b: 40, l: 60 }, legend: { font: { size: 10 } },
  }, { displaylogo: false, responsive: true });
}

function sweepPlot(element, configuration) {
  const traces = configuration.sweeps.map((s) => ({
    x: s.batch_size, y: s.value, mode: "lines+markers",
    name: plain(s.role + ": " + s.sweep.split("/").slice(-2).join("/")),
    line: { dash: s.role === "baseline" ? "dot" : "solid" },
  }));
  Plotly.newPlot(element, traces, {
    title: { text: "latest sweep over the one before", ...TITLE },
    // Ticks at powers of two (Plotly's own log ticks read 9 1 2 3 ... 10 2).
    xaxis: { title: { text: "batch size" }, type: "log",
      tickvals: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096] },
    yaxis: { title: { text: "throughput (" + (configuration.unit || "samples/s") + ")" } },
    margin: { t: 40, r: 10, b: 40, l: 60 }, legend: { font: { size: 10 } },
  }, { displaylogo: false, responsive: true });
}

function buildConfigurations() {
  const container = document.getElementById("configurations");
  const pending = new Map();
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting || !pending.has(entry.target)) continue;
      const configuration = pending.get(entry.target);
      pending.delete(entry.target);
      const [trend, sweeps] = entry.target.querySelectorAll(".plot");
      trendPlot(trend, configuration);
      sweepPlot(sweeps, configuration);
    }
  });
  for (const configuration of data.configurations) {
    const card = document.createElement("div");
    card.className = "configuration filterable";
    const title = document.createElement("h3");
    title.textContent = configuration.title;
    card.appendChild(title);
    const plots = document.createElement("div");
    plots.className = "plots";
    for (let i = 0; i < 2; i++) {
      const plot = document.createElement("div");
      plot.className = "plot";
      plots.appendChild(plot);
    }
    card.appendChild(plots);
    searchable(card, [configuration.title, configuration.environment,
      configuration.traces.map((t) => t.name)]);
    container.appendChild(card);
    pending.set(card, configuration);
    observer.observe(card);
  }
}

function applyFilter() {
  const words = document.getElementById("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  for (const element of document.querySelectorAll(".filterable")) {
    const text = element.dataset.search || "";
    element.classList.toggle("hidden", !words.every((w) => text.includes(w)));
  }
}

buildFindings();
buildSeries();
buildConfigurations();
document.getElementById("summary").textContent =
  `${data.series.length} series, ${data.findings.length} finding(s); generated ${data.generated}`;
document.getElementById("filter").addEventListener("input", applyFilter);
