"""The sandbox's request and response values, and the body formats it understands."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesParser
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Request:
    """One parsed HTTP request, independent of the socket it came from."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes = b""
    client: str = "127.0.0.1"

    @classmethod
    def build(cls, method: str, target: str, headers: Message, body: bytes = b"",
              client: str = "127.0.0.1") -> Request:
        path, _, query = target.partition("?")
        return cls(method, path, parse_qs(query, keep_blank_values=True), headers, body, client)

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased ('' when absent)."""
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()

    def cookie(self, name: str) -> str | None:
        """A cookie from the `Cookie` header(s); a same-named plain header does not count."""
        for line in self.headers.get_all("Cookie") or ():
            for pair in line.split(";"):
                key, sep, value = pair.strip().partition("=")
                if sep and key == name:
                    return value.strip().strip('"')
        return None

    @cached_property
    def form(self) -> dict[str, str] | None:
        """Fields of a multipart/form-data body; None when the body is anything else."""
        if self.media_type != "multipart/form-data":
            return None
        return parse_multipart(self.header("Content-Type") or "", self.body)

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body.decode("utf-8"))


def parse_multipart(content_type: str, body: bytes) -> dict[str, str] | None:
    """Form fields of a multipart body (first value wins); None when it cannot be parsed."""
    # The stdlib e-mail parser reads MIME multipart; `cgi` is gone from newer Pythons.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart() or msg.defects:
        return None
    fields: dict[str, str] = {}
    for part in msg.get_payload():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return None
        raw = part.get_payload(decode=True)
        value = raw.decode(part.get_content_charset() or "utf-8", "replace") if isinstance(raw, bytes) else ""
        fields.setdefault(name, value)
    return fields


@dataclass
class Response:
    """What the sandbox answers; `body` is sent with an exact Content-Length."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, JSON_TYPE, headers or [])


def error(status: int, code: str | None, message: str, fields: list[dict[str, str]] | None = None,
          headers: list[tuple[str, str]] | None = None) -> Response:
    """The error body both providers use here: {"error": {"code", "message", "fields"}}."""
    err: dict[str, Any] = {} if code is None else {"code": code}
    err["message"] = message
    if fields:
        err["fields"] = fields
    return json_response(status, {"error": err}, headers)


def field_error(name: str, code: str, message: str) -> dict[str, str]:
    return {"name": name, "code": code, "message": message}


def empty(status: int = 200) -> Response:
    return Response(status)
