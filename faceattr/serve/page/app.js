// faceattr's page: photos to annotated images and per-face tables, and the live webcam over a WebSocket.
// Plain JavaScript against the service's own API (/v1/model, /v1/predict, /v1/explain, /v1/stream); no framework,
// no CDN.
"use strict";

const API_KEY_STORAGE = "faceattr.apiKey";
// Box colours, one per face number (the same colour marks the face's table).
const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
// Present attributes written beside a box on the image and over the video.
const TOP_LABELS = 3;
// Longest side of the frames sent to the server: enough for faces, small enough to keep up.
const FRAME_MAX_SIDE = 640;
const FRAME_QUALITY = 0.8;
// The FPS shown is the answers of the last this many milliseconds.
const FPS_WINDOW_MS = 2000;

const $ = (id) => document.getElementById(id);
const page = {
  model: null,
  // The photos shown, so that a new decision policy or API key runs them again.
  photos: [],
};

// ---- Talking to the service -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return localStorage.getItem(API_KEY_STORAGE) || "";
}

// fetch() with the API key, turning an error answer's JSON body into a readable ApiError.
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("X-API-Key", apiKey());
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(0, "network", "Cannot reach the faceattr server: is it still running?");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  let code = "http_" + response.status;
  let message = `The server answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (ignored) {
    // Not JSON (a proxy's error page): the status line is all there is.
  }
  if (response.status === 401) askForApiKey();
  return new ApiError(response.status, code, message);
}

function showMessage(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

function askForApiKey() {
  $("api-key-field").hidden = false;
  $("api-key").focus();
}

// ---- The model and the controls ---------------------------------------------------------------------------------

async function loadModel() {
  try {
    const model = await (await api("/v1/model")).json();
    page.model = model;
    const select = $("decision");
    select.replaceChildren(...model.decision_policies.map((name) => new Option(name, name)));
    select.value = model.default_decision;
    const figures = [model.backbone, model.input_size && `${model.input_size} px`, model.faceattr_version && `faceattr ${model.faceattr_version}`];
    $("model-info").textContent = figures.filter(Boolean).join(" · ");
    showMessage($("message"), "");
  } catch (error) {
    $("model-info").textContent = "Model unavailable";
    showMessage($("message"), error.status === 401 ? "This server needs an API key: enter it above." : error.message);
  }
}

function decisionQuery() {
  const decision = $("decision").value;
  return decision ? "?decision=" + encodeURIComponent(decision) : "";
}

function selectTab(name) {
  for (const tab of ["photos", "webcam"]) {
    $("tab-" + tab).setAttribute("aria-selected", String(tab === name));
    $("panel-" + tab).hidden = tab !== name;
  }
  if (name !== "webcam") webcam.stop();
}

// ---- Photos ------------------------------------------------------------------------------------------------------

function addPhotos(files) {
  const images = [...files];
  for (const file of images) {
    const card = $("result-template").content.firstElementChild.cloneNode(true);
    card.querySelector(".file-name").textContent = file.name;
    card.addEventListener("click", (event) => {
      const button = event.target.closest("button.explain");
      if (button) toggleMap(card, file, button);
    });
    card.querySelector(".map-opacity").addEventListener("input", (event) => {
      card.querySelector("canvas.heatmap").style.opacity = event.target.value;
    });
    $("results").prepend(card);
    page.photos.push({ file, card });
  }
  // One request at a time: several photos never compete with each other for the server's queue.
  runInTurn(page.photos.slice(-images.length));
}

async function runInTurn(photos) {
  for (const photo of photos) await analyse(photo);
}

async function analyse({ file, card }) {
  card.dataset.state = "loading";
  card.querySelector(".summary").textContent = "analysing…";
  const message = card.querySelector(".message");
  showMessage(message, "");
  hideMap(card);
  try {
    const form = new FormData();
    form.append("file", file, file.name);
    // The server first: its message says what is wrong with a file the browser cannot show either.
    const result = await (await api("/v1/predict" + decisionQuery(), { method: "POST", body: form })).json();
    const image = await loadImage(file);
    drawAnnotated(card.querySelector("canvas.annotated"), image, result);
    showFaces(card.querySelector(".faces"), result.faces);
    const count = result.faces.length;
    card.querySelector(".summary").textContent =
      `${result.width}×${result.height} · ${count === 0 ? "no face found" : count === 1 ? "1 face" : count + " faces"} · ${result.decision}`;
    card.dataset.faces = String(count);
    card.dataset.state = "done";
  } catch (error) {
    showMessage(message, error.message);
    card.querySelector(".summary").textContent = "";
    card.dataset.state = "error";
  }
}

async function loadImage(file) {
  const url = URL.createObjectURL(file);
  try {
    return await loadImageUrl(url, `${file.name}: this browser cannot show the image`);
  } finally {
    URL.revokeObjectURL(url);
  }
}

function loadImageUrl(url, failure) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new ApiError(0, "display", failure));
    image.src = url;
  });
}

// The photo with each face's box, number and top attributes; boxes are in the upright photo's pixels,
// as the browser draws it (EXIF orientation applied).
function drawAnnotated(canvas, image, result) {
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const scale = image.naturalWidth / result.width;
  const unit = drawingUnit(canvas);
  result.faces.forEach((face, index) => {
    drawFace(context, face.box.map((v) => v * scale), COLOURS[index % COLOURS.length], unit,
      [`${index + 1} · beauty ${face.beauty.toFixed(1)}`, ...face.attributes.slice(0, TOP_LABELS).map(readable)]);
  });
  canvas.dataset.boxes = JSON.stringify(result.faces.map((face) => face.box));
}

// Two screen pixels in the canvas's own pixels, so that labels read the same on a phone and on a wide screen.
function drawingUnit(canvas) {
  return Math.max(0.5, (2 * canvas.width) / Math.max(1, canvas.clientWidth));
}

// A box, and under it (or above it at the bottom edge) a heading in the box's colour and a line per label.
function drawFace(context, [x1, y1, x2, y2], colour, unit, lines) {
  context.lineWidth = unit;
  context.strokeStyle = colour;
  context.strokeRect(x1, y1, x2 - x1, y2 - y1);
  context.font = `${6 * unit}px system-ui, sans-serif`;
  context.textBaseline = "top";
  const lineHeight = 7 * unit;
  const width = Math.max(...lines.map((line) => context.measureText(line).width)) + 2 * unit;
  // Labels under the box, or above it where the box reaches the bottom edge.
  const below = y2 + lines.length * lineHeight <= context.canvas.height;
  const top = below ? y2 : Math.max(0, y1 - lines.length * lineHeight);
  const left = Math.min(Math.max(0, x1), Math.max(0, context.canvas.width - width));
  context.fillStyle = "rgba(0, 0, 0, 0.7)";
  context.fillRect(left, top, width, lines.length * lineHeight);
  context.fillStyle = colour;
  context.fillRect(left, top, width, lineHeight);
  context.fillStyle = "#fff";
  lines.forEach((line, i) => context.fillText(line, left + unit, top + i * lineHeight + unit / 2));
}

function showFaces(container, faces) {
  container.replaceChildren(...faces.map((face, index) => {
    const section = $("face-template").content.firstElementChild.cloneNode(true);
    const name = section.querySelector(".face-name");
    name.textContent = `Face ${index + 1}`;
    name.style.background = COLOURS[index % COLOURS.length];
    const beauty = section.querySelector(".beauty");
    beauty.textContent = `beauty ${face.beauty.toFixed(2)} / 5`;
    explainButton(beauty, index, "beauty", "the beauty score");
    section.querySelector(".present-list").textContent = face.attributes.length
      ? face.attributes.map(readable).join(", ") : "No attribute present";
    section.dataset.beauty = String(face.beauty);
    fillTable(section.querySelector("table"), face, index);
    return section;
  }));
}

// A button showing where the model looks for one target of one face (see toggleMap).
function explainButton(button, face, target, what) {
  button.dataset.face = String(face);
  button.dataset.target = target;
  // A model run by ONNX Runtime has no gradients: the server says so in /v1/model.
  button.disabled = Boolean(page.model && page.model.explain === false);
  button.title = button.disabled ? "This server cannot show maps (it runs the model without gradients)"
    : `Show where the model looks for ${what} on face ${face + 1}; click again to hide it`;
}

function readable(attribute) {
  return attribute.replaceAll("_", " ");
}

function fillTable(table, face, index) {
  const present = new Set(face.attributes);
  const rows = Object.entries(face.probabilities).map(([name, probability]) => {
    const row = document.createElement("tr");
    row.dataset.name = name;
    row.dataset.probability = String(probability);
    row.dataset.present = present.has(name) ? "1" : "0";
    if (present.has(name)) row.className = "present";
    const percent = (100 * probability).toFixed(1);
    row.innerHTML = `<td></td><td><div class="bar"><span><i style="width:${percent}%"></i></span><output>${percent}%</output></div></td>` +
      `<td class="mark">${present.has(name) ? "✓" : ""}</td>`;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "explain";
    button.setAttribute("aria-pressed", "false");
    button.textContent = readable(name);
    explainButton(button, index, name, readable(name));
    row.firstElementChild.append(button);
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
  for (const button of table.querySelectorAll("th button")) {
    button.addEventListener("click", () => sortTable(table, button));
  }
  sortTable(table, table.querySelector('[data-sort="probability"]'), "descending");
}

// Sorts by the button's column; a second click on the same column reverses the order.
function sortTable(table, button, order) {
  const key = button.dataset.sort;
  const current = button.getAttribute("aria-sort");
  order = order || (current ? (current === "ascending" ? "descending" : "ascending") : key === "name" ? "ascending" : "descending");
  for (const other of table.querySelectorAll("th button")) other.removeAttribute("aria-sort");
  button.setAttribute("aria-sort", order);
  const value = (row) => (key === "name" ? row.dataset.name : Number(row.dataset[key]));
  const sign = order === "ascending" ? 1 : -1;
  const rows = [...table.tBodies[0].rows].sort((a, b) => {
    const [p, q] = [value(a), value(b)];
    const compared = typeof p === "string" ? p.localeCompare(q) : p - q;
    return sign * compared || Number(b.dataset.probability) - Number(a.dataset.probability);
  });
  table.tBodies[0].append(...rows);
}

// ---- Grad-CAM maps ----------------------------------------------------------------------------------------------

// A clicked attribute (or beauty score) of a face: its Grad-CAM map over the photo; the same click again hides it.
async function toggleMap(card, file, button) {
  const wasShown = button.getAttribute("aria-pressed") === "true";
  hideMap(card);
  if (wasShown) return;
  button.setAttribute("aria-pressed", "true");
  button.setAttribute("aria-busy", "true");
  const request = {};
  card.mapRequest = request;  // a later click (or a new analysis) wins over an answer still on its way
  const { face, target } = button.dataset;
  try {
    const form = new FormData();
    form.append("file", file, file.name);
    const query = `?face=${face}&target=${encodeURIComponent(target)}`;
    const answer = await (await api("/v1/explain" + query, { method: "POST", body: form })).json();
    if (card.mapRequest === request) await drawMap(card, answer);
  } catch (error) {
    if (card.mapRequest !== request) return;
    hideMap(card);
    showMessage(card.querySelector(".message"), error.message);
  } finally {
    button.removeAttribute("aria-busy");
  }
}

function hideMap(card) {
  card.mapRequest = null;
  for (const pressed of card.querySelectorAll('button.explain[aria-pressed="true"]')) {
    pressed.setAttribute("aria-pressed", "false");
  }
  const heatmap = card.querySelector("canvas.heatmap");
  heatmap.getContext("2d").clearRect(0, 0, heatmap.width, heatmap.height);
  heatmap.hidden = true;
  delete heatmap.dataset.target;
  card.querySelector(".map-bar").hidden = true;
}

// OpenCV's JET colours (blue low, red high), as faceattr explain draws its overlays.
function jet(value) {
  const channel = (centre) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * value - centre))));
  return [channel(3), channel(2), channel(1)];
}

// The answer's map (over the face's aligned crop) coloured, then drawn onto the photo through the inverse of the
// alignment warp. The colour's alpha is the map times the opacity control, as faceattr.explain.maps.overlay blends.
async function drawMap(card, answer) {
  const { width, height, matrix, png } = answer.map;
  const grey = await loadImageUrl("data:image/png;base64," + png, "This browser cannot show the map");
  const coloured = document.createElement("canvas");
  coloured.width = width;
  coloured.height = height;
  const colouring = coloured.getContext("2d");
  colouring.drawImage(grey, 0, 0);
  const pixels = colouring.getImageData(0, 0, width, height);
  let peak = 0;
  for (let i = 0; i < pixels.data.length; i += 4) {
    const value = pixels.data[i] / 255;
    peak = Math.max(peak, value);
    pixels.data.set([...jet(value), Math.round(255 * value)], i);
  }
  colouring.putImageData(pixels, 0, 0);

  const photo = card.querySelector("canvas.annotated");
  const heatmap = card.querySelector("canvas.heatmap");
  heatmap.width = photo.width;
  heatmap.height = photo.height;
  const context = heatmap.getContext("2d");
  const scale = photo.width / answer.width;  // the answer's pixels are the full upright image's
  const [[a, b, c], [d, e, f]] = matrix;  // photo pixels -> map pixels
  const det = a * e - b * d;
  const [p, q, r, u] = [e / det, -b / det, -d / det, a / det];
  const [tx, ty] = [-(p * c + q * f), -(r * c + u * f)];
  // The warp centres pixel i at i, a canvas at i + 0.5: hence the half-pixel shifts.
  context.setTransform(scale * p, scale * r, scale * q, scale * u, scale * (tx + 0.5), scale * (ty + 0.5));
  context.drawImage(coloured, -0.5, -0.5);
  context.setTransform(1, 0, 0, 1, 0, 0);
  heatmap.style.opacity = card.querySelector(".map-opacity").value;
  heatmap.dataset.target = answer.target;
  heatmap.dataset.face = String(answer.face);
  heatmap.hidden = false;
  const what = answer.target === "beauty" ? `beauty ${answer.score.toFixed(2)}`
    : `${readable(answer.target)} ${(100 * answer.score).toFixed(1)}%`;
  card.querySelector(".map-caption").textContent = peak > 0
    ? `Face ${answer.face + 1} · ${what}: where the model looks (red: most)`
    : `Face ${answer.face + 1} · ${what}: the map is empty (no part of the face raises this score)`;
  card.querySelector(".map-bar").hidden = false;
}

// ---- Webcam ------------------------------------------------------------------------------------------------------

const webcam = {
  stream: null,
  socket: null,
  // Whether a frame is at the server: the next one goes only after its answer (frames dropped, not queued).
  inFlight: false,
  answered: [],
  dropped: 0,
  frames: 0,
  capture: document.createElement("canvas"),

  async start() {
    showMessage($("webcam-message"), "");
    $("camera-toggle").disabled = true;  // until the camera answers: one click, one camera
    try {
      await this.open();
    } finally {
      $("camera-toggle").disabled = false;
    }
  },

  // The camera into the video, then the connection.
  async open() {
    const message = $("webcam-message");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showMessage(message, "This browser gives no camera to this page (a camera needs https or localhost).");
      return;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (error) {
      showMessage(message, `No camera: ${error.message || error.name}`);
      return;
    }
    const video = $("video");
    video.srcObject = this.stream;
    await video.play();
    $("camera-toggle").textContent = "Stop camera";
    this.answered = [];
    this.dropped = 0;
    this.connect();
  },

  connect() {
    const query = new URLSearchParams();
    if ($("decision").value) query.set("decision", $("decision").value);
    if (apiKey()) query.set("api_key", apiKey());
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/v1/stream?${query}`);
    this.socket = socket;
    this.inFlight = false;
    socket.onopen = () => this.sendFrame();
    socket.onmessage = (event) => this.onAnswer(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stream && !event.reason) showMessage($("webcam-message"), "The connection to the server closed.");
    };
  },

  stop() {
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close();
    }
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
      this.stream = null;
    }
    $("video").srcObject = null;
    $("camera-toggle").textContent = "Start camera";
    drawOverlay([], 1);
  },

  // Sends the video's current frame as a JPEG, unless one is already at the server.
  sendFrame() {
    const video = $("video");
    if (this.inFlight || !this.socket || this.socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
    const scale = Math.min(1, FRAME_MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    this.capture.width = Math.round(video.videoWidth * scale);
    this.capture.height = Math.round(video.videoHeight * scale);
    this.capture.getContext("2d").drawImage(video, 0, 0, this.capture.width, this.capture.height);
    this.inFlight = true;
    const socket = this.socket;
    this.capture.toBlob((blob) => {
      if (socket.readyState === WebSocket.OPEN && blob) socket.send(blob);
      else this.inFlight = false;
    }, "image/jpeg", FRAME_QUALITY);
  },

  onAnswer(answer) {
    this.inFlight = false;
    if (answer.error) {
      showMessage($("webcam-message"), answer.error.message);
      if (answer.error.code === "unauthorized") askForApiKey();
    } else if (answer.dropped) {
      this.dropped += 1;
      $("dropped").textContent = `${this.dropped} dropped`;
    } else {
      showMessage($("webcam-message"), "");
      this.countAnswer(answer.latency_ms);
      drawOverlay(answer.faces, answer.width);
    }
    this.nextFrame();
  },

  // The next frame once the video shows a new one, so that a fast server is not sent the same picture twice.
  nextFrame() {
    const video = $("video");
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => this.sendFrame());
    else requestAnimationFrame(() => this.sendFrame());
  },

  countAnswer(latency) {
    const now = performance.now();
    this.frames += 1;
    this.answered.push(now);
    while (this.answered.length && now - this.answered[0] > FPS_WINDOW_MS) this.answered.shift();
    const span = (this.answered[this.answered.length - 1] - this.answered[0]) / 1000;
    const fps = span > 0 ? (this.answered.length - 1) / span : 0;
    $("fps").textContent = `${fps.toFixed(1)} FPS`;
    $("fps").dataset.fps = fps.toFixed(2);
    $("latency").textContent = `${Math.round(latency)} ms per frame at the server`;
    $("latency").dataset.ms = String(latency);
    $("overlay").dataset.frames = String(this.frames);
  },
};

// Boxes, track ids, top attributes and beauty over the video, drawn at the screen's resolution so labels stay sharp;
// the drawn boxes go in data-boxes, in the video's pixels.
function drawOverlay(faces, frameWidth) {
  const overlay = $("overlay");
  const size = overlay.getBoundingClientRect();
  overlay.width = Math.max(1, Math.round(size.width * devicePixelRatio));
  overlay.height = Math.max(1, Math.round(size.height * devicePixelRatio));
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, overlay.width, overlay.height);
  const unit = drawingUnit(overlay);
  const toVideo = $("video").videoWidth / frameWidth;
  const drawn = faces.map((face) => {
    drawFace(context, face.box.map((v) => (v * overlay.width) / frameWidth), COLOURS[(face.id - 1) % COLOURS.length], unit,
      [`#${face.id} · beauty ${face.beauty.toFixed(1)}`, ...face.attributes.slice(0, TOP_LABELS).map(readable)]);
    return { id: face.id, box: face.box.map((v) => Math.round(v * toVideo)) };
  });
  overlay.dataset.boxes = JSON.stringify(drawn);
}

// ---- Wiring ------------------------------------------------------------------------------------------------------

// After a new decision policy or API key: the photos again, and the webcam on a new connection (a new tracker).
function runAgain() {
  runInTurn(page.photos);
  if (webcam.stream) {
    if (webcam.socket) webcam.socket.close();
    webcam.connect();
  }
}

function wire() {
  $("tab-photos").addEventListener("click", () => selectTab("photos"));
  $("tab-webcam").addEventListener("click", () => selectTab("webcam"));
  $("file-input").addEventListener("change", (event) => {
    addPhotos(event.target.files);
    event.target.value = "";
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    addPhotos(event.dataTransfer.files);
  });
  $("decision").addEventListener("change", runAgain);
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", async (event) => {
    localStorage.setItem(API_KEY_STORAGE, event.target.value.trim());
    await loadModel();
    runAgain();
  });
  $("camera-toggle").addEventListener("click", () => (webcam.stream ? webcam.stop() : webcam.start()));
  loadModel();
}

wire();
