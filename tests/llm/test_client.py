"""LLMClient against a scripted OpenAI-compatible server on loopback.

The server here is a stand-in named as such: it answers from a script so that retries,
errors and junk can be pinned exactly. The client is tested against real vLLM where
the harness runs the llm planner.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cra.llm.client import EndpointUnreachable, LLMClient, LLMError
from cra.serving.process import free_port


class ScriptedServer:
    """Answers POST /v1/chat/completions with the next (status, body) of `script`."""

    def __init__(self) -> None:
        self.script: list[tuple[int, object]] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: object) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"data": [{"id": "tiny"}]})

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.requests.append(json.loads(self.rfile.read(length)))
                status, body = outer.script.pop(0)
                self._send(status, body)

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def reply(text: str) -> dict:
    return {
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


MESSAGES = [{"role": "user", "content": "plan it"}]


def test_success_is_logged_with_every_field(server, workspace) -> None:
    """A successful completion is logged in llm_calls with every field of the call."""
    conn = workspace.raw_db()
    server.script = [(200, reply("hello"))]
    client = LLMClient(endpoint=server.url, model="tiny", conn=conn, backoff_s=0)
    out = client.complete(stage="plan", messages=MESSAGES, temperature=0.7, max_tokens=5)
    assert (out.text, out.prompt_tokens, out.completion_tokens) == ("hello", 7, 3)
    row = conn.execute("SELECT * FROM llm_calls WHERE id = ?", (out.call_id,)).fetchone()
    assert (row["stage"], row["model"], row["temperature"], row["response"]) == (
        "plan",
        "tiny",
        0.7,
        "hello",
    )
    assert json.loads(row["messages"]) == MESSAGES
    assert json.loads(row["params"]) == {"max_tokens": 5, "temperature": 0.7}
    assert row["error"] is None
    assert row["latency_ms"] > 0
    assert server.requests[0]["model"] == "tiny"


def test_transient_errors_are_retried_then_succeed(server, workspace) -> None:
    """HTTP 503 and 429 are retried and the logged call counts every attempt."""
    server.script = [(503, {"error": "busy"}), (429, {"error": "slow down"}), (200, reply("ok"))]
    client = LLMClient(endpoint=server.url, model="tiny", conn=workspace.raw_db(), backoff_s=0)
    out = client.complete(stage="plan", messages=MESSAGES)
    assert out.text == "ok"
    row = workspace.raw_db().execute("SELECT attempts FROM llm_calls").fetchone()
    assert row["attempts"] == 3


def test_bounded_retries_then_a_logged_error(server, workspace) -> None:
    """Server errors are retried a bounded number of times, then raised and logged as an error."""
    server.script = [(500, {"error": "x"})] * 3
    client = LLMClient(
        endpoint=server.url, model="tiny", conn=workspace.raw_db(), max_retries=2, backoff_s=0
    )
    with pytest.raises(LLMError, match="after 3 attempt"):
        client.complete(stage="scope", messages=MESSAGES)
    row = workspace.raw_db().execute("SELECT stage, error, attempts FROM llm_calls").fetchone()
    assert row["stage"] == "scope"
    assert row["attempts"] == 3
    assert "HTTP 500" in row["error"]


def test_client_errors_are_not_retried_and_junk_is_recorded(server, workspace) -> None:
    """HTTP 400, non-JSON and wrongly shaped replies fail at once and are each logged."""
    server.script = [(400, {"error": "bad"}), (200, b"not json at all"), (200, {"nope": 1})]
    client = LLMClient(endpoint=server.url, model="tiny", conn=workspace.raw_db(), backoff_s=0)
    for expected in ("HTTP 400", "not JSON", "unexpected response shape"):
        with pytest.raises(LLMError, match=expected):
            client.complete(stage="plan", messages=MESSAGES)
    assert workspace.raw_db().execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 3


def test_unreachable_endpoint_is_a_clear_error() -> None:
    """An unreachable endpoint is a clear error with a hint to run cra serve."""
    client = LLMClient(endpoint=f"http://127.0.0.1:{free_port()}/v1", model="m", conn=None)
    with client, pytest.raises(EndpointUnreachable, match="unreachable") as info:
        client.models()
    assert "cra serve" in (info.value.hint or "")


def test_models_lists_served_ids(server) -> None:
    """models() lists the ids the server serves."""
    with LLMClient(endpoint=server.url, model="", conn=None) as client:
        assert client.models() == ["tiny"]


@pytest.fixture(autouse=True)
def _close_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every client a test made, so no socket outlives its test."""
    made: list[LLMClient] = []
    original = LLMClient.__init__

    def tracking(self: LLMClient, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(LLMClient, "__init__", tracking)
    yield
    for client in made:
        client.close()
