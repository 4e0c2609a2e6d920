"""A percore guest in Python: greets by name, echoes bodies, logs, reads its configuration.

    GET  /?name=Ada   -> {"message": "Hello, Ada!", "language": "python", "user_agent": "..."}
    POST /echo        -> the body back, with its content-type
    GET  /fail        -> raises: the host answers 500 (trap) and logs the traceback
    anything else     -> 404 {"error": "not found"}

The greeting comes from the deployment's configuration (`greeting`, default "Hello").
Built with componentize-py against the `handler` world of wit/handler.wit (see build.sh).
"""

import json
from urllib.parse import parse_qs, urlsplit

from wit_world import exports
from wit_world.imports import config, log
from wit_world.imports.types import Region, Request, Response


def header(request: Request, name: str) -> str | None:
    """The first value of a request header (names arrive lowercase)."""
    for key, value in request.headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def json_response(status: int, document) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(status, [("content-type", b"application/json")], body)


class Guest(exports.Guest):
    def input_region(self, min_capacity: int) -> Region:
        # Python cannot hand out raw linear memory: capacity 0 tells the host to send every
        # request through `handle` (the portable path).
        return Region(offset=0, capacity=0)

    def handle_region(self, head_len: int, body_len: int) -> Response:
        return json_response(500, {"error": "the input region is not used by this guest"})

    def handle(self, request: Request) -> Response:
        url = urlsplit(request.path_with_query)
        if url.path == "/echo" and request.method == "POST":
            content_type = header(request, "content-type") or "application/octet-stream"
            return Response(200, [("content-type", content_type.encode())], request.body)
        if url.path == "/fail":
            raise ValueError("deliberate failure, as asked")
        if url.path != "/":
            return json_response(404, {"error": "not found"})
        name = parse_qs(url.query).get("name", ["world"])[0]
        greeting = config.get("greeting") or "Hello"
        log.log(log.Level.INFO, "greeting", [("name", name)])
        return json_response(200, {
            "message": f"{greeting}, {name}!",
            "language": "python",
            "user_agent": header(request, "user-agent"),
        })
