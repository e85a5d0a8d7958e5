"""Loopback fakes of an OpenAI-compatible server and of Ollama's API, answering from a script.

Each server pops one scripted step per chat request and records every request body, so a test
can check what the real LangChain clients sent. A step is one of:

- ``reply("text")`` / ``calls(("edit_attribute", {...}), ...)``: a normal answer;
- ``raw_call("edit_attribute", '{"attribute": ')``: a tool call whose arguments are not JSON;
- ``{"status": 500}``: an HTTP error; ``{"garbage": "..."}``: a body that is not the protocol;
- ``{"sleep": seconds, "then": step}``: a slow answer.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply(text: str) -> dict:
    return {"content": text, "calls": []}


def calls(*pairs: tuple[str, dict], content: str = "") -> dict:
    return {"content": content, "calls": [(name, json.dumps(args)) for name, args in pairs]}


def raw_call(name: str, arguments: str) -> dict:
    return {"content": "", "calls": [(name, arguments)]}


class _Handler(BaseHTTPRequestHandler):
    server: "ScriptedServer"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        step = self.server.next_step()
        while "sleep" in step:
            time.sleep(step["sleep"])
            step = step["then"]
        if "status" in step:
            self._send(step["status"], json.dumps({"error": {"message": "scripted failure", "type": "server_error"}}))
        elif "garbage" in step:
            self._send(200, step["garbage"])
        else:
            self.server.answer(self, step)

    def _send(self, status: int, text: str, content_type: str = "application/json") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: list[dict]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_step(self) -> dict:
        with self._lock:
            return self.script.pop(0) if self.script else reply("(the script ran out)")

    def answer(self, handler: _Handler, step: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class FakeOpenAI(ScriptedServer):
    """``POST /v1/chat/completions``, non-streaming, as OpenAI and vLLM answer it."""

    def answer(self, handler: _Handler, step: dict) -> None:
        n = len(self.requests)
        tool_calls = [{"id": f"call_{n}_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                      for i, (name, args) in enumerate(step["calls"])]
        message = {"role": "assistant", "content": step["content"] or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        body = {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": "fake",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        handler._send(200, json.dumps(body))


class FakeOllama(ScriptedServer):
    """``POST /api/chat``, streamed as newline-delimited JSON the way Ollama sends it."""

    def answer(self, handler: _Handler, step: dict) -> None:
        message = {"role": "assistant", "content": step["content"]}
        if step["calls"]:
            message["tool_calls"] = [{"function": {"name": name, "arguments": json.loads(args)}}
                                     for name, args in step["calls"]]
        lines = [
            {"model": "fake", "created_at": "2026-01-01T00:00:00Z", "message": message, "done": False},
            {"model": "fake", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""},
             "done": True, "done_reason": "stop", "total_duration": 1, "eval_count": 1, "prompt_eval_count": 1},
        ]
        handler._send(200, "".join(json.dumps(line) + "\n" for line in lines), "application/x-ndjson")
