// The photo page: pick or drop a photo; every change of the controls asks /v1/mask again (the
// previous request is cancelled); /v1/landmarks once per photo for the optional points overlay.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("controls"), drop = $("drop"), fileInput = $("file");
const original = $("original"), result = $("result"), canvas = $("points");
const statusLine = $("status"), errorBox = $("error"), download = $("download");
const SHOWABLE = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp"];
let photo = null, pending = null, timer = null, faces = null;

function setPhoto(file) {
  if (!file) return;
  photo = file;
  faces = null;
  if (original.src) URL.revokeObjectURL(original.src);
  original.src = URL.createObjectURL(file);
  fetchLandmarks(file);
  update();
}

function scheduleUpdate() {
  syncColorInputs(form);
  clearTimeout(timer);
  timer = setTimeout(update, 120);
}

async function update() {
  if (!photo) return;
  if (pending) pending.abort();
  const ctrl = new AbortController();
  pending = ctrl;
  const sent = photo;
  // a newer request (another photo, other settings) supersedes this one: aborting stops its fetch, and a
  // response already read is dropped here, so an old result never shows under the new photo's name
  const superseded = () => pending !== ctrl;
  const body = new FormData();
  body.append("image", sent, sent.name);
  for (const [part, spec] of Object.entries(readEffects(form))) body.append(part, spec);
  if (!SHOWABLE.includes(sent.type)) body.append("format", "png");   // e.g. TIFF: a PNG the page can show
  statusLine.textContent = "masking…";
  const t0 = performance.now();
  try {
    const r = await fetch("/v1/mask", { method: "POST", body, signal: ctrl.signal });
    if (!r.ok) throw new Error(await errorMessage(r));
    const blob = await r.blob();
    if (superseded()) return;
    const ms = Math.round(performance.now() - t0);
    if (result.src) URL.revokeObjectURL(result.src);
    result.src = URL.createObjectURL(blob);
    await result.decode();
    if (superseded()) return;
    download.href = result.src;
    download.download = maskedName(sent.name, blob.type);
    download.hidden = false;
    const n = r.headers.get("X-Landmask-Faces");
    statusLine.textContent = `${n} face${n === "1" ? "" : "s"}, masked in ${ms} ms`;
    showError(errorBox, "");
    drawPoints();
    document.body.dataset.results = String(Number(document.body.dataset.results) + 1);
  } catch (e) {
    if (e.name === "AbortError" || superseded()) return;   // (a replaced image fails to decode)
    statusLine.textContent = "";
    showError(errorBox, e.message);
    // no earlier photo's result (nor its download link) stays on screen under this one's error
    if (result.src) URL.revokeObjectURL(result.src);
    result.removeAttribute("src");
    download.hidden = true;
    download.removeAttribute("href");
    canvas.hidden = true;
  } finally {
    if (pending === ctrl) pending = null;
  }
}

async function fetchLandmarks(file) {
  const body = new FormData();
  body.append("image", file, file.name);
  try {
    const r = await fetch("/v1/landmarks", { method: "POST", body });
    if (!r.ok) return;   // /v1/mask reports the same error
    if (file === photo) { faces = await r.json(); drawPoints(); }
  } catch (e) { /* the overlay is optional */ }
}

function drawPoints() {
  const show = $("show-points").checked && faces && result.naturalWidth;
  canvas.hidden = !show;
  if (!show) return;
  canvas.width = result.naturalWidth;
  canvas.height = result.naturalHeight;
  const g = canvas.getContext("2d");
  const r = Math.max(1.5, canvas.width / 400);
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.lineWidth = r;
  for (const f of faces.faces) {
    const [x0, y0, x1, y1] = f.box;
    g.strokeStyle = "#00e0ff";
    g.strokeRect(x0, y0, x1 - x0, y1 - y0);
    g.fillStyle = "#ffe000";
    for (const [x, y] of f.points) { g.beginPath(); g.arc(x + 0.5, y + 0.5, r, 0, 2 * Math.PI); g.fill(); }
  }
}

function maskedName(name, type) {
  const ext = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/bmp": "bmp",
                "image/tiff": "tif", "image/gif": "gif", "image/x-portable-anymap": "pnm",
                "image/x-portable-arbitrarymap": "pam" }[type] || "img";
  return `${name.replace(/\.[^.]*$/, "") || "photo"}-masked.${ext}`;
}

fileInput.addEventListener("change", () => setPhoto(fileInput.files[0]));
// the points overlay is drawn here from the landmarks already fetched: toggling it asks the server nothing
const onControl = (e) => { if (e.target.id !== "show-points") scheduleUpdate(); };
form.addEventListener("input", onControl);
form.addEventListener("change", onControl);
$("show-points").addEventListener("change", drawPoints);
for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
drop.addEventListener("drop", (e) => setPhoto(e.dataTransfer.files[0]));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") fileInput.click(); });
syncColorInputs(form);
