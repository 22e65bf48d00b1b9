// The voting page: two faces as the server issued them, a choice by key or tap, the next pair.
// One vote at a time: every control is disabled from a choice until the next pair is on screen, so a held
// key or a double tap never sends a second vote. The response time runs from both faces shown to the choice.
"use strict";

import { $, ApiError, api, fragment, imageUrl, say } from "/static/api.js";

// Keys and the choice each makes ("undo" takes the last vote back).
const KEYS = {
  ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie", t: "tie", T: "tie", s: "skip", S: "skip",
  Backspace: "undo", u: "undo", U: "undo",
};
const CHOICE_BUTTONS = ["left", "right", "tie", "skip"];

const token = fragment().get("token") || "";
const page = {
  state: "loading", // loading | ready | sending | done | error
  pair: null,
  shownAt: 0,
  urls: [],
  raterVotes: 0,
};

// The page's state: it decides which controls work, and tests and styles read it from <body data-state>.
function setState(state) {
  page.state = state;
  document.body.dataset.state = state;
  for (const id of CHOICE_BUTTONS) {
    $(id).disabled = state !== "ready";
    $(id).hidden = state === "done" && (id === "tie" || id === "skip"); // nothing left to judge
  }
  $("undo").disabled = !(state === "ready" || state === "done") || page.raterVotes === 0;
  $("done").hidden = state !== "done";
  $("pair").hidden = state === "done" || state === "error";
  $("pair").setAttribute("aria-busy", String(state === "loading" || state === "sending"));
}

const votes = (count) => `${count} vote${count === 1 ? "" : "s"}`;

// The bar is the project's votes against its plan; a project the scheduler finished early (every image at
// its cap) shows full.
function showProgress(progress, done = false) {
  page.raterVotes = progress.rater_votes;
  const planned = Math.max(progress.planned_votes, 1);
  $("progress").value = done ? 1 : Math.min(progress.project_votes / planned, 1);
  $("progress-text").textContent = `You: ${votes(progress.rater_votes)} · project: ` +
    (done ? `done, ${votes(progress.project_votes)}` : `${progress.project_votes} of ${progress.planned_votes}`);
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

// Puts a pair on screen: both faces fetched and decoded first, so the clock starts when both are visible.
async function show(pair) {
  setState("loading");
  const urls = await Promise.all([imageUrl(token, pair.left_id), imageUrl(token, pair.right_id)]);
  const images = [$("left-image"), $("right-image")];
  images.forEach((image, index) => { image.src = urls[index]; });
  await Promise.all(images.map((image) => image.decode()));
  page.urls.forEach((url) => URL.revokeObjectURL(url));
  page.urls = urls;
  const view = $("pair");
  view.dataset.pairId = pair.pair_id;
  view.dataset.leftId = pair.left_id;
  view.dataset.rightId = pair.right_id;
  page.pair = pair;
  await nextFrame(); // painted, not only decoded
  page.shownAt = performance.now();
  setState("ready");
}

async function advance() {
  const answer = await api(token, "/api/next", { method: "POST" });
  showProgress(answer.progress, answer.pair === null);
  if (answer.pair === null) {
    page.pair = null;
    setState("done");
  } else {
    await show(answer.pair);
  }
}

async function choose(choice) {
  if (page.state !== "ready") return;
  const responseMs = Math.round(performance.now() - page.shownAt);
  setState("sending");
  say("");
  try {
    const answer = await api(token, "/api/votes", {
      method: "POST", json: { pair_id: page.pair.pair_id, choice, response_ms: responseMs },
    });
    showProgress(answer.progress);
  } catch (error) {
    // already_voted: this vote was counted before (a resent request); anything else is worth saying.
    if (!(error instanceof ApiError && error.code === "already_voted")) say(error.message);
  }
  await run(advance);
}

async function undo() {
  if (!(page.state === "ready" || page.state === "done") || page.raterVotes === 0) return;
  const before = page.state;
  setState("sending");
  say("");
  try {
    const answer = await api(token, "/api/undo", { method: "POST" });
    showProgress(answer.progress);
    await show(answer.pair);
  } catch (error) {
    say(error.message);
    setState(before);
  }
}

// Runs a step; an error leaves a message and a page that says what went wrong.
async function run(step) {
  try {
    await step();
  } catch (error) {
    setState("error");
    say(error.status === 401
      ? "This link is not valid: ask the project's organiser for your personal link."
      : error.message);
  }
}

function onKey(event) {
  if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
  const action = KEYS[event.key];
  if (action === undefined) return;
  event.preventDefault(); // Backspace must not navigate, arrows must not scroll
  if (action === "undo") undo();
  else choose(action);
}

async function start() {
  for (const id of CHOICE_BUTTONS) $(id).addEventListener("click", () => choose(id));
  $("undo").addEventListener("click", undo);
  document.addEventListener("keydown", onKey);
  // A new link pasted into this tab changes only the fragment, which loads nothing: start over with it.
  window.addEventListener("hashchange", () => window.location.reload());
  if (!token) {
    setState("error");
    $("question").textContent = "No personal link";
    say("This page needs your personal link (it ends in #token=...): ask the project's organiser for it.");
    return;
  }
  await run(async () => {
    const me = await api(token, "/api/me");
    $("question").textContent = me.question;
    document.title = `${me.question} · faceattr label`;
    $("who").textContent = `${me.name} · ${me.project}`;
    showProgress(me.progress);
    await advance();
  });
  if (page.state === "error" && $("question").textContent === "Loading…") $("question").textContent = "Cannot vote";
}

start();
