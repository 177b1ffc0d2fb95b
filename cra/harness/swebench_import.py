"""`cra harness import --format swebench`: SWE-bench instances as tasks of packed
repositories, so that tasks from elsewhere are validated and trained on like mined ones.

A task hangs on a commit. An instance's commit is `base_commit` with `patch` and
`test_patch` applied: when the package has a commit with that parent and that tree (the
original commit: a task exported by cra, or an upstream commit), the task is that
commit's, with the same task id as mining gives it. Otherwise cra makes the commit
(author `cra import`, dated `created_at`, the problem statement as its message, so the
same instance always makes the same commit) and keeps it in the package under
:data:`~cra.harness.reconcile.IMPORTED_REFS`. Either way the commit is recorded as
qualifying, and the instance's FAIL_TO_PASS, PASS_TO_PASS and provenance as an outcome of
kind `import`: `cra harness validate` proves the task with the package's own tests.
Importing again changes nothing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cra.db import transaction
from cra.db.commits import Commit, MinedCommit, commit_id, commit_stages, upsert_commits
from cra.db.outcomes import latest_import, record_import
from cra.db.tasks import ensure_task
from cra.errors import UsageError
from cra.fsutil import now_iso, sha256_file
from cra.git import GitError, git
from cra.harness.reconcile import IMPORTED_REFS
from cra.harness.swebench import FORMAT, REQUIRED, test_list
from cra.harness.testpaths import is_test_path
from cra.repos.layout import check_name, register_repo, require_package
from cra.workspace import Workspace

IMPORT_AUTHOR = "cra import <import@cra.invalid>"


@dataclass(frozen=True)
class Instance:
    """One instance of the file, checked: where it is, what it claims."""

    line: int
    instance_id: str
    repo: str
    base_commit: str
    patch: str
    test_patch: str
    problem_statement: str
    created_at: datetime
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    flaky: list[str]
    extra: dict[str, object]


@dataclass
class Imported:
    """What an import did, per instance: the task it became and how."""

    path: Path
    sha256: str
    tasks: dict[str, str] = field(default_factory=dict)  # instance id -> task id
    reused: int = 0  # instances whose commit the package had
    made: int = 0  # instances whose commit cra made
    unchanged: int = 0  # instances imported before with the same claims

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "format": FORMAT,
            "path": str(self.path),
            "sha256": self.sha256,
            "instances": len(self.tasks),
            "reused_commits": self.reused,
            "made_commits": self.made,
            "unchanged": self.unchanged,
            "tasks": dict(self.tasks),
        }


def _bad(path: Path, line: int, message: str) -> UsageError:
    return UsageError(f"{path.name}:{line}: {message}", hint="see `cra harness import --help`")


def _text(path: Path, line: int, data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _bad(path, line, f"{key} must be a non-empty string")
    return value


def _created_at(path: Path, line: int, value: object) -> datetime:
    if value in (None, ""):
        return datetime(1970, 1, 1, tzinfo=UTC)
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise _bad(path, line, f"created_at {value!r} is not an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_instance(path: Path, line: int, text: str, repo: str | None) -> Instance:
    """One line of the file as an instance; UsageError naming the line when it is not."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, line, f"not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise _bad(path, line, "not a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise _bad(path, line, f"missing {', '.join(missing)}")
    lists = {k: test_list(data[k]) for k in ("FAIL_TO_PASS", "PASS_TO_PASS")}
    for key, value in lists.items():
        if value is None:
            raise _bad(path, line, f"{key} must be a list of test ids (or its JSON text)")
    if not lists["FAIL_TO_PASS"]:
        raise _bad(path, line, "FAIL_TO_PASS is empty: nothing would prove the task")
    name = repo or str(data.get("cra_repo") or data.get("repo") or "").rsplit("/", 1)[-1]
    if not name:
        raise _bad(path, line, "no repository: give --repo or a `repo` key")
    flaky = test_list(data.get("cra_flaky", [])) or []
    return Instance(
        line=line,
        instance_id=_text(path, line, data, "instance_id"),
        repo=check_name(name),
        base_commit=_text(path, line, data, "base_commit").strip(),
        patch=_text(path, line, data, "patch"),
        test_patch=_text(path, line, data, "test_patch"),
        problem_statement=_text(path, line, data, "problem_statement"),
        created_at=_created_at(path, line, data.get("created_at")),
        fail_to_pass=lists["FAIL_TO_PASS"] or [],
        pass_to_pass=lists["PASS_TO_PASS"] or [],
        flaky=flaky,
        extra={k: v for k, v in data.items() if k not in REQUIRED},
    )


def read_instances(path: Path, repo: str | None) -> list[Instance]:
    """Every instance of the JSON lines file at `path` (blank lines skipped), checked."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    instances: list[Instance] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        instance = parse_instance(path, number, text, repo)
        if instance.instance_id in seen:
            first = seen[instance.instance_id]
            raise _bad(path, number, f"instance_id {instance.instance_id} repeats line {first}")
        seen[instance.instance_id] = number
        instances.append(instance)
    if not instances:
        raise UsageError(f"{path.name}: no instances in the file")
    return instances


@dataclass(frozen=True)
class Placed:
    """Where an instance's commit is in its package: the sha, and whether cra made it."""

    sha: str
    tree: str
    made: bool
    files: dict[str, tuple[int, int]]  # path -> (lines added, deleted)


class _Scratch:
    """A throwaway repository that reads the package's objects: patches are applied to
    its index, never to the package, and only the commits cra makes travel back."""

    def __init__(self, root: Path, package_git: Path) -> None:
        self.dir = root / "scratch"
        git("init", "-q", str(self.dir), cwd=root)
        alternates = self.dir / ".git" / "objects" / "info" / "alternates"
        alternates.write_text(str((package_git / "objects").resolve()) + "\n", encoding="utf-8")

    def tree_of(self, path: Path, instance: Instance) -> str:
        """The tree of `base_commit` with both patches applied; UsageError naming the
        instance's line when the base is missing or a patch does not apply."""
        try:
            git("cat-file", "-e", f"{instance.base_commit}^{{commit}}", cwd=self.dir)
        except GitError:
            raise _bad(
                path,
                instance.line,
                f"base_commit {instance.base_commit} is not a commit of "
                f"the package {instance.repo}",
            ) from None
        git("read-tree", instance.base_commit, cwd=self.dir)
        for key, patch in (("patch", instance.patch), ("test_patch", instance.test_patch)):
            text = patch if patch.endswith("\n") else patch + "\n"
            try:
                git("apply", "--cached", "--whitespace=nowarn", "-", cwd=self.dir, input=text)
            except GitError as exc:
                first = (exc.stderr.strip().splitlines() or ["git apply failed"])[0]
                raise _bad(path, instance.line, f"{key} does not apply: {first}") from None
        return git("write-tree", cwd=self.dir).strip()

    def make_commit(self, instance: Instance, tree: str) -> str:
        """The commit cra makes for an instance (the same instance, the same sha)."""
        stamp = f"{int(instance.created_at.timestamp())} +0000"
        body = (
            f"tree {tree}\nparent {instance.base_commit}\nauthor {IMPORT_AUTHOR} {stamp}\n"
            f"committer {IMPORT_AUTHOR} {stamp}\n\n{instance.problem_statement.rstrip()}\n"
            f"\nImported-Instance: {instance.instance_id}\n"
        )
        sha = git("hash-object", "-t", "commit", "-w", "--stdin", cwd=self.dir, input=body)
        sha = sha.strip()
        git("update-ref", f"refs/heads/made/{sha}", sha, cwd=self.dir)
        return sha

    def files(self, base: str, sha_or_tree: str) -> dict[str, tuple[int, int]]:
        """Each changed path with its lines added and deleted (0 for binary files)."""
        out = git(
            "diff-tree", "-r", "-z", "--numstat", "--no-renames", base, sha_or_tree, cwd=self.dir
        )
        fields = [f for f in out.split("\0") if f]
        counts: dict[str, tuple[int, int]] = {}
        for entry in fields:
            added, deleted, path = entry.split("\t", 2)
            counts[path] = (
                int(added) if added.isdigit() else 0,
                int(deleted) if deleted.isdigit() else 0,
            )
        return counts


def _children_by_tree(repo_dir: Path) -> dict[tuple[str, str], str]:
    """Every commit of the package keyed by (first parent, tree)."""
    out = git("log", "--all", "--format=%H %T %P", cwd=repo_dir)
    found: dict[tuple[str, str], str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            found.setdefault((parts[2], parts[1]), parts[0])
    return found


def _git_dir(repo_dir: Path) -> Path:
    return repo_dir / ".git" if (repo_dir / ".git").is_dir() else repo_dir


@contextmanager
def _scratch_for(workspace: Workspace, repo_dir: Path) -> Iterator[_Scratch]:
    root_dir = workspace.harness_dir / "import"
    root_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="swebench-", dir=root_dir))
    try:
        yield _Scratch(root, _git_dir(repo_dir))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def place_instances(
    workspace: Workspace, path: Path, repo: str, instances: list[Instance]
) -> dict[str, Placed]:
    """Check every instance of `repo` against its package and find or make its commit;
    the commits cra made are kept in the package. Nothing is written when one fails."""
    repo_dir = require_package(workspace.repos_dir, repo).repo_dir
    known = _children_by_tree(repo_dir)
    placed: dict[str, Placed] = {}
    with _scratch_for(workspace, repo_dir) as scratch:
        for instance in instances:
            tree = scratch.tree_of(path, instance)
            sha = known.get((instance.base_commit, tree))
            made = sha is None
            if sha is None:
                sha = scratch.make_commit(instance, tree)
            files = scratch.files(instance.base_commit, tree)
            placed[instance.instance_id] = Placed(sha, tree, made, files)
        if any(p.made for p in placed.values()):
            git(
                "fetch",
                "-q",
                "--no-tags",
                "--no-write-fetch-head",
                str(scratch.dir),
                f"+refs/heads/made/*:{IMPORTED_REFS}/*",
                cwd=repo_dir,
            )
    return placed


def _mined(repo_id: int, instance: Instance, placed: Placed, now: str) -> MinedCommit:
    tests = sorted(p for p in placed.files if is_test_path(p))
    source = sorted(p for p in placed.files if not is_test_path(p) and p.endswith(".py"))
    other = sorted(p for p in placed.files if not is_test_path(p) and not p.endswith(".py"))
    subject = instance.problem_statement.strip().splitlines()[0][:200]
    return MinedCommit(
        repo_id,
        placed.sha,
        instance.base_commit,
        instance.created_at.isoformat(),
        int(instance.created_at.timestamp()),
        IMPORT_AUTHOR if placed.made else "",
        subject,
        instance.problem_statement,
        None,
        json.dumps(source),
        json.dumps(tests),
        json.dumps(other),
        sum(a for a, _ in placed.files.values()),
        sum(d for _, d in placed.files.values()),
        "qualified",
        "qualified",
        None,
        None,
        now,
    )


def _details(path: Path, sha256: str, instance: Instance, placed: Placed) -> str:
    return json.dumps(
        {
            "format": FORMAT,
            "instance_id": instance.instance_id,
            "source": path.name,
            "source_sha256": sha256,
            "line": instance.line,
            "commit": "made" if placed.made else "reused",
            "extra": {k: v for k, v in instance.extra.items() if k not in ("patch",)},
        },
        sort_keys=True,
    )


def record_instance(
    conn: sqlite3.Connection,
    repo_id: int,
    instance: Instance,
    placed: Placed,
    source: tuple[Path, str],
    qualified: set[str],
) -> tuple[str, bool]:
    """Record the instance's commit (unless recorded as qualifying), its task, and the
    claims it came with (unless the latest import claims the same); return the task id
    and whether anything new was recorded about the claims. One transaction."""
    now = now_iso()
    with transaction(conn):
        found = commit_id(conn, repo_id, placed.sha)
        if found is None or placed.sha not in qualified:
            upsert_commits(conn, [_mined(repo_id, instance, placed, now)])
            found = commit_id(conn, repo_id, placed.sha)
    if found is None:
        raise sqlite3.IntegrityError(f"commits: {placed.sha} was not recorded")
    commit = Commit(
        found,
        placed.sha,
        instance.base_commit,
        instance.created_at.isoformat(),
        instance.problem_statement,
        (),
        (),
    )
    task_id = ensure_task(conn, repo_id, instance.repo, commit, now)
    lists = (
        json.dumps(instance.fail_to_pass),
        json.dumps(instance.pass_to_pass),
        json.dumps(instance.flaky),
    )
    past = latest_import(conn, task_id)
    if past is not None and (past.fail_to_pass, past.pass_to_pass) == lists[:2]:
        return task_id, False
    with transaction(conn):
        record_import(conn, task_id, lists, _details(*source, instance, placed), now)
    return task_id, True


def import_swebench(workspace: Workspace, path: Path, *, repo: str | None = None) -> Imported:
    """Import the SWE-bench instances of the JSON lines file `path` as tasks of their
    packed repositories (`repo` for all of them, else each instance's own). Every
    instance is checked (its base commit in the package, both patches applying) before
    anything is recorded; bad input is a UsageError naming the line."""
    instances = read_instances(path, repo)
    by_repo: dict[str, list[Instance]] = {}
    for instance in instances:
        by_repo.setdefault(instance.repo, []).append(instance)
    placed = {
        name: place_instances(workspace, path, name, group) for name, group in by_repo.items()
    }
    result = Imported(path, sha256_file(path))
    with closing(workspace.raw_db()) as conn:
        for name, group in by_repo.items():
            repo_id = register_repo(conn, name)
            qualified = {c.sha for c in commit_stages(conn, repo_id) if c.stage == "qualified"}
            for instance in group:
                where = placed[name][instance.instance_id]
                task_id, new = record_instance(
                    conn, repo_id, instance, where, (path, result.sha256), qualified
                )
                result.tasks[instance.instance_id] = task_id
                result.made += where.made
                result.reused += not where.made
                result.unchanged += not new
    return result
