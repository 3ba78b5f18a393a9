"""The static parts of compat.html: stylesheet and script (no external assets; data is injected by html_report)."""

STYLE = r"""
:root { --row: 22px; --cell: 30px; --name: 460px; font: 13px/1.4 system-ui, sans-serif; color: #1f2328; }
* { box-sizing: border-box; }
body { margin: 0; display: flex; flex-direction: column; height: 100vh; }
header { padding: 8px 12px; border-bottom: 1px solid #d0d7de; }
h1 { font-size: 18px; margin: 0 0 4px; }
#runinfo, #totals { color: #57606a; }
#totals span { margin-right: 10px; white-space: nowrap; }
#controls { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; padding: 6px 12px; border-bottom: 1px solid #d0d7de; }
#controls fieldset { border: 0; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 2px 8px; align-items: center; }
#controls label { white-space: nowrap; cursor: pointer; }
#controls input[type=search] { width: 260px; padding: 3px 6px; }
#controls button { font-size: 12px; }
#count { color: #57606a; margin-left: auto; }
.sw { display: inline-block; width: 12px; height: 12px; vertical-align: -2px; border: 1px solid #0002; margin-right: 3px; }
#legend { padding: 4px 12px; color: #57606a; border-bottom: 1px solid #d0d7de; }
#legend span { margin-right: 12px; white-space: nowrap; }
#head { overflow: hidden; flex: none; border-bottom: 1px solid #d0d7de; background: #f6f8fa; }
#headin { display: flex; height: 170px; align-items: flex-end; }
#headin .nm { font-weight: 600; padding: 4px 6px; }
.hc { width: var(--cell); flex: none; height: 170px; writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap;
      overflow: hidden; text-overflow: ellipsis; padding: 4px 0; font-size: 12px; text-align: left; line-height: var(--cell); }
.hc.cuda { color: #0550ae; }
#viewport { flex: 1; overflow: auto; position: relative; }
#canvas { position: relative; }
.row { position: absolute; left: 0; height: var(--row); display: flex; }
.row:hover .nm { background: #eaeef2; }
.nm { width: var(--name); flex: none; position: sticky; left: 0; background: #fff; z-index: 1; padding: 0 6px; overflow: hidden;
      text-overflow: ellipsis; white-space: nowrap; line-height: var(--row); border-right: 1px solid #d0d7de; }
.nm .su { color: #57606a; margin-right: 6px; }
.c { width: var(--cell); height: var(--row); flex: none; border: 1px solid #fff; text-align: center; line-height: calc(var(--row) - 2px);
     font-size: 11px; cursor: pointer; overflow: hidden; user-select: none; }
.c.none { cursor: default; background: #f6f8fa; }
.c.dim { opacity: .18; }
.tf { background-image: repeating-linear-gradient(45deg, #0003 0 3px, transparent 3px 7px); }
.chg { box-shadow: inset 0 0 0 2px #0969da; }
.c.new, .sw.new { box-shadow: inset 0 0 0 2px #cf222e; }
.c.ev { border-bottom: 4px solid #1f2328; }
.sw.ev { border-bottom: 4px solid #1f2328; }
.c.sel { outline: 2px solid #000; outline-offset: -2px; }
.s-passed { background-color: #4ac26b; } .s-xfailed { background-color: #e3c26b; } .s-failed { background-color: #e5534b; color: #fff; }
.s-xpassed { background-color: #a371f7; color: #fff; } .s-skipped { background-color: #d0d7de; } .s-error { background-color: #bf3989; color: #fff; }
.s-crashed { background-color: #5c1a1a; color: #fff; } .s-timeout { background-color: #f0883e; } .s-not_run { background-color: #fff; border: 1px dashed #8c959f; }
.s-flaky { background-color: #d4a72c; color: #fff; }
#empty { padding: 20px; color: #57606a; }
#panel { position: fixed; top: 0; right: 0; bottom: 0; width: min(560px, 100vw); background: #fff; border-left: 1px solid #d0d7de;
         box-shadow: -4px 0 12px #0002; padding: 12px 16px; overflow: auto; z-index: 5; }
#panel h2 { font-size: 15px; margin: 0 30px 8px 0; word-break: break-all; }
#panel dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0; }
#panel dt { color: #57606a; }
#panel dd { margin: 0; word-break: break-word; white-space: pre-wrap; }
#panel pre, #panel code { font: 12px/1.4 ui-monospace, monospace; background: #f6f8fa; padding: 6px; margin: 0; white-space: pre-wrap; word-break: break-all; display: block; }
#p-close { position: absolute; top: 8px; right: 10px; font-size: 16px; }
#panel.wide { width: min(760px, 100vw); }  /* wider for diffs, still short of the heatmap's first columns */
#panel h4 { font-size: 13px; margin: 10px 0 4px; word-break: break-all; }
#panel h5 { font-size: 12px; margin: 6px 0 2px; color: #57606a; }
.ev-call { border-top: 1px solid #d0d7de; padding-top: 4px; margin-top: 8px; }
.ev-call p, #p-ev p { margin: 4px 0; white-space: pre-wrap; word-break: break-word; }
.ev-where, .ev-note { color: #57606a; }
.ev-problem { color: #82071e; }
.ev-payloads { margin: 4px 0; padding-left: 18px; }
.ev-payloads li { word-break: break-word; }
#panel .ev-diff { padding: 4px 0; }
.ev-diff span { display: block; min-height: 1.4em; padding: 0 6px; }
.dl-head { font-weight: 600; color: #57606a; }
.dl-hunk { color: #8250df; background: #f6f0ff; }
.dl-del { color: #82071e; background: #ffebe9; }
.dl-add { color: #116329; background: #dafbe1; }
.ev-toggle { margin: 4px 0; font-size: 12px; }
#ops { flex: none; max-height: 38vh; overflow: auto; padding: 4px 12px; border-bottom: 1px solid #d0d7de; }
#ops summary { cursor: pointer; color: #57606a; }
#ops table { border-collapse: collapse; font-size: 12px; margin-top: 4px; }
#ops th { position: sticky; top: 0; background: #f6f8fa; font-weight: 600; padding: 2px 6px; white-space: nowrap; }
#ops td { padding: 1px 6px; white-space: nowrap; text-align: right; border: 1px solid #fff; }
#ops td.op { text-align: left; font-family: ui-monospace, monospace; }
#ops td.op-ok { background: #4ac26b; } #ops td.op-known { background: #e3c26b; cursor: pointer; }
#ops td.op-broken { background: #e5534b; color: #fff; font-weight: 600; cursor: pointer; } #ops td.op-skipped { background: #d0d7de; }
"""

# Data is only ever written with textContent / title / value / dataset, never innerHTML.
SCRIPT = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const S = D.statuses, N = D.rec.det.length, NR = D.rows.test.length, NC = D.cols.length;
  const ROW_H = 22, CELL_W = 30, NAME_W = 460, OVERSCAN = 15;
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; };

  // Decode: record i -> its detail entry (DET[i] * W + field, fields by name: the record's, then the
  // page's col and tgt), row, column, status, transform flag.
  const W = D.detFields.length, F = {};
  D.detFields.forEach((name, k) => { F[name] = k; });
  const DET = Int32Array.from(D.rec.det, (k) => k * W), DV = D.det, MS = D.rec.ms;
  const val = (i, name) => DV[DET[i] + F[name]];
  const TEXT = (name) => ["string", "array", "object"].some((kind) => D.detKinds[name].includes(kind));
  // A field's value as the record has it: a string (a list or dict as its JSON text) or null, a boolean, a number.
  const value = (i, name) => {
    const v = val(i, name);
    if (v === null || v === undefined) return null;
    if (TEXT(name)) return v < 0 ? null : D.str[v];
    return D.detKinds[name].includes("boolean") ? v === 1 : v;
  };
  const ROW = new Int32Array(N), COL = new Int32Array(N), ST = new Uint8Array(N), TF = new Uint8Array(N);
  const starts = D.rows.start;
  for (let r = 0; r < NR; r++) { const end = r + 1 < NR ? starts[r + 1] : N; for (let i = starts[r]; i < end; i++) ROW[i] = r; }
  for (let i = 0; i < N; i++) { const k = DET[i]; COL[i] = DV[k + F.col]; ST[i] = DV[k + F.status]; TF[i] = DV[k + F.transform_failed]; }
  // (row, column) -> record index
  const cellIdx = new Int32Array(NR * NC).fill(-1);
  for (let i = 0; i < N; i++) cellIdx[ROW[i] * NC + COL[i]] = i;
  const CHG = new Map();
  if (D.changes) for (const [i, old, kind] of D.changes) CHG.set(i, [old, kind]);
  const colLabel = (c) => D.variants[D.cols[c][0]] + " · " + D.devices[D.cols[c][1]];
  // The history store's view of this run (report/history_view.py): new and fixed records, each failing one's streak.
  const H = D.history, NEW = new Set(H ? H.new : []);
  // Columns where nothing ran (every record not_run: a CPU machine's cuda cells) are hidden until asked for.
  const RAN = new Uint8Array(NC), NOT_RUN = S.indexOf("not_run");
  for (let i = 0; i < N; i++) if (ST[i] !== NOT_RUN) RAN[COL[i]] = 1;
  const EMPTY_COLS = NC - RAN.reduce((a, b) => a + b, 0);

  // ---- header: run info and totals
  document.title = "Compatibility report · " + D.run.run_id;
  $("runinfo").textContent = "Run " + D.run.run_id + " · created " + D.run.created + " · torch " + (D.run.torch_version || "unknown") +
    (D.run.bazel_command ? " · " + D.run.bazel_command : "");
  const totals = new Array(S.length).fill(0);
  for (let i = 0; i < N; i++) totals[ST[i]]++;
  const ran = N - totals[S.indexOf("skipped")] - totals[S.indexOf("not_run")];
  const rate = ran > 0 ? (100 * totals[S.indexOf("passed")] / ran).toFixed(1) + "%" : "—";
  $("totals").append(el("span", null, N + " cells · " + NR + " tests · pass rate " + rate));
  if (D.carried) $("totals").append(el("span", null, D.carried));
  if (H) {
    const ht = el("span", null, "history: " + H.new.length + " new unexpected since each test's last verdict, " + H.fixed.length +
      " fixed (" + H.runs + " earlier runs in " + H.store + ")");
    ht.id = "hist-totals";
    $("totals").append(ht);
  }
  if (D.baseline) {
    const b = D.baseline;
    $("totals").append(el("span", null, "since baseline: " + b.regressions + " regressions, " + b.fixes + " fixes, " +
      b.changed_xfails + " changed xfails, " + b.new + " new, " + b.removed + " removed cells"));
  }

  // ---- controls
  const stBoxes = [];
  S.forEach((s, k) => {
    const lab = el("label"), box = el("input");
    box.type = "checkbox"; box.checked = true; box.id = "f-st-" + s; box.dataset.status = s;
    box.addEventListener("change", refilter);
    lab.append(box, el("span", "sw s-" + s), s + " (" + totals[k] + ")");
    $("f-status").append(lab); stBoxes.push(box);
  });
  const setStatuses = (pred) => { S.forEach((s, k) => { stBoxes[k].checked = pred(s); }); refilter(); };
  $("st-all").addEventListener("click", () => setStatuses(() => true));
  $("st-none").addEventListener("click", () => setStatuses(() => false));
  $("st-bad").addEventListener("click", () => setStatuses((s) => D.unexpected.includes(s)));
  $("st-flaky").addEventListener("click", () => setStatuses((s) => s === "flaky"));
  const fill = (sel, names) => names.forEach((n, k) => { const o = el("option", null, n); o.value = String(k); sel.append(o); });
  fill($("f-suite"), D.suites); fill($("f-variant"), D.variants); fill($("f-device"), D.devices);
  for (const id of ["f-suite", "f-variant", "f-device", "f-changed", "f-new", "f-empty"]) $(id).addEventListener("change", refilter);
  if (!D.changes) $("f-changed-wrap").hidden = true;
  $("f-new-wrap").hidden = !H;
  $("f-empty-wrap").hidden = EMPTY_COLS === 0;
  $("f-empty-text").textContent = "show the " + EMPTY_COLS + " column(s) where nothing ran";
  let textTimer = 0;
  $("f-text").addEventListener("input", () => { clearTimeout(textTimer); textTimer = setTimeout(refilter, 120); });

  // ---- legend
  for (const s of S) { const sp = el("span"); sp.append(el("span", "sw s-" + s), (D.symbols[s] || "?") + " " + s); $("legend").append(sp); }
  const tfl = el("span"); tfl.append(el("span", "sw tf"), D.transformMark + " the variant's transform raised (not the test's assertion)");
  $("legend").append(tfl);
  if (D.changes) { const cl = el("span"); cl.append(el("span", "sw chg"), "changed since baseline"); $("legend").append(cl); }
  if (H) { const nl = el("span"); nl.append(el("span", "sw new"), "new unexpected since the test's last verdict in the history"); $("legend").append(nl); }
  if (Object.keys(D.ev).length) { const evl = el("span"); evl.id = "legend-ev"; evl.append(el("span", "sw ev"), "evidence kept: click to see what the transform changed"); $("legend").append(evl); }

  // ---- filtering
  let rowLower = null, strLower = null;
  let visRows = new Int32Array(0), visCols = [];
  function refilter() {
    const on = stBoxes.map((b) => b.checked);
    const su = $("f-suite").value === "" ? -1 : +$("f-suite").value;
    const va = $("f-variant").value === "" ? -1 : +$("f-variant").value;
    const de = $("f-device").value === "" ? -1 : +$("f-device").value;
    const onlyChanged = !!D.changes && $("f-changed").checked;
    const onlyNew = !!H && $("f-new").checked, showEmpty = $("f-empty").checked;
    const q = $("f-text").value.trim().toLowerCase();
    if (q && !rowLower) {
      rowLower = D.rows.test.map((t, r) => (D.suites[D.rows.suite[r]] + "::" + t).toLowerCase());
      strLower = D.str.map((s) => s.toLowerCase());
    }
    visCols = [];
    for (let c = 0; c < NC; c++) if ((va < 0 || D.cols[c][0] === va) && (de < 0 || D.cols[c][1] === de) && (showEmpty || RAN[c])) visCols.push(c);
    const out = new Int32Array(NR);
    let n = 0;
    for (let r = 0; r < NR; r++) {
      if (su >= 0 && D.rows.suite[r] !== su) continue;
      const nameHit = !q || rowLower[r].includes(q);
      const base = r * NC;
      for (const c of visCols) {
        const i = cellIdx[base + c];
        if (i < 0 || !on[ST[i]] || (onlyChanged && !CHG.has(i)) || (onlyNew && !NEW.has(i))) continue;
        if (nameHit || textHit(i, "message", q) || textHit(i, "error_type", q)) { out[n++] = r; break; }
      }
    }
    visRows = out.subarray(0, n);
    statusOn = on;
    $("count").textContent = "showing " + n + " of " + NR + " tests";
    layout();
  }
  let statusOn = S.map(() => true);
  const textHit = (i, name, q) => { const v = val(i, name); return v >= 0 && strLower[v].includes(q); };

  // ---- heatmap: only the rows in view are in the DOM (virtual scrolling)
  const viewport = $("viewport"), canvas = $("canvas"), rowsEl = $("rows"), headin = $("headin");
  function layout() {
    const width = NAME_W + visCols.length * CELL_W;
    canvas.style.width = width + "px";
    canvas.style.height = visRows.length * ROW_H + "px";
    headin.replaceChildren(el("div", "nm", "test"));
    headin.style.width = width + "px";
    for (const c of visCols) {
      const h = el("div", "hc " + D.devices[D.cols[c][1]], colLabel(c));
      h.title = colLabel(c);
      headin.append(h);
    }
    $("empty").hidden = visRows.length > 0;
    lastRange = "";
    render();
  }
  let lastRange = "", selected = -1;
  function render() {
    const top = viewport.scrollTop, h = viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(visRows.length, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    const range = first + ":" + last;
    if (range === lastRange) return;
    lastRange = range;
    const frag = document.createDocumentFragment();
    for (let k = first; k < last; k++) {
      const r = visRows[k];
      const row = el("div", "row");
      row.style.top = k * ROW_H + "px";
      row.dataset.row = String(r);
      const nm = el("div", "nm");
      const suite = D.suites[D.rows.suite[r]], test = D.rows.test[r];
      nm.title = suite + "::" + test;
      nm.append(el("span", "su", suite), el("span", "t", test));
      row.append(nm);
      for (const c of visCols) {
        const i = cellIdx[r * NC + c];
        if (i < 0) { row.append(el("div", "c none")); continue; }
        const st = S[ST[i]];
        let cls = "c s-" + st;
        if (TF[i]) cls += " tf";
        if (CHG.has(i)) cls += " chg";
        if (NEW.has(i)) cls += " new";
        if (D.ev[i] !== undefined) cls += " ev";
        if (!statusOn[ST[i]]) cls += " dim";
        if (i === selected) cls += " sel";
        const cell = el("div", cls, (D.symbols[st] || "?") + (TF[i] && st !== "passed" ? D.transformMark : ""));
        cell.dataset.i = String(i);
        cell.dataset.status = st;
        cell.dataset.col = colLabel(c);
        cell.title = colLabel(c) + ": " + st + (TF[i] ? " (transform failed)" : "") + (D.ev[i] !== undefined ? " · evidence kept" : "");
        row.append(cell);
      }
      frag.append(row);
    }
    rowsEl.replaceChildren(frag);
  }
  let ticking = false;
  viewport.addEventListener("scroll", () => {
    $("head").scrollLeft = viewport.scrollLeft;
    if (!ticking) { ticking = true; requestAnimationFrame(() => { ticking = false; render(); }); }
  });
  window.addEventListener("resize", () => { lastRange = ""; render(); });

  // ---- details panel: the record's fields by name, each in its own way or by its JSON type
  const rerun = (i) => D.targets[val(i, "tgt")][1] + " " + D.rows.filter[ROW[i]] + D.cols[COL[i]][2];
  const IN_PLACE = new Set(["status", "message", "log_tail"]);  // among the first fields, or a section of their own
  const RENDER = {
    transform_failed: (v) => v ? "yes: the variant's transform raised, not the test's assertion" : "no",
    run_id: (v) => v || D.run.run_id,
  };
  const shown = (v) => v === null || v === "" ? "—" : v === true ? "yes" : v === false ? "no" : String(v);
  function show(i) {
    selected = i;
    const r = ROW[i], st = S[ST[i]];
    $("p-title").textContent = D.suites[D.rows.suite[r]] + "::" + D.rows.test[r];
    const fields = [
      ["variant", D.variants[D.cols[COL[i]][0]]], ["device", D.devices[D.cols[COL[i]][1]]], ["status", st],
      ["duration", (MS[i] / 1000).toFixed(3) + " s"], ["target", D.targets[val(i, "tgt")][0]],
    ];
    if (CHG.has(i)) { const [old, kind] = CHG.get(i); fields.splice(3, 0, ["baseline", old + " (" + kind + ")"]); }
    const since = H && H.since[i];
    if (since) {
      fields.splice(3, 0, ["failing since", since[0] + (NEW.has(i) ? " (new since its last verdict)" : "")],
        ["last on track", since[1] || "never (in the history kept)"], ["last runs", since[2].map((s) => D.symbols[s] || "?").join(" ") + "  (oldest first)"]);
    }
    for (const name of Object.keys(D.detKinds)) {
      if (IN_PLACE.has(name)) continue;
      const v = value(i, name);
      fields.push([name.replace(/_/g, " "), RENDER[name] ? RENDER[name](v, i) : shown(v)]);
    }
    const dl = $("p-fields");
    dl.replaceChildren();
    for (const [k, v] of fields) dl.append(el("dt", null, k), el("dd", null, v));
    $("p-message").textContent = value(i, "message") || "—";
    $("p-log").textContent = value(i, "log_tail") || "";
    $("p-log-wrap").hidden = !value(i, "log_tail");
    $("p-cmd").textContent = rerun(i);
    evidence(i);
    $("panel").hidden = false;
    lastRange = ""; render();
  }
  // ---- the record's evidence (report/evidence.py made every line; this only lays them out)
  const EV = D.ev, ET = D.evText, SHOW = "show the full texts", HIDE = "hide the full texts";
  const KIND = { "h": "dl-head", "@": "dl-hunk", "-": "dl-del", "+": "dl-add", " ": "dl-same" };
  function evidence(i) {
    const ev = EV[i], box = $("p-ev");
    $("panel").classList.toggle("wide", !!ev);
    $("p-ev-wrap").hidden = !ev;
    box.replaceChildren();
    if (!ev) return;
    box.append(el("p", "ev-where", ev.where));
    if (ev.problem) box.append(el("p", "ev-problem", "The evidence could not be read whole: " + ev.problem));
    for (const c of ev.calls) {
      const sec = el("section", "ev-call");
      sec.dataset.call = String(c.n);
      sec.append(el("h4", null, "Call " + c.n + " of " + ev.calls.length + ": " + c.entry), el("p", "ev-check", c.check));
      for (const note of [c.note, ...c.cuts]) if (note) sec.append(el("p", "ev-note", note));
      if (c.error) sec.append(el("pre", "ev-error", c.error));
      if (c.diff.length) {
        const pre = el("pre", "ev-diff");
        c.diff.forEach((line, k) => pre.append(el("span", KIND[c.kinds[k]] || "dl-same", line)));
        sec.append(pre);
      }
      if (c.payloads.length) {
        const ul = el("ul", "ev-payloads");
        for (const [line, cmd] of c.payloads) { const li = el("li", null, line); if (cmd) li.append(el("code", "ev-get", cmd)); ul.append(li); }
        sec.append(ul);
      }
      const full = el("div", "ev-full"), toggle = el("button", "ev-toggle", SHOW);
      full.hidden = true; toggle.type = "button";
      full.append(el("h5", null, "before"), el("pre", "ev-before", ET[c.before]));
      if (c.after >= 0) full.append(el("h5", null, "after"), el("pre", "ev-after", ET[c.after]));
      toggle.addEventListener("click", () => { full.hidden = !full.hidden; toggle.textContent = full.hidden ? SHOW : HIDE; });
      sec.append(toggle, full);
      box.append(sec);
    }
    if (ev.notKept) box.append(el("p", "ev-note", ev.notKept));
  }
  rowsEl.addEventListener("click", (ev) => {
    const cell = ev.target.closest(".c");
    if (cell && cell.dataset.i !== undefined) show(+cell.dataset.i);
  });
  const close = () => { $("panel").hidden = true; selected = -1; lastRange = ""; render(); };
  $("p-close").addEventListener("click", close);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") close(); });
  $("p-copy").addEventListener("click", () => {
    const text = $("p-cmd").textContent;
    const done = () => { $("p-copy").textContent = "copied"; setTimeout(() => { $("p-copy").textContent = "copy"; }, 1200); };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, () => selectCmd());
    else selectCmd();
  });
  function selectCmd() { const range = document.createRange(); range.selectNodeContents($("p-cmd")); const s = getSelection(); s.removeAllRanges(); s.addRange(range); }

  // ---- the per-operator table (OpInfo tests): built when first opened; a failing cell shows its samples
  // in the heatmap (filtered to the operator and the column) and opens its first failing sample.
  if (D.ops) {
    const O = D.ops, broken = O.rows.filter((row) => row[2].some((c) => c && O.states[c[2]] === "broken")).length;
    $("ops").hidden = false;
    $("ops-sum").textContent = "Operators (" + O.rows.length + "): samples passed / total per variant · device; " +
      broken + " with an unexpected result somewhere (red); click a failing cell for its samples";
    let built = false;
    $("ops").addEventListener("toggle", () => {
      if (built || !$("ops").open) return;
      built = true;
      const head = el("tr");
      head.append(el("th", null, "suite"), el("th", null, "operator"));
      for (const c of O.cols) head.append(el("th", null, colLabel(c)));
      const body = document.createDocumentFragment();
      O.rows.forEach(([su, op, cells], r) => {
        const tr = el("tr");
        tr.append(el("td", "op", D.suites[su]), el("td", "op", op));
        cells.forEach((c, k) => {
          if (!c) { tr.append(el("td")); return; }
          const td = el("td", "op-" + O.states[c[2]], c[0] + "/" + c[1]);
          td.title = colLabel(O.cols[k]) + ": " + c[0] + " of " + c[1] + " samples passed" + (D.str[c[3]] ? " · " + D.str[c[3]] : "");
          if (c[4] >= 0) { td.dataset.row = String(r); td.dataset.k = String(k); }
          tr.append(td);
        });
        body.append(tr);
      });
      $("ops-table").replaceChildren(head, body);
    });
    $("ops-table").addEventListener("click", (ev) => {
      const td = ev.target.closest("td");
      if (!td || td.dataset.row === undefined) return;
      const [su, op, cells] = O.rows[+td.dataset.row], col = O.cols[+td.dataset.k];
      $("f-suite").value = String(su); $("f-variant").value = String(D.cols[col][0]); $("f-device").value = String(D.cols[col][1]);
      $("f-text").value = "test_" + op + "[";
      refilter();
      show(cells[+td.dataset.k][4]);
    });
  }

  refilter();
  document.body.dataset.ready = "1";
})();
"""

BODY = """<header>
<h1>Compatibility report</h1>
<div id="runinfo"></div>
<div id="totals"></div>
</header>
<details id="ops" hidden><summary id="ops-sum"></summary><table id="ops-table"></table></details>
<div id="controls">
<fieldset id="f-status"><legend hidden>status</legend></fieldset>
<span><button type="button" id="st-all">all</button> <button type="button" id="st-none">none</button> <button type="button" id="st-bad">unexpected</button> <button type="button" id="st-flaky">flaky</button></span>
<label>suite <select id="f-suite"><option value="">all</option></select></label>
<label>variant <select id="f-variant"><option value="">all</option></select></label>
<label>device <select id="f-device"><option value="">all</option></select></label>
<label id="f-changed-wrap"><input type="checkbox" id="f-changed"> changed since baseline</label>
<label id="f-new-wrap" hidden><input type="checkbox" id="f-new"> new since the history</label>
<label id="f-empty-wrap" hidden><input type="checkbox" id="f-empty"> <span id="f-empty-text"></span></label>
<input type="search" id="f-text" placeholder="filter: test, message, error type" aria-label="text filter">
<span id="count"></span>
</div>
<div id="legend"></div>
<div id="head"><div id="headin"></div></div>
<div id="viewport"><div id="canvas"><div id="rows"></div></div><div id="empty" hidden>No test matches the filters.</div></div>
<aside id="panel" hidden>
<button type="button" id="p-close" aria-label="close">×</button>
<h2 id="p-title"></h2>
<dl id="p-fields"></dl>
<h3>Message</h3>
<pre id="p-message"></pre>
<h3>Rerun <button type="button" id="p-copy">copy</button></h3>
<code id="p-cmd"></code>
<div id="p-ev-wrap" hidden><h3>What the transform changed</h3><div id="p-ev"></div></div>
<div id="p-log-wrap" hidden><h3>Log tail</h3><pre id="p-log"></pre></div>
</aside>
"""
