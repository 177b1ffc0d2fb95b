"""`LLMClient`: the one way cra talks to a model, over any OpenAI-compatible endpoint.

Every call, successful or not, is recorded in `llm_calls` with its task, run, stage,
model, adapter, parameters, messages, response, token counts, latency and error.
Transient failures (connection errors, timeouts, 429 and 5xx) are retried a bounded
number of times with exponential backoff.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import httpx

from cra.db.llm_calls import record_call
from cra.errors import CraError
from cra.fsutil import now_iso


class EndpointUnreachable(CraError, ConnectionError):
    """The model endpoint does not answer."""

    def __init__(self, endpoint: str, detail: str) -> None:
        super().__init__(
            f"model endpoint {endpoint} is unreachable: {detail}",
            hint="start it (`cra serve`, or your teacher API), or set [llm] endpoint in cra.toml",
        )
        self.endpoint = endpoint


class LLMError(CraError, RuntimeError):
    """A model call failed after its retries; the call is logged with the error."""

    def __init__(self, message: str, *, call_id: int | None) -> None:
        super().__init__(message)
        self.call_id = call_id


@dataclass(frozen=True)
class Completion:
    """What a model returned for one call, and the id of its `llm_calls` row."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    call_id: int | None
    model: str
    adapter: str | None
    adapter_version: int | None


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


Route = tuple[str | None, str | None, int | None]
"""Where a request goes: (served model name or None for the client's model, adapter, version)."""
Router = Callable[[str], Route]


class _Settings(TypedDict):
    """The constructor arguments a sibling client inherits as they are."""

    api_key: str | None
    timeout_s: float
    transport: httpx.BaseTransport | None


class LLMClient:
    """A chat-completions client for one endpoint that logs every call to `raw.db`."""

    def __init__(
        self,
        *,
        endpoint: str,
        model: str,
        conn: sqlite3.Connection | None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        run_id: int | None = None,
        transport: httpx.BaseTransport | None = None,
        router: Router | None = None,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.conn = conn
        self.run_id = run_id
        self.router = router
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._settings: _Settings = {
            "api_key": api_key,
            "timeout_s": timeout_s,
            "transport": transport,
        }
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def sibling(self, conn: sqlite3.Connection | None) -> LLMClient:
        """A client with the same endpoint, model, key, limits and run that logs through
        `conn` and has its own connection pool: one per worker thread."""
        return LLMClient(
            endpoint=self.endpoint,
            model=self.model,
            conn=conn,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            run_id=self.run_id,
            router=self.router,
            **self._settings,
        )

    def _route(self, stage: str) -> Route:
        """Where the router sends a call at `stage`; called only when there is a router."""
        if self.router is None:  # pragma: no cover - callers check for a router first
            raise RuntimeError("the client has no router")
        return self.router(stage)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def models(self) -> list[str]:
        """The model ids the endpoint serves; raise EndpointUnreachable when it is down."""
        try:
            response = self._http.get(f"{self.endpoint}/models", timeout=10.0)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EndpointUnreachable(self.endpoint, str(exc) or type(exc).__name__) from exc
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]

    def _log(self, row: dict[str, Any]) -> int | None:
        if self.conn is None:
            return None
        return record_call(self.conn, row)

    def _send(self, body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, int]:
        """POST with bounded retries: (response JSON or None, error or None, attempts)."""
        attempts = 0
        while True:
            attempts += 1
            retry = False
            try:
                response = self._http.post(f"{self.endpoint}/chat/completions", json=body)
                if response.status_code >= 400:
                    error = f"HTTP {response.status_code}: {response.text[:500]}"
                    retry = response.status_code in _RETRY_STATUS
                else:
                    return response.json(), None, attempts
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
                retry = True
            except ValueError as exc:
                return None, f"response is not JSON: {exc}", attempts
            if not retry or attempts > self.max_retries:
                return None, error, attempts
            time.sleep(self.backoff_s * 2 ** (attempts - 1))

    def complete(
        self,
        *,
        stage: str,
        messages: list[dict[str, Any]],
        task_id: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
        model: str | None = None,
        adapter: str | None = None,
        adapter_version: int | None = None,
        **params: Any,
    ) -> Completion:
        """Send one chat completion and log it; raise LLMError when it finally fails.

        `model` overrides the client's model for this request (the served name of an
        adapter version, say); `adapter`/`adapter_version` are recorded with the call.
        """
        _check_call(stage, messages)
        routed = model is None and adapter is None and self.router is not None
        if routed:
            model, adapter, adapter_version = self._route(stage)
        used_model = model or self.model
        body = _request_body(used_model, messages, temperature, max_tokens, response_format, params)
        started = time.perf_counter()
        data, error, attempts = self._send(body)
        if routed and adapter is not None and error is not None and error.startswith("HTTP 404"):
            # The version was swapped out between routing and sending: route again.
            model, adapter, adapter_version = self._route(stage)
            used_model = body["model"] = model or self.model
            data, error, more = self._send(body)
            attempts += more
        latency_ms = (time.perf_counter() - started) * 1000
        text = finish = prompt_tokens = completion_tokens = None
        if data is not None:
            parsed = _parse_response(data)
            if parsed is None:
                error = f"unexpected response shape: {json.dumps(data)[:300]}"
            else:
                text, finish, prompt_tokens, completion_tokens = parsed
        call_id = self._log(
            {
                "task_id": task_id,
                "run_id": self.run_id,
                "stage": stage,
                "endpoint": self.endpoint,
                "model": used_model,
                "adapter": adapter,
                "adapter_version": adapter_version,
                "temperature": temperature,
                "params": _params_json(body),
                "messages": json.dumps(messages, ensure_ascii=False),
                "response": text,
                "finish_reason": finish,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "latency_ms": latency_ms,
                "attempts": attempts,
                "error": error,
                "created_at": now_iso(),
            }
        )
        if error is not None:
            raise LLMError(
                f"{stage} call to {self.endpoint} failed after {attempts} attempt(s): {error}",
                call_id=call_id,
            )
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            call_id=call_id,
            model=used_model,
            adapter=adapter,
            adapter_version=adapter_version,
        )


def _request_body(
    model: str,
    messages: list[dict[str, Any]],
    temperature: float | None,
    max_tokens: int | None,
    response_format: dict[str, Any] | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The chat completion request: the options given, and none of those left unset."""
    body: dict[str, Any] = {"model": model, "messages": messages, **params}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if response_format is not None:
        body["response_format"] = response_format
    return body


def _parse_response(
    data: Any,
) -> tuple[str | None, str | None, int | None, int | None] | None:
    """(text, finish reason, prompt tokens, completion tokens) of a chat completion
    response; None when it does not have the expected shape."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content")
        finish = choice.get("finish_reason")
        usage = data.get("usage") or {}
        return text, finish, usage.get("prompt_tokens"), usage.get("completion_tokens")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _check_call(stage: str, messages: list[dict[str, Any]]) -> None:
    """Raise ValueError for a call without a stage or without messages."""
    if not stage:
        raise ValueError("stage must be a non-empty string")
    if not messages:
        raise ValueError("messages must not be empty")


def _params_json(body: dict[str, Any]) -> str:
    """The request's options as logged: everything but the messages and the model."""
    return json.dumps(
        {k: v for k, v in body.items() if k not in ("messages", "model")},
        sort_keys=True,
    )
