// The upload page: plain JS, no build step. Each file gets a row of the jobs its kind takes; the rows are
// checked by the server before any upload (a bad row is marked and stays, the others go on), each file is
// PUT once as a raw body (upload progress from XHR), then one POST starts every job of every row as its own
// run; the run cards (cards.js) poll /api/jobs, which reads Prefect back.
"use strict";
let options = { jobs: [], automatic: {}, presets: [], default_presets: [], engines: [], languages: [], subtitle_languages: [], max_upload_bytes: Infinity };
const pending = [];            // {file, row}
const KINDS = { video: /\.(mp4|mkv|mov|avi|webm|flv|ts|m4v|wmv)$/i, audio: /\.(wav|mp3|m4a|flac|ogg|opus|aac)$/i,
  image: /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i };
const WORDS = { video: "video", audio: "audio", image: "photo" };

async function loadOptions() {
  options = await (await fetch("/api/options")).json();
  $("#limit").textContent = options.max_upload;
  const link = $("#prefect-link");
  if (options.prefect_ui) { link.href = options.prefect_ui; link.hidden = false; }
  $("#user-name").value = options.user;
  document.body.dataset.ready = "true";
}
// Files dropped before the options arrive wait for them: a row built earlier had no engines to choose from,
// and its start was refused (seen on a busy host).
const optionsLoaded = loadOptions().catch(() => {
  $("#limit").textContent = "? (the page could not load its options: reload it)";
  document.body.dataset.ready = "failed";
});

const reason = (detail) => Array.isArray(detail)
  ? detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ") : detail;
const kindOf = (file) => {
  const major = (file.type || "").split("/")[0];
  if (WORDS[major]) return major;
  return Object.keys(KINDS).find((k) => KINDS[k].test(file.name)) || null;
};

function enhanceSetting(list) {
  const engine = el("select", { class: "engine", "data-testid": "engine" });
  for (const e of options.engines) engine.append(el("option", { value: e.name, title: e.description, text: e.name }));
  const s = options.scale;
  const scale = el("input", { class: "scale", "data-testid": "scale", type: "number", min: s.min, max: s.max, step: s.step, value: s.default });
  const drop = el("button", { class: "drop-setting", title: "remove this setting", text: "−" });
  const setting = el("span", { class: "setting", "data-testid": "enhance-setting" }, engine,
    el("label", {}, " scale ", scale, el("span", { class: "range", text: ` (${s.min}–${s.max})` })), drop);
  drop.addEventListener("click", () => { if (list.children.length > 1) setting.remove(); });
  list.append(setting);
}

// The language selects: the burned-in text's (empty: the deployment's settings block decides, auto by default;
// auto: told from the pixels) and the speech's (empty: detected).
function subtitleLanguage() {
  const select = el("select", { "data-testid": "subtitle-lang" }, el("option", { value: "", text: "as the settings say" }));
  for (const l of options.subtitle_languages) select.append(el("option", { value: l.code, text: l.code === "auto" ? `auto (${l.name})` : `${l.name} (${l.code})` }));
  return el("label", {}, " text language ", select);
}
function speechLanguage() {
  const select = el("select", { "data-testid": "language" }, el("option", { value: "", text: "detect" }));
  for (const l of options.languages) select.append(el("option", { value: l.code, text: `${l.name} (${l.code})` }));
  return el("label", {}, " speech language ", select);
}
const speakerLabels = () => el("label", {}, el("input", { type: "checkbox", class: "diarize", "data-testid": "diarize" }), " speaker labels");

function jobOptions(name) {
  const box = el("div", { class: "opts", hidden: "" });
  if (name === "enhance") {
    const list = el("div", { class: "settings" });
    enhanceSetting(list);
    const more = el("button", { "data-testid": "add-setting", text: "+ another setting" });
    more.addEventListener("click", () => enhanceSetting(list));
    box.append(list, more);
    const missing = Object.entries(options.engines_missing || {});
    if (missing.length) box.append(el("p", { class: "hint", text: missing.map(([n, why]) => `${n} is not offered: ${why}`).join("; ") }));
  }
  if (name === "transcode") {
    for (const p of options.presets) {
      const tick = el("input", { type: "checkbox", value: p.name, "data-testid": `preset-${p.name}` });
      tick.checked = options.default_presets.includes(p.name);
      box.append(el("label", { class: "preset" }, tick, " ", el("b", { text: p.name }), el("span", { class: "desc", text: ` ${p.description}` })));
    }
  }
  if (name === "subtitles") box.append(subtitleLanguage());
  if (name === "transcribe") {
    const sp = options.speakers;
    box.append(speakerLabels(),
      el("label", {}, " speakers ", el("input", { type: "number", class: "speakers", "data-testid": "speakers", min: sp.min, max: sp.max, placeholder: "counted" }),
        el("span", { class: "range", text: ` (${sp.min}–${sp.max}; empty: counted)` })),
      speechLanguage());
  }
  if (name === "fuse") box.append(subtitleLanguage(), speechLanguage(), speakerLabels());
  return box;
}

async function addFiles(files) {
  if (!files.length) return;
  await optionsLoaded;
  if (window.yivideoTimings.dropAt === null) window.yivideoTimings.dropAt = performance.now();
  for (const file of files) {
    const kind = kindOf(file);
    const row = el("div", { class: "row pending", "data-testid": "pending-row", "data-name": file.name, "data-kind": kind || "" });
    const remove = el("button", { class: "remove", title: "remove", text: "✕" });
    row.append(el("div", { class: "file" }, el("span", { class: "name", text: file.name }),
      el("span", { class: "size", text: human(file.size) }),
      el("span", { class: "kind", text: kind ? WORDS[kind] : "kind found once uploaded" }), remove));
    const jobs = el("div", { class: "jobs" });
    for (const job of options.jobs.filter((j) => !kind || j.takes.includes(kind))) {
      const tick = el("input", { type: "checkbox", value: job.name, "data-testid": `job-${job.name}` });
      tick.checked = !!kind && (options.automatic[kind] || []).includes(job.name);
      const opts = jobOptions(job.name);
      const show = () => { opts.hidden = !tick.checked; };
      tick.addEventListener("change", show);
      show();
      jobs.append(el("div", { class: "job", "data-job": job.name },
        el("label", {}, tick, " ", el("b", { text: job.label }), el("span", { class: "hint", text: ` — ${job.makes}` })), opts));
    }
    row.append(jobs, el("p", { class: "error", "data-testid": "row-error" }));
    const entry = { file, row };
    remove.addEventListener("click", () => {
      pending.splice(pending.indexOf(entry), 1);
      row.remove();
      $("#pending").hidden = pending.length === 0;
    });
    pending.push(entry);
    $("#pending-rows").append(row);
  }
  $("#pending").hidden = false;
}

function choicesOf(entry) {
  const base = { name: entry.file.name, size: entry.file.size };
  const items = [];
  for (const job of entry.row.querySelectorAll(".job")) {
    if (!$("input[type=checkbox]", job).checked) continue;
    const name = job.dataset.job;
    if (name === "enhance") {
      for (const s of job.querySelectorAll(".setting")) {
        const scale = parseFloat($(".scale", s).value);
        items.push({ ...base, job: name, engine: $(".engine", s).value, scale: Number.isNaN(scale) ? null : scale });
      }
    } else if (name === "transcode") {
      items.push({ ...base, job: name, presets: [...job.querySelectorAll(".preset input:checked")].map((b) => b.value) });
    } else if (name === "transcribe") {
      const speakers = parseInt($(".speakers", job).value, 10);
      items.push({ ...base, job: name, diarize: $(".diarize", job).checked,
        speakers: Number.isNaN(speakers) ? null : speakers, language: $("[data-testid=language]", job).value || null });
    } else if (name === "fuse") {
      items.push({ ...base, job: name, subtitle_lang: $("[data-testid=subtitle-lang]", job).value,
        diarize: $(".diarize", job).checked, language: $("[data-testid=language]", job).value || null });
    } else if (name === "subtitles") {
      items.push({ ...base, job: name, subtitle_lang: $("[data-testid=subtitle-lang]", job).value });
    } else items.push({ ...base, job: name });
  }
  return items;
}

function uploadOne(batch, entry) {
  const { file } = entry;
  const bar = el("div", { class: "bar" }, el("div"));
  const status = el("span", { class: "summary", text: "waiting" });
  const row = el("div", { class: "row", "data-testid": "upload-row", "data-name": file.name },
    el("span", { class: "name", text: file.name }), bar, status);
  $("#upload-rows").append(row);
  $("#uploads").hidden = false;
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const started = performance.now();
    const failed = (text) => {
      bar.classList.add("failed");
      row.dataset.state = "failed";
      status.replaceChildren(el("span", { class: "error", "data-testid": "upload-error", text }));
      resolve(null);
    };
    xhr.open("PUT", `/api/uploads/${batch}?name=${encodeURIComponent(file.name)}`);
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      $("div", bar).style.width = `${(100 * e.loaded / e.total).toFixed(1)}%`;
      status.textContent = `uploading ${human(e.loaded)} of ${human(e.total)}`;
    };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { body = { detail: xhr.responseText }; }
      const seconds = (performance.now() - started) / 1000;
      window.yivideoTimings.uploads[file.name] = { bytes: file.size, seconds, status: xhr.status };
      if (xhr.status !== 200) return failed(`refused: ${reason(body.detail)}`);
      bar.classList.add("done");
      $("div", bar).style.width = "100%";
      status.textContent = `uploaded: ${body.summary}`;
      row.dataset.state = "uploaded";
      resolve({ ...body, row, status });
    };
    xhr.onerror = () => failed("the connection broke during the upload");
    status.textContent = "uploading";
    xhr.send(file);
  });
}

async function postJson(url, body) {
  const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { ok: response.ok, body: await response.json() };
}

async function startAll() {
  const start = $("#start");
  start.disabled = true;
  try {
    const entries = pending.slice();
    const rows = entries.map(choicesOf);
    const checked = await postJson("/api/check", { rows });
    const refused = new Map((checked.body.refused || []).map((r) => [r.index, r.reason]));
    if (!checked.ok) entries.forEach((_, i) => refused.set(i, reason(checked.body.detail)));
    rows.forEach((items, i) => { if (!items.length) refused.set(i, `${entries[i].file.name}: tick at least one job for it`); });
    for (const [i, entry] of entries.entries()) {
      $("[data-testid=row-error]", entry.row).textContent = refused.get(i) || "";
      entry.row.dataset.state = refused.has(i) ? "refused" : "";
    }
    const go = entries.map((entry, i) => ({ entry, items: rows[i] })).filter((_, i) => !refused.has(i));
    for (const { entry } of go) { pending.splice(pending.indexOf(entry), 1); entry.row.remove(); }
    $("#pending").hidden = pending.length === 0;
    if (!go.length) return;
    const batch = crypto.getRandomValues(new Uint8Array(8)).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "");
    const sent = [];
    for (const item of go) {
      const up = await uploadOne(batch, item.entry);
      if (up) sent.push({ up, items: item.items.map((c) => ({ ...c, upload: up.upload, name: up.name })) });
    }
    if (!sent.length) return;
    const started = await postJson("/api/jobs", { batch, rows: sent.map((s) => s.items) });
    if (!started.ok) {
      $("#upload-rows").append(el("p", { class: "error", "data-testid": "start-error", text: `not started: ${reason(started.body.detail)}` }));
      return;
    }
    for (const r of started.body.refused) {
      const { row, status } = sent[r.index].up;
      row.dataset.state = "refused";
      status.replaceChildren(el("span", { class: "error", "data-testid": "upload-error", text: `not started: ${r.reason}` }));
    }
    for (const id of started.body.runs) mine.add(id);
    await poll();
  } finally {
    start.disabled = false;
  }
}

let polling = null;
async function poll() {
  clearTimeout(polling);
  const everyone = $("#show-all").checked;
  try {
    const body = await (await fetch(`/api/jobs${everyone ? "?all=1" : ""}`)).json();
    for (const job of body.jobs.slice().reverse()) renderCard(job, everyone);
    document.body.dataset.listed = "true";
    const busy = body.jobs.some((j) => !j.final);
    polling = setTimeout(poll, busy ? 1000 : 5000);
  } catch (_) {
    polling = setTimeout(poll, 5000);
  }
}
function relist() {
  cards.clear();
  $("#job-cards").replaceChildren(el("p", { class: "hint", id: "no-jobs", text: "No runs to show." }));
  poll();
}

const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addFiles([...e.dataTransfer.files]); });
$("#picker").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
$("#start").addEventListener("click", startAll);
$("#show-all").addEventListener("change", relist);
$("#user-name").addEventListener("change", (e) => {
  const name = e.target.value.trim().toLowerCase().replace(/[^a-z0-9._-]+/g, "-").slice(0, 32);
  if (!name) return;
  e.target.value = name;
  document.cookie = `yivideo_user=${name}; path=/; max-age=31536000; samesite=strict`;
  relist();
});
optionsLoaded.then(poll);
