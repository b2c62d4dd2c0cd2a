"""The sandbox's request and response values, and the body formats it understands."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

JSON_TYPE = "application/json; charset=utf-8"


def join_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names lower-cased; a repeated header's values joined (cookies with `; `)."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key in joined:
            value = joined[key] + ("; " if key == "cookie" else ", ") + value
        joined[key] = value
    return joined


@dataclass
class Request:
    """One parsed HTTP request, independent of the socket it came from."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names; repeated headers joined
    body: bytes = b""
    client: str = "127.0.0.1"

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str], body: bytes = b"",
              client: str = "127.0.0.1") -> Request:
        """From the request line's target and headers already joined by `join_headers`."""
        path, _, query = target.partition("?")
        return cls(method, path, parse_qs(query, keep_blank_values=True) if query else {}, headers, body, client)

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased ('' when absent)."""
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()

    def cookie(self, name: str) -> str | None:
        """A cookie from the `Cookie` header(s); a same-named plain header does not count."""
        for pair in self.headers.get("cookie", "").split(";"):
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
    """Form fields of a multipart/form-data body (first value wins); None when it is malformed."""
    # By hand: the stdlib e-mail parser costs ~2 ms per small form (a sandbox bottleneck), and
    # `cgi` is gone from newer Pythons. Forms here are a few short text fields.
    boundary = _param(content_type, "boundary")
    if not boundary:
        return None
    chunks = body.split(b"--" + boundary.encode("latin-1"))
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        return None
    fields: dict[str, str] = {}
    for chunk in chunks[1:-1]:
        head, sep, value = chunk.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"\r\n") or not value.endswith(b"\r\n"):
            return None
        name, charset = None, "utf-8"
        for line in head[2:].decode("latin-1").split("\r\n"):
            key, _, rest = line.partition(":")
            key = key.strip().lower()
            if key == "content-disposition" and rest.strip().lower().startswith("form-data"):
                name = _param(rest, "name")
            elif key == "content-type":
                charset = _param(rest, "charset") or charset
        if name is None:
            return None
        try:
            fields.setdefault(name, value[:-2].decode(charset, "replace"))
        except LookupError:  # an unknown charset
            return None
    return fields


_PARAM = re.compile(r'(?:^|;)\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def _param(header: str, name: str) -> str | None:
    """A parameter of a header value (`boundary`, `name`, `charset`), quoted or not."""
    for m in _PARAM.finditer(header):
        if m.group(1).lower() == name:
            return re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
    return None


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
