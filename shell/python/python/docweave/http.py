"""A docweave server's document API, for a backend that reads and writes
documents without keeping a replica, and the check of a webhook's
signature. Standard library only::

    from docweave.http import Documents, verify_webhook

    docs = Documents("http://localhost:7879", token="s3cret")
    docs.patch("notes", [{"op": "insert_text", "path": ["body"], "text": "hi"}])
    version, state = docs.get("notes")

A refused request raises ``ApiError`` with the server's status, code and
message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["ApiError", "Documents", "verify_webhook"]


class ApiError(Exception):
    """The server refused a request: its HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _quote(doc: str) -> str:
    # A "/" in an id is part of the id, not of the path.
    return urllib.parse.quote(doc, safe="")


class Documents:
    """The documents of one server, as one identity (``token``, and ``peer``
    when the token may speak for several)."""

    def __init__(self, base_url: str, token: str | None = None, peer: str | None = None,
                 timeout: float = 30.0):
        self.base = base_url.rstrip("/")
        self.headers = {}
        if token is not None:
            self.headers["Authorization"] = "Bearer " + token
        if peer is not None:
            self.headers["x-docweave-peer"] = peer
        self.timeout = timeout

    def _call(self, method: str, path: str, body: bytes | None = None,
              headers: dict | None = None):
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers={**self.headers, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as refused:
            text = refused.read()
            try:
                said = json.loads(text)
                raise ApiError(refused.code, said.get("code", ""), said.get("message", "")) from None
            except ValueError:
                raise ApiError(refused.code, "", text.decode("utf-8", "replace")) from None

    def get(self, doc: str) -> tuple[str, dict]:
        """The document's version and its state as JSON."""
        _, headers, body = self._call("GET", "/docs/" + _quote(doc))
        return (headers.get("ETag") or "").strip('"'), json.loads(body)

    def snapshot(self, doc: str) -> bytes:
        """The document as a Loro snapshot."""
        return self._call("GET", "/docs/" + _quote(doc) + "?format=snapshot")[2]

    def since(self, doc: str, version: str) -> bytes | None:
        """A Loro update with what ``version`` lacks; ``None`` when it lacks nothing."""
        query = urllib.parse.urlencode({"since": version})
        status, _, body = self._call("GET", "/docs/" + _quote(doc) + "?" + query)
        return None if status == 204 else body

    def post_update(self, doc: str, update: bytes) -> str | None:
        """Imports a Loro update; returns once it is durable, with the version
        after it (``None`` when the server could not tell)."""
        body = self._call("POST", "/docs/" + _quote(doc) + "/updates", update,
                          {"Content-Type": "application/octet-stream"})[2]
        return json.loads(body).get("version")

    def patch(self, doc: str, edits: list, message: str | None = None) -> dict:
        """JSON edits, written as one change (see the README's Document API)."""
        payload = {"edits": edits}
        if message is not None:
            payload["message"] = message
        body = self._call("PATCH", "/docs/" + _quote(doc), json.dumps(payload).encode(),
                          {"Content-Type": "application/json"})[2]
        return json.loads(body)

    def history(self, doc: str, limit: int = 100, before: str | None = None,
                group_ms: int = 0) -> tuple[list, str | None]:
        """One page of who wrote what, newest first, as the server vouches for it, and
        where the next page starts. Each entry has its ``version``, ``author``, ``at``
        (server time, Unix ms), ``peer``, ``operations`` and ``message``."""
        query = {"limit": str(limit), "group_ms": str(group_ms)}
        if before is not None:
            query["before"] = before
        body = self._call("GET", "/docs/" + _quote(doc) + "/history?"
                          + urllib.parse.urlencode(query))[2]
        page = json.loads(body)
        return page["entries"], page.get("next")

    def at(self, doc: str, version: str) -> dict:
        """The document's state at a version of its history, as JSON."""
        query = urllib.parse.urlencode({"at": version})
        return json.loads(self._call("GET", "/docs/" + _quote(doc) + "?" + query)[2])

    def diff(self, doc: str, from_version: str, to_version: str | None = None) -> list:
        """What changed between two versions (``to_version``: now), per container."""
        query = {"from": from_version}
        if to_version is not None:
            query["to"] = to_version
        body = self._call("GET", "/docs/" + _quote(doc) + "/diff?"
                          + urllib.parse.urlencode(query))[2]
        return json.loads(body)["containers"]

    def restore(self, doc: str, version: str) -> dict:
        """Brings the document back to a version, as a new change of this identity's."""
        body = self._call("POST", "/docs/" + _quote(doc) + "/restore",
                          json.dumps({"version": version}).encode(),
                          {"Content-Type": "application/json"})[2]
        return json.loads(body)

    def list(self, prefix: str = "", after: str | None = None,
             limit: int | None = None) -> tuple[list, str | None]:
        """One page of the documents this identity may read, and where the next starts."""
        query = {"prefix": prefix}
        if after is not None:
            query["after"] = after
        if limit is not None:
            query["limit"] = str(limit)
        body = self._call("GET", "/docs?" + urllib.parse.urlencode(query))[2]
        page = json.loads(body)
        return page["docs"], page.get("next")


def verify_webhook(secret: bytes, signature: str, body: bytes, tolerance_s: int = 300,
                   now: float | None = None) -> bool:
    """Whether ``signature`` (the ``X-Docweave-Signature`` header) signs
    ``body`` under ``secret``, made within ``tolerance_s`` of now."""
    try:
        fields = dict(part.split("=", 1) for part in signature.split(","))
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    mac = hmac.new(secret, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    now = time.time() if now is None else now
    return hmac.compare_digest(mac, fields.get("v1", "")) and abs(now - t) <= tolerance_s
