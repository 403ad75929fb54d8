/* suho ui: charts (uPlot) and the few interactions the server-rendered pages need. */
(function () {
  "use strict";
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const POLL_MS = 2000;
  const LIVE_POLL_MS = 1000;  // a running run's curves: a point shows within about 2 s

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function width(el) { return Math.max(320, (el.clientWidth || 640) - 8); }

  /* How curves are drawn, for every smoothable chart of the page (and kept in the
     URL): EMA smoothing weight (0 = raw) and a log y axis. */
  const view = { smoothing: 0, logY: false };
  const smoothable = new Set();

  /* Exponential moving average, debiased as TensorBoard does (the first points are
     not pulled towards 0); gaps stay gaps. */
  function ema(ys, weight) {
    let acc = 0, n = 0;
    return ys.map(v => {
      if (v == null || !Number.isFinite(v)) return v;
      acc = acc * weight + (1 - weight) * v;
      n += 1;
      return acc / (1 - Math.pow(weight, n));
    });
  }

  function faint(colour) { return colour + "40"; }  // #rrggbb + alpha 0x40

  /* The chart's data under the view: with smoothing each series is drawn twice (the
     raw line faint, its EMA on top); on a log axis values <= 0 are gaps. */
  function viewData(pairs, smooth) {
    const logged = ys => view.logY ? ys.map(v => (v != null && v <= 0) ? null : v) : ys;
    const out = [];
    pairs.forEach(p => {
      out.push([p[0], logged(p[1])]);
      if (smooth) out.push([p[0], logged(ema(p[1], view.smoothing))]);
    });
    return uPlot.join(out);
  }

  /* One uPlot over several [xs, ys] series with different xs (uPlot.join aligns them). */
  function makeChart(el, title, labels, pairs, opts) {
    opts = opts || {};
    if (el.suhoChart) el.suhoChart.destroy();
    el.suhoArgs = { title: title, labels: labels, pairs: pairs, opts: opts };
    const smooth = !!opts.smoothable && view.smoothing > 0;
    if (opts.smoothable) smoothable.add(el);
    const series = [{ label: opts.xLabel || "x" }];
    labels.forEach((label, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const base = Object.assign({
        label: label, stroke: colour, spanGaps: true, width: 1.5,
        points: opts.points ? { show: true, size: 5, fill: colour } : { show: false },
        paths: opts.points ? () => null : undefined,
      }, (opts.series || [])[i] || {});
      if (!smooth) { series.push(base); return; }
      series.push(Object.assign({}, base, { label: label + " (raw)", stroke: faint(colour), width: 1 }));
      series.push(Object.assign({}, base, { label: label, width: 2 }));
    });
    const xAxis = opts.xInteger ? integerAxis(el) : {};
    const logY = !!opts.smoothable && view.logY;
    const chart = new uPlot({
      title: title, width: width(el), height: opts.height || 260, series: series,
      scales: { x: { time: !!opts.time }, y: { distr: logY ? 3 : 1 } },
      axes: [xAxis, { size: 80 }],  // room for account values in the millions
      cursor: { drag: { x: true, y: false, setScale: !opts.onZoom } },
      hooks: opts.onZoom ? { setSelect: [u => {
        if (u.select.width < 2) return;
        const lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
        opts.onZoom(lo, hi);
      }] } : {},
    }, opts.smoothable ? viewData(pairs, smooth) : uPlot.join(pairs.map(p => [p[0], p[1]])), el);
    record(el, chart, labels, pairs);
    el.dataset.smoothing = String(smooth ? view.smoothing : 0);
    el.dataset.logY = String(logY);
    if (opts.onReset) chart.over.addEventListener("dblclick", () => opts.onReset());
    return chart;
  }

  /* The smoothing slider and log-scale box: every smoothable chart redrawn. */
  function viewControls(box) {
    const query = new URLSearchParams(window.location.search);
    view.smoothing = Math.min(0.99, Math.max(0, Number(query.get("smooth")) || 0));
    view.logY = query.get("logy") === "1";
    box.innerHTML = '<label>smoothing (EMA) <input type="range" id="smoothing" min="0" max="0.99" step="0.01"></label>' +
      ' <output id="smoothing-value"></output>' +
      ' <label><input type="checkbox" id="log-y"> log scale (y)</label>';
    const slider = box.querySelector("#smoothing"), shown = box.querySelector("#smoothing-value");
    const log = box.querySelector("#log-y");
    slider.value = String(view.smoothing);
    shown.textContent = view.smoothing.toFixed(2);
    log.checked = view.logY;
    const apply = () => {
      view.smoothing = Number(slider.value);
      view.logY = log.checked;
      shown.textContent = view.smoothing.toFixed(2);
      const url = new URL(window.location.href);
      if (view.smoothing > 0) url.searchParams.set("smooth", slider.value); else url.searchParams.delete("smooth");
      if (view.logY) url.searchParams.set("logy", "1"); else url.searchParams.delete("logy");
      window.history.replaceState(null, "", url);
      smoothable.forEach(el => {
        const a = el.suhoArgs;
        if (el.isConnected && a) makeChart(el, a.title, a.labels, a.pairs, a.opts);
      });
    };
    slider.addEventListener("input", apply);
    log.addEventListener("change", apply);
  }

  /* An x axis of whole numbers (trials): ticks at 1, 2, 5, 10, ... never 0.25. */
  const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                         10000, 20000, 50000, 100000, 200000, 500000, 1000000];
  function integerAxis(el) {
    return { incrs: INTEGER_STEPS, values: (u, splits) => {
      el.dataset.xTicks = JSON.stringify(splits);
      return splits.map(v => String(v));
    } };
  }

  /* Objective by trial (points) and the best so far (a step line). */
  function historyChart(el, title, hist, objective, onPick) {
    const chart = makeChart(el, title, [objective, "best so far"],
      [[hist.trial, hist.value], [hist.best_trial, hist.best]], {
        xLabel: "trial", height: 240, xInteger: true,
        series: [
          { points: { show: true, size: 6, fill: PALETTE[0] }, paths: () => null },
          { stroke: "#d62728", width: 2, points: { show: false },
            paths: uPlot.paths.stepped({ align: 1 }) },
        ],
      });
    if (onPick) {
      chart.over.addEventListener("click", () => {
        const i = chart.cursor.idx;
        if (i != null) onPick(chart.data[0][i]);
      });
    }
    return chart;
  }

  function record(el, chart, labels, pairs) {
    el.suhoChart = chart;  // for the browser tests and bench_ui_browser, which drive it
    const counts = {};
    labels.forEach((label, i) => {
      counts[label] = pairs[i] ? pairs[i][1].filter(v => v != null).length : 0;
    });
    el.dataset.points = String(chart.data[0].length);
    el.dataset.seriesPoints = JSON.stringify(counts);
  }

  function setPairs(el, chart, labels, pairs) {
    const a = el.suhoArgs;
    a.pairs = pairs;
    const smooth = !!a.opts.smoothable && view.smoothing > 0;
    chart.setData(a.opts.smoothable ? viewData(pairs, smooth) : uPlot.join(pairs.map(p => [p[0], p[1]])));
    record(el, chart, labels, pairs);
  }

  /* ------------------------------------------------------------------ run page */
  function runPage(root) {
    const runId = root.dataset.runId;
    const charts = [];
    const controls = document.getElementById("chart-controls");
    if (controls) viewControls(controls);
    root.querySelectorAll(".chart[data-curve]").forEach(el => {
      const state = { el: el, curve: el.dataset.curve, series: el.dataset.series.split(","),
                      chart: null, range: null };
      charts.push(state);
      load(state);
    });

    async function load(state) {
      let url = `/api/runs/${runId}/curve?name=${state.curve}&series=${state.series.join(",")}`;
      if (state.range) url += `&x_from=${state.range[0]}&x_to=${state.range[1]}`;
      const c = await getJSON(url);
      const pairs = state.series.map(s => c.series[s]);
      state.el.dataset.pointsInRange = String(c.points_in_range);
      state.el.dataset.zoomed = state.range ? "true" : "false";
      state.el.dataset.xFrom = state.range ? String(state.range[0]) : "";
      state.el.dataset.xTo = state.range ? String(state.range[1]) : "";
      state.el.dataset.loaded = String((Number(state.el.dataset.loaded) || 0) + 1);
      const live = ["running", "pending"].includes(root.dataset.status);
      waiting(state.el, pairs.every(p => !p || p[0].length === 0), live);
      if (!state.el.suhoChart) {
        makeChart(state.el, state.el.dataset.title, state.series, pairs, {
          xLabel: c.x, smoothable: true,
          onZoom: (lo, hi) => { state.range = [Math.floor(lo), Math.ceil(hi)]; load(state); },
          onReset: () => { state.range = null; load(state); },
        });
      } else {
        setPairs(state.el, state.el.suhoChart, state.series, pairs);
      }
    }

    loggedMetrics(runId);

    const trials = document.getElementById("trials-data");
    if (trials) {
      const t = JSON.parse(trials.textContent);
      const el = document.getElementById("chart-trials");
      historyChart(el, el.dataset.title, t.history, t.objective,
                   n => { window.location.href = `/runs/${runId}/study?trial=${n}`; });
    }

    let status = root.dataset.status;
    if (status === "running" || status === "pending") {
      let busy = false;
      const timer = setInterval(async () => {
        if (busy) return;  // a slow answer: skip a beat rather than pile requests up
        busy = true;
        try {
          const s = await getJSON(`/api/runs/${runId}/status`);
          const badge = document.getElementById("run-status");
          badge.textContent = s.status;
          badge.className = "status " + s.status;
          document.getElementById("run-stale").hidden = !s.stale;
          await Promise.all(charts.filter(c => !c.range).map(load));
          if (s.status !== "running" && s.status !== "pending") {
            clearInterval(timer);
            await refreshFinished();
          }
          root.dataset.status = s.status;
          status = s.status;
        } catch (e) {
          root.dataset.pollError = e.message;
        } finally { busy = false; }
      }, LIVE_POLL_MS);
    }

    /* The run ended: its metadata, evaluation, error and checkpoints are final now;
       take them from the page as the server renders it, without a reload. */
    async function refreshFinished() {
      const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      ["metadata", "evaluation", "checkpoints", "git-commit"].forEach(id => {
        const fresh = page.getElementById(id), old = document.getElementById(id);
        if (fresh && old) old.innerHTML = fresh.innerHTML;
      });
      const error = page.getElementById("run-error");
      if (error && !document.getElementById("run-error")) {
        document.querySelector("#run p.muted").after(document.importNode(error, true));
      }
      root.dataset.refreshed = "true";
    }
  }

  /* Any series the run logged by name (run.log(...)): pick a key, see its chart. */
  async function loggedMetrics(runId) {
    const box = document.getElementById("logged-metrics");
    if (!box) return;
    const data = await getJSON(`/api/runs/${runId}/metric-keys`);
    if (!data.keys.length) return;
    const select = document.getElementById("metric-key");
    data.keys.forEach(k => {
      const option = document.createElement("option");
      option.value = k.key;
      option.textContent = `${k.key} (${k.count} steps)`;
      select.appendChild(option);
    });
    const el = document.getElementById("chart-metric");
    const draw = async () => {
      const key = select.value;
      const s = await getJSON(`/api/runs/${runId}/metrics/${key.split("/").map(encodeURIComponent).join("/")}`);
      makeChart(el, key, [key], [[s.step, s.value]], { xLabel: "step", smoothable: true });
      el.dataset.key = key;
    };
    select.addEventListener("change", draw);
    box.hidden = false;
    await draw();
  }

  /* An empty chart says so: a live run's "waiting for data" until its first point. */
  function waiting(el, empty, live) {
    let note = el.querySelector(":scope > .chart-waiting");
    if (empty && !note) {
      note = document.createElement("div");
      note.className = "chart-waiting muted";
      el.appendChild(note);
    } else if (!empty && note) {
      note.remove();
    }
    if (empty) note.textContent = live ? "waiting for data" : "no data";
    el.dataset.waiting = empty && live ? "true" : "false";
  }

  /* Horizontal bars, each as long as its importance relative to the largest. */
  function bars(box, items) {
    const top = Math.max(...items.map(f => f.importance), 1e-12);
    box.innerHTML = "";
    items.forEach(f => {
      const row = document.createElement("div");
      row.className = "bar-row";
      row.dataset.name = f.name;
      row.innerHTML = `<span class="bar-label"></span><span class="bar-track"><span class="bar" style="width:${(100 * f.importance / top).toFixed(1)}%"></span></span><span class="bar-value"></span>`;
      row.children[0].textContent = f.name;
      row.children[2].textContent = f.importance.toPrecision(4);
      box.appendChild(row);
    });
  }

  async function loadImportance(button) {
    const box = document.getElementById("feature-importance");
    const runId = document.getElementById("run").dataset.runId;
    button.disabled = true;
    try {
      const data = await getJSON(`/api/runs/${runId}/feature-importance`);
      bars(box, data.features);
      box.dataset.state = "loaded";
    } catch (e) { box.textContent = e.message; box.dataset.state = "error"; }
  }

  async function loadEquity(button) {
    const box = document.getElementById("equity");
    const runId = document.getElementById("run").dataset.runId;
    button.disabled = true;
    button.textContent = "evaluating…";
    try {
      const e = await getJSON(`/api/runs/${runId}/equity`);
      box.innerHTML = "";
      makeChart(box, "Portfolio value (trade period)", ["agent", "buy and hold"],
                [[e.dates, e.agent], [e.dates, e.buy_and_hold]], { time: true, xLabel: "date" });
      box.dataset.state = "loaded";
    } catch (err) { box.textContent = err.message; box.dataset.state = "error"; }
  }

  /* ------------------------------------------------------------------ deploy */
  let pending = null;
  function askDeploy(checkpointId, stage) {
    if (document.body.dataset.readOnly === "true") return;
    pending = { checkpointId: checkpointId, stage: stage };
    document.getElementById("deploy-what").textContent = checkpointId;
    document.getElementById("deploy-stage").textContent = stage;
    document.getElementById("deploy-error").textContent = "";
    document.getElementById("deploy-dialog").showModal();
  }

  async function confirmDeploy() {
    const dialog = document.getElementById("deploy-dialog");
    const runId = document.getElementById("run").dataset.runId;
    try {
      await getJSON(`/api/checkpoints/${pending.checkpointId}/deploy`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ stage: pending.stage }),
      });
      const infos = await getJSON(`/api/runs/${runId}/checkpoints`);
      infos.forEach(info => {
        const row = document.querySelector(`tr[data-checkpoint-id="${info.checkpoint_id}"]`);
        if (!row) return;
        const badge = row.querySelector("[data-field=deployment_status]");
        badge.textContent = info.deployment_status;
        badge.className = "deploy-status " + info.deployment_status;
        row.querySelector("[data-field=deployed_at]").textContent = info.deployed_at || "";
      });
      dialog.close();
    } catch (e) {
      document.getElementById("deploy-error").textContent = e.message;
    }
  }

  /* ------------------------------------------------------------------ compare */
  function comparePage(root) {
    const data = JSON.parse(document.getElementById("compare-data").textContent);
    const box = document.getElementById("compare-charts");
    const controls = document.getElementById("chart-controls");
    if (controls) viewControls(controls);
    const shown = Object.keys(data.runs[0].curve.series).map(name => {
      const pairs = data.runs.map(r => r.curve.series[name]);
      if (pairs.every(p => p[0].length === 0)) return null;
      const el = document.createElement("div");
      el.className = "chart";
      el.id = "compare-" + name;
      box.appendChild(el);
      return { name: name, el: el, pairs: pairs };
    }).filter(Boolean);
    // Sized once every chart's box is laid out side by side.
    shown.forEach(c => makeChart(c.el, c.name, data.runs.map(r => r.run_name), c.pairs,
                                 { xLabel: data.runs[0].curve.x, smoothable: true }));
  }

  /* The ticked columns go into the URL (cols=...), so a view can be shared. */
  function chooseColumns() {
    const cols = Array.from(document.querySelectorAll("#column-chooser input.column:checked"))
      .map(x => x.value);
    const url = new URL(window.location.href);
    if (cols.length) url.searchParams.set("cols", cols.join(",")); else url.searchParams.delete("cols");
    url.searchParams.delete("offset");
    window.location.href = url.toString();
  }

  function submitCompare(form) {
    const ids = Array.from(document.querySelectorAll("input.pick:checked")).map(x => x.value);
    if (ids.length < 2 || ids.length > 10) { alert("Select 2 to 10 runs to compare."); return false; }
    form.querySelector("input[name=ids]").value = ids.join(",");
    return true;
  }

  /* ------------------------------------------------------------------ live */
  function livePage(table) {
    const body = table.querySelector("tbody");
    setInterval(async () => {
      const data = await getJSON("/api/live");
      body.innerHTML = "";
      if (!data.running.length) {
        body.innerHTML = '<tr class="empty"><td colspan="4" class="muted">Nothing is running.</td></tr>';
      }
      data.running.forEach(r => {
        const tr = document.createElement("tr");
        tr.dataset.runId = r.run_id;
        tr.innerHTML = "<td></td><td><a></a></td><td><span></span></td><td></td>";
        tr.children[0].textContent = r.kind;
        const a = tr.children[1].firstChild; a.href = "/runs/" + r.run_id; a.textContent = r.run_name;
        const s = tr.children[2].firstChild; s.className = "status " + r.status;
        s.textContent = r.status + (r.stale ? " (stale)" : "");
        tr.children[3].textContent = r.heartbeat_at || "";
        body.appendChild(tr);
      });
      table.dataset.polls = String((Number(table.dataset.polls) || 0) + 1);
    }, POLL_MS);
  }

  window.suho = { makeChart, ema, historyChart, getJSON, bars, PALETTE, runPage, loadImportance, loadEquity, askDeploy, confirmDeploy,
                  comparePage, submitCompare, chooseColumns, livePage };
})();
