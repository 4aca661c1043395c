// The camera page: frames from getUserMedia go to /v1/stream as JPEG (one in flight at a time, so
// a slow server lowers the frame rate instead of building a queue); each answer is a JSON line
// (faces, track ids, server ms) then the masked JPEG, drawn on the canvas.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("controls"), video = $("video"), output = $("output");
const errorBox = $("error"), fpsLabel = $("fps"), info = $("info");
const grab = document.createElement("canvas");
let ws = null, stream = null, lastInfo = null, times = [];

function settingsMessage() {
  return JSON.stringify({ ...readEffects(form), smooth: $("smooth").checked });
}

async function start() {
  showError(errorBox, "");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    showError(errorBox, `no camera: ${e.message}`);
    return;
  }
  video.srcObject = stream;
  await video.play();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/v1/stream`);
  ws.binaryType = "blob";
  ws.onopen = () => { ws.send(settingsMessage()); sendFrame(); };
  ws.onmessage = onMessage;
  ws.onclose = () => { if (stream) stop("the connection closed"); };
  $("start").disabled = true;
  $("stop").disabled = false;
}

function stop(reason) {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  if (ws) ws.close();
  ws = null;
  $("start").disabled = false;
  $("stop").disabled = true;
  fpsLabel.textContent = "– fps";
  if (typeof reason === "string") showError(errorBox, reason);
}

function sendFrame() {
  if (!ws || ws.readyState !== WebSocket.OPEN || !video.videoWidth) {
    if (ws) setTimeout(sendFrame, 50);
    return;
  }
  grab.width = video.videoWidth;
  grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  grab.toBlob((blob) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(blob); }, "image/jpeg", 0.85);
}

async function onMessage(ev) {
  if (typeof ev.data === "string") {
    const msg = JSON.parse(ev.data);
    if (msg.error) { showError(errorBox, msg.error); if (msg.frame) sendFrame(); }
    else if (msg.faces !== undefined) lastInfo = msg;
    return;
  }
  const bitmap = await createImageBitmap(ev.data);
  output.width = bitmap.width;
  output.height = bitmap.height;
  output.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  const now = performance.now();
  times.push(now);
  while (times.length && now - times[0] > 2000) times.shift();
  if (times.length > 1) fpsLabel.textContent = `${((times.length - 1) / ((now - times[0]) / 1000)).toFixed(1)} fps`;
  if (lastInfo) info.textContent = `${lastInfo.faces} face${lastInfo.faces === 1 ? "" : "s"}, ${lastInfo.ms} ms on the server`;
  document.body.dataset.frames = String(Number(document.body.dataset.frames) + 1);
  sendFrame();
}

function settingsChanged() {
  syncColorInputs(form);
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(settingsMessage());
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", () => stop());
form.addEventListener("change", settingsChanged);
$("smooth").addEventListener("change", settingsChanged);
syncColorInputs(form);
