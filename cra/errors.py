"""The exceptions cra raises on purpose.

Every error a user can cause or fix is a :class:`CraError`. The CLI prints it as one
line with a hint and exits non-zero; anything else is a bug and keeps its traceback.
Narrow subclasses also subclass the matching builtin, so callers that only know the
builtin still catch them.
"""

from __future__ import annotations

from pathlib import Path


class CraError(Exception):
    """An error the user can act on: a message, and a hint saying what to do. `details`
    are short lines (one per item: an adapter, a file) the CLI lists under the message."""

    exit_code: int = 1
    details: tuple[str, ...] = ()

    def __init__(
        self, message: str, *, hint: str | None = None, details: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message


class UsageError(CraError, ValueError):
    """A command was given an argument or option value it cannot use."""

    exit_code = 2


class ConfigError(CraError, ValueError):
    """`cra.toml` cannot be read, or a setting in it is invalid."""

    def __init__(
        self,
        message: str,
        *,
        path: Path,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if key is not None:
            where += f", key {key!r}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = path
        self.key = key
        self.line = line


class WorkspaceError(CraError, FileNotFoundError):
    """The workspace does not exist or is not usable."""

    def __init__(self, message: str, *, path: Path, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class DatabaseError(CraError, RuntimeError):
    """A database file cannot be opened, is not SQLite, or has an unknown schema."""

    def __init__(self, message: str, *, path: Path, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}", hint=hint)
        self.path = path


class SchemaTooNew(DatabaseError):
    """The database was written by a newer cra than this one."""

    def __init__(self, *, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"schema version {found} is newer than this cra knows ({known})",
            path=path,
            hint="upgrade cra, or open the workspace with the version that wrote it",
        )
        self.found = found
        self.known = known


class NotFound(CraError, LookupError):
    """A named thing (repository, task, dataset, adapter version) does not exist."""


class ChecksumMismatch(CraError, ValueError):
    """A file's content does not match the sha256 recorded for it."""

    def __init__(self, path: Path | str, *, expected: str, actual: str) -> None:
        super().__init__(
            f"{path}: sha256 {actual[:12]}… does not match the recorded {expected[:12]}…",
            hint="the file was changed or corrupted; restore it or re-create it",
        )
        self.path = path
        self.expected = expected
        self.actual = actual
