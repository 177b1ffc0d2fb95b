"""The schema of `curated.db`: the code index and knowledge base the agent retrieves from.

Parsed content is keyed by git blob sha, so a file that did not change between two
commits is parsed once. Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

from cra.db.migrations import Migration, sql

M0001_INDEX = sql(
    """
-- A parsed file content (a git blob).
CREATE TABLE blobs (
    blob_sha    TEXT PRIMARY KEY,
    language    TEXT NOT NULL,
    parse_error TEXT,                           -- NULL when the whole file parsed
    line_count  INTEGER NOT NULL,
    parsed_at   TEXT NOT NULL
);

-- A definition in a blob: class, function or method.
CREATE TABLE symbols (
    id          INTEGER PRIMARY KEY,
    blob_sha    TEXT NOT NULL REFERENCES blobs(blob_sha) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('class', 'function', 'method')),
    name        TEXT NOT NULL,
    qualname    TEXT NOT NULL,
    start_line  INTEGER NOT NULL,
    end_line    INTEGER NOT NULL,
    signature   TEXT,
    docstring   TEXT
);
CREATE INDEX symbols_blob ON symbols (blob_sha);

-- An import statement in a blob.
CREATE TABLE imports (
    id          INTEGER PRIMARY KEY,
    blob_sha    TEXT NOT NULL REFERENCES blobs(blob_sha) ON DELETE CASCADE,
    module      TEXT NOT NULL,
    name        TEXT,
    alias       TEXT,
    level       INTEGER NOT NULL DEFAULT 0,     -- relative import dots
    line        INTEGER NOT NULL
);
CREATE INDEX imports_blob ON imports (blob_sha);
"""
)

CURATED_MIGRATIONS: tuple[Migration, ...] = (Migration(1, "code index", M0001_INDEX),)
