-- The labtrain catalog. One writer: the storage actor (or a test's own connection).
CREATE SEQUENCE IF NOT EXISTS project_ids START 1;
CREATE SEQUENCE IF NOT EXISTS import_ids START 1;

CREATE TABLE IF NOT EXISTS users (
    name        VARCHAR PRIMARY KEY,
    token_hash  VARCHAR UNIQUE NOT NULL,
    is_admin    BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS projects (
    project_id  INTEGER PRIMARY KEY DEFAULT nextval('project_ids'),
    name        VARCHAR UNIQUE NOT NULL,
    language    VARCHAR NOT NULL DEFAULT 'en',
    config_xml  VARCHAR NOT NULL,
    created_by  VARCHAR,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS members (
    project_id  INTEGER NOT NULL,
    username    VARCHAR NOT NULL,
    role        VARCHAR NOT NULL CHECK (role IN ('owner', 'manager', 'reviewer', 'annotator')),
    priority    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, username)
);

CREATE TABLE IF NOT EXISTS tasks (
    project_id  INTEGER NOT NULL,
    task_id     BIGINT NOT NULL,
    data        VARCHAR NOT NULL,          -- the task's `data` object, JSON
    tags        VARCHAR[] NOT NULL,
    image       VARCHAR,                   -- blob key of data.image, if any
    format      VARCHAR NOT NULL,
    PRIMARY KEY (project_id, task_id)
);

CREATE TABLE IF NOT EXISTS completions (
    project_id    INTEGER NOT NULL,
    task_id       BIGINT NOT NULL,
    completion_id BIGINT NOT NULL,
    author        VARCHAR,
    submitted     BOOLEAN NOT NULL,
    submitted_at  TIMESTAMP,
    updated_at    TIMESTAMP,
    honeypot      BOOLEAN NOT NULL DEFAULT false,
    review        VARCHAR CHECK (review IN ('accepted', 'rejected')),
    reviewer      VARCHAR,
    reviewed_at   TIMESTAMP,
    result        VARCHAR NOT NULL,        -- the completion's `result` list, JSON
    row_hash      VARCHAR NOT NULL,
    PRIMARY KEY (project_id, task_id, completion_id)
);

-- One row per (result, label) of a completion: label counts without parsing JSON again.
CREATE TABLE IF NOT EXISTS completion_labels (
    project_id    INTEGER NOT NULL,
    task_id       BIGINT NOT NULL,
    completion_id BIGINT NOT NULL,
    from_name     VARCHAR NOT NULL,
    result_type   VARCHAR NOT NULL,
    label         VARCHAR
);

CREATE TABLE IF NOT EXISTS imports (
    import_id   INTEGER PRIMARY KEY DEFAULT nextval('import_ids'),
    project_id  INTEGER NOT NULL,
    sha256      VARCHAR NOT NULL,
    formats     VARCHAR[] NOT NULL,
    tasks       INTEGER NOT NULL,
    completions INTEGER NOT NULL,
    inserted    INTEGER NOT NULL,
    updated     INTEGER NOT NULL,
    unchanged   INTEGER NOT NULL,
    imported_by VARCHAR,
    imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Trainings: one request (one snapshot) -> one job per model type -> at most one model each.
CREATE SEQUENCE IF NOT EXISTS training_ids START 1;
CREATE SEQUENCE IF NOT EXISTS job_ids START 1;

CREATE TABLE IF NOT EXISTS training_settings (
    project_id      INTEGER PRIMARY KEY,
    versioning      BOOLEAN NOT NULL DEFAULT false,
    active_learning VARCHAR NOT NULL DEFAULT '{"enabled": false, "every": 50, "deploy": false}'
);

CREATE TABLE IF NOT EXISTS trainings (
    training_id  INTEGER PRIMARY KEY DEFAULT nextval('training_ids'),
    project_id   INTEGER NOT NULL,
    source       VARCHAR NOT NULL,          -- manual, active learning, ray job, tuning, curve
    requested_by VARCHAR,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    request      VARCHAR NOT NULL,          -- JSON: types, embeddings, parameters, selection, deploy, gpu
    data         VARCHAR NOT NULL           -- JSON: the snapshot's manifest (tags, split, files, rows)
);

CREATE TABLE IF NOT EXISTS jobs (
    job_id        INTEGER PRIMARY KEY DEFAULT nextval('job_ids'),
    training_id   INTEGER NOT NULL,
    type          VARCHAR NOT NULL,
    embeddings    VARCHAR NOT NULL,
    scope         VARCHAR NOT NULL,         -- the license scope it needs, e.g. training:ner
    gpu           BOOLEAN NOT NULL,
    status        VARCHAR NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    reason        VARCHAR,                  -- why it waits, or why it failed / was cancelled
    progress      DOUBLE NOT NULL DEFAULT 0,
    epoch         INTEGER,
    metrics       VARCHAR,                  -- JSON: the latest validation scores, then the test summary
    license       VARCHAR,
    output_dir    VARCHAR NOT NULL,
    model_name    VARCHAR,
    ray_job_id    VARCHAR,                  -- with `--submit`: the Ray job's submission id
    started_at    TIMESTAMP,
    ended_at      TIMESTAMP
);

CREATE TABLE IF NOT EXISTS models (
    name        VARCHAR PRIMARY KEY,        -- {type}_{project}[_{choices}][_v{N}]
    family      VARCHAR NOT NULL,           -- the name without _v{N}
    version     INTEGER,                    -- NULL with versioning off
    project_id  INTEGER NOT NULL,
    type        VARCHAR NOT NULL,
    embeddings  VARCHAR NOT NULL,
    job_id      INTEGER NOT NULL,
    path        VARCHAR NOT NULL,           -- the job's output folder (model/, metrics.json, ...)
    metrics     VARCHAR NOT NULL,           -- JSON: test micro and macro P/R/F1
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    artifact_uri VARCHAR                    -- the model folder in the artifact store (serve --artifacts), or NULL
);
ALTER TABLE models ADD COLUMN IF NOT EXISTS artifact_uri VARCHAR;  -- catalogs made before it

-- Custom NER training scripts: each upload of a changed source is a new version; the source
-- itself is a content-addressed file under {home}/scripts.
CREATE TABLE IF NOT EXISTS scripts (
    project_id  INTEGER NOT NULL,
    name        VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    sha256      VARCHAR NOT NULL,
    size        INTEGER NOT NULL,
    uploaded_by VARCHAR,
    uploaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (project_id, name, version)
);

-- A project linked to a Label Studio project: labtrain is its ML backend and mirrors its tasks.
-- The Label Studio token is sealed with the home's key (storage.secrets); the backend's password
-- (HTTP basic auth of Label Studio's calls, user 'labtrain') is kept as a hash.
CREATE TABLE IF NOT EXISTS label_studio_links (
    project_id        INTEGER PRIMARY KEY,
    url               VARCHAR NOT NULL,       -- Label Studio's base URL
    ls_project        BIGINT NOT NULL,        -- the project's id in Label Studio
    token_sealed      VARCHAR NOT NULL,
    backend_hash      VARCHAR NOT NULL,
    backend_url       VARCHAR NOT NULL,       -- the ML backend URL Label Studio calls: .../ml/{project}
    ml_backend_id     BIGINT,                 -- Label Studio's id of the registered backend (--connect)
    webhook_id        BIGINT,                 -- ... of the webhook labtrain made for /webhook
    linked_by         VARCHAR,
    linked_at         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    last_sync         TIMESTAMP,
    last_sync_tasks   INTEGER,
    last_error        VARCHAR
);

-- Encoders users registered (`labtrain embeddings add`): each a model folder the trainers take,
-- kept in the home (encoders/) or the artifact store; `info` is labtrain.encoders.Encoder's JSON.
CREATE TABLE IF NOT EXISTS encoders (
    name      VARCHAR PRIMARY KEY,
    info      VARCHAR NOT NULL,
    added_by  VARCHAR,
    added_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
