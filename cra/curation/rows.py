"""Candidate training rows: what a row holds, and the adapters and techniques it serves.

The builders (one per adapter and technique) are in :mod:`cra.curation.candidates`.
SFT rows are TRL's conversational prompt-completion format, so the loss covers only the
completion; DPO rows are `prompt`/`chosen`/`rejected`. Ground truth comes from the
commits: the files changed (scope), the definitions changed (precision), a plan derived
from the diff (planning) and the diff itself (execute-code). Harness runs give DPO
pairs: plans of the same task and prompt at several temperatures, the better aligned
one chosen. A teacher model's logged answers give distillation rows. Every row carries
`meta` with its provenance.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cra.db.log_tasks import TaskRecord

ADAPTERS: dict[str, tuple[str, ...]] = {
    "scope": ("sft",),
    "precision": ("sft",),
    "task-analysis": ("sft",),
    "planning": ("sft", "dpo"),
    "execute-code": ("sft",),
    "scope-ranker": ("ranker",),
}
"""Every adapter a plan may name, and the techniques cra can curate data for (`ranker`:
the scope ranker's rows, :mod:`cra.ranker_rows`)."""

STAGE_OF = {
    "scope": "scope",
    "precision": "precision",
    "planning": "planning",
    "execute-code": "execute",
    "task-analysis": None,
    "scope-ranker": "ranker",
}
"""The stage metric each adapter improves (task-analysis has none logged; the ranker's
is its own evaluated recall, see :func:`cra.curation.ranker.ranker_metric`)."""

SCOPE_SYSTEM = (
    "You are the scope stage of a coding agent. Given a task and candidate files of the "
    "repository, answer with the JSON list of the files (paths relative to the repository "
    "root) that must change to complete the task. Answer with the JSON list only."
)
PRECISION_SYSTEM = (
    "You are the precision stage of a coding agent. Given a task and the files that must "
    "change, answer with the JSON list of the definitions the change touches, each written "
    'as "path::qualname" (methods as Class.method). Answer with the JSON list only.'
)
EXECUTE_SYSTEM = (
    "You are the execute stage of a coding agent. Given a task and the current content of "
    "the files to change, answer with the change as a unified diff (git format) that applies "
    "to those files. Answer with the diff only."
)


@dataclass
class Row:
    """A candidate row: what gets written, plus what the filters need."""

    adapter: str
    technique: str
    task_id: str
    authored_ts: int
    domain: str
    source: str
    record: dict[str, Any]
    dedup_text: str  # the answers: what near-duplicates are judged on, with...
    dedup_context: str = ""  # ...the task text, shared by a task's rows
    group: tuple[str, str] = field(init=False, repr=False, compare=False)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.group = (self.adapter, self.technique)  # the unit that `cra train` selects

    @property
    def content_key(self) -> str:
        """sha1 of the normalised prompt (system aside) and answers: equal for exact
        duplicates."""
        if self._key is None:
            self._key = self._content_key()
        return self._key

    def _content_key(self) -> str:
        if "ranker" in self.record:  # a ranker row: its query and positive files
            body = self.record["ranker"]
            parts = [body["query"], *body["positives"]]
            return hashlib.sha1(
                " ".join(" ".join(parts).lower().split()).encode("utf-8"), usedforsecurity=False
            ).hexdigest()
        # The system prompt is the same in every row of an adapter.
        prompt = self.record["prompt"]
        parts = [m["content"] for m in prompt if m.get("role") != "system"]
        for name in ("completion", "chosen", "rejected"):
            if name in self.record:
                parts.extend(m["content"] for m in self.record[name])
        text = " ".join(" ".join(parts).lower().split())
        return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@dataclass
class Candidates:
    """Rows per (adapter, technique), and why tasks yielded none."""

    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)

    def skip(self, adapter: str, technique: str, reason: str) -> None:
        """Count a task that gave no row for an adapter, and why."""
        self.skipped.setdefault(f"{adapter}/{technique}", Counter())[reason] += 1


@dataclass(frozen=True)
class CurateOptions:
    """The settings row building needs (from `[curate]`)."""

    teacher_models: tuple[str, ...] = ()
    teacher_min_alignment: float = 0.7
    dpo_min_margin: float = 0.2
    execute_requires_verified: bool = True
    max_prompt_chars: int = 12_000
    ranker_negatives: int = 10


def row_meta(
    task: TaskRecord, adapter: str, technique: str, source: str, **extra: Any
) -> dict[str, Any]:
    """The `meta` of a row: its adapter, technique and provenance, plus `extra`."""
    return {
        "adapter": adapter,
        "technique": technique,
        "task_id": task.task_id,
        "repo": task.repo,
        "commit": task.sha,
        "authored_at": task.authored_at,
        "source": source,
        "domain": task.domain,
        "scores": extra.pop("scores", {}),
        **extra,
    }


def message(role: str, content: str) -> dict[str, str]:
    """One chat message."""
    return {"role": role, "content": content}


def sft_row(
    task: TaskRecord,
    adapter: str,
    source: str,
    prompt: list[dict[str, Any]],
    completion: str,
    dedup: str,
    **meta: Any,
) -> Row:
    """An SFT row of `task`: `prompt`, the `completion` and `dedup` (its answer text)."""
    record = {
        "prompt": prompt,
        "completion": [message("assistant", completion)],
        "meta": row_meta(task, adapter, "sft", source, **meta),
    }
    return Row(
        adapter,
        "sft",
        task.task_id,
        task.authored_ts,
        task.domain,
        source,
        record,
        dedup,
        task.task_text,
    )
