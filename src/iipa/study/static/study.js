// 2AFC study client: consent -> demographics -> training (feedback) -> trials -> review.
// Answers are POSTed with retries; the server keeps one answer per (participant, pair),
// so a retried or replayed POST never counts twice. The code is kept in localStorage so
// a reload resumes where the participant was. The server times the answers and accepts
// only the pair it handed out in the current session: a 409 (the session ran out, the
// study closed) is answered by showing what the server says comes next.
"use strict";
const $ = (id) => document.getElementById(id);
let code = localStorage.getItem("iipa-study-code");
let current = null;      // the item on screen
let shownAt = 0;         // when both images finished loading
let busy = false;        // an answer is in flight or feedback is shown
let signupToken = null;  // idempotency token of the sign-up POST

function show(id) {
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== id;
}

async function api(method, path, body, retries = 5) {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await fetch(path, {method, headers: {"Content-Type": "application/json"},
                                   body: body === undefined ? undefined : JSON.stringify(body)});
      const data = await r.json().catch(() => ({}));
      if (r.ok) return data;
      if (r.status < 500 || attempt >= retries) {
        const err = new Error(data.detail || ("HTTP " + r.status));
        err.status = r.status;
        throw err;
      }
    } catch (err) {
      if (!(err instanceof TypeError) || attempt >= retries) throw err;  // TypeError: network
    }
    await new Promise((ok) => setTimeout(ok, 300 * 2 ** attempt));
  }
}

function setCode(c) {
  code = c;
  localStorage.setItem("iipa-study-code", c);
  for (const el of document.querySelectorAll(".code")) el.textContent = c;
}

function render(item) {
  current = item;
  if (item.state === "break") { show("break"); return; }
  if (item.state === "done" || item.state === "closed") { showReview(); return; }
  show("trial");
  $("feedback").hidden = true;
  $("feedback-text").textContent = "";
  $("phase-label").textContent = item.state === "training" ? "Training pair" : "Pair";
  $("progress").textContent = item.state === "training"
    ? `${item.index} of ${item.training_total}` : `${item.index} of ${item.trials_total}`;
  $("trial").dataset.pair = item.pair_id;
  $("trial").dataset.ready = "0";
  let loaded = 0;
  const onload = () => {
    if (++loaded === 2) { shownAt = performance.now(); busy = false; $("trial").dataset.ready = "1"; }
  };
  busy = true;
  for (const side of ["left", "right"]) {
    const img = $("img-" + side);
    img.onload = onload; img.onerror = onload;
    img.src = item[side];
  }
}

async function choose(side) {
  if (busy || !current || !["training", "trial"].includes(current.state)) return;
  busy = true;
  const ms = Math.max(0, Math.round(performance.now() - shownAt));
  try {
    const r = await api("POST", `/api/p/${code}/answers`,
                        {pair_id: current.pair_id, side, response_ms: ms});
    $("trial-error").textContent = "";
    if (r.feedback) {
      $("feedback-text").textContent = r.feedback.correct
        ? "Correct: the " + r.feedback.more_popular + " image received more likes."
        : "Not quite: the " + r.feedback.more_popular + " image received more likes.";
      $("feedback").hidden = false;
      $("feedback-next").onclick = () => render(r.next);
      $("feedback-next").focus();
    } else {
      render(r.next);
    }
  } catch (err) {
    if (err.status === 409) {  // not the pair on screen any more: show what comes next
      try { render(await api("GET", `/api/p/${code}/next`)); return; } catch (e) { err = e; }
    }
    $("trial-error").textContent = "Could not save your answer (" + err.message + "). Please try again.";
    busy = false;
  }
}

async function showReview() {
  show("done");
  const r = await api("GET", `/api/p/${code}/review`);
  // While the study is open the review holds the participant's choices only: a score
  // would give the answer key away (codes differing in one answer each read it pair by
  // pair). The score and the answers of each pair come once the study is closed.
  $("review-summary").textContent = r.score_percent === null || r.score_percent === undefined ? "" :
    `You chose the more popular image in ${r.score_percent}% of the pairs.`;
  $("review-note").hidden = r.closed;
  $("review-truth").hidden = !r.closed;
  const tbody = $("review").querySelector("tbody");
  tbody.textContent = "";
  r.answers.forEach((a, i) => {
    const tr = document.createElement("tr");
    if (r.closed) tr.className = a.correct ? "right" : "wrong";
    const cells = [String(i + 1), a.left, a.right, a.your_choice];
    if (r.closed) cells.push(a.more_popular, a.correct ? "✓" : "✗");
    cells.forEach((c, j) => {
      const td = document.createElement("td");
      if (j === 1 || j === 2) { const img = document.createElement("img"); img.src = c; td.appendChild(img); }
      else td.textContent = c;
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  });
}

async function resume(c) {
  try {
    const r = await api("POST", `/api/p/${encodeURIComponent(c)}/sessions`);
    setCode(r.next.code);
    render(r.next);
  } catch (err) {
    $("welcome-error").textContent = "Cannot continue with that code (" + err.message + ").";
  }
}

async function init() {
  const meta = await api("GET", "/api/meta");
  const fill = (sel, values) => {
    sel.appendChild(new Option("choose...", ""));
    for (const v of values) sel.appendChild(new Option(v, v));
  };
  fill($("gender"), meta.genders);
  fill($("age-band"), meta.age_bands);
  if (code) $("resume-code").value = code;
  $("start-new").onclick = () => show("consent");
  $("resume-form").onsubmit = (e) => { e.preventDefault(); resume($("resume-code").value.trim()); };
  $("consent-box").onchange = () => { $("consent-next").disabled = !$("consent-box").checked; };
  $("consent-next").onclick = () => show("demographics");
  $("demo-form").onsubmit = async (e) => {
    e.preventDefault();
    const radio = (name) => document.querySelector(`input[name=${name}]:checked`).value === "yes";
    try {
      // One token per sign-up: api() may resend the POST after a lost reply.
      signupToken = signupToken || (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now());
      const r = await api("POST", "/api/participants", {
        consent: $("consent-box").checked, gender: $("gender").value, age_band: $("age-band").value,
        instagram: radio("instagram"), social_over_3h: radio("social"), client_token: signupToken});
      setCode(r.code);
      render(r.next);
    } catch (err) { $("demo-error").textContent = err.message; }
  };
  $("choose-left").onclick = () => choose("left");
  $("choose-right").onclick = () => choose("right");
  $("continue-session").onclick = () => resume(code);
  document.addEventListener("keydown", (e) => {
    if ($("trial").hidden) return;
    if (!$("feedback").hidden) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("feedback-next").click(); }
      return;
    }
    const k = e.key.toLowerCase();
    if (k === "arrowleft" || k === "f") { e.preventDefault(); choose("left"); }
    if (k === "arrowright" || k === "j") { e.preventDefault(); choose("right"); }
  });
  show("welcome");
}

init();
