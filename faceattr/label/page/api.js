// The labelling pages' one way to talk to the server: the token from the URL's fragment, JSON calls with
// "Authorization: Bearer", error answers as ApiError, images fetched by id into blob URLs.
// The token lives in the fragment (#token=...), which browsers never send to a server, so it stays out of logs.
"use strict";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The fragment's parameters: "#token=abc&project=x" -> URLSearchParams.
export function fragment() {
  return new URLSearchParams(window.location.hash.replace(/^#/, ""));
}

// fetch() with the token; the JSON answer, or an ApiError carrying the server's code and message.
export async function api(token, path, { method = "GET", json, as = "json" } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  } catch (error) {
    throw new ApiError(0, "network", "The server cannot be reached; check your connection and try again.");
  }
  if (!response.ok) {
    let code = "http_" + response.status;
    let message = `The server answered ${response.status}.`;
    try {
      const body = await response.json();
      code = body.error.code;
      message = body.error.message;
    } catch (ignored) {
      // Not the server's JSON error (a proxy's page): keep the status.
    }
    throw new ApiError(response.status, code, message);
  }
  return as === "blob" ? response.blob() : as === "text" ? response.text() : response.json();
}

// An image of the project by id, as a blob URL (revoke it with URL.revokeObjectURL when done).
export async function imageUrl(token, imageId, kind = "face") {
  const blob = await api(token, `/api/images/${encodeURIComponent(imageId)}?kind=${kind}`, { as: "blob" });
  return URL.createObjectURL(blob);
}

// The node with this id; every id the scripts use is in their page.
export const $ = (id) => document.getElementById(id);

// Shows a message in the page's alert line (hidden when text is empty).
export function say(text) {
  const line = $("message");
  line.textContent = text;
  line.hidden = !text;
}
