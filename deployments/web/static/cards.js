// The run cards: grouped under their file, each with its state, every stage's progress line, the outputs
// under names that say what they are, the SRT inline, and a before/after viewer at full size with zoom.
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

const cards = new Map();       // run id -> card element
const mine = new Set();        // runs started from this page since it loaded (for the timings)
window.yivideoTimings = { dropAt: null, firstProgressAt: null, uploads: {} };

function groupOf(job) {
  const key = job.group || job.name;
  let group = [...document.querySelectorAll("[data-testid=file-group]")].find((g) => g.dataset.file === key);
  if (!group) {
    group = el("div", { class: "group", "data-testid": "file-group", "data-file": key },
      el("h3", { text: key }), el("div", { class: "group-cards" }));
    $("#job-cards").prepend(group);
  } else if (group !== $("#job-cards").firstElementChild && !cards.has(job.id)) {
    $("#job-cards").prepend(group);  // a new run on a file brings its group up
  }
  return $(".group-cards", group);
}

function renderCard(job, everyone) {
  let card = cards.get(job.id);
  if (!card) {
    const holder = groupOf(job);
    card = el("div", { class: "card", "data-testid": "job-card", "data-job": job.job, "data-id": job.id });
    cards.set(job.id, card);
    $("#no-jobs")?.remove();
    holder.prepend(card);
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
    el("span", { class: "settings", "data-testid": "job-settings", text: job.settings }),
    everyone && job.user ? el("span", { class: "by", "data-testid": "job-user", text: `by ${job.user}` }) : "",
    el("span", { class: `badge ${job.state}`, "data-testid": "job-state", text: job.state_name }),
    job.ui_url ? el("a", { href: job.ui_url, target: "_blank", rel: "noopener", "data-testid": "prefect-run", text: "in Prefect ↗" }) : "");
  const lines = job.progress_lines.length ? job.progress_lines : [job.final ? "" : "waiting for a worker"];
  const kids = [head, el("div", { class: "row" }, bar,
    el("div", { class: "progress-text" }, ...lines.map((l) => el("div", { "data-testid": "progress-line", text: l }))))];
  if (job.error) kids.push(el("p", { class: "error", "data-testid": "job-error", text: job.error }));
  const inputs = el("div", { class: "inputs" });
  for (const input of job.inputs) {
    const label = input.status === "failed" ? `failed${input.reason ? ": " + input.reason : ""}`
      : input.status === "elsewhere" ? input.reason : input.status;
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
  if (job.srt !== null) kids.push(el("pre", { class: "srt", "data-testid": "srt", text: job.srt }));
  else if (job.job === "subtitles" && job.state === "COMPLETED") kids.push(el("p", { class: "hint", "data-testid": "no-subtitles", text: "no subtitles found in this video" }));
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
  const zoom = el("button", { class: "zoom", "data-testid": "open-viewer", text: "full size ⤢" });
  zoom.addEventListener("click", () => openViewer(input));
  const frame = el("div", { class: "frame", title: "click for full size" }, el("img", { src: input.after, alt: `${input.name} after` }), before);
  frame.addEventListener("click", () => openViewer(input));
  return el("div", { class: "compare", "data-testid": "compare" }, frame, slider,
    el("div", { class: "cap" }, el("span", { text: "before" }), zoom, el("span", { text: "after" })));
}

// The viewer: the result at its own pixel size (100%), fitted, or 200%; the original stretched over it.
let zoom = "fit";
function openViewer(input) {
  const viewer = $("#viewer");
  $(".title", viewer).textContent = input.name;
  $("img.after", viewer).src = input.after;
  $("img.before", viewer).src = input.url;
  viewer.hidden = false;
  setZoom("fit");
}
function setZoom(value) {
  zoom = value;
  const viewer = $("#viewer");
  const after = $("img.after", viewer);
  const frame = $(".frame", viewer);
  const apply = () => {
    const fit = Math.min(1, ($(".canvas", viewer).clientWidth - 20) / after.naturalWidth);
    const factor = zoom === "fit" ? fit : parseFloat(zoom);
    frame.style.width = `${Math.round(after.naturalWidth * factor)}px`;
    viewer.dataset.zoom = String(factor);
  };
  if (after.complete && after.naturalWidth) apply(); else after.onload = apply;
}
function slide() {
  const value = $("#viewer input[type=range]").value;
  $("#viewer img.before").style.clipPath = `inset(0 ${100 - value}% 0 0)`;
}
document.addEventListener("DOMContentLoaded", () => {
  const viewer = $("#viewer");
  for (const b of viewer.querySelectorAll("[data-zoom]")) b.addEventListener("click", () => setZoom(b.dataset.zoom));
  $("input[type=range]", viewer).addEventListener("input", slide);
  $(".close", viewer).addEventListener("click", () => { viewer.hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") viewer.hidden = true; });
  slide();
});
