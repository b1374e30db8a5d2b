// The Train page: plain JavaScript over labtrain's public HTTP API (no build, no CDN).
// The token lives in sessionStorage; every call sends it as a bearer token, and an error is
// shown as the API words it ({"detail": ...}).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("labtrain.token"), project: null, options: null, step: 1,
                training: null, poll: null, logsOpen: false };

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!answer.ok) {
    let detail = `${answer.status} ${answer.statusText}`;
    try {
      const json = await answer.json();
      if (typeof json.detail === "string") detail = json.detail;
      else if (Array.isArray(json.detail)) {
        detail = json.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
      }
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(detail, answer.status);
  }
  const type = answer.headers.get("Content-Type") || "";
  if (type.includes("application/json")) return answer.json();
  if (type.startsWith("text/")) return answer.text();
  return answer.blob();
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? (error.message || String(error)) : "";
  box.hidden = !error;
}

async function guarded(action) {
  try {
    showError(null);
    await action();
  } catch (error) {
    showError(error);
  }
}

function cell(row, value) {
  const td = document.createElement("td");
  if (value instanceof Node) td.appendChild(value); else td.textContent = value == null ? "" : String(value);
  row.appendChild(td);
  return td;
}

function fill(table, rows) {
  const body = $(table).querySelector("tbody");
  body.replaceChildren();
  for (const values of rows) {
    const row = document.createElement("tr");
    values.forEach((v) => cell(row, v));
    body.appendChild(row);
  }
}

function button(text, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", () => guarded(onclick));
  return b;
}

const f1 = (metrics) => {
  const micro = metrics && (metrics.micro || metrics);
  return micro && typeof micro.f1 === "number" ? micro.f1.toFixed(3) : "-";
};

// --- login and navigation ---------------------------------------------------------------

async function login(token) {
  state.token = token;
  const me = await api("GET", "/api/me");
  sessionStorage.setItem("labtrain.token", token);
  $("who").textContent = `${me.name}${me.is_admin ? " (admin)" : ""}`;
  $("login-view").hidden = true;
  $("nav").hidden = false;
  const projects = await api("GET", "/api/projects");
  const picker = $("project-picker");
  picker.replaceChildren(...projects.map((p) => new Option(`${p.name} (${p.submitted_completions} submitted)`, p.name)));
  if (!projects.length) throw new ApiError("you are a member of no project yet: create one and import an export");
  await pickProject(projects[0].name);
}

function logout() {
  sessionStorage.removeItem("labtrain.token");
  location.reload();
}

function show(view) {
  for (const name of ["train", "history", "models", "cluster"]) {
    $(`${name}-view`).hidden = name !== view;
    document.querySelector(`.tab[data-view="${name}"]`).classList.toggle("active", name === view);
  }
  return { train: loadOptions, history: loadHistory, models: loadModels, cluster: loadCluster }[view]();
}

async function pickProject(name) {
  state.project = name;
  $("project-picker").value = name;
  await show("train");
}

// --- the wizard ---------------------------------------------------------------------------

// The wizard is aria-busy while it loads a project's options: its fields are rebuilt when they arrive.
async function loadOptions() {
  $("train-view").setAttribute("aria-busy", "true");
  try {
    await fillOptions();
  } finally {
    $("train-view").setAttribute("aria-busy", "false");
  }
}

async function fillOptions() {
  state.options = await api("GET", `/api/projects/${encodeURIComponent(state.project)}/training/options`);
  const types = state.options.types.filter((t) => t.available);
  $("type").replaceChildren(...types.map((t) => new Option(t.type, t.type)));
  if (!types.length) throw new ApiError(`project ${state.project} offers no type labtrain can train`);
  typeChanged();
  $("validation_split").value = state.options.defaults.validation_split;
  const settings = state.options.settings;
  $("versioning").checked = settings.versioning;
  $("active_learning").checked = settings.active_learning.enabled;
  $("every").value = String(settings.active_learning.every);
  $("gpu-label").hidden = !state.options.gpu_available;
  setStep(1);
  await loadLink();
}

// The project's link to Label Studio, if it has one: where, its ML backend's state, the last sync.
async function loadLink() {
  let link = null;
  try {
    link = await api("GET", `/api/projects/${encodeURIComponent(state.project)}/link`);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
  }
  $("link").hidden = !link;
  if (!link) return;
  $("link").textContent = `Linked to Label Studio project ${link.ls_project} at ${link.url}; ML backend ` +
    `${link.backend_state || "not connected"} (${link.backend_url}); last sync ` +
    `${link.last_sync ? link.last_sync.slice(0, 19) + " (" + link.last_sync_tasks + " tasks)" : "never"}` +
    (link.last_error ? `; last error: ${link.last_error}` : "");
}

function typeChanged() {
  const entry = state.options.types.find((t) => t.type === $("type").value);
  $("embeddings").replaceChildren(...entry.embeddings.map((e) =>
    new Option(`${e.name} (${e.languages.join(", ") || "languages not given"}; ${e.size_mb} MB)`, e.name)));
  if (entry.default_embeddings) $("embeddings").value = entry.default_embeddings;  // the project's language's
  $("type-note").textContent = entry.note || "";
  const scripts = entry.custom_scripts || [];
  $("script").replaceChildren(new Option("labtrain's trainer", ""), ...scripts.map((name) => new Option(name, name)));
  $("script-label").hidden = !scripts.length;
  $("embeddings").disabled = false;
  showDefaults();
}

// The parameters' fields stay empty: a training gets its type's and embeddings' recipe (shown as the
// placeholders) for every field the user leaves empty.
function showDefaults() {
  const entry = state.options.types.find((t) => t.type === $("type").value);
  const chosen = entry.embeddings.find((e) => e.name === $("embeddings").value) || entry.embeddings[0] || {};
  const d = chosen.defaults || state.options.defaults;
  for (const key of ["epochs", "learning_rate", "decay", "dropout", "batch_size"]) {
    $(key).value = "";
    $(key).placeholder = d[key] === null || d[key] === undefined ? "default" : String(d[key]);
  }
  $("type-note").textContent = [entry.note, chosen.few_shot ? `Few-shot path (SetFit) when the median label ` +
    `has fewer than ${chosen.few_shot.chosen_below} examples.` : "",
    chosen.name === entry.default_embeddings ? entry.default_note : ""].filter(Boolean).join(" ");
}

function scriptChanged() {
  $("embeddings").disabled = Boolean($("script").value);  // a script chooses its own
}

function setStep(step) {
  state.step = step;
  document.querySelectorAll("#wizard fieldset").forEach((f) => { f.hidden = Number(f.dataset.step) !== step; });
  document.querySelectorAll(".steps li").forEach((li) => li.classList.toggle("current", Number(li.dataset.step) === step));
  $("back").disabled = step === 1;
  $("next").hidden = step === 3;
  $("train-button").hidden = step !== 3;
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function request() {
  const params = {};
  for (const key of ["epochs", "learning_rate", "decay", "dropout", "batch_size"]) {
    if (number(key) !== undefined) params[key] = number(key);
  }
  const byTags = document.querySelector('input[name="split"]:checked').value === "tags";
  const tags = $("tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  const selection = {
    tags: tags.length ? tags : null,
    reviewed_only: $("completions").value === "reviewed",
    validation_split: byTags ? null : number("validation_split"),
    test_tag: byTags ? ($("test_tag").value.trim() || "Test") : null,
    train_tag: byTags ? ($("train_tag").value.trim() || null) : null,
  };
  const body = { types: [$("type").value], embeddings: $("embeddings").value, params, selection,
                 deploy: $("deploy").checked, use_gpu: $("use_gpu").checked };
  if (!$("script-label").hidden && $("script").value) {
    body.script = $("script").value;
    delete body.embeddings;
  }
  const mode = document.querySelector('input[name="mode"]:checked').value;
  if (mode === "tune") {
    body.tune = { trials: number("tune_trials") };
    if ($("tune_space").value.trim()) body.tune.space = $("tune_space").value.trim();
    if ($("tune_budget").value.trim()) body.tune.budget = $("tune_budget").value.trim();
  } else if (mode === "curve") {
    body.curve = { seeds: number("curve_seeds") };
    if ($("curve_points").value.trim()) body.curve.points = $("curve_points").value.trim();
  }
  return body;
}

async function train() {
  const project = encodeURIComponent(state.project);
  const s = state.options.settings;
  const wanted = { versioning: $("versioning").checked,
                   active_learning: { enabled: $("active_learning").checked, every: Number($("every").value) } };
  if (wanted.versioning !== s.versioning || wanted.active_learning.enabled !== s.active_learning.enabled
      || wanted.active_learning.every !== s.active_learning.every) {
    state.options.settings = await api("PUT", `/api/projects/${project}/training/settings`, wanted);
  }
  const training = await api("POST", `/api/projects/${project}/trainings`, request());
  follow(training);
}

function follow(training) {
  state.training = training;
  $("run").hidden = false;
  $("run-id").textContent = `#${training.id}`;
  $("logs").hidden = true;
  $("curve").hidden = true;
  $("curve-verdict").hidden = true;
  state.logsOpen = false;
  state.curveShown = false;
  render(training);
  clearInterval(state.poll);
  state.poll = setInterval(() => guarded(refresh), 1000);
}

async function refresh() {
  const training = await api("GET", `/api/trainings/${state.training.id}`);
  state.training = training;
  render(training);
  if (state.logsOpen) await loadLogs();
  if (!["queued", "running"].includes(training.status)) clearInterval(state.poll);
  if (training.source === "curve" && training.status === "succeeded" && !state.curveShown) {
    state.curveShown = true;
    const curve = training.jobs[0].metrics.curve;
    $("curve-verdict").textContent = "Train-curve: " + curve.points.map((p) =>
      `${p.percent} % (${p.tasks} tasks) F1 ${p.mean === null ? "failed" : p.mean.toFixed(3)}`).join(" · ") + ` — ${curve.verdict}`;
    $("curve-verdict").hidden = false;
    $("curve").src = URL.createObjectURL(await api("GET", `/api/trainings/${training.id}/curve.png`));
    $("curve").hidden = false;
  }
}

function render(training) {
  const bar = $("progress-bar");
  const progress = training.status === "succeeded" ? 100 : training.progress;
  bar.style.width = `${progress}%`;
  bar.setAttribute("aria-valuenow", String(progress));
  bar.textContent = `${progress.toFixed(0)}%`;
  bar.className = training.status;
  $("run-status").textContent = training.jobs.map((j) =>
    `${j.type}: ${j.status}${j.epoch ? `, epoch ${j.epoch}` : ""}${j.reason ? ` (${j.reason})` : ""}`
    + (j.model_name ? `, model ${j.model_name}, test F1 ${f1(j.metrics)}` : "")
    + (j.metrics && j.metrics.tuning ? `, best of ${j.metrics.tuning.trials.length} trials: trial `
       + `${j.metrics.tuning.best_trial}` : "")).join("; ")
    + Object.values(training.data.checks || {}).flatMap((c) => c.notes).map((n) => `\nwarning: ${n}`).join("");
  $("cancel").disabled = !["queued", "running"].includes(training.status);
}

async function loadLogs() {
  const text = await api("GET", `/api/trainings/${state.training.id}/logs?follow=false`);
  const pre = $("logs");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = text;
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

// --- history, models, cluster -------------------------------------------------------------

async function download(trainingId) {
  const blob = await api("GET", `/api/trainings/${trainingId}/logs/download`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `training-${trainingId}-logs.zip`;
  link.click();
}

async function loadHistory() {
  const trainings = await api("GET", `/api/projects/${encodeURIComponent(state.project)}/trainings`);
  fill("history", trainings.map((t) => [
    t.id, t.created_at.slice(0, 19), t.source, t.requested_by,
    Object.entries(t.data.rows).map(([k, v]) => `${k}: ${v} tasks`).join(", ")
      + (t.data.selection.test_tag ? ` (test tag ${t.data.selection.test_tag})` : `, split ${t.data.selection.validation_split}`),
    t.status,
    t.jobs.map((j) => `${j.type} ${j.status}${j.model_name ? ` → ${j.model_name} (F1 ${f1(j.metrics)})` : ""}`
      + (j.status === "failed" && j.reason ? `: ${j.reason}` : "")).join("; "),
    button("Download logs", () => download(t.id)),
  ]));
}

async function loadModels() {
  const models = (await api("GET", "/api/models")).filter((m) => m.project === state.project);
  fill("models", models.map((m) => [m.name, m.type, m.embeddings, f1(m.metrics), m.trained_at.slice(0, 19),
                                    m.deployed ? "deployed" : "", button("Benchmark", () => benchmark(m.name))]));
  $("benchmark").hidden = true;
}

async function benchmark(name) {
  const bench = await api("GET", `/api/models/${encodeURIComponent(name)}/benchmark`);
  $("benchmark-model").textContent = name;
  const metrics = bench.metrics.entity || bench.metrics;
  const rows = Object.entries(metrics.per_label || {}).map(([label, m]) =>
    [label, m.precision.toFixed(3), m.recall.toFixed(3), m.f1.toFixed(3), m.support]);
  for (const avg of ["micro", "macro"]) {
    if (metrics[avg]) rows.push([avg, metrics[avg].precision.toFixed(3), metrics[avg].recall.toFixed(3),
                                 metrics[avg].f1.toFixed(3), metrics[avg].support ?? ""]);
  }
  fill("per-label", rows);
  const image = $("confusion");
  if (bench.confusion_matrix_png) {
    const blob = await api("GET", `/api/models/${encodeURIComponent(name)}/confusion_matrix.png`);
    image.src = URL.createObjectURL(blob);
  }
  image.hidden = !bench.confusion_matrix_png;
  $("no-confusion").hidden = Boolean(bench.confusion_matrix_png);
  $("benchmark").hidden = false;
}

async function loadCluster() {
  const view = await api("GET", "/api/cluster");
  const { total, available } = view;
  $("resources").textContent = `CPU ${available.CPU}/${total.CPU} free · GPU ${available.GPU}/${total.GPU} free · `
    + `memory ${available.memory_gb}/${total.memory_gb} GB free · free for training: `
    + Object.entries(view.free_for_training).map(([k, v]) => `${v} ${k}`).join(", ");
  $("dashboard").href = view.dashboard_url;
  $("dashboard").textContent = `Ray dashboard (${view.dashboard_url})`;
  fill("nodes", view.nodes.map((n) => [`${n.address}${n.head ? " (head)" : ""}`, n.cpus, n.gpus, n.memory_gb,
                                      n.alive ? "yes" : "no"]));
  fill("servers", view.training_servers.map((s) => [s.job_id, s.project, s.type, s.bundle, s.license, s.status,
                                                    s.started_at.slice(0, 19)]));
  fill("licenses", view.licenses.map((l) => [l.id, l.scopes.join(", "), `${l.in_use}/${l.max_jobs}`]));
}

// --- wiring -------------------------------------------------------------------------------

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(() => login($("token").value.trim())); });
$("logout").addEventListener("click", logout);
$("project-picker").addEventListener("change", (e) => guarded(() => pickProject(e.target.value)));
document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => guarded(() => show(tab.dataset.view))));
$("type").addEventListener("change", typeChanged);
$("embeddings").addEventListener("change", showDefaults);
$("script").addEventListener("change", scriptChanged);
$("next").addEventListener("click", () => setStep(Math.min(3, state.step + 1)));
$("back").addEventListener("click", () => setStep(Math.max(1, state.step - 1)));
$("wizard").addEventListener("submit", (e) => { e.preventDefault(); guarded(train); });
$("show-logs").addEventListener("click", () => guarded(async () => {
  state.logsOpen = !state.logsOpen;
  $("logs").hidden = !state.logsOpen;
  if (state.logsOpen) await loadLogs();
}));
$("cancel").addEventListener("click", () => guarded(async () => {
  render(await api("POST", `/api/trainings/${state.training.id}/cancel`));
}));
if (state.token) guarded(() => login(state.token));
