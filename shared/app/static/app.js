// Repo Pilot's page: runs, and one run's beads kept current from the run's server-sent events.
// No build step, no library. The token (when the gateway has one) is asked once and kept in
// sessionStorage; every API call carries it, so the event stream is read with fetch(), not
// EventSource (which cannot send an Authorization header).
"use strict";

const TOKEN_KEY = "repo-pilot-token";
let current = null;        // the run shown
let streamAbort = null;    // stops the open event stream

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path) {
  for (;;) {
    const resp = await fetch(path, { headers: headers() });
    if (resp.status !== 401) {
      if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
      return resp.json();
    }
    const token = window.prompt("Repo Pilot API token (REPO_PILOT_API_TOKEN):");
    if (!token) throw new Error("this gateway needs its API token");
    sessionStorage.setItem(TOKEN_KEY, token.trim());
  }
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function problem(message) {
  const p = document.getElementById("problem");
  p.hidden = !message;
  p.textContent = message || "";
}

async function refreshRuns() {
  try {
    const runs = await api("/runs?limit=50");
    const body = document.querySelector("#runs tbody");
    body.replaceChildren(...runs.map((run) => {
      const tr = el("tr");
      tr.dataset.run = run.run_id;
      if (run.run_id === current) tr.className = "selected";
      tr.append(el("td", run.run_id), el("td", run.status, run.status),
                el("td", run.score === null ? "" : run.score.toFixed(1)),
                el("td", run.started_at ? new Date(run.started_at).toLocaleString() : ""));
      tr.addEventListener("click", () => show(run.run_id));
      return tr;
    }));
    problem("");
  } catch (err) {
    problem(String(err.message || err));
  }
}

function duration(ms) {
  return ms === null || ms === undefined ? "" : (ms / 1000).toFixed(1) + "s";
}

async function refreshRun(runId) {
  const detail = await api("/runs/" + encodeURIComponent(runId));
  if (runId !== current) return;
  const run = detail.run;
  document.getElementById("run-title").textContent = run.run_id + " — " + run.status;
  document.getElementById("run-title").className = run.status;
  document.getElementById("run-meta").textContent =
    [run.repo, run.engine && run.engine + " engine", run.score !== null && "score " + run.score.toFixed(1),
     run.merged === true ? "merged" : run.merged === false ? "not merged" : null, run.error]
      .filter(Boolean).join(" · ");
  const body = document.querySelector("#beads tbody");
  body.replaceChildren(...detail.beads.map((bead) => {
    const tr = el("tr");
    tr.dataset.bead = bead.bead_id;
    tr.append(el("td", bead.title), el("td", bead.status, "status " + bead.status), el("td", duration(bead.duration_ms)),
              el("td", bead.error || (bead.metadata && bead.metadata.summary) || ""));
    return tr;
  }));
}

function showReview(data) {
  const box = document.getElementById("review");
  const list = el("ul");
  for (const line of [...(data.blockers || []).map((b) => "blocks merge: " + b), ...(data.issues || []),
                      ...(data.flagged || []).map((f) => "flagged: " + f)]) list.append(el("li", line));
  box.replaceChildren(el("p", "score " + data.overall.toFixed(1) + " / 10 (threshold " + data.threshold + "), " +
                              (data.passed ? "passed" : "not passed")), el("p", data.summary), list);
}

function showTests(data) {
  const rows = [];
  const add = (name, g) => g && rows.push(name + ": " + g.passed + "/" + g.total + " passed" +
                                          (g.failed ? ", " + g.failed + " failed" : "") + (g.errors ? ", " + g.errors + " errors" : ""));
  add("own suite before", data.own_before);
  add("own suite after", data.own_after);
  for (const g of data.groups || []) add("generated " + g.group, g);
  if (data.regressed) rows.push("the repository's own suite regressed");
  document.getElementById("tests").replaceChildren(...rows.map((r) => el("div", r)));
}

function traceLink(event) {
  const parent = event.metadata && event.metadata.traceparent;
  const grafana = document.body.dataset.grafana;
  const query = { traces: { datasource: "tempo", queries: [{ refId: "A", datasource: { type: "tempo", uid: "tempo" },
    queryType: "traceql", query: '{ span.pilot.stream_id = "' + event.stream_id + '" }', tableType: "traces" }],
    range: { from: "now-7d", to: "now" } } };
  const link = document.getElementById("trace-link");
  link.href = grafana + "/explore?schemaVersion=1&orgId=1&panes=" + encodeURIComponent(JSON.stringify(query));
  document.getElementById("trace-id").textContent = parent ? "trace " + parent.split("-")[1] : "";
}

function onEvent(event) {
  if (event.version === 1) traceLink(event);
  if (event.type === "ChangesReviewed") showReview(event.data);
  if (event.type === "TestsCompleted") showTests(event.data);
}

// Server-sent events over fetch: blocks separated by a blank line, "field: value" lines.
async function follow(runId) {
  if (streamAbort) streamAbort.abort();
  const abort = new AbortController();
  streamAbort = abort;
  const live = document.getElementById("live");
  live.textContent = "following live…";
  try {
    const resp = await fetch("/runs/" + encodeURIComponent(runId) + "/events/stream",
                             { headers: headers(), signal: abort.signal });
    if (!resp.ok) throw new Error("event stream: HTTP " + resp.status);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let pending = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        onEvent(JSON.parse(data));
        // Fold bursts: one read of the read model per batch of events.
        pending = pending || setTimeout(() => { pending = null; refreshRun(runId).catch((e) => problem(e.message)); }, 100);
      }
    }
    await refreshRun(runId);
    if (runId === current) live.textContent = "the run has ended";
  } catch (err) {
    if (err.name !== "AbortError") problem(String(err.message || err));
  }
  refreshRuns();
}

async function show(runId) {
  current = runId;
  history.replaceState(null, "", "#" + runId);
  document.getElementById("run-pane").hidden = false;
  document.getElementById("review").textContent = "not reviewed yet";
  document.getElementById("tests").textContent = "no test results yet";
  for (const tr of document.querySelectorAll("#runs tbody tr")) tr.classList.toggle("selected", tr.dataset.run === runId);
  try {
    await refreshRun(runId);
  } catch (err) {
    problem(String(err.message || err));
  }
  follow(runId);
}

refreshRuns().then(() => {
  const wanted = location.hash.slice(1);
  if (wanted) show(wanted);
});
setInterval(refreshRuns, 3000);
