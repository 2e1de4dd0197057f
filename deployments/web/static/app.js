// The upload page: plain JS, no build step. Files are PUT one by one as raw bodies (upload progress from
// XHR), then one POST starts their runs; the run cards poll /api/jobs, which reads Prefect back.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  node.append(...kids);
  return node;
};
const human = (n) => n < 1024 ? `${n} bytes` : n < 1048576 ? `${(n / 1024).toFixed(1)} kB`
  : n < 1073741824 ? `${(n / 1048576).toFixed(1)} MB` : `${(n / 1073741824).toFixed(2)} GB`;
const IMAGE = /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i;

let options = { presets: [], default_presets: [], engines: [], max_upload_bytes: Infinity };
const pending = [];            // {file, row}
const cards = new Map();       // run id -> card element
const mine = new Set();        // runs started from this page since it loaded (for the timings)
window.yivideoTimings = { dropAt: null, firstProgressAt: null, uploads: {} };

async function loadOptions() {
  options = await (await fetch("/api/options")).json();
  $("#limit").textContent = options.max_upload;
  const link = $("#prefect-link");
  if (options.prefect_ui) link.href = options.prefect_ui; else link.hidden = true;
  document.body.dataset.ready = "true";
}
// Files dropped before the options arrive wait for them: a row built earlier had no engines to choose from,
// and its start was refused (seen on a busy host).
const optionsLoaded = loadOptions().catch(() => {
  $("#limit").textContent = "? (the page could not load its options: reload it)";
  document.body.dataset.ready = "failed";
});

// FastAPI's refusals carry a string, or a list of {loc, msg} for a request that fails validation.
const reason = (detail) => Array.isArray(detail)
  ? detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ") : detail;

async function addFiles(files) {
  if (!files.length) return;
  await optionsLoaded;
  if (window.yivideoTimings.dropAt === null) window.yivideoTimings.dropAt = performance.now();
  for (const file of files) {
    const row = $("#pending-row").content.firstElementChild.cloneNode(true);
    $(".name", row).textContent = file.name;
    $(".size", row).textContent = human(file.size);
    const engine = $(".engine", row);
    for (const name of options.engines) engine.append(el("option", { value: name, text: name }));
    const presets = $(".transcode-opts", row);
    for (const p of options.presets) {
      const box = el("input", { type: "checkbox", value: p.name, "data-testid": `preset-${p.name}` });
      box.checked = options.default_presets.includes(p.name);
      presets.append(el("label", { class: "preset", title: p.description }, box, ` ${p.name}`));
    }
    const job = $(".job", row);
    job.addEventListener("change", () => showOptions(row));
    const entry = { file, row };
    $(".remove", row).addEventListener("click", () => {
      pending.splice(pending.indexOf(entry), 1);
      row.remove();
      $("#pending").hidden = pending.length === 0;
    });
    if (file.size > options.max_upload_bytes) {
      row.append(el("span", { class: "error", text: `above the ${options.max_upload} limit: it will be refused` }));
    }
    pending.push(entry);
    $("#pending-rows").append(row);
  }
  $("#pending").hidden = false;
}

function showOptions(row) {
  const job = $(".job", row).value;
  $(".enhance-opts", row).hidden = job !== "enhance";
  $(".transcode-opts", row).hidden = job !== "transcode";
}

function choiceOf(row) {
  const job = $(".job", row).value;
  const choice = { job };
  if (job === "enhance") {
    choice.engine = $(".engine", row).value;
    choice.scale = parseFloat($(".scale", row).value);
  }
  if (job === "transcode") {
    choice.presets = [...row.querySelectorAll(".transcode-opts input:checked")].map((b) => b.value);
  }
  return choice;
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
      if (xhr.status === 200) {
        bar.classList.add("done");
        $("div", bar).style.width = "100%";
        status.textContent = `uploaded: ${body.summary}`;
        row.dataset.state = "uploaded";
        resolve({ ...body, choice: choiceOf(entry.row) });
      } else {
        bar.classList.add("failed");
        row.dataset.state = "failed";
        status.textContent = "";
        status.append(el("span", { class: "error", "data-testid": "upload-error", text: `refused: ${reason(body.detail)}` }));
        resolve(null);
      }
    };
    xhr.onerror = () => {
      bar.classList.add("failed");
      row.dataset.state = "failed";
      status.textContent = "the connection broke during the upload";
      resolve(null);
    };
    status.textContent = "uploading";
    xhr.send(file);
  });
}

async function startAll() {
  const start = $("#start");
  start.disabled = true;
  const batch = crypto.getRandomValues(new Uint8Array(8)).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "");
  const entries = pending.splice(0);
  $("#pending-rows").replaceChildren();
  $("#pending").hidden = true;
  const done = [];
  for (const entry of entries) done.push(await uploadOne(batch, entry));
  const items = done.filter(Boolean).map((u) => ({ upload: u.upload, ...u.choice }));
  start.disabled = false;
  if (!items.length) return;
  const response = await fetch("/api/jobs", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ batch, items }),
  });
  const body = await response.json();
  if (!response.ok) {
    $("#upload-rows").append(el("p", { class: "error", "data-testid": "start-error", text: `not started: ${reason(body.detail)}` }));
    return;
  }
  for (const id of body.runs) mine.add(id);
  await poll();
}

function renderCard(job) {
  let card = cards.get(job.id);
  if (!card) {
    card = el("div", { class: "card", "data-testid": "job-card", "data-job": job.job });
    cards.set(job.id, card);
    $("#no-jobs")?.remove();
    $("#job-cards").prepend(card);
  }
  card.dataset.state = job.state;
  if (card.dataset.rendered === "final") return;
  const pct = job.progress === null ? (job.final ? 100 : 0) : job.progress;
  if (mine.has(job.id) && job.progress > 0 && window.yivideoTimings.firstProgressAt === null) {
    window.yivideoTimings.firstProgressAt = performance.now();
  }
  const bar = el("div", { class: `bar ${job.state === "COMPLETED" ? "done" : ""} ${job.error ? "failed" : ""}` },
    el("div", { style: `width:${pct.toFixed(1)}%` }));
  const head = el("div", { class: "head" },
    el("span", { class: "title", text: job.name }),
    el("span", { class: `badge ${job.state}`, "data-testid": "job-state", text: job.state_name }),
    el("a", { href: job.ui_url, target: "_blank", rel: "noopener", "data-testid": "prefect-run", text: "in Prefect ↗" }));
  const kids = [head, el("div", { class: "row" }, bar,
    el("span", { class: "progress-text", text: job.progress_text || (job.final ? "" : "waiting for a worker") }))];
  if (job.error) kids.push(el("p", { class: "error", "data-testid": "job-error", text: job.error }));
  const inputs = el("div", { class: "inputs" });
  for (const input of job.inputs) {
    const label = input.status === "failed" ? `failed${input.reason ? ": " + input.reason : ""}` : input.status;
    inputs.append(el("div", { class: input.status, "data-testid": "job-input", "data-status": input.status },
      `${input.name}${label ? " — " + label : ""}`));
  }
  kids.push(inputs);
  if (job.outputs.length) {
    const list = el("ul", { class: "files", "data-testid": "outputs" });
    for (const o of job.outputs) {
      list.append(el("li", {}, el("a", { href: o.url, download: o.name, text: o.name }), ` (${human(o.bytes)})`));
    }
    kids.push(list);
  }
  if (job.zip) kids.push(el("p", {}, el("a", { class: "button", href: job.zip, download: "", "data-testid": "zip", text: "Download all (ZIP)" })));
  if (job.srt !== null) kids.push(el("pre", { class: "srt", "data-testid": "srt", text: job.srt || "(no subtitles found)" }));
  if (job.job === "enhance") for (const input of job.inputs.filter((i) => i.after && i.url)) kids.push(compare(input));
  card.replaceChildren(...kids);
  if (job.final) card.dataset.rendered = "final";
}

function compare(input) {
  const before = el("img", { class: "before", src: input.url, alt: `${input.name} before` });
  const slider = el("input", { type: "range", min: 0, max: 100, value: 50, "aria-label": "before / after" });
  const clip = () => { before.style.clipPath = `inset(0 ${100 - slider.value}% 0 0)`; };
  slider.addEventListener("input", clip);
  clip();
  return el("div", { class: "compare", "data-testid": "compare" },
    el("div", { class: "frame" }, el("img", { src: input.after, alt: `${input.name} after` }), before), slider,
    el("div", { class: "cap" }, el("span", { text: "before" }), el("span", { text: input.name }), el("span", { text: "after" })));
}

let polling = null;
async function poll() {
  clearTimeout(polling);
  try {
    const body = await (await fetch("/api/jobs")).json();
    for (const job of body.jobs.slice().reverse()) renderCard(job);
    const busy = body.jobs.some((j) => !j.final);
    polling = setTimeout(poll, busy ? 1000 : 5000);
  } catch (_) {
    polling = setTimeout(poll, 5000);
  }
}

const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addFiles([...e.dataTransfer.files]); });
$("#picker").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
$("#start").addEventListener("click", startAll);
optionsLoaded.then(poll);
