// The dashboard page: one section per task with four charts and a table, drawn from
// window.BWB_DATA (data.js, written by `bwb dashboard`). Every string from the data reaches the
// DOM through textContent, never innerHTML: model names are user-controlled.
(function () {
  "use strict";

  const DATA = window.BWB_DATA;
  if (!DATA || !DATA.index || !Array.isArray(DATA.tasks)) {
    // console.error, not throw: from file:// an uncaught error reaches window.onerror only as
    // "Script error.", while health.js records console.error with its message.
    console.error("data.js did not define window.BWB_DATA; rebuild the site with `bwb dashboard`");
    return;
  }

  const CONDITION_ORDER = ["zero-shot", "5-shot", "lora-500", "lora-full"];
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  // TCO lines: colour by model; dash and marker by condition.
  const DASHES = [[], [6, 4], [2, 3], [10, 3, 2, 3]];
  const MARKERS = ["circle", "triangle", "rect", "rectRot", "star", "crossRot"];
  const MIN_PAINTED_PIXELS = 50;

  // Drawing is synchronous without animations, so the health check below sees every chart.
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  Chart.defaults.plugins.legend.labels.boxWidth = 12;

  // ---- helpers ------------------------------------------------------------------------

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) {
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  const fixed = (x, d) => (isNum(x) ? x.toFixed(d) : "–");
  function usd(x) {
    if (!isNum(x)) return "no price";
    if (x >= 100) return "$" + Math.round(x).toLocaleString("en-US");
    if (x >= 0.01) return "$" + x.toFixed(2);
    return "$" + parseFloat(x.toPrecision(2)); // two significant digits, no trailing zeros
  }
  function count(x) {
    if (x >= 1e6) return x / 1e6 + "M";
    if (x >= 1e3) return x / 1e3 + "k";
    return String(x);
  }
  // Log-axis ticks only at powers of ten, formatted by `fmt`.
  // Bounds of a log axis at whole decades around the values, at least one decade apart, so
  // a flat series (e.g. always-on GPU cost) still gets labelled ticks at both ends.
  function decadeBounds(values) {
    const v = values.filter((x) => isNum(x) && x > 0);
    if (!v.length) return {};
    let lo = Math.floor(Math.log10(Math.min(...v)));
    let hi = Math.ceil(Math.log10(Math.max(...v)));
    if (hi <= lo) hi = lo + 1;
    return { min: Math.pow(10, lo), max: Math.pow(10, hi) };
  }
  function decadeTicks(fmt) {
    return function (value) {
      const e = Math.log10(value);
      return Math.abs(e - Math.round(e)) < 1e-9 ? fmt(value) : "";
    };
  }
  const conditionRank = (c) => {
    const i = CONDITION_ORDER.indexOf(c);
    return i < 0 ? CONDITION_ORDER.length : i;
  };
  const byCondition = (a, b) => conditionRank(a) - conditionRank(b) || (a < b ? -1 : a > b ? 1 : 0);
  const conditionColor = (all, c) => PALETTE[all.indexOf(c) % PALETTE.length];
  const label = (s) => s.model + " · " + s.condition;
  const primary = (s) => s.metrics[s.primary_metric] || {};
  const costOf = (s) => (s.cost && isNum(s.cost.per_query_usd) && s.cost.per_query_usd > 0
    ? s.cost.per_query_usd : null);

  // ---- plugins ------------------------------------------------------------------------

  // Vertical 95 % CI whiskers over bars: dataset.ci[i] = [low, high] in data units.
  const errorBars = {
    id: "bwbErrorBars",
    afterDatasetsDraw(chart) {
      const ctx = chart.ctx;
      const y = chart.scales.y;
      chart.data.datasets.forEach((ds, i) => {
        if (!ds.ci || !chart.isDatasetVisible(i)) return;
        chart.getDatasetMeta(i).data.forEach((bar, j) => {
          const ci = ds.ci[j];
          if (!ci || !isNum(ci[0]) || !isNum(ci[1])) return;
          const lo = y.getPixelForValue(ci[0]);
          const hi = y.getPixelForValue(ci[1]);
          const cap = Math.min(bar.width * 0.25, 6);
          ctx.save();
          ctx.strokeStyle = "#222";
          ctx.lineWidth = 1.2;
          ctx.beginPath();
          ctx.moveTo(bar.x, lo); ctx.lineTo(bar.x, hi);
          ctx.moveTo(bar.x - cap, lo); ctx.lineTo(bar.x + cap, lo);
          ctx.moveTo(bar.x - cap, hi); ctx.lineTo(bar.x + cap, hi);
          ctx.stroke();
          ctx.restore();
        });
      });
    },
  };

  // The model name beside each scatter point (data points carry `model`), in the first of
  // four spots that overlaps no label already drawn; crowded points keep only their tooltip.
  const pointLabels = {
    id: "bwbPointLabels",
    afterDatasetsDraw(chart) {
      const ctx = chart.ctx;
      const area = chart.chartArea;
      const placed = [];
      const h = 11;
      const free = (b) => b.x >= area.left && b.x + b.w <= area.right &&
        b.y >= area.top && b.y + b.h <= area.bottom &&
        placed.every((p) => b.x >= p.x + p.w || p.x >= b.x + b.w || b.y >= p.y + p.h || p.y >= b.y + b.h);
      ctx.save();
      ctx.font = h + "px " + Chart.defaults.font.family;
      ctx.fillStyle = "#444";
      ctx.textBaseline = "top";
      chart.data.datasets.forEach((ds, i) => {
        if (!chart.isDatasetVisible(i)) return;
        chart.getDatasetMeta(i).data.forEach((pt, j) => {
          const raw = ds.data[j];
          if (!raw || !raw.model) return;
          const w = ctx.measureText(raw.model).width;
          const spots = [[6, -h - 3], [6, 3], [-w - 6, -h - 3], [-w - 6, 3]]
            .map(([dx, dy]) => ({ x: pt.x + dx, y: pt.y + dy, w: w, h: h }));
          const spot = spots.find(free);
          if (!spot) return;
          placed.push(spot);
          ctx.fillText(raw.model, spot.x, spot.y);
        });
      });
      ctx.restore();
    },
  };

  // Marks a chart as drawn once Chart.js has finished rendering it.
  const drawn = {
    id: "bwbDrawn",
    afterRender(chart) { chart.$bwbDrawn = true; },
  };

  const charts = [];
  function chart(card, config) {
    const canvas = el("canvas", { role: "img", "aria-label": card.dataset.title });
    card.querySelector(".chart").append(canvas);
    config.plugins = (config.plugins || []).concat([drawn]);
    charts.push(new Chart(canvas, config));
  }

  function card(title, note, height) {
    const box = el("div", { class: "chart" });
    if (height) box.style.height = height + "px";
    const c = el("figure", { class: "card" }, [el("figcaption", { text: title }), box]);
    c.dataset.title = title;
    if (note) c.append(el("p", { class: "note", text: note }));
    return c;
  }

  // ---- one task -----------------------------------------------------------------------

  function renderTask(task, i, allConditions, modelOrder) {
    const metric = task.primary_metric;
    const rows = task.summaries.slice().sort((a, b) =>
      modelOrder(a.model, b.model) || byCondition(a.condition, b.condition));
    const models = [...new Set(rows.map((s) => s.model))];
    const conditions = [...new Set(rows.map((s) => s.condition))].sort(byCondition);
    const find = (m, c) => rows.find((s) => s.model === m && s.condition === c);
    const color = (c) => conditionColor(allConditions, c);

    const section = el("section", { id: "task-" + i, class: "task" }, [
      el("h2", {}, [task.task, " ", el("span", { class: "metric", text: metric })]),
    ]);
    const grid = el("div", { class: "grid" });
    section.append(grid);
    document.getElementById("tasks").append(section);

    // 1. Primary metric by model × condition, with 95 % CI whiskers.
    const acc = card(metric + " by model × condition (95 % CI)");
    grid.append(acc);
    chart(acc, {
      type: "bar",
      data: {
        labels: models,
        datasets: conditions.map((c) => ({
          label: c,
          backgroundColor: color(c),
          data: models.map((m) => (find(m, c) ? primary(find(m, c)).mean : null)),
          ci: models.map((m) => {
            const s = find(m, c);
            return s ? [primary(s).ci_low, primary(s).ci_high] : null;
          }),
        })),
      },
      options: {
        scales: { y: { suggestedMin: 0, suggestedMax: 1, title: { display: true, text: metric } } },
        plugins: {
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const ci = ctx.dataset.ci[ctx.dataIndex] || [];
                return ctx.dataset.label + ": " + fixed(ctx.raw, 3) +
                  " (CI " + fixed(ci[0], 3) + "–" + fixed(ci[1], 3) + ")";
              },
            },
          },
        },
      },
      plugins: [errorBars],
    });

    // 2. Primary metric vs cost per query (log x); unpriced ones are listed instead.
    const priced = rows.filter((s) => costOf(s) !== null);
    const unpriced = rows.filter((s) => costOf(s) === null).map(label);
    const note = unpriced.length ? "No price: " + unpriced.join(", ") : "";
    const scatter = card(metric + " vs cost per query", note);
    grid.append(scatter);
    if (priced.length) {
      chart(scatter, {
        type: "scatter",
        data: {
          datasets: conditions.map((c) => ({
            label: c,
            backgroundColor: color(c),
            borderColor: color(c),
            pointRadius: 5,
            data: priced.filter((s) => s.condition === c)
              .map((s) => ({ x: costOf(s), y: primary(s).mean, model: s.model })),
          })),
        },
        options: {
          scales: {
            x: Object.assign({ type: "logarithmic", title: { display: true, text: "USD per query (log)" },
              ticks: { callback: decadeTicks(usd), maxRotation: 0 } }, decadeBounds(priced.map(costOf))),
            y: { suggestedMin: 0, suggestedMax: 1, title: { display: true, text: metric } },
          },
          plugins: {
            tooltip: {
              callbacks: {
                label: (ctx) => ctx.raw.model + " · " + ctx.dataset.label + ": " +
                  fixed(ctx.raw.y, 3) + " at " + usd(ctx.raw.x) + "/query",
              },
            },
          },
        },
        plugins: [pointLabels],
      });
    } else {
      scatter.querySelector(".chart").replaceWith(el("p", { class: "empty", text: "No priced results." }));
    }

    // 3. Latency p50 / p95 per model × condition (horizontal bars: long labels stay legible).
    const lat = card("Latency per query (ms)", "", Math.max(220, 26 * rows.length + 70));
    grid.append(lat);
    chart(lat, {
      type: "bar",
      data: {
        labels: rows.map(label),
        datasets: [
          { label: "p50", backgroundColor: "#4e79a7", data: rows.map((s) => s.latency_ms.p50) },
          { label: "p95", backgroundColor: "#a0cbe8", data: rows.map((s) => s.latency_ms.p95) },
        ],
      },
      options: { indexAxis: "y", scales: { x: { title: { display: true, text: "ms" } } } },
    });

    // 4. 12-month TCO vs monthly queries (log-log), one line per model × condition.
    const withTco = rows.filter((s) => s.tco && s.tco.points && s.tco.points.length);
    const tco = card("12-month TCO vs monthly queries", "Includes one-off training cost for LoRA conditions.");
    grid.append(tco);
    if (withTco.length) {
      chart(tco, {
        type: "line",
        data: {
          datasets: withTco.map((s) => {
            const c = PALETTE[models.indexOf(s.model) % PALETTE.length];
            return {
              label: label(s),
              borderColor: c,
              backgroundColor: c,
              borderDash: DASHES[conditions.indexOf(s.condition) % DASHES.length],
              pointStyle: MARKERS[conditions.indexOf(s.condition) % MARKERS.length],
              pointRadius: 3,
              data: s.tco.points.filter((p) => p.twelve_month_usd > 0)
                .map((p) => ({ x: p.monthly_queries, y: p.twelve_month_usd })),
            };
          }),
        },
        options: {
          scales: {
            x: { type: "logarithmic", title: { display: true, text: "queries per month (log)" },
              ticks: { callback: decadeTicks(count), maxRotation: 0 } },
            y: Object.assign({ type: "logarithmic", title: { display: true, text: "USD over 12 months (log)" },
              ticks: { callback: decadeTicks(usd) } },
              decadeBounds(withTco.flatMap((s) => s.tco.points.map((p) => p.twelve_month_usd)))),
          },
          plugins: {
            // Markers, not boxes, so each entry shows its condition's marker.
            legend: { position: "bottom", labels: { usePointStyle: true, boxHeight: 7 } },
            tooltip: {
              callbacks: {
                label: (ctx) => ctx.dataset.label + ": " + usd(ctx.raw.y) + " at " +
                  count(ctx.raw.x) + "/month",
              },
            },
          },
        },
      });
    } else {
      tco.querySelector(".chart").replaceWith(el("p", { class: "empty", text: "No TCO figures." }));
    }

    section.append(table(rows, metric));
  }

  function table(rows, metric) {
    const head = ["model", "kind", "condition", metric + " mean ± std", "95 % CI",
      "latency p50 / p95 (ms)", "cost / query", "n (examples × seeds)"];
    const body = rows.map((s) => {
      const m = primary(s);
      return el("tr", {}, [
        el("td", { text: s.model }),
        el("td", { text: s.model_kind }),
        el("td", { text: s.condition }),
        el("td", { class: "num", text: fixed(m.mean, 3) + (isNum(m.std) ? " ± " + fixed(m.std, 3) : "") }),
        el("td", { class: "num", text: fixed(m.ci_low, 3) + "–" + fixed(m.ci_high, 3) }),
        el("td", { class: "num", text: fixed(s.latency_ms.p50, 0) + " / " + fixed(s.latency_ms.p95, 0) }),
        el("td", { class: "num", text: usd(costOf(s)) }),
        el("td", { class: "num", text: s.n_examples + " × " + s.seeds.length }),
      ]);
    });
    return el("div", { class: "table-wrap" }, [
      el("table", {}, [
        el("thead", {}, [el("tr", {}, head.map((h) => el("th", { text: h })))]),
        el("tbody", {}, body),
      ]),
    ]);
  }

  // ---- page ---------------------------------------------------------------------------

  const index = DATA.index;
  const kinds = {};
  for (const m of index.models) kinds[m.name] = m.kind;
  // Local models first, then API models; by name within each.
  const modelOrder = (a, b) => ((kinds[a] === "api") - (kinds[b] === "api")) || (a < b ? -1 : a > b ? 1 : 0);
  const allConditions = index.conditions.slice().sort(byCondition);

  document.getElementById("meta").textContent = [
    "Generated " + index.generated_at,
    index.counts.summaries + " summaries",
    index.counts.tasks + " tasks",
    index.counts.models + " models",
    "prices as of " + (index.prices_as_of.join(", ") || "unknown"),
  ].join(" · ");
  const toc = document.getElementById("toc");
  DATA.tasks.forEach((t, i) => toc.append(el("a", { href: "#task-" + i, text: t.task })));

  // One failing task leaves the others drawn; the failure is recorded with its message.
  DATA.tasks.forEach((task, i) => {
    try {
      renderTask(task, i, allConditions, modelOrder);
    } catch (e) {
      console.error("task " + task.task + ": " + (e && e.stack ? e.stack : e));
    }
  });

  // ---- experiments (`bwb experiments`: the context benchmark) --------------------------

  function renderExperiments(exps) {
    const section = el("section", { id: "experiments", class: "task" }, [el("h2", { text: "Experiments" })]);
    document.getElementById("tasks").append(section);
    // Rows: each experiment, then its subtasks (LongBench / ETHIC with task: null).
    const rows = [];
    for (const e of exps) {
      rows.push({ label: e.experiment_id, e: e, s: e });
      for (const [k, v] of Object.entries(e.per_task || {})) rows.push({ label: e.experiment_id + " / " + k, e: e, s: v });
    }
    const metricNames = [...new Set(exps.flatMap((e) => Object.keys(e.metrics || {})))];
    const first = metricNames[0];
    if (first) {
      const grid = el("div", { class: "grid" });
      section.append(grid);
      const c = card(first + " per experiment (95 % CI in the table)", "", 260);
      grid.append(c);
      const with1 = rows.filter((r) => r.s.metrics && r.s.metrics[first]);
      chart(c, {
        type: "bar",
        data: {
          labels: with1.map((r) => r.label),
          datasets: [{ label: first, backgroundColor: PALETTE[0], data: with1.map((r) => r.s.metrics[first].mean) }],
        },
        options: { indexAxis: "y", scales: { x: { min: 0 } } },
      });
    }
    // Baseline vs compressed: the first metric against the input tokens sent per example,
    // each compressed experiment joined to its baseline.
    const compressed = exps.filter((e) => e.mode === "compressed" || e.mode === "scaledown");
    if (first && compressed.length) {
      const grid = el("div", { class: "grid" });
      section.append(grid);
      const c = card(first + " vs input tokens sent per example (baseline and compressed)", "", 260);
      grid.append(c);
      const point = (e) => (e.metrics && e.metrics[first] && e.tokens
        ? { x: e.tokens.avg_input_tokens, y: e.metrics[first].mean, model: e.experiment_id } : null);
      const modes = [["baseline", (e) => !compressed.includes(e)], ["compressed", (e) => compressed.includes(e)]];
      const datasets = modes.map(([name, keep], i) => ({
        label: name, backgroundColor: PALETTE[i], borderColor: PALETTE[i], pointRadius: 5,
        data: exps.filter(keep).map(point).filter((p) => p),
      }));
      for (const e of compressed) {
        const b = exps.find((x) => e.vs_baseline && x.experiment_id === e.vs_baseline.baseline);
        if (b && point(b) && point(e)) {
          datasets.push({ label: "", showLine: true, pointRadius: 0, borderColor: "#999", borderDash: [4, 3],
            data: [point(b), point(e)] });
        }
      }
      chart(c, {
        type: "scatter",
        data: { datasets: datasets },
        options: {
          scales: {
            x: { title: { display: true, text: "avg input tokens per example" }, min: 0 },
            y: { suggestedMin: 0, suggestedMax: 1, title: { display: true, text: first } },
          },
          plugins: { legend: { labels: { filter: (item) => item.text !== "" } } },
        },
        plugins: [pointLabels],
      });
    }
    const vsBaseline = (e) => {
      const v = e.vs_baseline;
      if (!v) return "–";
      const ms = v.metrics || {};
      const name = first in ms ? first : Object.keys(ms)[0];
      const m = ms[name] || {};
      const red = (v.input_tokens || {}).reduction;
      return (red === null || red === undefined ? "" : fixed(100 * red, 1) + " % fewer tokens; ") +
        (name || "") + " Δ " + fixed(m.diff, 3) + " [" + fixed(m.ci_low, 3) + "–" + fixed(m.ci_high, 3) + "] p=" + fixed(m.p_value, 3) +
        " (" + v.pairs + " pairs vs " + v.baseline + ")";
    };
    const head = ["experiment", "model", "dataset / task", "mode"].concat(
      metricNames.map((m) => m + " mean [95 % CI]"),
      ["examples (errors, cut)", "avg input / output tokens", "latency p50 (ms)", "cost / example", "vs baseline"]);
    const body = rows.map((r) => {
      const cells = [
        el("td", { text: r.label }),
        el("td", { text: r.e.model }),
        el("td", { text: (r.e.dataset || "") + " / " + (r.e.task || "") }),
        el("td", { text: r.e.mode || "" }),
      ];
      for (const m of metricNames) {
        const v = (r.s.metrics || {})[m];
        cells.push(el("td", { class: "num", text: v ? fixed(v.mean, 3) + " [" + fixed(v.ci_low, 3) + "–" + fixed(v.ci_high, 3) + "]" : "–" }));
      }
      const t = r.s.tokens || {};
      cells.push(el("td", { class: "num", text: r.s.num_examples + " (" + r.s.errors + ", " + r.s.truncated + ")" }));
      cells.push(el("td", { class: "num", text: fixed(t.avg_input_tokens, 0) + " / " + fixed(t.avg_output_tokens, 0) }));
      cells.push(el("td", { class: "num", text: fixed((r.s.latency_ms || {}).p50, 0) }));
      cells.push(el("td", { class: "num", text: r.s.cost ? usd(r.s.cost.mean_usd) : "no price" }));
      cells.push(el("td", { text: r.s === r.e ? vsBaseline(r.e) : "" }));
      return el("tr", {}, cells);
    });
    section.append(el("div", { class: "table-wrap" }, [
      el("table", {}, [
        el("thead", {}, [el("tr", {}, head.map((h) => el("th", { text: h })))]),
        el("tbody", {}, body),
      ]),
    ]));
  }

  const exps = Array.isArray(DATA.experiments) ? DATA.experiments : [];
  if (exps.length) {
    toc.append(el("a", { href: "#experiments", text: "experiments" }));
    try {
      renderExperiments(exps);
    } catch (e) {
      console.error("experiments: " + (e && e.stack ? e.stack : e));
    }
  }

  document.body.dataset.chartsDrawn = String(charts.filter((c) => c.$bwbDrawn).length);
  document.body.dataset.blankCanvases = String(window.bwbCountBlankCanvases(MIN_PAINTED_PIXELS));
})();
