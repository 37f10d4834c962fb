// catgan serve: the JavaScript of both pages (no framework, no build step).
// Server text is only ever put into the page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);

function fmt(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(1);
  return v.toPrecision(digits);
}

function fmtStep(v) {
  if (Math.abs(v) >= 10000) return (v / 1000).toFixed(0) + "k";
  if (Math.abs(v) >= 1000) return (v / 1000).toFixed(1).replace(/\.0$/, "") + "k";
  return String(Math.round(v));
}

function fmtTick(v) {
  return Math.abs(v) >= 1000 ? fmtStep(v) : String(Number(v.toPrecision(3)));
}

function ago(seconds) {
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function setStatus(text, live) {
  const el = $("status");
  el.textContent = "";
  const dot = document.createElement("span");
  dot.className = "dot";
  el.append(dot, text);
  el.classList.toggle("live", !!live);
}

// ---------------------------------------------------------------- charts

// Ticks at 1, 2 or 5 × 10^k covering [min, max].
function niceTicks(min, max, count) {
  const raw = (max - min) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(v);
  return ticks;
}

// An exponential moving average, debiased, sized to the number of points (as TensorBoard
// smooths noisy per-step losses).
function smooth(ys) {
  const window = Math.max(1, Math.floor(ys.length / 40));
  if (window < 2) return ys;
  const alpha = 2 / (window + 1);
  const out = [];
  let avg = 0;
  let weight = 0;
  for (const y of ys) {
    if (y === null || !Number.isFinite(y)) { out.push(null); continue; }
    avg = avg * (1 - alpha) + y * alpha;
    weight = weight * (1 - alpha) + alpha;
    out.push(avg / weight);
  }
  return out;
}

function nearest(xs, x) {
  let lo = 0;
  let hi = xs.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid; else hi = mid;
  }
  return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
}

// A line chart on a <canvas>: series = [{label, color, xs, ys, smooth, markers}].
// The legend (HTML) shows each series' latest value, or the hovered step's.
class LineChart {
  constructor(canvas, legend, options = {}) {
    this.canvas = canvas;
    this.legend = legend;
    this.options = options;
    this.series = [];
    this.hover = null;
    canvas.addEventListener("mousemove", (e) => {
      const rect = canvas.getBoundingClientRect();
      this.hover = e.clientX - rect.left;
      this.draw();
    });
    canvas.addEventListener("mouseleave", () => { this.hover = null; this.draw(); });
    window.addEventListener("resize", () => this.draw());
  }

  set(series) {
    this.series = series;
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const opts = this.options;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";

    let count = 0;
    let xmin = Infinity, xmax = -Infinity;
    const values = [];
    for (const s of this.series) {
      for (let i = 0; i < s.xs.length; i++) {
        const y = s.ys[i];
        if (y === null || !Number.isFinite(y)) continue;
        count++;
        values.push(y);
        xmin = Math.min(xmin, s.xs[i]);
        xmax = Math.max(xmax, s.xs[i]);
      }
    }
    canvas.dataset.points = String(count);
    canvas.dataset.series = this.series.map((s) => s.label).join(",");
    this.drawLegend(null);
    if (count === 0) {
      ctx.fillStyle = "#8a847b";
      ctx.textAlign = "center";
      ctx.fillText(opts.empty || "no data yet", w / 2, h / 2);
      return;
    }
    values.sort((a, b) => a - b);
    let ymin = opts.yMin !== undefined ? Math.min(opts.yMin, values[0]) : values[0];
    let ymax = opts.yMax !== undefined ? Math.max(opts.yMax, values[values.length - 1]) : values[values.length - 1];
    if (opts.robust && values.length > 20) {
      // Early spikes would flatten the rest: clip to a margin above the 99th percentile.
      const q = (p) => values[Math.min(values.length - 1, Math.floor(p * values.length))];
      const hi = q(0.99) + (q(0.99) - q(0.01)) * 0.25;
      ymax = Math.min(ymax, hi);
      if (opts.yMin === undefined) ymin = Math.max(ymin, q(0.01) - (q(0.99) - q(0.01)) * 0.25);
    }
    if (opts.zero) ymin = Math.min(0, ymin);
    if (ymax - ymin < 1e-9) { ymax += 0.5; ymin -= 0.5; }
    if (xmax === xmin) { xmax += 1; xmin -= 1; }
    const yTicks = niceTicks(ymin, ymax, 4);
    ymin = Math.min(ymin, yTicks[0]);
    ymax = Math.max(ymax, yTicks[yTicks.length - 1]);

    const pad = { l: 44, r: 12, t: 8, b: 20 };
    const px = (x) => pad.l + ((x - xmin) / (xmax - xmin)) * (w - pad.l - pad.r);
    const py = (y) => pad.t + (1 - (Math.min(Math.max(y, ymin), ymax) - ymin) / (ymax - ymin)) * (h - pad.t - pad.b);

    ctx.strokeStyle = "#ece8e1";
    ctx.fillStyle = "#8a847b";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of yTicks) {
      const y = Math.round(py(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.fillText(fmtTick(t), pad.l - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const xTicks = niceTicks(xmin, xmax, Math.max(2, Math.floor((w - pad.l) / 90)));
    for (const t of xTicks) {
      const x = Math.round(px(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, pad.t); ctx.lineTo(x, h - pad.b); ctx.stroke();
      ctx.fillText(fmtStep(t), x, h - pad.b + 5);
    }

    const line = (xs, ys, color, width, alpha) => {
      ctx.strokeStyle = color;
      ctx.globalAlpha = alpha;
      ctx.lineWidth = width;
      ctx.lineJoin = "round";
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < xs.length; i++) {
        const y = ys[i];
        if (y === null || !Number.isFinite(y)) { pen = false; continue; }
        if (pen) ctx.lineTo(px(xs[i]), py(y)); else ctx.moveTo(px(xs[i]), py(y));
        pen = true;
      }
      ctx.stroke();
      ctx.globalAlpha = 1;
    };
    for (const s of this.series) {
      const smoothed = s.smooth ? smooth(s.ys) : s.ys;
      if (smoothed !== s.ys) line(s.xs, s.ys, s.color, 1, 0.22);
      line(s.xs, smoothed, s.color, 1.8, 1);
      if (s.markers) {
        ctx.fillStyle = s.color;
        for (let i = 0; i < s.xs.length; i++) {
          if (s.ys[i] === null || !Number.isFinite(s.ys[i])) continue;
          ctx.beginPath(); ctx.arc(px(s.xs[i]), py(s.ys[i]), 3, 0, 2 * Math.PI); ctx.fill();
        }
      }
    }

    if (this.hover !== null && this.hover >= pad.l && this.hover <= w - pad.r) {
      const x = xmin + ((this.hover - pad.l) / (w - pad.l - pad.r)) * (xmax - xmin);
      const first = this.series.find((s) => s.xs.length);
      if (first) {
        const step = first.xs[nearest(first.xs, x)];
        const hx = Math.round(px(step)) + 0.5;
        ctx.strokeStyle = "#b9b2a7";
        ctx.beginPath(); ctx.moveTo(hx, pad.t); ctx.lineTo(hx, h - pad.b); ctx.stroke();
        this.drawLegend(step);
      }
    }
  }

  drawLegend(step) {
    if (!this.legend) return;
    this.legend.textContent = "";
    if (step !== null) {
      const s = document.createElement("span");
      s.textContent = `step ${step}`;
      this.legend.append(s);
    }
    for (const s of this.series) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.className = "swatch";
      swatch.style.background = s.color;
      let value = null;
      if (step !== null && s.xs.length) {
        const i = nearest(s.xs, step);
        if (s.xs[i] === step) value = s.ys[i];
      } else {
        for (let i = s.ys.length - 1; i >= 0; i--) {
          if (s.ys[i] !== null && Number.isFinite(s.ys[i])) { value = s.ys[i]; break; }
        }
      }
      const last = document.createElement("span");
      last.className = "last";
      last.textContent = fmt(value);
      item.append(swatch, s.label, last);
      this.legend.append(item);
    }
  }
}

// ---------------------------------------------------------------- Run page

// The settings worth a glance, as [label, path in config.json, how to show].
const CONFIG_KEYS = [
  ["preset", "preset"],
  ["image size", "trainer.generator.image_size", (v) => `${v} px`],
  ["width (base channels)", "trainer.generator.base_channels"],
  ["latent", "trainer.generator.latent_dim", (v, c) => `${v} × ${get(c, "trainer.latent") || ""}`],
  ["batch size", "trainer.batch_size"],
  ["learning rates D / G", "trainer.lr_d", (v, c) => `${v} / ${get(c, "trainer.lr_g")}`],
  ["loss", "trainer.loss", (v) => (typeof v === "string" ? v : JSON.stringify(v))],
  ["generator average", "trainer.ema", (v) => (v ? `EMA ${v.decay}` : "off")],
  ["D steps per G step", "trainer.d_steps"],
  ["seed", "trainer.seed"],
  ["data", "data.folder", (v) => (v === null ? "built-in cats" : v)],
  ["epochs / steps", "schedule", (v) => `${v.epochs ?? "–"} / ${v.steps ?? "–"}`],
  ["preview every", "schedule.sample_every", (v) => `${v} steps`],
  ["backend", "backend"],
  ["precision", "precision"],
];

function get(obj, path) {
  let v = obj;
  for (const k of path.split(".")) {
    if (v === null || typeof v !== "object" || !(k in v)) return undefined;
    v = v[k];
  }
  return v;
}

function runPage() {
  const state = { rows: [], samples: [], follow: true, timer: null, configText: null, stepShown: null };
  const charts = {
    loss: new LineChart($("chart-loss"), $("legend-loss"), { robust: true }),
    d: new LineChart($("chart-d"), $("legend-d"), { yMin: 0, yMax: 1 }),
    speed: new LineChart($("chart-speed"), $("legend-speed"), { robust: true, zero: true }),
    fid: new LineChart($("chart-fid"), $("legend-fid"), { empty: "not measured" }),
  };
  const slider = $("sample-slider");

  function showSample(index, fromSlider) {
    if (!state.samples.length) return;
    index = Math.max(0, Math.min(state.samples.length - 1, index));
    slider.value = String(index);
    if (fromSlider) state.follow = index === state.samples.length - 1;
    const step = state.samples[index];
    $("sample-step").textContent = `step ${step}`;
    $("sample-label").textContent = `(${index + 1} of ${state.samples.length})`;
    if (state.stepShown !== step) {
      state.stepShown = step;
      $("preview").src = `/api/samples/${step}`;
      $("preview").dataset.step = String(step);
    }
  }
  slider.addEventListener("input", () => showSample(Number(slider.value), true));
  $("sample-play").addEventListener("click", () => {
    if (state.timer) { clearInterval(state.timer); state.timer = null; $("sample-play").textContent = "▶"; return; }
    $("sample-play").textContent = "❚❚";
    if (Number(slider.value) >= state.samples.length - 1) showSample(0, true);
    state.timer = setInterval(() => {
      const next = Number(slider.value) + 1;
      if (next >= state.samples.length) { clearInterval(state.timer); state.timer = null; $("sample-play").textContent = "▶"; }
      showSample(Math.min(next, state.samples.length - 1), true);
    }, 400);
  });

  function column(name) { return state.rows.map((r) => r[name]); }

  function drawCharts() {
    const xs = column("step");
    charts.loss.set([
      { label: "D loss", color: "#d9731a", xs, ys: column("d_loss"), smooth: true },
      { label: "G loss", color: "#2f6fb3", xs, ys: column("g_loss"), smooth: true },
    ]);
    charts.d.set([
      { label: "D(x)", color: "#2e7d32", xs, ys: column("d_real"), smooth: true },
      { label: "D(G(z))", color: "#b3261e", xs, ys: column("d_fake"), smooth: true },
    ]);
    charts.speed.set([{ label: "img/s", color: "#6a4fb3", xs, ys: column("img_per_s"), smooth: true }]);
    const fidRows = state.rows.filter((r) => r.fid !== null && r.fid !== undefined);
    $("fid-none").hidden = fidRows.length > 0;
    $("chart-fid").hidden = fidRows.length === 0;
    $("legend-fid").hidden = fidRows.length === 0;
    charts.fid.set([{ label: "FID", color: "#a3338f", xs: fidRows.map((r) => r.step), ys: fidRows.map((r) => r.fid), markers: true }]);
  }

  function drawTiles(run, generator) {
    const last = state.rows[state.rows.length - 1];
    $("t-step").textContent = last ? String(last.step) : "–";
    $("t-epoch").textContent = last ? String(last.epoch) : "–";
    $("t-dloss").textContent = last ? fmt(last.d_loss) : "–";
    $("t-gloss").textContent = last ? fmt(last.g_loss) : "–";
    $("t-d").textContent = last ? `${fmt(last.d_real, 2)} / ${fmt(last.d_fake, 2)}` : "–";
    const speeds = state.rows.slice(-50).map((r) => r.img_per_s).filter(Number.isFinite).sort((a, b) => a - b);
    $("t-speed").textContent = speeds.length ? fmt(speeds[Math.floor(speeds.length / 2)]) : "–";
    const fid = state.rows.filter((r) => r.fid !== null && r.fid !== undefined).pop();
    $("t-fid").textContent = fid ? `${fmt(fid.fid, 4)} @${fid.step}` : "–";
    const loaded = generator && generator.loaded;
    $("t-ckpt").textContent = loaded ? `step ${loaded.step}` : "none yet";
    $("t-ckpt").title = generator && generator.checkpoint ? generator.checkpoint : "";
    const age = run.metrics_age_s;
    // metrics.csv is flushed at every epoch's end: a minute or two without a change is
    // normal while training.
    if (age === null || age === undefined) setStatus(`${run.name}: waiting for the first step`, false);
    else if (age < 180) setStatus(`${run.name}: live · metrics updated ${ago(age)}`, true);
    else setStatus(`${run.name}: idle · metrics last updated ${ago(age)}`, false);
  }

  function drawConfig(run) {
    const text = JSON.stringify(run.config, null, 2);
    if (text === state.configText) return;
    state.configText = text;
    $("run-folder").textContent = `run folder: ${run.folder}`;
    $("config-json").textContent = run.config ? text : run.config_error || "";
    const table = $("config");
    table.textContent = "";
    if (!run.config) return;
    for (const [label, path, show] of CONFIG_KEYS) {
      const v = get(run.config, path);
      if (v === undefined) continue;
      const tr = document.createElement("tr");
      const k = document.createElement("td");
      const val = document.createElement("td");
      k.textContent = label;
      val.textContent = show ? show(v, run.config) : (typeof v === "object" ? JSON.stringify(v) : String(v));
      tr.append(k, val);
      table.append(tr);
    }
  }

  function drawSamples(samples) {
    const changed = samples.length !== state.samples.length || samples[samples.length - 1] !== state.samples[state.samples.length - 1];
    state.samples = samples;
    $("samples-none").hidden = samples.length > 0;
    $("samples").hidden = samples.length === 0;
    if (!samples.length) return;
    slider.max = String(samples.length - 1);
    if (changed) showSample(state.follow ? samples.length - 1 : Number(slider.value), false);
  }

  async function poll() {
    let wait = document.hidden ? 15000 : 3000;
    try {
      const last = state.rows[state.rows.length - 1];
      const r = await fetch("/api/run" + (last ? `?after=${last.step}` : ""));
      if (!r.ok) throw new Error((await r.text()).trim());
      const data = await r.json();
      $("error").hidden = true;
      if (!data.run) {
        $("no-run").hidden = false;
        $("no-run-message").textContent = data.message;
        setStatus("no run folder", false);
        return; // nothing will change: stop polling
      }
      const run = data.run;
      if (state.rows.length + run.metrics.length !== run.metrics_total && last) {
        // A resume dropped rows after its checkpoint: start over.
        state.rows = [];
        wait = 0;
      } else {
        state.rows = state.rows.concat(run.metrics);
      }
      $("run").hidden = false;
      if (run.metrics.length || !$("chart-loss").dataset.points) drawCharts();
      drawTiles(run, data.generator);
      drawConfig(run);
      drawSamples(run.samples);
      document.body.dataset.loaded = "true";
    } catch (e) {
      $("error").hidden = false;
      $("error").textContent = `Cannot reach the server: ${e.message}`;
      setStatus("disconnected", false);
    }
    setTimeout(poll, wait);
  }
  poll();
}

// ---------------------------------------------------------------- Generator page

const SEED = /^[0-9]{1,20}$/;

// Loads API images into an <img> one request at a time: while one is being drawn, only
// the newest of the requests made meanwhile follows (a dragged slider stays live).
function imageLoader(img, errorEl, onDone) {
  let busy = false;
  let pending = null;
  let objectUrl = null;
  img.addEventListener("load", () => { img.dataset.state = "loaded"; });
  async function load(url) {
    if (busy) { pending = url; return; }
    busy = true;
    img.classList.add("busy");
    try {
      const r = await fetch(url);
      if (!r.ok) throw new Error((await r.text()).trim());
      const blob = await r.blob();
      const next = URL.createObjectURL(blob);
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = next;
      img.dataset.src = url;
      img.dataset.state = "loading";
      img.src = next;
      errorEl.hidden = true;
      if (onDone) onDone(r.headers.get("x-draw-ms"));
    } catch (e) {
      img.dataset.state = "error";
      errorEl.hidden = false;
      errorEl.textContent = e.message;
    }
    busy = false;
    img.classList.remove("busy");
    if (pending) { const p = pending; pending = null; load(p); }
  }
  return load;
}

function generatorPage() {
  let info = null;
  const seed = $("seed");
  const from = $("walk-from");
  const to = $("walk-to");
  const slider = $("walk-slider");
  const randomSeed = () => String(Math.floor(Math.random() * 1000000));

  const loadCat = imageLoader($("cat-img"), $("cat-error"), (ms) => {
    $("cat-caption").textContent = `seed ${seed.value} · drawn in ${ms} ms`;
  });
  const loadGrid = imageLoader($("grid-img"), $("grid-error"), (ms) => {
    $("grid-caption").textContent = `${$("count").value} cats from seed ${seed.value} · drawn in ${ms} ms`;
  });
  const loadWalk = imageLoader($("walk-img"), $("walk-error"), null);
  const loadStrip = imageLoader($("walk-strip"), $("walk-error"), null);

  function valid(input) {
    const ok = SEED.test(input.value.trim());
    input.classList.toggle("invalid", !ok);
    return ok;
  }
  function drawSeed() {
    if (!valid(seed)) return;
    const s = seed.value.trim();
    loadCat(`/api/generate?seed=${s}&count=1`);
    loadGrid(`/api/generate?seed=${s}&count=${$("count").value}`);
  }
  function tValue() { return (Number(slider.value) / 1000).toFixed(2); }
  function drawWalkPoint() {
    if (!valid(from) || !valid(to)) return;
    $("walk-t").textContent = `t = ${tValue()}`;
    loadWalk(`/api/walk?from=${from.value.trim()}&to=${to.value.trim()}&t=${tValue()}`);
  }
  function drawWalk() {
    if (!valid(from) || !valid(to)) return;
    drawWalkPoint();
    loadStrip(`/api/walk?from=${from.value.trim()}&to=${to.value.trim()}&frames=8`);
  }
  function drawAll() { drawSeed(); drawWalk(); }

  let typing = null;
  const debounce = (f) => () => { clearTimeout(typing); typing = setTimeout(f, 250); };
  seed.addEventListener("input", debounce(drawSeed));
  from.addEventListener("input", debounce(drawWalk));
  to.addEventListener("input", debounce(drawWalk));
  $("count").addEventListener("change", drawSeed);
  $("new-seed").addEventListener("click", () => { seed.value = randomSeed(); drawSeed(); });
  $("walk-new").addEventListener("click", () => { from.value = randomSeed(); to.value = randomSeed(); drawWalk(); });
  slider.addEventListener("input", drawWalkPoint);

  function describe(loaded) {
    const avg = loaded.using_ema
      ? `the generator average (EMA ${loaded.ema_decay})`
      : loaded.ema_decay ? "the raw generator (--no-ema)" : "the generator (this run kept no average)";
    const latent = typeof loaded.latent === "string" ? loaded.latent.toLowerCase() : JSON.stringify(loaded.latent);
    return `Checkpoint step ${loaded.step}: ${avg}, ${loaded.image_size}×${loaded.image_size} px, ` +
      `${loaded.latent_dim}-dimensional ${latent} latents.`;
  }

  async function poll() {
    try {
      const r = await fetch("/api/generator");
      if (!r.ok) throw new Error((await r.text()).trim());
      const status = await r.json();
      if (!status.loaded) {
        $("no-generator").hidden = false;
        $("generator").hidden = true;
        $("no-generator-message").textContent = status.error || "no checkpoint is loaded";
        setStatus("no checkpoint", false);
      } else {
        $("no-generator").hidden = true;
        $("generator").hidden = false;
        const changed = !info || info.step !== status.loaded.step || info.loaded_at !== status.loaded.loaded_at;
        info = status.loaded;
        $("checkpoint-info").textContent = describe(info) + (status.error ? ` (newer file not loaded: ${status.error})` : "");
        setStatus(`checkpoint step ${info.step}${info.using_ema ? " · EMA" : ""}`, true);
        document.body.dataset.loaded = "true";
        if (changed) drawAll(); // follows a live run: new checkpoint, new cats
      }
    } catch (e) {
      setStatus("disconnected", false);
    }
    setTimeout(poll, document.hidden ? 15000 : 4000);
  }
  poll();
}

if (document.body.dataset.page === "run") runPage();
else if (document.body.dataset.page === "generator") generatorPage();
