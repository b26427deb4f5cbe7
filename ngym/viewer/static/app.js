// ng_viewer: one page, hash routes, data from the server's JSON API one page at a time.
// Everything from the rollouts file is put in the page as text (textContent), never as HTML.
"use strict";

const PAGE = 50;
const LONG_TEXT = 1500; // characters shown before "show all"
const SVG_NS = "http://www.w3.org/2000/svg";
let INFO = null;

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c) node.append(c);
  return node;
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  return x.toFixed(digits);
}

function fixed(x) {
  return x === null || x === undefined ? "–" : x.toFixed(3);
}

function pct(x) {
  return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%";
}

function signed(x, asPct) {
  if (x === null || x === undefined) return "–";
  const s = asPct ? (100 * x).toFixed(1) + " pp" : x.toFixed(3);
  return x > 0 ? "+" + s : s;
}

function deltaClass(x) {
  // below what is printed (0.001 of reward, 0.1 pp) a change is shown as none
  if (x === null || x === undefined || Math.abs(x) < 0.0005) return "delta";
  return x > 0 ? "delta up" : "delta down";
}

function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "" && v !== false) q.set(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

async function api(path, params = {}) {
  const r = await fetch("/api/" + path + qs(params));
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return r.json();
}

function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "list";
  const [path, query] = hash.split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  return { parts: path.split("/"), params };
}

function go(path, params) {
  location.hash = "#/" + path + qs(params || {});
}

function statusBadge(status) {
  return el("span", { class: "badge s-" + status, title: statusHelp(status) }, status);
}

function statusHelp(name) {
  const s = (INFO ? INFO.statuses : []).find((x) => x.name === name);
  return s ? s.help : "";
}

function rewardBadge(reward, status) {
  return el("span", { class: "reward s-" + status }, reward === null ? "–" : fmt(reward));
}

function longText(text, cls) {
  // a <pre> with the first LONG_TEXT characters and a button to show the rest
  const pre = el("pre", { class: cls || "text" });
  if (text.length <= LONG_TEXT) {
    pre.textContent = text;
    return pre;
  }
  pre.textContent = text.slice(0, LONG_TEXT) + " …";
  const more = el("button", { class: "more", type: "button" }, `show all (${fmt(text.length)} characters)`);
  more.addEventListener("click", () => { pre.textContent = text; more.remove(); });
  return el("div", {}, pre, more);
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((p) => (typeof p === "string" ? p : (p && (p.text ?? p.refusal)) || "")).filter((s) => s !== "").join("\n");
  }
  return content === null || content === undefined ? "" : JSON.stringify(content, null, 2);
}

function clip(s, n) {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

function pretty(s) {
  // a JSON string pretty-printed; anything else as it is
  if (typeof s !== "string") return JSON.stringify(s, null, 2);
  try { return JSON.stringify(JSON.parse(s), null, 2); } catch (e) { return s; }
}

function setTab(name) {
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === name);
}

function view() { return document.getElementById("view"); }

function showError(e) {
  view().replaceChildren(el("p", { class: "error" }, "Error: " + e.message));
}

function select(name, options, value, onchange) {
  const s = el("select", { name, onchange: (ev) => onchange(ev.target.value) });
  for (const [v, label] of options) s.append(el("option", { value: v, selected: String(v) === String(value ?? "") }, label));
  return s;
}

function field(label, control) {
  return el("label", { class: "field" }, el("span", {}, label), control);
}

function runName(run) {
  return run === "b" ? "B" : "A";
}

function runPicker(params, onchange) {
  if (!INFO.runs.b) return null;
  return field("Run", select("run", [["a", "A: " + basename(INFO.runs.a.path)], ["b", "B: " + basename(INFO.runs.b.path)]], params.run || "a", onchange));
}

function basename(p) { return p.split("/").pop(); }

function pager(total, offset, limit, onpage) {
  const last = Math.max(0, Math.floor((total - 1) / limit) * limit);
  const btn = (label, to, disabled, cls) => el("button", { type: "button", class: cls, disabled: disabled, onclick: () => onpage(to) }, label);
  const from = total ? offset + 1 : 0;
  const to = Math.min(total, offset + limit);
  return el("div", { class: "pager" },
    btn("« first", 0, offset === 0),
    btn("‹ prev", Math.max(0, offset - limit), offset === 0, "prev"),
    el("span", { class: "range" }, `${fmt(from)}–${fmt(to)} of ${fmt(total)}`),
    btn("next ›", offset + limit, offset + limit >= total, "next"),
    btn("last »", last, offset >= last));
}

// ---------------------------------------------------------------- list

const FILTER_KEYS = ["env", "status", "task", "min_reward", "max_reward"];

function filterOf(params) {
  const f = {};
  for (const k of FILTER_KEYS) if (params[k] !== undefined && params[k] !== "") f[k] = params[k];
  return f;
}

async function showList(params) {
  setTab("list");
  const run = params.run === "b" && INFO.runs.b ? "b" : "a";
  const offset = Math.max(0, parseInt(params.offset || "0", 10) || 0);
  const flt = filterOf(params);
  const data = await api("rollouts", { run, ...flt, offset, limit: PAGE });
  const runInfo = INFO.runs[run];
  const update = (changes) => go("list", { run, ...flt, ...changes, offset: changes.offset ?? 0 });

  const envOptions = [["", `all (${runInfo.environments.length})`]].concat(
    runInfo.environments.map((e) => [e.name, `${e.name} (${fmt(e.rollouts)}${e.failed ? ", " + fmt(e.failed) + " failed" : ""})`]));
  const statusOptions = [["", "all"]].concat(INFO.statuses.map((s) => [s.name, `${s.name} (${s.help})`]));
  const taskInput = el("input", { type: "number", name: "task", min: 0, value: flt.task ?? "", placeholder: "any", class: "num" });
  const minInput = el("input", { type: "number", name: "min_reward", step: "any", value: flt.min_reward ?? "", placeholder: "min", class: "num" });
  const maxInput = el("input", { type: "number", name: "max_reward", step: "any", value: flt.max_reward ?? "", placeholder: "max", class: "num" });
  const applyInputs = () => update({ task: taskInput.value, min_reward: minInput.value, max_reward: maxInput.value });
  for (const input of [taskInput, minInput, maxInput]) input.addEventListener("change", applyInputs);

  const bar = el("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); applyInputs(); } },
    runPicker({ run }, (v) => go("list", { run: v })),
    field("Environment", select("env", envOptions, flt.env, (v) => update({ env: v }))),
    field("Status", select("status", statusOptions, flt.status, (v) => update({ status: v }))),
    field("Task index", taskInput),
    field("Reward", el("span", { class: "pair" }, minInput, "–", maxInput)),
    Object.keys(flt).length ? el("button", { type: "button", class: "clear", onclick: () => go("list", { run }) }, "clear filters") : null,
    el("button", { type: "submit", hidden: true }));

  const table = el("table", { class: "rollouts" },
    el("thead", {}, el("tr", {}, ["#", "environment", "task", "rollout", "reward", "status", "tool calls", "tokens", "conversation"].map((h) => el("th", {}, h)))));
  const body = el("tbody");
  for (const r of data.items) {
    const href = "#/rollout/" + run + "/" + r.id + qs(flt);
    const p = r.preview;
    body.append(el("tr", { class: "row", "data-id": r.id, onclick: () => { location.hash = href; } },
      el("td", {}, el("a", { href }, String(r.id))),
      el("td", { class: "env" }, r.env),
      el("td", {}, fmt(r.task)),
      el("td", {}, fmt(r.rollout)),
      el("td", {}, rewardBadge(r.reward, r.status)),
      el("td", {}, statusBadge(r.status)),
      el("td", {}, r.source === "failures" ? "–" : fmt(r.tool_calls)),
      el("td", {}, r.tokens ? fmt(r.tokens) : "–"),
      el("td", { class: "preview" },
        el("div", { class: "ptext" }, p.text || ""),
        p.tools.length ? el("div", { class: "chips" }, p.tools.map((t) => el("span", { class: "chip" }, t))) : null,
        p.answer ? el("div", { class: "panswer" }, "→ " + p.answer) : null)));
  }
  if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No rollout matches these filters.")));
  table.append(body);

  const onpage = (o) => update({ offset: o });
  view().replaceChildren(
    el("h2", {}, `Rollouts of ${runName(run)}: `, el("span", { class: "path" }, runInfo.path)),
    bar,
    el("p", { class: "muted count" }, `${fmt(data.total)} of ${fmt(runInfo.entries)} entries match`),
    pager(data.total, data.offset, data.limit, onpage),
    table,
    pager(data.total, data.offset, data.limit, onpage));
}

// ---------------------------------------------------------------- one rollout

async function showRollout(run, id, params) {
  setTab("list");
  const flt = filterOf(params);
  const data = await api("rollouts/" + id, { run, ...flt });
  const s = data.summary;
  const row = data.row;
  const nav = el("div", { class: "rnav" },
    el("a", { href: "#/list" + qs({ run, ...flt, offset: data.position ? Math.floor(data.position / PAGE) * PAGE : null }), class: "back" }, "← list"),
    data.prev !== null ? el("a", { href: `#/rollout/${run}/${data.prev}` + qs(flt), class: "prev" }, "‹ previous") : el("span", { class: "muted" }, "‹ previous"),
    data.next !== null ? el("a", { href: `#/rollout/${run}/${data.next}` + qs(flt), class: "next" }, "next ›") : el("span", { class: "muted" }, "next ›"),
    el("span", { class: "muted" }, data.position !== null ? `${fmt(data.position + 1)} of ${fmt(data.total)}${Object.keys(flt).length ? " matching" : ""} (← → keys)` : "(not in the current filter)"),
    el("a", { href: `/api/rollouts/${id}/raw?run=${run}`, target: "_blank", class: "raw" }, "raw JSON"));

  const head = el("div", { class: "card rhead" },
    el("div", { class: "big" }, rewardBadge(s.reward, s.status), " ", statusBadge(s.status)),
    kv([["run", runName(run)], ["row", s.id], ["environment", s.env], ["task", s.task], ["rollout", s.rollout],
        ["tool calls", s.source === "failures" ? null : s.tool_calls], ["tokens", s.tokens || null], ["line bytes", s.bytes]]));

  const parts = [el("h2", {}, `Rollout ${id} `, el("span", { class: "path" }, s.env)), nav, head];
  if (row === null || typeof row !== "object") {
    parts.push(el("p", { class: "error" }, "This line is not valid JSON; open the raw line to see it."));
  } else if (s.source === "failures") {
    parts.push(el("h3", {}, "Failure"), el("div", { class: "card" }, kv(Object.entries(row).filter(([k]) => k !== "agent_ref" && k !== "error").map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v]))),
      el("h3", {}, "Error"), longText(String(row.error ?? ""), "text err"));
  } else {
    parts.push(...renderRollout(row));
  }
  view().replaceChildren(...parts);
  window.scrollTo(0, 0);
}

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, typeof v === "number" ? fmt(v) : String(v)))));
}

const RESERVED = new Set(["responses_create_params", "response", "reward", "agent_ref", "_ng_task_index", "_ng_rollout_index"]);

function renderRollout(row) {
  const out = [];
  const metrics = Object.entries(row).filter(([k, v]) => !RESERVED.has(k) && (v === null || typeof v !== "object"));
  const structured = Object.entries(row).filter(([k, v]) => !RESERVED.has(k) && v !== null && typeof v === "object");
  if (metrics.length || structured.length) {
    out.push(el("h3", {}, "Verifier fields"));
    const card = el("div", { class: "card" }, kv(metrics.map(([k, v]) => [k, typeof v === "string" && v.length > 200 ? v.slice(0, 200) + " …" : v])));
    for (const [k, v] of structured) card.append(el("details", {}, el("summary", {}, k), el("pre", { class: "json" }, JSON.stringify(v, null, 2))));
    out.push(card);
  }
  const params = row.responses_create_params || {};
  const response = row.response || {};
  const callNames = {};
  const input = typeof params.input === "string" ? [{ role: "user", content: params.input }] : (params.input || []);
  const output = response.output || [];
  for (const item of input.concat(output)) if (item && item.type === "function_call") callNames[item.call_id] = item.name;

  const conv = el("div", { class: "conversation" });
  if (params.instructions) conv.append(renderItem({ role: "system", content: params.instructions }, callNames, "input"));
  conv.append(el("div", { class: "section" }, `Input (${input.length} item${input.length === 1 ? "" : "s"})`));
  for (const item of input) conv.append(renderItem(item, callNames, "input"));
  conv.append(el("div", { class: "section" }, `Output (${output.length} item${output.length === 1 ? "" : "s"})`));
  for (const item of output) conv.append(renderItem(item, callNames, "output"));
  if (!output.length) conv.append(el("p", { class: "muted" }, "No output items."));
  out.push(el("h3", {}, "Conversation"), conv);

  if (response.usage) out.push(el("h3", {}, "Usage"), el("div", { class: "card usage" }, kv(flatten(response.usage))));
  const tools = params.tools || [];
  if (tools.length) {
    const list = el("div", { class: "tools" });
    for (const t of tools) {
      const fn = t.function || t; // Responses tools are flat; chat-style ones nest under "function"
      list.append(el("details", {}, el("summary", {}, el("code", {}, fn.name || t.type || "tool"), " ", el("span", { class: "muted" }, clip(fn.description || "", 160))),
        el("pre", { class: "json" }, JSON.stringify(t, null, 2))));
    }
    out.push(el("h3", {}, `Tools offered (${tools.length})`), list);
  }
  const settings = Object.entries(params).filter(([k, v]) => !["input", "tools", "instructions"].includes(k) && v !== null && v !== "" && typeof v !== "object");
  if (settings.length) out.push(el("h3", {}, "Request settings"), el("div", { class: "card" }, kv(settings)));
  return out;
}

function flatten(obj, prefix = "") {
  const pairs = [];
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) pairs.push(...flatten(v, prefix + k + "."));
    else pairs.push([prefix + k, Array.isArray(v) ? JSON.stringify(v) : v]);
  }
  return pairs;
}

function tokenBadge(item) {
  const t = item._tokens;
  if (!t) return null;
  const bits = [];
  if (t.prompt_token_ids !== undefined) bits.push(`prompt ${fmt(t.prompt_token_ids)} tok`);
  if (t.generation_token_ids !== undefined) bits.push(`generated ${fmt(t.generation_token_ids)} tok`);
  if (t.mean_log_prob !== undefined) bits.push(`mean logprob ${t.mean_log_prob.toFixed(3)}`);
  return el("span", { class: "tokens" }, bits.join(" · "));
}

function renderItem(item, callNames, side) {
  if (!item || typeof item !== "object") return el("pre", { class: "json" }, JSON.stringify(item));
  const type = item.type || (item.role ? "message" : "unknown");
  if (type === "message") {
    const role = item.role || "assistant";
    const text = textOf(item.content);
    const body = (role === "system" || role === "developer") && text.length > 400
      ? el("details", {}, el("summary", {}, text.split("\n")[0].slice(0, 140) + " …", el("span", { class: "muted" }, ` (${fmt(text.length)} characters)`)), el("pre", { class: "text" }, text))
      : longText(text);
    return el("div", { class: `msg role-${role} ${side}` }, el("div", { class: "who" }, role, tokenBadge(item)), body);
  }
  if (type === "function_call") {
    return el("div", { class: "msg call" },
      el("div", { class: "who" }, "tool call ", el("code", { class: "fname" }, item.name || "?"), el("span", { class: "muted" }, " " + (item.call_id || "")), tokenBadge(item)),
      longText(pretty(item.arguments ?? ""), "json"));
  }
  if (type === "function_call_output") {
    const name = callNames[item.call_id];
    return el("div", { class: "msg result" },
      el("div", { class: "who" }, "tool output", name ? el("span", {}, " of ", el("code", {}, name)) : null, el("span", { class: "muted" }, " " + (item.call_id || ""))),
      longText(pretty(typeof item.output === "string" ? item.output : textOf(item.output)), "json"));
  }
  if (type === "reasoning") {
    const text = textOf(item.summary) || textOf(item.content) || "";
    return el("div", { class: "msg reasoning" },
      el("details", { open: text.length < 800 },
        el("summary", { class: "who" }, "reasoning", tokenBadge(item), el("span", { class: "muted" }, ` (${fmt(text.length)} characters)`)),
        el("pre", { class: "text" }, text || "(no summary)")));
  }
  return el("div", { class: "msg other" }, el("div", { class: "who" }, type), el("pre", { class: "json" }, JSON.stringify(item, null, 2)));
}

// ---------------------------------------------------------------- statistics

function histogramSvg(hist, title) {
  const W = 360, H = 170, L = 40, R = 10, T = 16, B = 34;
  const counts = hist.counts, edges = hist.edges;
  const max = Math.max(1, ...counts);
  const bw = (W - L - R) / counts.length;
  const g = svg("svg", { class: "hist", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" }, svg("title", { text: title }));
  g.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  g.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  g.append(svg("text", { x: L - 4, y: T + 4, class: "tick", "text-anchor": "end", text: fmt(max) }));
  g.append(svg("text", { x: L - 4, y: H - B, class: "tick", "text-anchor": "end", text: "0" }));
  counts.forEach((c, i) => {
    const h = (H - T - B) * c / max;
    const x = L + i * bw;
    const rect = svg("rect", { x: x + 1, y: H - B - h, width: Math.max(1, bw - 2), height: h, class: "bar" },
      svg("title", { text: `${fmt(edges[i], 2)} – ${fmt(edges[i + 1], 2)}: ${fmt(c)}` }));
    g.append(rect);
    if (c && counts.length <= 20) g.append(svg("text", { x: x + bw / 2, y: H - B - h - 3, class: "count", "text-anchor": "middle", text: fmt(c) }));
  });
  const step = counts.length > 10 ? Math.ceil(counts.length / 5) : (counts.length > 5 ? 2 : 1);
  edges.forEach((e, i) => {
    if (i % step === 0 || i === edges.length - 1) {
      g.append(svg("text", { x: L + i * bw, y: H - B + 14, class: "tick", "text-anchor": "middle", text: +e.toFixed(2) }));
    }
  });
  g.append(svg("text", { x: L + (W - L - R) / 2, y: H - 4, class: "label", "text-anchor": "middle", text: "reward" }));
  return g;
}

function passAt(entry, k) {
  const p = entry.pass_at_k.find((x) => x.k === k);
  return p ? p : null;
}

async function showStats(params) {
  setTab("stats");
  const run = params.run === "b" && INFO.runs.b ? "b" : "a";
  const bins = params.bins || 10;
  const data = await api("stats", { run, bins });
  const entries = data.environments.concat(data.environments.length > 1 ? [data.all] : []);
  const ks = [...new Set(entries.flatMap((e) => e.pass_at_k.map((p) => p.k)))].sort((a, b) => a - b);
  const table = el("table", { class: "stats" },
    el("thead", {}, el("tr", {}, ["environment", "rollouts", "tasks", "failed", "mean reward", "std", "min", "max", "pass rate"].concat(ks.map((k) => `pass@${k}`)).map((h) => el("th", {}, h)))));
  const body = el("tbody");
  for (const e of entries) {
    const name = e.env === "__all__" ? "all environments" : e.env;
    body.append(el("tr", { class: e.env === "__all__" ? "total" : "" },
      el("td", { class: "env" }, e.env === "__all__" ? name : el("a", { href: "#/list" + qs({ run, env: e.env }) }, name)),
      el("td", {}, fmt(e.n)), el("td", {}, fmt(e.tasks)), el("td", {}, e.failed ? el("a", { href: "#/list" + qs({ run, env: e.env === "__all__" ? "" : e.env, status: "failed" }) }, fmt(e.failed)) : "0"),
      el("td", { class: "strong" }, fixed(e.mean)), el("td", {}, fixed(e.std)), el("td", {}, fmt(e.min)), el("td", {}, fmt(e.max)), el("td", {}, pct(e.pass_rate)),
      ks.map((k) => { const p = passAt(e, k); return el("td", { title: p ? `${p.tasks} tasks with ≥ ${k} rollouts` : "no task has that many rollouts" }, p ? pct(p.value) : "–"); })));
  }
  table.append(body);

  const cards = el("div", { class: "cards" });
  for (const e of entries) {
    const name = e.env === "__all__" ? "all environments" : e.env;
    const metrics = Object.entries(e.metrics || {});
    cards.append(el("div", { class: "card hcard", "data-env": e.env },
      el("h4", {}, name),
      histogramSvg(e.histogram, `reward histogram of ${name}`),
      el("p", { class: "muted" }, `${fmt(e.n)} scored rollouts · mean ${fixed(e.mean)} · pass rate ${pct(e.pass_rate)}`),
      metrics.length ? el("details", {}, el("summary", {}, `mean of ${metrics.length} verifier field${metrics.length === 1 ? "" : "s"}`), kv(metrics)) : null));
  }
  view().replaceChildren(
    el("h2", {}, `Statistics of ${runName(run)}: `, el("span", { class: "path" }, INFO.runs[run].path)),
    el("form", { class: "filters", onsubmit: (ev) => ev.preventDefault() },
      runPicker({ run }, (v) => go("stats", { run: v, bins })),
      field("Histogram bins", select("bins", [5, 10, 20, 50].map((b) => [b, String(b)]), bins, (v) => go("stats", { run, bins: v })))),
    table,
    el("p", { class: "muted note" }, "pass rate: share of scored rollouts with reward ≥ 1 (every rollout weighs the same). pass@k: unbiased estimator 1 − C(n−c, k)/C(n, k) per task (rollouts grouped by environment and _ng_task_index; n rollouts, c of them passing), averaged over the tasks with at least k rollouts (every task weighs the same, so pass@1 differs from the pass rate when tasks have different numbers of rollouts). Failed rollouts are counted apart, not as reward 0."),
    cards);
}

// ---------------------------------------------------------------- comparison

function compareBars(rows) {
  const envs = rows.filter((r) => r.env !== "__all__");
  const W = 720, L = 300, R = 60, bh = 11, gap = 12;
  const H = 28 + envs.length * (2 * bh + gap);
  const g = svg("svg", { class: "cmpbars", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" }, svg("title", { text: "mean reward per environment, A vs B" }));
  const scale = (v) => (W - L - R) * Math.max(0, Math.min(1, v ?? 0));
  g.append(svg("rect", { x: L, y: 4, width: 10, height: 10, class: "bar-a" }), svg("text", { x: L + 14, y: 13, class: "tick", text: "A" }));
  g.append(svg("rect", { x: L + 40, y: 4, width: 10, height: 10, class: "bar-b" }), svg("text", { x: L + 54, y: 13, class: "tick", text: "B   (mean reward, 0 to 1)" }));
  envs.forEach((r, i) => {
    const y = 24 + i * (2 * bh + gap);
    const label = r.env.length > 48 ? r.env.slice(0, 47) + "…" : r.env;
    g.append(svg("text", { x: L - 6, y: y + bh + 3, class: "tick", "text-anchor": "end", text: label }));
    for (const [side, dy] of [["a", 0], ["b", bh]]) {
      const v = r[side] ? r[side].mean : null;
      g.append(svg("rect", { x: L, y: y + dy, width: Math.max(0.5, scale(v)), height: bh - 1, class: "bar-" + side }));
      g.append(svg("text", { x: L + scale(v) + 4, y: y + dy + bh - 2, class: "tick", text: v === null ? "–" : v.toFixed(3) }));
    }
  });
  return g;
}

async function showCompare(params) {
  setTab("compare");
  if (!INFO.runs.b) {
    view().replaceChildren(el("h2", {}, "Compare two runs"),
      el("p", {}, "Start the viewer with a second file to compare: ", el("code", {}, "ng_viewer +jsonl_fpath=a.jsonl +compare_jsonl_fpath=b.jsonl")));
    return;
  }
  const offset = Math.max(0, parseInt(params.offset || "0", 10) || 0);
  const sort = params.sort || "delta";
  const changed = params.changed === "true";
  const env = params.env || "";
  const [envData, tasks] = await Promise.all([api("compare"), api("compare/tasks", { env, sort, changed, offset, limit: PAGE })]);
  const update = (changes) => go("compare", { env, sort, changed, ...changes, offset: changes.offset ?? 0 });

  const envTable = el("table", { class: "compare" },
    el("thead", {},
      el("tr", {}, el("th", { rowspan: 2 }, "environment"), el("th", { colspan: 4, class: "ga" }, "A"), el("th", { colspan: 4, class: "gb" }, "B"), el("th", { colspan: 2 }, "B − A")),
      el("tr", {}, ["rollouts", "failed", "mean", "pass rate", "rollouts", "failed", "mean", "pass rate", "mean", "pass rate"].map((h) => el("th", {}, h)))));
  const body = el("tbody");
  for (const r of envData.environments) {
    const side = (s) => s ? [fmt(s.n), fmt(s.failed), fixed(s.mean), pct(s.pass_rate)] : ["–", "–", "–", "–"];
    body.append(el("tr", { class: r.env === "__all__" ? "total" : "" },
      el("td", { class: "env", title: r.shared_only ? "environments present in one run only are left out of this row" : null },
        r.env === "__all__" ? (r.shared_only ? `the ${r.environments} environment${r.environments === 1 ? "" : "s"} in both` : "all environments") : r.env),
      side(r.a).map((v) => el("td", {}, v)), side(r.b).map((v) => el("td", {}, v)),
      el("td", { class: deltaClass(r.delta_mean) }, signed(r.delta_mean)),
      el("td", { class: deltaClass(r.delta_pass_rate) }, signed(r.delta_pass_rate, true))));
  }
  envTable.append(body);

  const envNames = envData.environments.filter((r) => r.env !== "__all__").map((r) => [r.env, r.env]);
  const taskTable = el("table", { class: "tasks" },
    el("thead", {}, el("tr", {}, ["environment", "task", "A rollouts", "A mean", "A pass", "B rollouts", "B mean", "B pass", "B − A"].map((h) => el("th", {}, h)))));
  const tbody = el("tbody");
  for (const t of tasks.items) {
    const link = (run, n) => n ? el("a", { href: "#/list" + qs({ run, env: t.env, task: t.task }), title: `rollouts of task ${t.task} in ${runName(run)}` }, fmt(n)) : "0";
    tbody.append(el("tr", {},
      el("td", { class: "env" }, t.env), el("td", {}, fmt(t.task)),
      el("td", {}, link("a", t.n_a)), el("td", {}, fixed(t.mean_a)), el("td", {}, pct(t.pass_a)),
      el("td", {}, link("b", t.n_b)), el("td", {}, fixed(t.mean_b)), el("td", {}, pct(t.pass_b)),
      el("td", { class: deltaClass(t.delta) }, t.delta === null ? "only in " + (t.n_a ? "A" : "B") : signed(t.delta))));
  }
  if (!tasks.items.length) tbody.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No task matches.")));
  taskTable.append(tbody);
  const onpage = (o) => update({ offset: o });

  view().replaceChildren(
    el("h2", {}, "Compare two runs"),
    el("div", { class: "card" }, kv([["A", envData.a], ["B", envData.b]])),
    el("h3", {}, "Per environment"),
    envTable,
    compareBars(envData.environments),
    el("h3", {}, "Per task (rollouts grouped by environment and _ng_task_index)"),
    el("form", { class: "filters", onsubmit: (ev) => ev.preventDefault() },
      field("Environment", select("env", [["", "all"]].concat(envNames), env, (v) => update({ env: v }))),
      field("Sort", select("sort", [["delta", "largest change first"], ["worse", "B worse first"], ["better", "B better first"], ["task", "task index"]], sort, (v) => update({ sort: v }))),
      el("label", { class: "field check" }, el("input", { type: "checkbox", name: "changed", checked: changed, onchange: (ev) => update({ changed: ev.target.checked }) }), el("span", {}, "only tasks whose mean changed"))),
    pager(tasks.total, tasks.offset, tasks.limit, onpage),
    taskTable,
    pager(tasks.total, tasks.offset, tasks.limit, onpage));
}

// ---------------------------------------------------------------- start

async function render() {
  const { parts, params } = route();
  try {
    if (parts[0] === "rollout" && parts.length >= 3) await showRollout(parts[1] === "b" ? "b" : "a", parseInt(parts[2], 10), params);
    else if (parts[0] === "stats") await showStats(params);
    else if (parts[0] === "compare") await showCompare(params);
    else await showList(params);
    document.body.dataset.ready = location.hash || "#/list"; // tests wait for this
  } catch (e) {
    showError(e);
    document.body.dataset.ready = "error";
  }
}

async function start() {
  try {
    INFO = await api("info");
  } catch (e) {
    showError(e);
    return;
  }
  const a = INFO.runs.a, b = INFO.runs.b;
  document.getElementById("compare-tab").hidden = !b;
  document.getElementById("files").textContent = `A: ${basename(a.path)} (${fmt(a.rollouts)} rollouts${a.failed ? ", " + fmt(a.failed) + " failed" : ""})` + (b ? `   B: ${basename(b.path)} (${fmt(b.rollouts)})` : "");
  document.getElementById("files").title = a.path + (b ? "\n" + b.path : "");
  window.addEventListener("hashchange", () => { delete document.body.dataset.ready; render(); });
  // ← and → step through the rollouts of the current filter
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, select, textarea") || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const which = { ArrowLeft: ".rnav a.prev", ArrowRight: ".rnav a.next" }[ev.key];
    const link = which && document.querySelector(which);
    if (link) { ev.preventDefault(); link.click(); }
  });
  render();
}

start();
