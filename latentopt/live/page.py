"""The live view's page: one self-contained HTML document (inline style and script, no network but its server).

The script polls ``/state.json`` every second and redraws: the block counter, images shown / expected, the
rig's waiting state, per-thread best (solid) and mean (dashed) trajectories drawn into an SVG, the last
block's best images and the operator messages. Everything that comes from the run folder is inserted as
text (``textContent``, SVG attributes), never as markup.
"""

from __future__ import annotations

import html

POLL_MS = 1000

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
header { display: flex; align-items: center; gap: 16px; padding: 12px 20px; background: #1d2a3a; color: #fff; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
#phase { padding: 2px 10px; border-radius: 10px; background: #56657a; font-weight: 600; }
#phase.waiting { background: #c98a14; } #phase.running { background: #2f7d4f; }
#phase.finished { background: #3b5ea8; } #phase.stopped, #phase.offline { background: #a83b3b; }
main { padding: 12px 20px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px; min-width: 190px; }
.label { color: #5d6b7c; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.big { font-size: 26px; font-weight: 600; }
.sub { color: #5d6b7c; }
section { margin-top: 16px; }
h2 { font-size: 15px; margin: 0 0 6px; }
#chart { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; width: 100%; max-width: 960px; }
#legend span { margin-right: 14px; white-space: nowrap; }
#legend i { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 4px; }
#best-images { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 6px; }
figure img { width: 160px; height: 160px; object-fit: contain; image-rendering: pixelated; display: block; }
figcaption { font-size: 12px; color: #5d6b7c; max-width: 160px; }
#messages { font: 12px/1.45 ui-monospace, monospace; background: #fff; border: 1px solid #dde1e6;
  border-radius: 6px; padding: 8px 8px 8px 12px; margin: 0; list-style: none; max-height: 320px; overflow: auto; }
#messages li.rig { color: #8a5a00; }
#errors { color: #a83b3b; }
table.scores td { padding: 0 8px 0 0; } table.scores td.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { padding: 8px 20px 20px; color: #5d6b7c; font-size: 12px; }
"""

_BODY = """
<header><h1>latentopt live &middot; <span id="run">{title}</span></h1><span id="phase">connecting</span></header>
<main>
<div class="cards">
  <div class="card"><div class="label">last block recorded</div><div id="block" class="big">no block yet</div>
    <div id="block-sub" class="sub"></div></div>
  <div class="card"><div class="label">images shown / expected</div><div id="shown" class="big">&ndash;</div>
    <div id="shown-sub" class="sub"></div></div>
  <div class="card"><div class="label">session</div><div id="waiting" class="big">&ndash;</div>
    <div id="waiting-sub" class="sub"></div></div>
  <div class="card"><div class="label">last block: best / mean</div><table id="scores" class="scores"></table></div>
</div>
<div id="errors"></div>
<section><h2>Trajectories (best solid, mean dashed)</h2>
  <svg id="chart" viewBox="0 0 960 320" role="img" aria-label="score trajectories"></svg>
  <div id="legend"></div></section>
<section><h2 id="images-title">Best images of the last block</h2><div id="best-images"></div></section>
<section><h2>Operator messages</h2><ol id="messages"></ol></section>
</main>
<footer id="footer">waiting for the first update</footer>
"""

_SCRIPT = r"""
"use strict";
const POLL_MS = %(poll_ms)d;
const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let shownImages = "", shownMessages = "";

function num(x) {
  if (x === null || x === undefined) return "\u2013";
  const a = Math.abs(x);
  return (a !== 0 && (a >= 1e5 || a < 1e-3)) ? x.toExponential(2) : String(Number(x.toPrecision(4)));
}
function label(block) { return String(block).padStart(3, "0"); }
function clock(t) { return new Date(t * 1000).toLocaleTimeString([], {hour12: false}); }
function seconds(s) { return s < 90 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min"; }
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}
function ticks(lo, hi, n, integer) {
  const span = hi - lo || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / mag;
  let step = (r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1) * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function phaseOf(s) {
  const st = s.status || {};
  if (s.finished) return ["finished", "finished"];
  if (st.phase === "stopped") return ["stopped", "stopped"];
  if (s.session_alive === false) return ["stopped", "session ended"];
  if (st.phase === "waiting") return ["waiting", "waiting for the rig"];
  if (!s.started) return ["idle", "not started"];
  return ["running", "running"];
}

function renderCards(s) {
  const last = s.last, st = s.status || {};
  const [cls, text] = phaseOf(s);
  $("phase").className = cls; $("phase").textContent = text;
  $("block").textContent = last ? "block " + last.generation : "no block yet";
  const sub = [];
  if (last) sub.push(s.recorded + (s.total_blocks ? " of " + s.total_blocks : "") + " recorded");
  if (last && last.blocks.length) {
    sub.push("rig block" + (last.blocks.length > 1 ? "s " : " ") + last.blocks.map(label).join(", "));
  }
  if (last && last.time) sub.push("at " + clock(last.time));
  $("block-sub").textContent = sub.join(" \u00b7 ");
  $("shown").textContent = last ? last.shown + "/" + last.expected : "\u2013";
  $("shown-sub").textContent = last && last.waited_s !== null ? "waited " + seconds(last.waited_s) : "";
  if (cls === "waiting") {
    $("waiting").textContent = "waiting " + seconds(Math.max(0, s.now - (st.waiting_since || s.now)));
    const files = (st.response_files || []).join(" or ");
    $("waiting-sub").textContent = "block " + (st.label || "?") + " (generation " + st.generation + "): " +
      st.images + " images expected; response " + files;
  } else if (cls === "stopped") {
    $("waiting").textContent = text;
    $("waiting-sub").textContent = st.reason || "the session's process has ended (killed or crashed?): " +
      "resume it with latentopt-resume";
  } else {
    $("waiting").textContent = text;
    $("waiting-sub").textContent = st.phase === "running" && st.generation !== undefined ?
      "responses of block " + (st.label || "?") + " received" : "";
  }
  const table = $("scores");
  table.replaceChildren();
  for (const [name, v] of Object.entries(last ? last.threads : {})) {
    const row = el("tr");
    row.append(el("td", name), el("td", "best " + num(v.best), "num"), el("td", "mean " + num(v.mean), "num"));
    table.append(row);
  }
  const errors = $("errors");
  errors.replaceChildren(...s.errors.map((e) => el("div", e)));
}

function renderChart(trajectories) {
  const chart = $("chart"), W = 960, H = 320, L = 64, R = 16, T = 14, B = 36;
  chart.replaceChildren();
  const names = Object.keys(trajectories);
  let xs = [], ys = [];
  for (const n of names) {
    xs = xs.concat(trajectories[n].generation);
    ys = ys.concat(trajectories[n].best, trajectories[n].mean).filter((y) => y !== null);
  }
  $("legend").replaceChildren();
  if (!xs.length || !ys.length) {
    chart.append(svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#5d6b7c"}, "no scores yet"));
    return;
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
  const pad = (y1 - y0) * 0.06 || Math.abs(y1) * 0.1 || 1; y0 -= pad; y1 += pad;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), sy = (y) => T + (y1 - y) / (y1 - y0) * (H - T - B);
  for (const t of ticks(y0, y1, 5, false)) {
    chart.append(svg("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), stroke: "#e6e9ed"}));
    chart.append(svg("text", {x: L - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": 11, fill: "#5d6b7c"}, num(t)));
  }
  for (const t of ticks(Math.ceil(x0), Math.floor(x1), 8, true)) {
    chart.append(svg("text", {x: sx(t), y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "#5d6b7c"},
      String(t)));
  }
  chart.append(svg("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", "font-size": 12,
    fill: "#1d232b"}, "block"));
  chart.append(svg("text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12, fill: "#1d232b",
    transform: "rotate(-90 14 " + (T + H - B) / 2 + ")"}, "score"));
  chart.append(svg("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#b8c0ca"}));
  names.forEach((name, k) => {
    const color = COLORS[k %% COLORS.length], line = trajectories[name];
    for (const [key, dash] of [["best", ""], ["mean", "6 4"]]) {
      let d = "", pen = "M";
      line.generation.forEach((g, i) => {
        const y = line[key][i];
        if (y === null) { pen = "M"; return; }
        d += pen + sx(g).toFixed(1) + " " + sy(y).toFixed(1) + " "; pen = "L";
      });
      if (d) chart.append(svg("path", {d: d, fill: "none", stroke: color, "stroke-width": key === "best" ? 2.2 : 1.5,
        "stroke-dasharray": dash, "data-thread": name, "data-kind": key}));
      const g = line.generation.length, yl = line[key][g - 1];
      if (g && yl !== null) {
        chart.append(svg("circle", {cx: sx(line.generation[g - 1]), cy: sy(yl), r: 3, fill: color}));
      }
    }
    const item = el("span"), swatch = el("i");
    swatch.setAttribute("data-color", color); swatch.style.background = color;
    item.append(swatch, document.createTextNode(name));
    $("legend").append(item);
  });
}

function renderImages(last) {
  const key = last ? JSON.stringify([last.generation, last.images]) : "";
  if (key === shownImages) return;
  shownImages = key;
  const box = $("best-images");
  box.replaceChildren();
  $("images-title").textContent = last ? "Best images of block " + last.generation : "Best images of the last block";
  if (!last) return;
  for (const [thread, name] of Object.entries(last.images)) {
    const fig = el("figure"), img = el("img");
    img.src = "/image/" + encodeURIComponent(name) + query;
    img.alt = thread + " best image of block " + last.generation;
    img.dataset.name = name;
    const caption = thread + " best " + num(last.threads[thread].best) + " (block " + last.generation + ")";
    fig.append(img, el("figcaption", caption));
    box.append(fig);
  }
}

function renderMessages(messages) {
  const key = messages.length ? messages.length + ":" + messages[messages.length - 1].time : "";
  if (key === shownMessages) return;
  shownMessages = key;
  const list = $("messages");
  list.replaceChildren(...messages.slice().reverse().map((m) => el("li", clock(m.time) + "  " + m.text, m.kind)));
  if (!messages.length) list.append(el("li", "no operator message yet"));
}

function render(s) {
  renderCards(s);
  renderChart(s.trajectories);
  renderImages(s.last);
  renderMessages(s.messages);
  $("footer").textContent = "updated " + clock(s.now) + " \u00b7 " + s.block_reads +
    " block files read \u00b7 the page asks every " + POLL_MS / 1000 + " s; read-only view of " + s.run;
}

async function poll() {
  try {
    const response = await fetch("/state.json" + query, {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (err) {
    $("phase").className = "offline"; $("phase").textContent = "view offline";
    $("footer").textContent = "cannot reach the view's server (" + err.message + "): the run may have ended " +
      "(start latentopt-live RUN_DIR to look on); trying again";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}
poll();
"""


def page_html(*, nonce: str, title: str, poll_ms: int = POLL_MS) -> str:
    """The page, its inline style and script marked with ``nonce`` (the server's Content-Security-Policy)."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>latentopt live: {html.escape(title)}</title>"
            f'<style nonce="{nonce}">{_STYLE}</style></head><body>'
            f"{_BODY.format(title=html.escape(title))}"
            f'<script nonce="{nonce}">{_SCRIPT % {"poll_ms": poll_ms}}</script></body></html>\n')
