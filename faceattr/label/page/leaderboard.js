// The leaderboard: a project's images ranked by Bradley-Terry score, with Elo, votes and thumbnails; the
// split-half reliability; the raters' statistics with careless raters flagged. Opened by the admin as
// /leaderboard#token=ADMIN_TOKEN&project=NAME.
"use strict";

import { $, api, fragment, imageUrl, say } from "/static/api.js";

// A rater is flagged when, over at least CARELESS_MIN_VOTES decided votes, its agreement with the consensus is
// under CARELESS_AGREEMENT (random clicks agree half the time), or its median answer is faster than
// CARELESS_FAST_MS (too fast to have looked at both faces).
const CARELESS_AGREEMENT = 0.6;
const CARELESS_MIN_VOTES = 10;
const CARELESS_FAST_MS = 400;
// Thumbnails fetched at once.
const THUMBNAIL_FETCHES = 6;

const params = fragment();
const token = params.get("token") || "";
const project = params.get("project") || "";
const projectPath = `/api/projects/${encodeURIComponent(project)}`;
let thumbnailUrls = [];

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// A number to a fixed number of digits; "–" for a missing one (the server sends null for "not known yet").
const fixed = (value, digits) => (typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–");
// A count that may be half (a tie counts half a win): "3", "2.5".
const count = (value) => (typeof value === "number" ? String(Math.round(value * 2) / 2) : "–");

function careless(rater) {
  const decided = rater.votes - (rater.ties || 0) - (rater.skips || 0);
  const disagreeing = decided >= CARELESS_MIN_VOTES && typeof rater.agreement === "number"
    && rater.agreement < CARELESS_AGREEMENT;
  const fast = typeof rater.median_response_ms === "number" && rater.median_response_ms < CARELESS_FAST_MS;
  return disagreeing || (rater.votes >= CARELESS_MIN_VOTES && fast);
}

async function loadThumbnails(cells) {
  let next = 0;
  async function worker() {
    while (next < cells.length) {
      const { image, id } = cells[next++];
      const url = await imageUrl(token, id, "thumbnail");
      thumbnailUrls.push(url);
      image.src = url;
    }
  }
  await Promise.all(Array.from({ length: THUMBNAIL_FETCHES }, worker));
}

function showImages(rows) {
  const body = $("images").tBodies[0];
  body.replaceChildren();
  const thumbnails = [];
  rows.forEach((item, index) => {
    const row = body.insertRow();
    row.dataset.imageId = item.image_id;
    row.dataset.name = item.name;
    cell(row, String(index + 1), "number");
    const image = document.createElement("img");
    image.alt = `Face ${item.name}`;
    image.className = "thumbnail";
    row.insertCell().append(image);
    thumbnails.push({ image, id: item.image_id });
    cell(row, item.name, "name");
    cell(row, fixed(item.bt_score, 2), "number");
    cell(row, `${fixed(item.bt_low, 2)} to ${fixed(item.bt_high, 2)}`, "number");
    cell(row, fixed(item.elo, 1), "number");
    cell(row, String(item.votes), "number");
    cell(row, `${count(item.wins)} / ${item.ties} / ${count(item.losses)}`, "number");
  });
  return thumbnails;
}

function showRaters(raters) {
  const body = $("raters").tBodies[0];
  body.replaceChildren();
  for (const rater of raters) {
    const row = body.insertRow();
    const flagged = careless(rater);
    row.dataset.rater = rater.rater;
    row.dataset.careless = String(flagged);
    if (flagged) row.className = "careless";
    cell(row, rater.rater, "name");
    cell(row, String(rater.votes), "number");
    cell(row, count(rater.ties), "number");
    cell(row, count(rater.skips), "number");
    cell(row, fixed(rater.agreement, 2), "number");
    cell(row, typeof rater.median_response_ms === "number" ? `${Math.round(rater.median_response_ms)} ms` : "–",
      "number");
    cell(row, flagged ? "careless?" : "");
  }
}

async function refresh() {
  document.body.dataset.state = "loading";
  say("");
  try {
    const [info, ratings] = await Promise.all([api(token, projectPath), api(token, `${projectPath}/ratings`)]);
    $("question").textContent = info.question;
    $("summary").textContent = `${ratings.images.length} images · ${info.votes} of ${info.planned_votes} planned ` +
      `votes · split-half reliability ${ratings.reliability === null ? "not yet (too few votes)" : fixed(ratings.reliability, 2)}`;
    $("summary").dataset.reliability = ratings.reliability ?? "";
    thumbnailUrls.forEach((url) => URL.revokeObjectURL(url));
    thumbnailUrls = [];
    const thumbnails = showImages(ratings.images);
    showRaters(ratings.raters);
    await loadThumbnails(thumbnails);
    document.body.dataset.state = "ready";
  } catch (error) {
    document.body.dataset.state = "error";
    say(error.status === 401 || error.status === 403
      ? "This link needs the admin token: /leaderboard#token=ADMIN_TOKEN&project=NAME." : error.message);
  }
}

async function download() {
  try {
    const archive = await api(token, `${projectPath}/export.zip`, { as: "blob" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(archive);
    link.download = `${project}.zip`;
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (error) {
    say(error.message);
  }
}

function start() {
  $("careless-rule").textContent = `agreement under ${CARELESS_AGREEMENT} over ${CARELESS_MIN_VOTES}+ decided votes, ` +
    `or a median time under ${CARELESS_FAST_MS} ms`;
  $("refresh").addEventListener("click", refresh);
  $("export").addEventListener("click", download);
  // A new link pasted into this tab changes only the fragment, which loads nothing: start over with it.
  window.addEventListener("hashchange", () => window.location.reload());
  if (!token || !project) {
    document.body.dataset.state = "error";
    say("Open this page as /leaderboard#token=ADMIN_TOKEN&project=NAME.");
    return;
  }
  $("project-name").textContent = `Leaderboard: ${project}`;
  refresh();
}

start();
