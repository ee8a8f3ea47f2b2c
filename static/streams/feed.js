// The live feed page: samples arrive over /ws/feeds/<uuid>/ (docs/PROTOCOL.md).
"use strict";

(function () {
  const boot = JSON.parse(document.getElementById("feed-bootstrap").textContent);
  const samples = boot.recent.slice();
  let lastSeq = samples.length ? samples[samples.length - 1].seq : 0;
  let stats = samples.length ? samples[samples.length - 1].stats : null;
  let drawPending = false;
  let resyncing = false;

  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");

  function setText(id, value) {
    const el = $(id);
    if (el) el.textContent = value;
  }

  function fmt(x, digits = 4) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
  }

  function render() {
    drawPending = false;
    setText("last-seq", lastSeq);
    if (stats) {
      setText("n", stats.n);
      if (boot.kind === "binary") {
        setText("alpha", stats.alpha);
        setText("beta", stats.beta);
        setText("mean", fmt(stats.mean));
        setText("ci", stats.ci95 ? `${fmt(stats.ci95[0], 3)} – ${fmt(stats.ci95[1], 3)}` : "–");
        drawPosterior(stats.alpha, stats.beta);
      } else {
        setText("mean", fmt(stats.mean));
        setText("variance", fmt(stats.variance));
        setText("min", fmt(stats.min));
        setText("max", fmt(stats.max));
      }
    }
    drawChart();
  }

  function scheduleRender() {
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(render);
    }
  }

  function drawChart() {
    const canvas = $("chart");
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 10;
    ctx.clearRect(0, 0, w, h);
    // What the chart holds, for people and tests: first and last seq, and how many.
    canvas.dataset.points = samples.length;
    canvas.dataset.first = samples.length ? samples[0].seq : "";
    canvas.dataset.last = samples.length ? samples[samples.length - 1].seq : "";
    if (!samples.length) return;
    const binary = boot.kind === "binary";
    const values = samples.map((s) => s.value);
    let lo = binary ? 0 : Math.min(...values);
    let hi = binary ? 1 : Math.max(...values);
    if (hi === lo) { hi = lo + 1; }
    const step = (w - 2 * pad) / Math.max(1, boot.maxPoints - 1);
    const x = (i) => pad + i * step;
    const y = (v) => h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad);
    const line = (points, color, width) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.beginPath();
      points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.stroke();
    };
    if (binary) {
      // The 95% credible band and the posterior mean after each sample, over the 0/1 marks.
      const withCi = samples.filter((s) => s.stats && s.stats.ci95);
      if (withCi.length) {
        ctx.fillStyle = "rgba(183, 110, 0, 0.15)";
        ctx.beginPath();
        samples.forEach((s, i) => s.stats && s.stats.ci95 && ctx.lineTo(x(i), y(s.stats.ci95[1])));
        for (let i = samples.length - 1; i >= 0; i--) {
          const s = samples[i];
          if (s.stats && s.stats.ci95) ctx.lineTo(x(i), y(s.stats.ci95[0]));
        }
        ctx.fill();
      }
      ctx.fillStyle = "#2f6fed";
      samples.forEach((s, i) => ctx.fillRect(x(i) - 1, y(s.value) - 3, 3, 6));
      line(samples.map((s, i) => [x(i), y(s.stats ? s.stats.mean : s.value)]), "#b76e00", 2);
    } else {
      line(samples.map((s, i) => [x(i), y(s.value)]), "#2f6fed", 1.5);
    }
  }

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

  function drawPosterior(a, b) {
    const canvas = $("posterior");
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 10;
    ctx.clearRect(0, 0, w, h);
    const logB = lgamma(a) + lgamma(b) - lgamma(a + b);
    const points = [];
    let peak = 0;
    for (let i = 1; i < 400; i++) {
      const x = i / 400;
      const d = Math.exp((a - 1) * Math.log(x) + (b - 1) * Math.log1p(-x) - logB);
      points.push([x, d]);
      peak = Math.max(peak, d);
    }
    ctx.strokeStyle = "#1a8f4a";
    ctx.fillStyle = "rgba(26, 143, 74, 0.15)";
    ctx.beginPath();
    ctx.moveTo(pad, h - pad);
    for (const [x, d] of points) ctx.lineTo(pad + x * (w - 2 * pad), h - pad - (d / peak) * (h - 2 * pad));
    ctx.lineTo(w - pad, h - pad);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "#6b7480";
    ctx.fillText("0", pad, h - 1);
    ctx.fillText("1", w - pad - 6, h - 1);
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
      default:
        return;
    }
    scheduleRender();
  }

  function onState(state, delay) {
    statusEl.dataset.state = state;
    statusEl.textContent = state === "reconnecting" && delay
      ? `reconnecting in ${(delay / 1000).toFixed(1)} s…` : state;
  }

  new LiveSocket({
    url: () => LiveSocket.wsUrl(`/ws/feeds/${boot.uuid}/`, { key: boot.key, since: lastSeq }),
    onMessage: onFrame,
    onState,
  });
  render();
})();
