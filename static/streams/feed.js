// The live feed page: samples arrive over /ws/feeds/<uuid>/ (docs/PROTOCOL.md).
"use strict";

(function () {
  const boot = JSON.parse(document.getElementById("feed-bootstrap").textContent);
  const binary = boot.kind === "binary";
  const samples = boot.recent.slice();
  let lastSeq = samples.length ? samples[samples.length - 1].seq : 0;
  let stats = samples.length ? samples[samples.length - 1].stats : null;
  let drawPending = false;
  let resyncing = false;
  let stopped = false;
  let lastError = null;  // the message of the last error frame on this connection

  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  const alertEl = $("alert");
  const announceEl = $("announce");
  // Screen readers hear the numbers at most this often, not at every sample.
  const ANNOUNCE_EVERY_MS = 5000;
  let announced = "";
  let announceTimer = null;
  let alertTimer = null;

  const COLORS = { sample: "#2f6fed", mean: "#b76e00", band: "rgba(183, 110, 0, 0.15)",
    posterior: "#1a8f4a", posteriorFill: "rgba(26, 143, 74, 0.15)", prior: "#8a94a0",
    axis: "#6b7480", grid: "#eceff3", text: "#4a525c" };
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";

  function setText(id, value) {
    const el = $(id);
    if (el) el.textContent = value;
  }

  function fmt(x, digits = 4) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
  }

  function clock(ts, step) {
    const options = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (step < 60) options.second = "2-digit";
    if (step < 1) options.fractionalSecondDigits = 1;
    if (step >= 86400) return new Date(ts * 1000).toLocaleDateString([], { month: "short", day: "numeric" });
    return new Date(ts * 1000).toLocaleTimeString([], options);
  }

  // -- numbers, captions and what screen readers hear ----------------------

  function summary() {
    if (!stats || !samples.length) return binary ? "No samples yet; the prior is Beta(2, 2)." : "No samples yet.";
    const last = samples[samples.length - 1];
    const value = Number.isInteger(last.value) ? last.value : Number(last.value.toPrecision(6));
    const head = `Last value ${value} at ${clock(last.ts, 1)} (sample ${last.seq} of ${stats.n}).`;
    if (binary) {
      const ci = stats.ci95 ? ` 95% credible interval ${fmt(stats.ci95[0], 3)} to ${fmt(stats.ci95[1], 3)}.` : "";
      return `${head} Posterior mean ${fmt(stats.mean, 3)}.${ci}`;
    }
    return `${head} Mean ${fmt(stats.mean, 3)}, minimum ${fmt(stats.min, 3)}, maximum ${fmt(stats.max, 3)}.`;
  }

  function announce() {
    announceTimer = null;
    const text = summary();
    if (text !== announced) {
      announced = text;
      announceEl.textContent = text;
    }
  }

  function scheduleAnnounce() {
    if (announceTimer === null) announceTimer = setTimeout(announce, announced ? ANNOUNCE_EVERY_MS : 0);
  }

  function render() {
    drawPending = false;
    setText("last-seq", lastSeq);
    if (stats) {
      setText("n", stats.n);
      if (binary) {
        setText("alpha", stats.alpha);
        setText("beta", stats.beta);
        setText("mean", fmt(stats.mean));
        setText("ci", stats.ci95 ? `${fmt(stats.ci95[0], 3)} – ${fmt(stats.ci95[1], 3)}` : "–");
        setText("title-alpha", stats.alpha);
        setText("title-beta", stats.beta);
        setText("title-successes", `${stats.successes} successes`);
        setText("title-failures", `${stats.failures} failures`);
      } else {
        setText("mean", fmt(stats.mean));
        setText("variance", fmt(stats.variance));
        setText("min", fmt(stats.min));
        setText("max", fmt(stats.max));
      }
    }
    drawChart();
    if (binary) drawPosterior(stats || { alpha: 2, beta: 2, successes: 0, failures: 0, n: 0 });
    scheduleAnnounce();
  }

  function scheduleRender() {
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(render);
    }
  }

  // -- drawing helpers --------------------------------------------------------

  // The canvas's backing store follows its box (and the screen's pixel ratio),
  // so a chart is sharp and fits its card at any width.
  function fit(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, canvas.clientWidth), h = Math.max(1, canvas.clientHeight);
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    return { ctx, w, h };
  }

  // Round numbers between lo and hi, about `count` of them; with `widen`,
  // from the round number below lo to the one above hi.
  function niceTicks(lo, hi, count, widen = false) {
    const raw = (hi - lo) / Math.max(1, count);
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / magnitude === 2.5 ? 1 : 0));
    const first = (widen ? Math.floor(lo / step + 1e-9) : Math.ceil(lo / step - 1e-9)) * step;
    const last = widen ? Math.ceil(hi / step - 1e-9) * step : hi;
    const ticks = [];
    for (let i = 0, v = first; v <= last + step * 1e-9; i++, v = first + i * step) {
      ticks.push({ at: v, label: v.toFixed(decimals) });
    }
    return ticks;
  }

  const TIME_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

  function timeTicks(t0, t1, count) {
    const raw = (t1 - t0) / Math.max(1, count);
    const step = TIME_STEPS.find((s) => s >= raw) || Math.ceil(raw / 86400) * 86400;
    const ticks = [];
    for (let t = Math.ceil(t0 / step - 1e-9) * step; t <= t1 + 1e-9; t += step) {
      ticks.push({ at: t, label: clock(t, step) });
    }
    return { ticks, step };
  }

  // Axes with labelled ticks and titles; returns the plot area.
  function axes(ctx, w, h, { xTicks, yTicks, xDomain, yDomain, xTitle, yTitle }) {
    ctx.font = FONT;
    const yLabelWidth = Math.max(...yTicks.map((t) => ctx.measureText(t.label).width), 8);
    const area = { left: Math.ceil(yLabelWidth) + 24, right: w - 12, top: 10, bottom: h - 42 };
    const x = (v) => area.left + ((v - xDomain[0]) / (xDomain[1] - xDomain[0] || 1)) * (area.right - area.left);
    const y = (v) => area.bottom - ((v - yDomain[0]) / (yDomain[1] - yDomain[0] || 1)) * (area.bottom - area.top);
    ctx.lineWidth = 1;
    ctx.fillStyle = COLORS.text;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (const t of yTicks) {
      const py = Math.round(y(t.at)) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath(); ctx.moveTo(area.left, py); ctx.lineTo(area.right, py); ctx.stroke();
      ctx.fillText(t.label, area.left - 6, py);
    }
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    let lastRight = -Infinity;
    for (const t of xTicks) {
      const px = Math.round(x(t.at)) + 0.5;
      ctx.strokeStyle = COLORS.axis;
      ctx.beginPath(); ctx.moveTo(px, area.bottom); ctx.lineTo(px, area.bottom + 4); ctx.stroke();
      const half = ctx.measureText(t.label).width / 2;
      if (px - half > lastRight + 4 && px - half >= 0 && px + half <= w) {  // no overlap, no clip
        ctx.fillText(t.label, px, area.bottom + 8);
        lastRight = px + half;
      }
    }
    ctx.strokeStyle = COLORS.axis;
    ctx.beginPath();
    ctx.moveTo(area.left + 0.5, area.top); ctx.lineTo(area.left + 0.5, area.bottom + 0.5);
    ctx.lineTo(area.right, area.bottom + 0.5);
    ctx.stroke();
    ctx.fillStyle = COLORS.axis;
    ctx.fillText(xTitle, (area.left + area.right) / 2, h - 16);
    ctx.save();
    ctx.translate(10, (area.top + area.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(yTitle, 0, 0);
    ctx.restore();
    return { area, x, y };
  }

  function line(ctx, points, color, width, dash) {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.setLineDash(dash || []);
    ctx.beginPath();
    points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
    ctx.stroke();
    ctx.setLineDash([]);
  }

  // What a chart shows, for people and tests: its tick labels.
  function expose(canvas, xTicks, yTicks) {
    canvas.dataset.xTicks = JSON.stringify(xTicks.map((t) => t.label));
    canvas.dataset.yTicks = JSON.stringify(yTicks.map((t) => t.label));
  }

  // -- the samples chart: value over time -------------------------------------

  function drawChart() {
    const canvas = $("chart");
    const { ctx, w, h } = fit(canvas);
    // What the chart holds: first and last seq, and how many.
    canvas.dataset.points = samples.length;
    canvas.dataset.first = samples.length ? samples[0].seq : "";
    canvas.dataset.last = samples.length ? samples[samples.length - 1].seq : "";
    setText("chart-caption", summary());
    const now = Date.now() / 1000;
    let t0 = samples.length ? samples[0].ts : now - 60;
    let t1 = samples.length ? samples[samples.length - 1].ts : now;
    if (t1 - t0 < 1) { t0 -= 0.5; t1 += 0.5; }
    let lo = 0, hi = 1;
    if (!binary && samples.length) {
      lo = Math.min(...samples.map((s) => s.value));
      hi = Math.max(...samples.map((s) => s.value));
      if (hi === lo) { lo -= 1; hi += 1; }
    }
    const yTicks = niceTicks(lo, hi, Math.max(2, Math.floor(h / 45)), !binary);
    lo = yTicks[0].at;
    hi = yTicks[yTicks.length - 1].at;
    const { ticks: xTicks, step } = timeTicks(t0, t1, Math.max(2, Math.floor(w / 95)));
    expose(canvas, xTicks, yTicks);
    const { area, x, y } = axes(ctx, w, h, {
      xTicks, yTicks, xDomain: [t0, t1], yDomain: [lo, hi],
      xTitle: `time (${step < 60 ? "hh:mm:ss" : "hh:mm"}, local)`,
      yTitle: binary ? "value, mean" : "value",
    });
    if (!samples.length) return;
    ctx.save();
    ctx.beginPath();
    ctx.rect(area.left, area.top - 4, area.right - area.left + 4, area.bottom - area.top + 8);
    ctx.clip();
    if (binary) {
      // The 95% credible band and the posterior mean after each sample, over the 0/1 marks.
      const withCi = samples.filter((s) => s.stats && s.stats.ci95);
      if (withCi.length) {
        ctx.fillStyle = COLORS.band;
        ctx.beginPath();
        withCi.forEach((s) => ctx.lineTo(x(s.ts), y(s.stats.ci95[1])));
        for (let i = withCi.length - 1; i >= 0; i--) ctx.lineTo(x(withCi[i].ts), y(withCi[i].stats.ci95[0]));
        ctx.fill();
      }
      ctx.fillStyle = COLORS.sample;
      samples.forEach((s) => ctx.fillRect(x(s.ts) - 1, y(s.value) - 3, 2, 6));
      line(ctx, samples.map((s) => [x(s.ts), y(s.stats ? s.stats.mean : s.value)]), COLORS.mean, 2);
    } else {
      line(ctx, samples.map((s) => [x(s.ts), y(s.value)]), COLORS.sample, 1.5);
    }
    ctx.restore();
  }

  // -- the posterior chart: density of Beta(alpha, beta) ----------------------

  // log Gamma by the Lanczos approximation (g = 7, n = 9).
  const LANCZOS = [0.99999999999980993, 676.5203681218851, -1259.1392167224028,
    771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  function lgamma(z) {
    if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - lgamma(1 - z);
    z -= 1;
    let x = LANCZOS[0];
    for (let i = 1; i < 9; i++) x += LANCZOS[i] / (z + i);
    const t = z + 7.5;
    return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(x);
  }

  function betaDensity(a, b) {
    const logB = lgamma(a) + lgamma(b) - lgamma(a + b);
    return (x) => (x <= 0 || x >= 1 ? 0 : Math.exp((a - 1) * Math.log(x) + (b - 1) * Math.log1p(-x) - logB));
  }

  function drawPosterior(s) {
    const canvas = $("posterior");
    if (!canvas) return;
    const { ctx, w, h } = fit(canvas);
    const a = s.alpha, b = s.beta;
    const mean = a / (a + b);
    const sd = Math.sqrt((a * b) / ((a + b) ** 2 * (a + b + 1)));
    // Zoom in once the posterior is narrow, or it is a spike a few pixels wide.
    let x0 = 0, x1 = 1;
    if (10 * sd < 0.5) {
      x0 = Math.max(0, mean - 5 * sd);
      x1 = Math.min(1, mean + 5 * sd);
    }
    const posterior = betaDensity(a, b), prior = betaDensity(2, 2);
    const grid = [];
    for (let i = 0; i <= 400; i++) grid.push(x0 + ((x1 - x0) * i) / 400);
    const density = grid.map(posterior);
    const peak = Math.max(1.5, ...density);
    const xTicks = niceTicks(x0, x1, Math.max(2, Math.floor(w / 80)));
    const yTicks = niceTicks(0, peak, Math.max(2, Math.floor(h / 45)));
    const top = Math.max(peak, yTicks[yTicks.length - 1].at);
    expose(canvas, xTicks, yTicks);
    const { area, x, y } = axes(ctx, w, h, {
      xTicks, yTicks, xDomain: [x0, x1], yDomain: [0, top],
      xTitle: "θ, the probability of a 1" + (x0 > 0 || x1 < 1 ? " (zoomed in)" : ""),
      yTitle: "density",
    });
    if (s.ci95) {
      ctx.fillStyle = COLORS.posteriorFill;
      ctx.beginPath();
      ctx.moveTo(x(Math.max(x0, s.ci95[0])), y(0));
      grid.forEach((g, i) => { if (g >= s.ci95[0] && g <= s.ci95[1]) ctx.lineTo(x(g), y(density[i])); });
      ctx.lineTo(x(Math.min(x1, s.ci95[1])), y(0));
      ctx.fill();
    }
    line(ctx, grid.map((g) => [x(g), y(prior(g))]), COLORS.prior, 1.5, [5, 4]);
    line(ctx, grid.map((g, i) => [x(g), y(density[i])]), COLORS.posterior, 2);
    line(ctx, [[x(mean), y(0)], [x(mean), area.top]], COLORS.posterior, 1, [2, 3]);
    const ci = s.ci95 ? `, 95% credible interval ${fmt(s.ci95[0], 3)} to ${fmt(s.ci95[1], 3)}` : "";
    setText("posterior-caption",
      `Posterior Beta(${a}, ${b}) = prior Beta(2, 2) + ${s.successes} successes and ${s.failures} failures: mean ${fmt(mean, 3)}${ci}.`);
  }

  // -- the socket -------------------------------------------------------------

  function showAlert(message, { stays = false } = {}) {
    alertEl.textContent = message;
    alertEl.hidden = false;
    clearTimeout(alertTimer);
    if (!stays) alertTimer = setTimeout(() => { if (!stopped) alertEl.hidden = true; }, 8000);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "hello":
        // We always connect with since=lastSeq (0 included: the page may have
        // rendered before the first sample), so the server replays everything
        // after it and lastSeq stays. Only after a resync, or if the feed went
        // back (recreated), does the server's last_seq become ours.
        if (resyncing || frame.last_seq < lastSeq) {
          samples.length = 0;
          lastSeq = frame.last_seq;
          resyncing = false;
        }
        if (!samples.length || lastSeq === frame.last_seq) stats = frame.stats;
        if (frame.watching !== undefined) setText("watching", frame.watching);
        lastError = null;
        if (!stopped) alertEl.hidden = true;
        break;
      case "resync":
        // What we missed is no longer kept: the fresh hello that follows restarts the chart.
        resyncing = true;
        break;
      case "sample":
        if (frame.seq <= lastSeq) return;
        samples.push(frame);
        if (samples.length > boot.maxPoints) samples.splice(0, samples.length - boot.maxPoints);
        lastSeq = frame.seq;
        stats = frame.stats;
        break;
      case "presence":
        setText("watching", frame.watching);
        return;
      case "error":
        lastError = frame.message;
        if (!stopped) showAlert(`The server says: ${frame.message}.`);
        return;
      default:
        return;
    }
    scheduleRender();
  }

  function onState(state, delay, reason) {
    statusEl.dataset.state = state;
    statusEl.textContent = LiveSocket.describe(state, delay);
    if (state !== "live") setText("watching", "–");
    if (state === "stopped") {
      stopped = true;
      const said = lastError ? ` (The server said: ${lastError}.)` : "";
      showAlert(`Live updates stopped. ${reason}${said}`, { stays: true });
    }
  }

  new LiveSocket({
    url: () => LiveSocket.wsUrl(`/ws/feeds/${boot.uuid}/`, { key: boot.key, since: lastSeq }),
    onMessage: onFrame,
    onState,
  });
  new ResizeObserver(scheduleRender).observe(document.querySelector(".grid"));
  render();
})();
