"""The adapter registry: every version kept, numbered and checksummed; status moves.

Versions live in `adapters/NAME/vN/` (a standard PEFT adapter directory plus `meta.json`)
and in `adapter_versions`; what happened to them is appended to `adapter_events`. At most
one version of a name is active (a unique partial index enforces it). Registration moves
a finished adapter directory into place and writes its row in one transaction, so an
interrupted run leaves no half-registered version.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cra.adapters.model_card import CARD_NAME, META_NAME, CardFacts, write_card_once_known
from cra.adapters.names import check_name as check_name
from cra.adapters.names import check_staged, method_kind
from cra.adapters.names import parse_ref as parse_ref
from cra.adapters.names import parse_versioned as parse_versioned
from cra.artefacts import AdapterVersion, check_files, model_hashes
from cra.db import transaction
from cra.errors import CraError, NotFound, UsageError
from cra.fsutil import atomic_write_text, now_iso, sha256_file
from cra.workspace import Workspace

STATUSES = ("candidate", "active", "retired", "rejected")


class RegistryConflict(CraError, RuntimeError):
    """The registry changed under a command (another promote or rollback won)."""


@dataclass(frozen=True)
class Version:
    """One registered adapter version and everything recorded about it."""

    name: str
    version: int
    status: str
    path: Path
    base_model: str
    base_model_hash: str
    tokenizer_hash: str
    dataset_id: str | None
    method: str
    hyperparams: dict[str, Any]
    train_metrics: dict[str, Any]
    eval_metrics: dict[str, Any]
    files_sha256: dict[str, str]
    created_at: str

    @property
    def kind(self) -> str:
        """`lora` (served by vLLM) or `ranker` (scored in-process), by its method."""
        return method_kind(self.method)

    @property
    def ref(self) -> str:
        """`NAME@vN`, also the name it is served under."""
        return f"{self.name}@v{self.version}"

    def served(self) -> AdapterVersion:
        """The version as the serving layer sees it."""
        return AdapterVersion(
            self.name,
            self.version,
            self.path,
            self.base_model_hash,
            self.tokenizer_hash,
            self.files_sha256,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "status": self.status,
            "path": str(self.path),
            "base_model": self.base_model,
            "base_model_hash": self.base_model_hash,
            "tokenizer_hash": self.tokenizer_hash,
            "dataset_id": self.dataset_id,
            "method": self.method,
            "kind": self.kind,
            "hyperparams": self.hyperparams,
            "train_metrics": self.train_metrics,
            "eval_metrics": self.eval_metrics,
            "files_sha256": self.files_sha256,
            "created_at": self.created_at,
        }


_COLUMNS = (
    "name, version, status, path, base_model, base_model_hash, tokenizer_hash, dataset_id, "
    "method, hyperparams, train_metrics, eval_metrics, files_sha256, created_at"
)


def _row(root: Path, row: sqlite3.Row) -> Version:
    path = Path(row["path"])
    return Version(
        name=row["name"],
        version=int(row["version"]),
        status=row["status"],
        path=path if path.is_absolute() else root / path,
        base_model=row["base_model"],
        base_model_hash=row["base_model_hash"],
        tokenizer_hash=row["tokenizer_hash"],
        dataset_id=row["dataset_id"],
        method=row["method"],
        hyperparams=json.loads(row["hyperparams"] or "{}"),
        train_metrics=json.loads(row["train_metrics"] or "{}"),
        eval_metrics=json.loads(row["eval_metrics"] or "{}"),
        files_sha256=json.loads(row["files_sha256"] or "{}"),
        created_at=row["created_at"],
    )


def get_version(conn: sqlite3.Connection, root: Path, name: str, version: int) -> Version:
    """The registered version `name@vN`; NotFound when there is none."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM adapter_versions WHERE name = ? AND version = ?",
        (name, version),
    ).fetchone()
    if row is None:
        numbers = conn.execute(
            "SELECT version FROM adapter_versions WHERE name = ? ORDER BY version", (name,)
        )
        known = [f"v{r[0]}" for r in numbers]
        raise NotFound(
            f"no adapter version {name}@v{version}",
            hint=f"{name} has {', '.join(known)}" if known else "list them with `cra adapter list`",
        )
    return _row(root, row)


def active_version(conn: sqlite3.Connection, root: Path, name: str) -> Version | None:
    """The active version of `name`, if any."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM adapter_versions WHERE name = ? AND status = 'active'", (name,)
    ).fetchone()
    return None if row is None else _row(root, row)


def active_number(conn: sqlite3.Connection, name: str) -> int | None:
    """The number of the active version of `name`, if any."""
    row = conn.execute(
        "SELECT version FROM adapter_versions WHERE name = ? AND status = 'active'", (name,)
    ).fetchone()
    return None if row is None else int(row[0])


def move_active(
    conn: sqlite3.Connection,
    name: str,
    *,
    expect_active: int | None,
    to_version: int | None,
    demoted_status: str,
) -> int | None:
    """Make `to_version` (None: no version) the active version of `name`, demoting the
    active one to `demoted_status`, inside the caller's transaction; return the version
    that was active. RegistryConflict when the active version is not `expect_active`."""
    now_active = active_number(conn, name)
    if now_active != expect_active:
        raise RegistryConflict(
            f"the active version of {name} changed meanwhile "
            f"(expected {_v(expect_active)}, found {_v(now_active)})",
            hint="another promote or rollback won; look with `cra adapter show "
            f"{name}` and run again if still wanted",
        )
    if now_active is not None:
        conn.execute(
            "UPDATE adapter_versions SET status = ? WHERE name = ? AND version = ?",
            (demoted_status, name, now_active),
        )
    if to_version is not None:
        conn.execute(
            "UPDATE adapter_versions SET status = 'active' WHERE name = ? AND version = ?",
            (name, to_version),
        )
    return now_active


def reject_candidate(conn: sqlite3.Connection, name: str, version: int) -> None:
    """Mark `name@vN` rejected if it is still a candidate (inside the caller's transaction)."""
    conn.execute(
        "UPDATE adapter_versions SET status = 'rejected' WHERE name = ? AND version = ? "
        "AND status = 'candidate'",
        (name, version),
    )


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def list_versions(conn: sqlite3.Connection, root: Path, name: str | None = None) -> list[Version]:
    """Every version (of `name`, when given), by name and version."""
    where, args = ("WHERE name = ?", (name,)) if name else ("", ())
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM adapter_versions {where} ORDER BY name, version", args
    ).fetchall()
    return [_row(root, r) for r in rows]


def adapter_names(conn: sqlite3.Connection) -> list[str]:
    """The names that have at least one registered version, sorted."""
    rows = conn.execute("SELECT DISTINCT name FROM adapter_versions ORDER BY name")
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class Event:
    """One entry of a name's history."""

    id: int
    name: str
    version: int | None
    event: str
    from_version: int | None
    reason: str | None
    forced: bool
    details: dict[str, Any]
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "event": self.event,
            "from_version": self.from_version,
            "reason": self.reason,
            "forced": self.forced,
            "details": self.details,
            "created_at": self.created_at,
        }


def events(conn: sqlite3.Connection, name: str) -> list[Event]:
    """The history of `name`, oldest first."""
    rows = conn.execute(
        "SELECT id, name, version, event, from_version, reason, forced, details, created_at "
        "FROM adapter_events WHERE name = ? ORDER BY id",
        (name,),
    ).fetchall()
    return [
        Event(
            int(r["id"]),
            r["name"],
            r["version"],
            r["event"],
            r["from_version"],
            r["reason"],
            bool(r["forced"]),
            json.loads(r["details"] or "{}"),
            r["created_at"],
        )
        for r in rows
    ]


def add_event(
    conn: sqlite3.Connection,
    name: str,
    version: int | None,
    event: str,
    *,
    from_version: int | None = None,
    reason: str | None = None,
    forced: bool = False,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one event (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO adapter_events (name, version, event, from_version, reason, forced, "
        "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            name,
            version,
            event,
            from_version,
            reason,
            int(forced),
            json.dumps(dict(details or {}), sort_keys=True),
            now_iso(),
        ),
    )


def verify_files(version: Version) -> None:
    """Refuse a version whose files changed since registration, naming the file."""
    if not version.files_sha256:
        raise UsageError(f"{version.ref} has no recorded file checksums")
    check_files(version.served())


def adapter_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but `meta.json` and the model card, by
    relative path."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != META_NAME and p.relative_to(folder).as_posix() != CARD_NAME
    }


def _card_facts(version: Version) -> CardFacts:
    """What the model card of `version` says (its lineage comes from `meta.json`)."""
    return CardFacts(
        name=version.name,
        version=version.version,
        base_model=version.base_model,
        base_model_hash=version.base_model_hash,
        dataset_id=version.dataset_id,
        method=version.method,
        hyperparams=version.hyperparams,
        train_metrics=version.train_metrics,
        files_sha256=version.files_sha256,
        created_at=version.created_at,
        eval_metrics=version.eval_metrics,
    )


def _next_version(conn: sqlite3.Connection, folder: Path, name: str) -> int:
    """One more than any version in the DB or on disk (an orphan folder is never reused)."""
    top = conn.execute(
        "SELECT coalesce(max(version), 0) FROM adapter_versions WHERE name = ?", (name,)
    ).fetchone()[0]
    on_disk = []
    if folder.is_dir():
        on_disk = [
            int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit() and p.is_dir()
        ]
    return max([int(top), *on_disk]) + 1


@dataclass
class Registration:
    """What a training run hands the registry."""

    name: str
    staged: Path
    base_model: Path
    dataset_id: str | None
    method: str
    hyperparams: dict[str, Any] = field(default_factory=dict)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)


def register(workspace: Workspace, reg: Registration) -> Version:
    """Move the finished adapter `reg.staged` to `adapters/NAME/vN/` as a candidate and
    record it, all or nothing; return the new version."""
    check_name(reg.name)
    check_staged(reg.name, reg.method, reg.staged)
    base_hash, tokenizer_hash = model_hashes(reg.base_model)
    identity = _Identity(base_hash, tokenizer_hash, adapter_files(reg.staged), now_iso())
    folder = workspace.adapters_dir / reg.name
    folder.mkdir(parents=True, exist_ok=True)
    with closing(workspace.raw_db()) as conn, transaction(conn):
        number = _next_version(conn, folder, reg.name)
        target = folder / f"v{number}"
        meta = _meta(reg, number, identity)
        atomic_write_text(reg.staged / META_NAME, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        reg.staged.rename(target)
        try:
            _insert(conn, reg, number, target.relative_to(workspace.root).as_posix(), identity)
            add_event(
                conn,
                reg.name,
                number,
                "registered",
                reason=f"trained with {reg.method} on {reg.dataset_id}",
                details={"lineage": reg.lineage},
            )
        except BaseException:
            target.rename(reg.staged)  # the transaction rolls back: put the folder back too
            raise
        registered = get_version(conn, workspace.root, reg.name, number)
    write_card_once_known(registered.path, _card_facts(registered))
    return registered


@dataclass(frozen=True)
class _Identity:
    """What a registration records about the base and the files."""

    base_hash: str
    tokenizer_hash: str
    files: dict[str, str]
    created: str


def _meta(reg: Registration, number: int, identity: _Identity) -> dict[str, Any]:
    """The `meta.json` written beside the adapter files."""
    return {
        "name": reg.name,
        "version": number,
        "status": "candidate",
        "base_model": str(reg.base_model),
        "base_model_hash": identity.base_hash,
        "tokenizer_hash": identity.tokenizer_hash,
        "dataset_id": reg.dataset_id,
        "method": reg.method,
        "kind": method_kind(reg.method),
        "hyperparams": reg.hyperparams,
        "train_metrics": reg.train_metrics,
        "lineage": reg.lineage,
        "files_sha256": identity.files,
        "created_at": identity.created,
    }


def _insert(
    conn: sqlite3.Connection, reg: Registration, number: int, path: str, identity: _Identity
) -> None:
    """The candidate's `adapter_versions` row (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO adapter_versions (name, version, status, path, base_model, "
        "base_model_hash, tokenizer_hash, dataset_id, method, hyperparams, "
        "train_metrics, files_sha256, created_at) "
        "VALUES (?, ?, 'candidate', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            reg.name,
            number,
            path,
            str(reg.base_model),
            identity.base_hash,
            identity.tokenizer_hash,
            reg.dataset_id,
            reg.method,
            json.dumps(reg.hyperparams, sort_keys=True),
            json.dumps(reg.train_metrics, sort_keys=True),
            json.dumps(identity.files, sort_keys=True),
            identity.created,
        ),
    )


def discard_staged(staged: Path) -> None:
    """Remove a staging folder that will not be registered."""
    shutil.rmtree(staged, ignore_errors=True)


def store_eval(workspace: Workspace, name: str, version: int, key: str, result: dict) -> Version:
    """Record `result` as the eval of `name@vN` on holdout `key` (replacing an older one)."""
    with closing(workspace.raw_db()) as conn, transaction(conn):
        current = get_version(conn, workspace.root, name, version)
        evals = dict(current.eval_metrics)
        evals[key] = result
        conn.execute(
            "UPDATE adapter_versions SET eval_metrics = ? WHERE name = ? AND version = ?",
            (json.dumps(evals, sort_keys=True), name, version),
        )
        add_event(
            conn,
            name,
            version,
            "evaluated",
            reason=f"holdout {key}",
            details={"holdout": key, "metrics": result.get("metrics", {})},
        )
        stored = get_version(conn, workspace.root, name, version)
    write_card_once_known(stored.path, _card_facts(stored))
    return stored
