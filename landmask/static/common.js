// Shared by the photo and camera pages: the effect controls → landmask effect strings.
"use strict";

// One fieldset per part (lips, eyes, eyebrows, face) → {part: "EFFECT[:VALUE][@OPACITY]"}.
function readEffects(form) {
  const effects = {};
  for (const fs of form.querySelectorAll("fieldset[data-part]")) {
    const kind = fs.querySelector("[name=effect]").value;
    const color = fs.querySelector("[name=color]").value;
    const opacity = Number(fs.querySelector("[name=opacity]").value);
    let spec = kind;
    if (kind === "color" || kind === "solid") spec = `${kind}:${color}`;
    if (kind !== "none") spec += `@${opacity}`;
    effects[fs.dataset.part] = spec;
  }
  return effects;
}

// The colour picker only matters for colour effects.
function syncColorInputs(form) {
  for (const fs of form.querySelectorAll("fieldset[data-part]")) {
    const kind = fs.querySelector("[name=effect]").value;
    fs.querySelector("[name=color]").hidden = !(kind === "color" || kind === "solid");
    fs.querySelector("[name=opacity]").disabled = kind === "none";
  }
}

// A server answer that is not OK → its {"error": "..."} message (or the status line).
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (e) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

function showError(el, message) {
  el.textContent = message || "";
  el.hidden = !message;
}
