"""Analysis reads of the model calls in `raw.db`, by stage, model, adapter and time, and
the filters every analysis read shares: an adapter (`NAME` or `NAME@vN`) and a time.

Part of the one read interface :class:`cra.db.logs.LogAnalysis`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cra.errors import UsageError


@dataclass(frozen=True)
class LLMCall:
    """One logged model request and what came back."""

    id: int
    task_id: str | None
    run_id: int | None
    stage: str
    model: str
    adapter: str | None
    adapter_version: int | None
    temperature: float | None
    messages: list[dict[str, Any]]
    response: str | None
    error: str | None
    latency_ms: float | None
    created_at: str


def parse_adapter(spec: str) -> tuple[str, int | None]:
    """`NAME` or `NAME@vN` → (name, version or None); raise UsageError otherwise."""
    name, _, version = spec.partition("@")
    if not name:
        raise UsageError(f"invalid adapter {spec!r}", hint="write NAME or NAME@vN")
    if not version:
        return name, None
    if not (version.startswith("v") and version[1:].isdigit() and int(version[1:]) >= 1):
        raise UsageError(
            f"invalid adapter version in {spec!r}", hint="write NAME@vN, e.g. scope@v2"
        )
    return name, int(version[1:])


def iso_filter(when: datetime | str | None) -> str | None:
    """A time filter as the ISO text the tables record (None and text pass as they are)."""
    if when is None or isinstance(when, str):
        return when
    return when.isoformat()


_LLM_CALLS = """
SELECT id, task_id, run_id, stage, model, adapter, adapter_version, temperature, messages,
       response, error, latency_ms, created_at
FROM llm_calls
WHERE (:stage IS NULL OR stage = :stage) AND (:model IS NULL OR model = :model)
  AND (:adapter IS NULL OR adapter = :adapter)
  AND (:version IS NULL OR adapter_version = :version)
  AND (:task_id IS NULL OR task_id = :task_id)
  AND (:since IS NULL OR created_at >= :since) AND (:until IS NULL OR created_at < :until)
ORDER BY id
"""

_CALL_MESSAGES = "SELECT messages FROM llm_calls WHERE id = ?"


@dataclass(frozen=True)
class TokenTotal:
    """The model calls of one stage through one adapter version (None: the base model)."""

    stage: str
    adapter: str | None
    adapter_version: int | None
    calls: int
    prompt_tokens: int
    completion_tokens: int


_USAGE_BY_STAGE = """
SELECT stage, adapter, adapter_version, count(*) AS calls,
       coalesce(sum(prompt_tokens), 0) AS prompt, coalesce(sum(completion_tokens), 0) AS completion
FROM llm_calls GROUP BY stage, adapter, adapter_version
ORDER BY stage, adapter IS NOT NULL, adapter, adapter_version
"""


class CallReads:
    """The model-call reads of :class:`cra.db.logs.LogAnalysis`, which holds `conn`."""

    conn: sqlite3.Connection

    def token_totals(self) -> list[TokenTotal]:
        """Calls and tokens per stage and adapter version, base-model calls first."""
        return [
            TokenTotal(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]))
            for r in self.conn.execute(_USAGE_BY_STAGE)
        ]

    def llm_calls(
        self,
        *,
        stage: str | None = None,
        model: str | None = None,
        adapter: str | None = None,
        task_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[LLMCall]:
        """Logged model calls, filtered by stage, model, adapter (`NAME` or `NAME@vN`),
        task and creation time (`since` inclusive, `until` exclusive)."""
        name, version = parse_adapter(adapter) if adapter else (None, None)
        params = {
            "stage": stage,
            "model": model,
            "adapter": name,
            "version": version,
            "task_id": task_id,
            "since": iso_filter(since),
            "until": iso_filter(until),
        }
        return [
            LLMCall(
                r["id"],
                r["task_id"],
                r["run_id"],
                r["stage"],
                r["model"],
                r["adapter"],
                r["adapter_version"],
                r["temperature"],
                json.loads(r["messages"]),
                r["response"],
                r["error"],
                r["latency_ms"],
                r["created_at"],
            )
            for r in self.conn.execute(_LLM_CALLS, params)
        ]

    def call_messages(self, call_id: int) -> list[dict[str, Any]] | None:
        """The messages a logged call sent (None when there is no such call)."""
        text = self.call_messages_text(call_id)
        return json.loads(text) if text is not None else None

    def call_messages_text(self, call_id: int) -> str | None:
        """The messages a logged call sent, as the JSON text recorded."""
        row = self.conn.execute(_CALL_MESSAGES, (call_id,)).fetchone()
        return row[0] if row else None
