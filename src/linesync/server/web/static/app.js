// linesync web: drag-and-drop upload and small conveniences. The pages work
// without this script (plain forms); it only adds to them.
"use strict";

function uploadFiles(zone, fileList) {
  const status = zone.querySelector("#upload-status");
  const body = new FormData();
  body.append("folder", zone.querySelector("input[name=folder]").value);
  for (const f of fileList) body.append("files", f, f.name);
  status.textContent = "Uploading " + fileList.length + " file(s)…";
  zone.classList.add("busy");
  return fetch(zone.action, {
    method: "POST",
    body: body,
    credentials: "same-origin",
    headers: {
      "X-CSRF-Token": zone.dataset.csrf,
      "X-Requested-With": "linesync-web",
      "Accept": "application/json",
    },
  }).then(async (resp) => {
    const doc = await resp.json().catch(() => ({}));
    zone.classList.remove("busy");
    if (!resp.ok) {
      status.textContent = "Not uploaded: " + (doc.error || resp.statusText);
      status.classList.add("error");
      return;
    }
    status.textContent = "Uploaded " + doc.saved.length + " file(s).";
    window.location.reload();
  }).catch((err) => {
    zone.classList.remove("busy");
    status.textContent = "Not uploaded: " + err;
    status.classList.add("error");
  });
}

function setUpDropzone(zone) {
  const input = zone.querySelector("input[type=file]");
  const submit = zone.querySelector("#upload-submit");
  if (submit) submit.hidden = true;
  input.addEventListener("change", () => {
    if (input.files.length) uploadFiles(zone, input.files);
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (ev) => {
      ev.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    const dropped = ev.dataTransfer && ev.dataTransfer.files;
    if (dropped && dropped.length) uploadFiles(zone, dropped);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const zone = document.getElementById("dropzone");
  if (zone) setUpDropzone(zone);
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
  for (const input of document.querySelectorAll("input[data-select]")) {
    input.addEventListener("focus", () => input.select());
  }
});
