/* suho ui: a run's Optuna study as optuna-dashboard shows it (history, importance,
   parallel coordinates, slices); the data come with the page, importance from the API. */
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";

  function svg(name, attrs) {
    const el = document.createElementNS(SVG, name);
    Object.entries(attrs || {}).forEach(([k, v]) => el.setAttribute(k, v));
    return el;
  }

  function fmt(v) {
    if (v == null) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
    return String(v);
  }

  /* A parameter's value as a fraction of its axis (0 bottom, 1 top). */
  function scaler(p, values) {
    if (p.kind === "categorical") {
      const keys = p.choices.map(c => JSON.stringify(c));
      return v => keys.length < 2 ? 0.5 : keys.indexOf(JSON.stringify(v)) / (keys.length - 1);
    }
    let lo = p.low, hi = p.high;
    if (lo == null) { lo = Math.min(...values); hi = Math.max(...values); }
    const f = p.log ? Math.log : (x => x);
    return v => (v == null || hi === lo) ? 0.5 : (f(v) - f(lo)) / (f(hi) - f(lo));
  }

  function colour(t) {  // 0 worst (blue) .. 1 best (red)
    return `hsl(${Math.round(220 - 220 * t)}, 70%, 45%)`;
  }

  function studyPage(root) {
    const data = JSON.parse(document.getElementById("study-data").textContent);
    const complete = data.trials.filter(t => t.value != null);
    if (!complete.length) return;
    const byNumber = new Map(data.trials.map(t => [t.number, t]));
    const runId = root.dataset.runId;

    function pick(number) {
      const t = byNumber.get(number);
      if (!t) return;
      const box = document.getElementById("trial-detail");
      document.getElementById("trial-number").textContent = "#" + t.number;
      const table = document.getElementById("trial-values");
      table.innerHTML = "";
      const rows = [["state", t.state], [data.objective, t.value],
                    ["duration_seconds", t.duration_seconds]]
        .concat(Object.entries(t.params));
      rows.forEach(([k, v]) => {
        const tr = document.createElement("tr");
        tr.innerHTML = "<th></th><td></td>";
        tr.children[0].textContent = k;
        tr.children[1].textContent = fmt(v);
        tr.children[1].dataset.field = k;
        table.appendChild(tr);
      });
      box.hidden = false;
      root.dataset.picked = String(t.number);
      document.querySelectorAll("#parallel polyline.picked").forEach(l => l.classList.remove("picked"));
      const line = document.querySelector(`#parallel polyline[data-trial="${t.number}"]`);
      if (line) line.classList.add("picked");
    }

    const history = document.getElementById("study-history");
    suho.historyChart(history, history.dataset.title, data.history, data.objective, pick);
    parallel(document.getElementById("parallel"), data, complete, pick);
    slices(document.getElementById("slices"), data, complete);
    const select = document.getElementById("importance-evaluator");
    select.addEventListener("change", () => importance(runId, select.value));
    importance(runId, select.value);
    const asked = new URLSearchParams(window.location.search).get("trial");
    if (asked != null) pick(Number(asked));
  }

  async function importance(runId, evaluator) {
    const box = document.getElementById("param-importance");
    box.dataset.state = "pending";
    box.textContent = "computing…";
    try {
      const data = await suho.getJSON(
        `/api/runs/${runId}/study/importance?evaluator=${encodeURIComponent(evaluator)}`);
      if (!data.importances.length) box.textContent = "needs two complete trials and a tuned parameter";
      else suho.bars(box, data.importances);
      box.dataset.state = "loaded";
      box.dataset.evaluator = evaluator;
    } catch (e) { box.textContent = e.message; box.dataset.state = "error"; }
  }

  /* One vertical axis per tuned parameter and one for the objective; a line per
     complete trial, coloured from worst to best. */
  function parallel(box, data, complete, pick) {
    const axes = data.parameters.map(p => ({
      label: p.name, param: p, get: t => t.params[p.name],
    }));
    const values = complete.map(t => t.value);
    axes.push({ label: data.objective,
                param: { kind: "float", low: Math.min(...values), high: Math.max(...values) },
                get: t => t.value });
    axes.forEach(a => { a.scale = scaler(a.param, complete.map(a.get).filter(v => v != null)); });
    const W = Math.max(480, box.clientWidth - 8), H = 300, top = 30, bottom = 30, side = 60;
    const step = axes.length > 1 ? (W - 2 * side) / (axes.length - 1) : 0;
    const x = i => side + i * step, y = f => top + (1 - f) * (H - top - bottom);
    const root = svg("svg", { width: W, height: H, class: "parallel" });
    const objective = axes[axes.length - 1].scale;
    const better = data.direction === "maximize" ? (v => objective(v)) : (v => 1 - objective(v));
    const order = complete.slice().sort((a, b) => better(a.value) - better(b.value));
    order.forEach(t => {  // best drawn last, on top
      const points = axes.map((a, i) => {
        const v = a.get(t);
        return v === undefined ? null : `${x(i).toFixed(1)},${y(a.scale(v)).toFixed(1)}`;
      }).filter(Boolean).join(" ");
      const line = svg("polyline", { points: points, stroke: colour(better(t.value)),
                                     "data-trial": t.number, fill: "none" });
      const title = svg("title");
      title.textContent = `trial #${t.number}: ${fmt(t.value)}`;
      line.appendChild(title);
      line.addEventListener("click", () => pick(t.number));
      root.appendChild(line);
    });
    axes.forEach((a, i) => {
      root.appendChild(svg("line", { x1: x(i), x2: x(i), y1: top, y2: H - bottom, class: "axis" }));
      const label = svg("text", { x: x(i), y: top - 12, "text-anchor": "middle", class: "axis-label" });
      label.textContent = a.label;
      root.appendChild(label);
      const ticks = a.param.kind === "categorical" ? a.param.choices
        : [a.param.low, a.param.high];
      ticks.forEach(v => {
        const tick = svg("text", { x: x(i) + 4, y: y(a.scale(v)) + 4, class: "tick" });
        tick.textContent = fmt(v);
        root.appendChild(tick);
      });
    });
    box.innerHTML = "";
    box.appendChild(root);
    box.dataset.lines = String(order.length);
    box.dataset.axes = JSON.stringify(axes.map(a => a.label));
  }

  /* The objective against each tuned parameter (a log axis where the values span
     two decades; choices evenly spaced). */
  function slices(box, data, complete) {
    box.innerHTML = "";
    data.parameters.forEach((p, n) => {
      const el = document.createElement("div");
      el.className = "chart slice";
      el.id = "slice-" + p.name;
      box.appendChild(el);
      const keys = p.choices.map(c => JSON.stringify(c));
      const have = complete.filter(t => t.params[p.name] !== undefined);
      const pos = t => p.kind === "categorical" ? keys.indexOf(JSON.stringify(t.params[p.name]))
        : t.params[p.name];
      have.sort((a, b) => pos(a) - pos(b));
      const xs = have.map(pos), ys = have.map(t => t.value);
      const axis = p.kind === "categorical"
        ? { incrs: [1], values: (u, splits) => splits.map(v => fmt(p.choices[v])) } : {};
      const chart = new uPlot({
        title: p.name, width: Math.max(300, el.clientWidth - 8), height: 220,
        scales: { x: { time: false, distr: p.log ? 3 : 1 } },
        series: [{ label: p.name }, { label: data.objective, stroke: suho.PALETTE[n % 10],
                   paths: () => null, points: { show: true, size: 5, fill: suho.PALETTE[n % 10] } }],
        axes: [axis, { size: 70 }],
        cursor: { drag: { x: false, y: false } },
      }, [xs, ys], el);
      el.suhoChart = chart;
      el.dataset.points = String(xs.length);
    });
  }

  window.suho.studyPage = studyPage;
})();
