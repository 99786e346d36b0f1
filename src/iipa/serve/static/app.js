// The iipa web page: upload photos to /v1/score, show them ranked, fetch heatmaps on demand.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { items: [], keyRequired: false };

function headers() {
  const key = $("#api-key").value;
  return key ? { "X-API-Key": key } : {};
}

function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function loadModelCard() {
  try {
    const res = await fetch("/v1/model", { headers: headers() });
    if (res.status === 401) { state.keyRequired = true; $("#key-row").hidden = false; $("#model-info").textContent = "enter the API key"; return; }
    const card = await res.json();
    state.keyRequired = card.limits.api_key_required;
    $("#key-row").hidden = !state.keyRequired;
    $("#model-info").textContent = `${card.arch} · ${card.weights} · levels: ${card.levels.map((l) => l.name).join(" < ")}`;
    showHeatmapBox(card.heatmaps);
  } catch (err) {
    $("#model-info").textContent = "model card unavailable";
  }
}

// The box only where the server can draw heatmaps; otherwise the server's reason instead.
function showHeatmapBox(heatmaps) {
  const off = !heatmaps || !heatmaps.available;
  $("#heatmaps-box").hidden = off;
  $("#heatmaps-off").hidden = !off;
  $("#heatmaps-off").textContent = off ? `no heatmaps: ${heatmaps ? heatmaps.reason : "unknown"}` : "";
  if (off) { $("#show-heatmaps").checked = false; document.body.classList.remove("heatmaps"); }
}

async function errorText(res) {
  try { const body = await res.json(); return `${body.error}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`; }
  catch { return `HTTP ${res.status}`; }
}

async function scoreFiles(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  setStatus(`scoring ${files.length} image(s)…`);
  const res = await fetch("/v1/score", { method: "POST", body: form, headers: headers() });
  if (!res.ok) { setStatus(await errorText(res), true); return; }
  const body = await res.json();
  for (const r of body.results) state.items.push({ ...r, file: files[r.index], url: URL.createObjectURL(files[r.index]), heatmap: null });
  render();
  const failed = body.results.filter((r) => r.error).length;
  const ranked = state.items.filter((i) => !i.error).length;
  setStatus(`${ranked} image(s) ranked` + (failed ? `, ${failed} could not be scored` : ""), failed > 0);
  if ($("#show-heatmaps").checked) loadHeatmaps();
}

function ranked() {
  const ok = state.items.filter((i) => !i.error).sort((a, b) => b.score - a.score);
  return ok.concat(state.items.filter((i) => i.error));
}

function render() {
  const list = $("#ranking");
  list.replaceChildren();
  for (const item of ranked()) {
    const li = document.createElement("li");
    li.className = "result" + (item.error ? " failed" : "");
    li.dataset.name = item.name;
    if (!item.error) li.dataset.score = String(item.score);
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    const img = document.createElement("img");
    img.src = item.url; img.alt = item.name;
    const heat = document.createElement("img");
    heat.className = "heatmap" + (item.heatmap ? " ready" : "");
    heat.alt = `heatmap of ${item.name}`;
    if (item.heatmap) heat.src = item.heatmap;
    item.heatEl = heat;
    thumb.append(img, heat);
    const info = document.createElement("div");
    const name = document.createElement("div");
    name.className = "name"; name.textContent = item.name;
    info.append(name);
    if (item.error) {
      const e = document.createElement("div");
      e.className = "error-text"; e.textContent = `${item.error}: ${item.detail || ""}`;
      info.append(e);
    } else {
      const scaled = document.createElement("div");
      scaled.className = "scaled";
      scaled.textContent = item.scaled === null ? item.score.toFixed(3) : `${item.scaled.toFixed(1)} / 100`;
      const meta = document.createElement("div");
      meta.className = "muted score";
      meta.textContent = `score ${item.score.toFixed(3)}`;
      info.append(scaled);
      if (item.level) {
        const lvl = document.createElement("span");
        lvl.className = `level ${item.level}`; lvl.textContent = item.level;
        info.append(lvl);
      }
      info.append(meta);
    }
    li.append(thumb, info);
    list.append(li);
  }
}

async function loadHeatmaps() {
  for (const item of state.items) {
    if (item.error || item.heatmap || item.loadingHeatmap) continue;
    item.loadingHeatmap = true;
    const form = new FormData();
    form.append("file", item.file, item.name);
    const res = await fetch("/v1/explain", { method: "POST", body: form, headers: headers() });
    item.loadingHeatmap = false;
    if (!res.ok) { setStatus(`heatmap: ${await errorText(res)}`, true); return; }
    item.heatmap = URL.createObjectURL(await res.blob());
    item.heatEl.src = item.heatmap;
    item.heatEl.classList.add("ready");
  }
}

function init() {
  const drop = $("#drop");
  $("#files").addEventListener("change", (e) => { scoreFiles([...e.target.files]); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    scoreFiles([...e.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
  });
  $("#show-heatmaps").addEventListener("change", (e) => {
    document.body.classList.toggle("heatmaps", e.target.checked);
    if (e.target.checked) loadHeatmaps();
  });
  $("#api-key").addEventListener("change", loadModelCard);
  loadModelCard();
}

init();
