// File transfer with the signed-in user's token: uploads (the raw body, ?filename=) with
// progress, and downloads of authorised files and CSVs through a blob URL.
"use strict";

import { ApiError, accessToken, api, el } from "./api.js";

function errorOf(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    if (body && body.error) return new ApiError(xhr.status, body.error.code, body.error.message, body.error.details);
  } catch {
    /* not JSON */
  }
  if (xhr.status === 413) return new ApiError(413, "too_large", "the file is larger than the server accepts");
  return new ApiError(xhr.status, "http_" + xhr.status, xhr.statusText || "upload failed");
}

/** POST a file as the raw body; onProgress(fraction) while it is sent. Resolves to the JSON reply. */
export async function uploadFile(url, file, onProgress) {
  const token = await accessToken(60);
  const sep = url.includes("?") ? "&" : "?";
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${url}${sep}filename=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable && onProgress) onProgress(ev.loaded / ev.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(errorOf(xhr));
    });
    xhr.addEventListener("error", () => reject(new TypeError("network error")));
    xhr.send(file);
  });
}

/** Fetch an authorised file and hand it to the browser as a download named `name`. */
export async function downloadFile(url, name) {
  const token = await accessToken();
  const resp = await fetch(url, { headers: { Authorization: "Bearer " + token } });
  if (!resp.ok) {
    // The JSON error envelope, through the API client's parsing.
    await api(url);
    throw new ApiError(resp.status, "http_" + resp.status, "download failed");
  }
  const blob = await resp.blob();
  const href = URL.createObjectURL(blob);
  const link = el("a", { href, download: name, class: "sr-only" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 30_000);
}

/** A byte count for people: 1.2 MB. */
export function showSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A list row with a progress bar for a file being uploaded; progress(fraction) moves it. */
export function uploadRow(file) {
  const bar = el("progress", { max: "1", value: "0", "aria-label": `Uploading ${file.name}` });
  const row = el("li", { class: "file uploading" }, el("span", { text: file.name }), bar);
  return { row, progress: (f) => (bar.value = f) };
}
