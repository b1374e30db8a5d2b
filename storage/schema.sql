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
