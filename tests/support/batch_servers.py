"""The loopback OpenAI server with OpenAI's half-price deliveries: Flex and Batch.

`TieredOpenAIServer` extends `OpenAIServer` (chat completions, scripting, provider behaviour):

- **Flex**: a chat request with `service_tier: "flex"` is answered with `service_tier: "flex"`
  (others with "default", as OpenAI reports the standard tier) unless the server sheds it:
  `shed_flex` (a count, or None: every one) answers 429 "Resource Unavailable" as OpenAI does
  when flex capacity is short. `flex_seen` / `flex_shed` count them.
- **Files** (`POST /v1/files` multipart with purpose=batch, `GET /v1/files/{id}`,
  `GET /v1/files/{id}/content`) and **Batches** (`POST /v1/batches`, `GET /v1/batches/{id}`,
  `GET /v1/batches` newest first, with metadata) as OpenAI documents them. A batch is
  `validating` when created and moves one state per poll: `in_progress`, then (unless
  `hold_batches`) it runs every request line through the same scripting as a chat request
  (queue, responder, provider, default answer) and is `completed` with an output file (200
  lines) and an error file (the other statuses). With `expire_after=n` a batch runs only its
  first n lines and ends `expired`, the rest in the error file as `batch_expired`.
  `stall_batch_create` (seconds) creates the batch, then answers its creation only after that
  long (a client killed meanwhile never learns the id).

The ledger: `batch_submissions` counts each custom_id per batch it was submitted in,
`batch_answers` each answer a batch delivered, `batches` holds every batch object.

`GeminiBatchServer` extends `GeminiServer` with Gemini's batch mode (inline requests; see its
docstring), with the same ledger.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import time
from collections import Counter
from typing import Any

from support.gemini_server import GeminiServer
from support.openai_server import Action, OpenAIServer, RecordedRequest

JSON = {"Content-Type": "application/json"}


class TieredOpenAIServer(OpenAIServer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shed_flex: int | None = 0
        self.flex_seen = 0
        self.flex_shed = 0
        self.hold_batches = False
        self.fail_validation = False  # a new batch fails validation (its `errors` say why)
        self.expire_after: int | None = None
        self.stall_batch_create = 0.0
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_submissions: Counter[str] = Counter()
        self.batch_answers: Counter[str] = Counter()
        self._ids = 0

    # ------------------------------------------------------------------ flex
    def _generation(self, recorded: RecordedRequest, action: Action) -> tuple[int, dict[str, str], bytes]:
        tier = (recorded.body or {}).get("service_tier")
        if tier == "flex":
            with self._lock:
                self.flex_seen += 1
                shed = self.shed_flex is None or self.shed_flex > 0
                if shed:
                    self.flex_shed += 1
                    if self.shed_flex is not None:
                        self.shed_flex -= 1
            if shed:
                return 429, dict(JSON), json.dumps({"error": {
                    "message": "Resource Unavailable: flex capacity is temporarily short; retry later "
                               "or use the default service tier", "type": "resource_unavailable",
                    "param": None, "code": "resource_unavailable"}}).encode()
        status, headers, payload = super()._generation(recorded, action)
        if status == 200:
            body = json.loads(payload)
            body["service_tier"] = "flex" if tier == "flex" else "default"
            payload = json.dumps(body).encode()
        return status, headers, payload

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, path: str) -> str | None:
        route = super()._route(method, path)
        if route is not None:
            return route
        parts = path.rstrip("/").split("/")[1:]  # v1, files|batches, ...
        if parts[:2] == ["v1", "files"]:
            if method == "POST" and len(parts) == 2:
                return "file_create"
            if method == "GET" and len(parts) == 3:
                return "file_get"
            if method == "GET" and len(parts) == 4 and parts[3] == "content":
                return "file_content"
        if parts[:2] == ["v1", "batches"]:
            if method == "POST" and len(parts) == 2:
                return "batch_create"
            if method == "GET" and len(parts) == 2:
                return "batch_list"
            if method == "GET" and len(parts) == 3:
                return "batch_get"
        return None

    def _serve(self, route: str, recorded: RecordedRequest) -> tuple[int, dict[str, str], bytes] | None:
        parts = recorded.path.split("?")[0].rstrip("/").split("/")[1:]
        with self._lock:
            if route == "file_create":
                return self._file_create(recorded)
            if route in ("file_get", "file_content"):
                stored = self.files.get(parts[2])
                if stored is None:
                    return _error(404, f"No such File object: {parts[2]}")
                if route == "file_get":
                    return 200, dict(JSON), json.dumps(stored["object"]).encode()
                return 200, {"Content-Type": "application/octet-stream"}, stored["data"]
            if route == "batch_create":
                created = self._batch_create(recorded.body or {})
            elif route == "batch_list":
                data = sorted(self.batches.values(), key=lambda b: (b["created_at"], b["id"]), reverse=True)
                return 200, dict(JSON), json.dumps({"object": "list", "data": data, "has_more": False,
                                                    "first_id": data[0]["id"] if data else None,
                                                    "last_id": data[-1]["id"] if data else None}).encode()
            else:  # batch_get: each poll moves the batch on
                batch = self.batches.get(parts[2])
                if batch is None:
                    return _error(404, f"No batch found with id '{parts[2]}'")
                self._advance(batch)
                return 200, dict(JSON), json.dumps(batch).encode()
        if isinstance(created, tuple):
            return created
        return 200, dict(JSON), json.dumps(created).encode()

    async def _handle(self, method: str, target: str, headers: dict[str, str],
                      raw_body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        result = await super()._handle(method, target, headers, raw_body)
        creating = method == "POST" and target.split("?")[0].rstrip("/") == "/v1/batches"
        if creating and self.stall_batch_create and result is not None and result[0] == 200:
            if await self._sleep(self.stall_batch_create):  # created; the answer comes late
                return None
        return result

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-loopback{self._ids:04d}"

    def _file_create(self, recorded: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        content_type = recorded.headers.get("content-type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + recorded.raw_body)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            fields[part.get_param("name", header="content-disposition")] = (
                part.get_filename(), part.get_payload(decode=True))
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
            return _error(400, "a file upload needs the fields 'file' and purpose=batch")
        filename, data = fields["file"]
        return self._store_file(data, filename or "upload.jsonl", "batch")

    def _store_file(self, data: bytes, filename: str, purpose: str) -> tuple[int, dict[str, str], bytes]:
        file_id = self._next_id("file")
        obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[file_id] = {"object": obj, "data": data}
        return 200, dict(JSON), json.dumps(obj).encode()

    def _batch_create(self, body: dict[str, Any]) -> dict[str, Any] | tuple[int, dict[str, str], bytes]:
        stored = self.files.get(body.get("input_file_id", ""))
        if stored is None:
            return _error(400, f"input_file_id {body.get('input_file_id')!r} is not an uploaded file")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return _error(400, "endpoint must be /v1/chat/completions and completion_window 24h")
        lines = [json.loads(line) for line in stored["data"].splitlines() if line.strip()]
        for line in lines:
            self.batch_submissions[line["custom_id"]] += 1
        now = int(time.time())
        batch = {
            "id": self._next_id("batch"), "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata") or {},
        }
        self.batches[batch["id"]] = batch
        return batch

    # ------------------------------------------------------------------ running a batch
    def _advance(self, batch: dict[str, Any]) -> None:
        now = int(time.time())
        if batch["status"] == "validating" and self.fail_validation:
            batch["status"], batch["failed_at"] = "failed", now
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "line": 1, "param": "body",
                                                           "message": "model 'test-model' does not support batches"}]}
        elif batch["status"] == "validating":
            batch["status"], batch["in_progress_at"] = "in_progress", now
        elif batch["status"] == "in_progress" and not self.hold_batches:
            self._run(batch, now)

    def _run(self, batch: dict[str, Any], now: int) -> None:
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]]["data"].splitlines() if line.strip()]
        run = lines if self.expire_after is None else lines[:self.expire_after]
        outputs, errors = [], []
        for number, line in enumerate(run):
            status, payload = self._run_line(line)
            result = {"id": f"batch_req_{batch['id']}_{number}", "custom_id": line["custom_id"],
                      "response": {"status_code": status, "request_id": f"req_{number}",
                                   "body": json.loads(payload)}, "error": None}
            (outputs if status == 200 else errors).append(result)
        for line in lines[len(run):]:
            errors.append({"id": f"batch_req_{batch['id']}_x", "custom_id": line["custom_id"], "response": None,
                           "error": {"code": "batch_expired", "message": "This request could not be executed "
                                     "before the completion window expired."}})
        for kind, results in (("output_file_id", outputs), ("error_file_id", errors)):
            if results:
                data = b"".join(json.dumps(r).encode() + b"\n" for r in results)
                batch[kind] = json.loads(self._store_file(data, f"{batch['id']}_{kind}.jsonl",
                                                          "batch_output")[2])["id"]
        expired = self.expire_after is not None and len(run) < len(lines)
        batch["status"] = "expired" if expired else "completed"
        batch["expired_at" if expired else "completed_at"] = now
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs),
                                   "failed": len(errors) - (len(lines) - len(run))}

    def _run_line(self, line: dict[str, Any]) -> tuple[int, bytes]:
        recorded = RecordedRequest(method="POST", path=line["url"], headers={}, body=line["body"],
                                   raw_body=json.dumps(line["body"]).encode(), route="batch_line")
        action = _batch_action(self, recorded)
        status, _headers, payload = OpenAIServer._generation(self, recorded, action)
        if status == 200 and action.kind == "answer":
            self.answered[self.answer_key(recorded)] += 1
            self.batch_answers[line["custom_id"]] += 1
        return status, payload


def _batch_action(server: Any, recorded: RecordedRequest) -> Action:
    """What the server's scripting (queue, responder, provider, default answer) does with one
    request of a batch it runs, called under the server's lock; a hang or garbage, which a batch
    cannot return, is the request's 500."""
    server._extract(recorded)
    server._lock.release()  # the scripting takes the lock itself
    try:
        action = server._next_action(recorded)
    finally:
        server._lock.acquire()
    server.outcomes[action.kind] += 1
    if action.kind in ("hang", "malformed", "raw"):
        action = Action("error", status=500, message="internal error")
    return action


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, dict(JSON), json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                                     "param": None, "code": None}}).encode()


_GEMINI_BATCH_CREATE = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):batchGenerateContent$")
_GEMINI_BATCH = re.compile(r"^/(v1beta|v1|v1alpha)/batches(?:/([^/:]+))?$")
_GEMINI_STATES = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
                  "completed": "BATCH_STATE_SUCCEEDED", "expired": "BATCH_STATE_EXPIRED"}
_HTTP_TO_RPC = {400: 3, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14, 504: 4}


class GeminiBatchServer(GeminiServer):
    """The loopback Gemini server with batch mode (inline requests) as the Gemini API has it:
    `POST /v1beta/models/{model}:batchGenerateContent` (an Operation named batches/{id}, state
    BATCH_STATE_PENDING), `GET /v1beta/batches/{id}` (one state per poll: RUNNING, then -- unless
    `hold_batches` -- SUCCEEDED with `output.inlinedResponses`, each request run through the
    same scripting as generateContent; an error answer becomes the item's google.rpc.Status),
    `GET /v1beta/batches` (newest first). `expire_next` ends the next finished batch EXPIRED,
    with no answers. Ledger: `batch_submissions`, `batch_answers` by the request's metadata key."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold_batches = False
        self.expire_next = False
        self.jobs: dict[str, dict[str, Any]] = {}
        self.batch_submissions: Counter[str] = Counter()
        self.batch_answers: Counter[str] = Counter()
        self._batch_ids = 0

    def _route(self, method: str, path: str) -> str | None:
        if method == "POST" and _GEMINI_BATCH_CREATE.match(path):
            return "batch_create"
        if method == "GET" and _GEMINI_BATCH.match(path.rstrip("/")):
            return "batch_get" if _GEMINI_BATCH.match(path.rstrip("/")).group(2) else "batch_list"
        return super()._route(method, path)

    def _serve(self, route: str, recorded: RecordedRequest) -> tuple[int, dict[str, str], bytes] | None:
        if route not in ("batch_create", "batch_get", "batch_list"):
            return super()._serve(route, recorded)
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        path = recorded.path.split("?")[0].rstrip("/")
        with self._lock:
            if route == "batch_create":
                job = self._create_job(_GEMINI_BATCH_CREATE.match(path).group(2), recorded.body or {})
            elif route == "batch_list":
                jobs = sorted(self.jobs.values(), key=lambda j: j["metadata"]["createTime"], reverse=True)
                return 200, headers, json.dumps({"operations": [self._public(j) for j in jobs]}).encode()
            else:
                job = self.jobs.get(f"batches/{_GEMINI_BATCH.match(path).group(2)}")
                if job is None:
                    return 404, headers, self._error(404, "Batch not found.")
                self._advance_job(job)
        return 200, headers, json.dumps(self._public(job)).encode()

    def _create_job(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        batch = body.get("batch") or {}
        requests = (((batch.get("inputConfig") or {}).get("requests") or {}).get("requests")) or []
        for item in requests:
            self.batch_submissions[(item.get("metadata") or {}).get("fer_custom_id", "")] += 1
        self._batch_ids += 1
        name = f"batches/loopback{self._batch_ids:04d}"
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{self._batch_ids:06d}Z"
        job = {"name": name, "requests": requests, "model": model, "metadata": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{model}", "displayName": batch.get("displayName", ""), "createTime": now,
            "updateTime": now, "state": "BATCH_STATE_PENDING", "name": name}}
        self.jobs[name] = job
        return job

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        out = {"name": job["name"], "metadata": job["metadata"]}
        if job["metadata"]["state"] in ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_EXPIRED"):
            out["done"] = True
        return out

    def _advance_job(self, job: dict[str, Any]) -> None:
        state = job["metadata"]["state"]
        if state == "BATCH_STATE_PENDING":
            job["metadata"]["state"] = "BATCH_STATE_RUNNING"
        elif state == "BATCH_STATE_RUNNING" and not self.hold_batches:
            if self.expire_next:
                self.expire_next = False
                job["metadata"]["state"] = "BATCH_STATE_EXPIRED"
                return
            responses = [self._run_item(job["model"], item) for item in job["requests"]]
            job["metadata"]["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
            job["metadata"]["state"] = "BATCH_STATE_SUCCEEDED"

    def _run_item(self, model: str, item: dict[str, Any]) -> dict[str, Any]:
        key = (item.get("metadata") or {}).get("fer_custom_id", "")
        recorded = RecordedRequest(method="POST", path=f"/v1beta/models/{model}:generateContent", headers={},
                                   body=item.get("request") or {}, raw_body=b"", route="batch_item")
        action = _batch_action(self, recorded)
        status, _headers, payload = GeminiServer._generation(self, recorded, action)
        if status != 200:
            error = json.loads(payload)["error"]
            return {"error": {"code": _HTTP_TO_RPC.get(status, 13), "message": error["message"]},
                    "metadata": item.get("metadata") or {}}
        if action.kind == "answer":
            self.answered[self.answer_key(recorded)] += 1
            self.batch_answers[key] += 1
        return {"response": json.loads(payload), "metadata": item.get("metadata") or {}}


__all__ = ["GeminiBatchServer", "TieredOpenAIServer"]
