"""The schema of `raw.db`: everything the harness, curation, training and serving did.

Append-mostly. Every row says where it came from (repo, commit, task_id, run id).
Times are ISO 8601 strings in UTC; `*_ts` columns hold the same instant as Unix
seconds for ordering and range queries. JSON columns hold JSON text.
Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

from cra.db.migrations import Migration, sql

M0001_CORE = sql(
    """
CREATE TABLE repos (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    source_url      TEXT,
    head_sha        TEXT,
    domain          TEXT,
    manifest_sha256 TEXT,
    added_at        TEXT NOT NULL
);

-- Every commit the miner saw, with the funnel's verdict on it.
CREATE TABLE commits (
    id             INTEGER PRIMARY KEY,
    repo_id        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    sha            TEXT NOT NULL,
    parent_sha     TEXT,
    authored_at    TEXT NOT NULL,
    authored_ts    INTEGER NOT NULL,
    author         TEXT,
    subject        TEXT NOT NULL,
    task_text      TEXT,
    message_score  REAL,
    files_source   TEXT NOT NULL DEFAULT '[]',  -- JSON list of non-test paths changed
    files_tests    TEXT NOT NULL DEFAULT '[]',  -- JSON list of test paths changed
    files_other    TEXT NOT NULL DEFAULT '[]',  -- JSON list of other paths changed
    lines_added    INTEGER NOT NULL DEFAULT 0,
    lines_deleted  INTEGER NOT NULL DEFAULT 0,
    verdict        TEXT NOT NULL CHECK (verdict IN ('qualified', 'dropped')),
    stage          TEXT NOT NULL,               -- the funnel stage that decided
    reason         TEXT,                        -- why it was dropped (NULL if qualified)
    mined_at       TEXT NOT NULL,
    UNIQUE (repo_id, sha)
);
CREATE INDEX commits_repo_verdict ON commits (repo_id, verdict, authored_ts);

-- A qualifying commit turned into a task: the commit message is the task.
CREATE TABLE tasks (
    task_id     TEXT PRIMARY KEY,
    repo_id     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    commit_id   INTEGER NOT NULL UNIQUE REFERENCES commits(id) ON DELETE CASCADE,
    task_text   TEXT NOT NULL,
    gold_files  TEXT NOT NULL DEFAULT '[]',     -- JSON: non-test files the commit changed
    gold_symbols TEXT NOT NULL DEFAULT '[]',    -- JSON: definitions the diff touches
    created_at  TEXT NOT NULL
);
CREATE INDEX tasks_repo ON tasks (repo_id);

-- One invocation of the harness over a repository.
CREATE TABLE harness_runs (
    id          INTEGER PRIMARY KEY,
    repo_id     INTEGER REFERENCES repos(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                  -- mine, plan, validate, eval, ...
    planner     TEXT,
    params      TEXT NOT NULL DEFAULT '{}',     -- JSON
    status      TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'finished', 'interrupted', 'failed')),
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    error       TEXT
);

-- Every request cra sent to a model, whatever it returned.
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY,
    task_id           TEXT REFERENCES tasks(task_id) ON DELETE SET NULL,
    run_id            INTEGER REFERENCES harness_runs(id) ON DELETE SET NULL,
    stage             TEXT NOT NULL,
    endpoint          TEXT,
    model             TEXT NOT NULL,
    adapter           TEXT,
    adapter_version   INTEGER,
    temperature       REAL,
    params            TEXT NOT NULL DEFAULT '{}',   -- JSON: every other request parameter
    messages          TEXT NOT NULL,                -- JSON list of chat messages
    response          TEXT,
    finish_reason     TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_ms        REAL,
    attempts          INTEGER NOT NULL DEFAULT 1,
    error             TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX llm_calls_task ON llm_calls (task_id);
CREATE INDEX llm_calls_stage ON llm_calls (stage, created_at);

-- What retrieval picked for a task, with scores.
CREATE TABLE retrievals (
    id          INTEGER PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
    run_id      INTEGER REFERENCES harness_runs(id) ON DELETE SET NULL,
    method      TEXT NOT NULL,
    query       TEXT NOT NULL,
    k           INTEGER NOT NULL,
    results     TEXT NOT NULL,                  -- JSON list of {symbol, file, score}
    created_at  TEXT NOT NULL
);
CREATE INDEX retrievals_task ON retrievals (task_id);

CREATE TABLE plans (
    id          INTEGER PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
    run_id      INTEGER REFERENCES harness_runs(id) ON DELETE SET NULL,
    planner     TEXT NOT NULL,
    temperature REAL,
    llm_call_id INTEGER REFERENCES llm_calls(id) ON DELETE SET NULL,
    valid       INTEGER NOT NULL CHECK (valid IN (0, 1)),
    plan        TEXT,                           -- JSON plan (NULL when invalid)
    raw         TEXT,                           -- the text it was parsed from
    error       TEXT,                           -- why it is invalid
    created_at  TEXT NOT NULL
);
CREATE INDEX plans_task ON plans (task_id, planner);

CREATE TABLE plan_scores (
    plan_id          INTEGER PRIMARY KEY REFERENCES plans(id) ON DELETE CASCADE,
    file_precision   REAL NOT NULL,
    file_recall      REAL NOT NULL,
    file_f1          REAL NOT NULL,
    symbol_precision REAL NOT NULL,
    symbol_recall    REAL NOT NULL,
    symbol_f1        REAL NOT NULL,
    order_score      REAL,                      -- NULL when no step pair depends on another
    alignment        REAL NOT NULL,
    weights          TEXT NOT NULL,             -- JSON weights used
    details          TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL
);

-- One test's outcome in one run of the tests.
CREATE TABLE test_runs (
    id          INTEGER PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
    run_id      INTEGER REFERENCES harness_runs(id) ON DELETE SET NULL,
    phase       TEXT NOT NULL,                  -- before, after, patch
    attempt     INTEGER NOT NULL,
    test_id     TEXT NOT NULL,                  -- the pytest node id, exactly
    outcome     TEXT NOT NULL,                  -- passed, failed, error, skipped
    duration_s  REAL,
    env_id      TEXT,
    isolation   TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX test_runs_task ON test_runs (task_id, phase);

-- A verdict on a task: validation of the gold commit, or grading of a patch.
CREATE TABLE outcomes (
    id            INTEGER PRIMARY KEY,
    task_id       TEXT NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
    run_id        INTEGER REFERENCES harness_runs(id) ON DELETE SET NULL,
    kind          TEXT NOT NULL,                -- validation, patch_grade
    verdict       TEXT NOT NULL,
    fail_to_pass  TEXT NOT NULL DEFAULT '[]',   -- JSON list of test ids
    pass_to_pass  TEXT NOT NULL DEFAULT '[]',
    flaky         TEXT NOT NULL DEFAULT '[]',
    isolation     TEXT,
    details       TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL
);
CREATE INDEX outcomes_task ON outcomes (task_id, kind);

CREATE TABLE training_datasets (
    id          TEXT PRIMARY KEY,
    plan_path   TEXT,
    path        TEXT NOT NULL,
    counts      TEXT NOT NULL DEFAULT '{}',     -- JSON
    sha256      TEXT NOT NULL DEFAULT '{}',     -- JSON: file name -> sha256
    replay_of   TEXT,                           -- JSON list of earlier dataset ids
    created_at  TEXT NOT NULL
);

-- Every adapter version ever trained. Versions are immutable; status moves.
CREATE TABLE adapter_versions (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    status          TEXT NOT NULL DEFAULT 'candidate'
                    CHECK (status IN ('candidate', 'active', 'retired', 'rejected')),
    path            TEXT NOT NULL,
    base_model      TEXT NOT NULL,
    base_model_hash TEXT NOT NULL,
    tokenizer_hash  TEXT NOT NULL,
    dataset_id      TEXT REFERENCES training_datasets(id),
    method          TEXT NOT NULL,
    hyperparams     TEXT NOT NULL DEFAULT '{}',
    train_metrics   TEXT NOT NULL DEFAULT '{}',
    eval_metrics    TEXT,
    files_sha256    TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL,
    UNIQUE (name, version)
);
-- At most one active version per adapter name.
CREATE UNIQUE INDEX adapter_versions_one_active ON adapter_versions (name)
    WHERE status = 'active';

-- Append-only history of what happened to adapter versions (who was active when).
CREATE TABLE adapter_events (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    version      INTEGER,
    event        TEXT NOT NULL,                 -- registered, promoted, rolled_back, ...
    from_version INTEGER,
    reason       TEXT,
    forced       INTEGER NOT NULL DEFAULT 0 CHECK (forced IN (0, 1)),
    details      TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL
);
CREATE INDEX adapter_events_name ON adapter_events (name, id);
"""
)

# The subject's conventional-commit type (feat, fix, docs, ...; NULL when it has none).
# Rows mined before this migration hold NULL until `cra harness mine --rescore`.
M0002_COMMIT_TYPE = sql(
    """
ALTER TABLE commits ADD COLUMN conventional_type TEXT;
"""
)

# When a commit left the package's history (a re-pack with rewritten history): NULL while
# it is reachable from the package's HEAD. A gone commit is never planned, validated or
# counted as qualifying; its rows stay as the record of what happened.
M0003_COMMIT_GONE = sql(
    """
ALTER TABLE commits ADD COLUMN gone_at TEXT;
"""
)

# Every logging step of a training run (`cra train`): loss, learning rate, gradient norm,
# throughput and, for DPO, the reward margin. `run_id` names the run; `version` is NULL
# until the run's adapter is registered (and stays NULL for a run that never finished).
M0004_TRAIN_STEPS = sql(
    """
CREATE TABLE train_steps (
    id            INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL,                -- ADAPTER-STAMP of the training run
    adapter       TEXT NOT NULL,
    version       INTEGER,                      -- the registered version, NULL until then
    method        TEXT NOT NULL,                -- sft, dpo
    step          INTEGER NOT NULL,
    epoch         REAL,
    loss          REAL,
    learning_rate REAL,
    grad_norm     REAL,
    num_tokens    REAL,                         -- tokens seen so far, where logged
    tokens_per_s  REAL,                         -- since the previous logging step
    reward_margin REAL,                         -- DPO: mean chosen - rejected reward
    logs          TEXT NOT NULL DEFAULT '{}',   -- JSON: every numeric value logged
    created_at    TEXT NOT NULL,
    UNIQUE (run_id, step)
);
CREATE INDEX train_steps_adapter ON train_steps (adapter, version, step);
"""
)

# The self-improvement loop (`cra loop`): its runs, their cycles and steps, and an
# append-only journal of events in which each row holds the sha256 of the one before.
M0005_LOOP = sql(
    """
CREATE TABLE loop_runs (
    id              INTEGER PRIMARY KEY,
    status          TEXT NOT NULL CHECK (status IN ('running', 'ended')),
    limits          TEXT NOT NULL,                -- JSON: the limits the run was started with
    cycle           INTEGER NOT NULL DEFAULT 0,   -- the cycle now (or last) running
    runtime_s       REAL NOT NULL DEFAULT 0,      -- time run so far, time stopped not counted
    repo            TEXT,                         -- the repository the cycles work on
    stop_requested  TEXT,                         -- set by `cra loop stop`
    stop_reason     TEXT,
    exit_code       INTEGER,
    started_at      TEXT NOT NULL,
    ended_at        TEXT
);
CREATE TABLE loop_cycles (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES loop_runs(id),
    number      INTEGER NOT NULL CHECK (number >= 1),
    repo        TEXT,
    status      TEXT NOT NULL,                    -- running, done, failed, cut
    runtime_s   REAL NOT NULL DEFAULT 0,
    tokens      INTEGER NOT NULL DEFAULT 0,       -- LLM tokens its calls used
    promoted    INTEGER NOT NULL DEFAULT 0,       -- versions promoted through the gate
    summary     TEXT NOT NULL DEFAULT '{}',       -- JSON: what it changed and measured
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    UNIQUE (run_id, number)
);
CREATE TABLE loop_steps (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES loop_runs(id),
    cycle       INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    step        TEXT NOT NULL,
    status      TEXT NOT NULL,     -- running, done, skipped, failed, cut, interrupted
    reason      TEXT,
    counts      TEXT NOT NULL DEFAULT '{}',       -- JSON: what it did, counted
    outputs     TEXT NOT NULL DEFAULT '{}',       -- JSON: what later steps read (ids, refs)
    started_at  TEXT NOT NULL,
    ended_at    TEXT
);
CREATE INDEX loop_steps_cycle ON loop_steps (run_id, cycle, position);
CREATE TABLE loop_events (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES loop_runs(id),
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,                    -- canonical JSON
    created_at  TEXT NOT NULL,
    prev_sha256 TEXT NOT NULL,                    -- the previous event's sha256 ('' first)
    sha256      TEXT NOT NULL                     -- of prev_sha256 and this row's content
);
CREATE TRIGGER loop_events_no_update BEFORE UPDATE ON loop_events
BEGIN SELECT RAISE(ABORT, 'loop_events is append-only'); END;
"""
)

# Which method served each retrieval of `cra harness run`: `bm25`, or `learned` by the
# ranker version named in `adapter` and `adapter_version`, with the files in its order
# (`files`, JSON; NULL for BM25 alone), so `cra adapter check` can score that version live.
M0006_RETRIEVAL_RANKER = sql(
    """
ALTER TABLE retrievals ADD COLUMN adapter TEXT;
ALTER TABLE retrievals ADD COLUMN adapter_version INTEGER;
ALTER TABLE retrievals ADD COLUMN files TEXT;   -- JSON list of {path, score, encoder, bm25}
CREATE INDEX retrievals_adapter ON retrievals (adapter, adapter_version, created_at);
"""
)

RAW_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core tables", M0001_CORE),
    Migration(2, "commits record their conventional-commit type", M0002_COMMIT_TYPE),
    Migration(3, "commits gone from a re-packed history are marked", M0003_COMMIT_GONE),
    Migration(4, "every logging step of a training run", M0004_TRAIN_STEPS),
    Migration(5, "the self-improvement loop's runs, cycles, steps and journal", M0005_LOOP),
    Migration(6, "retrievals record the ranker version that served them", M0006_RETRIEVAL_RANKER),
)
