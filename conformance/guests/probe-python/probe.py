"""probe-python: the conformance suite's probe as an edge:handler guest written in Python
(componentize-py). It answers as the guest named by its configuration value PROBE_ROLE (see
conformance/guests/probe-roles), so that the cases any edge:handler guest can pass run against a
Python guest too:

    percore-conformance --probe edge=probe-python --host '...'

Requests come through the portable path: Python offers no input region (capacity 0).
"""

from wit_world import exports
from wit_world.imports import config
from wit_world.imports.types import Region, Request, Response

TEXT = [("content-type", b"text/plain; charset=utf-8")]


def text(status: int, body: str) -> Response:
    return Response(status, list(TEXT), body.encode())


def json(status: int, body: str) -> Response:
    return Response(status, [("content-type", b"application/json")], body.encode())


def path(request: Request) -> str:
    return request.path_with_query.split("?", 1)[0]


def last_segment(request: Request) -> str:
    return path(request).rsplit("/", 1)[-1]


def query_param(request: Request, name: str) -> str | None:
    """As the Rust SDK finds it: split on `&`, then on the first `=`, nothing decoded."""
    if "?" not in request.path_with_query:
        return None
    for pair in request.path_with_query.split("?", 1)[1].split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return None


def number(request: Request, name: str, otherwise: int) -> int:
    try:
        return int(query_param(request, name) or "")
    except ValueError:
        return otherwise


def echo(request: Request) -> Response:
    content_type = next((v for k, v in request.headers if k == "content-type"), None)
    headers = [
        ("content-type", content_type or b"application/octet-stream"),
        ("x-echo-method", request.method.encode()),
        ("x-echo-path", request.path_with_query.encode()),
    ]
    headers += [(f"x-echo-h-{k}", v) for k, v in request.headers]
    return Response(200, headers, request.body)


def recurse(depth: int) -> int:
    # Unbounded on purpose: Python's RecursionError, uncaught, ends the call.
    local = [depth] * 16
    return local[depth % 16] + recurse(depth + 1) + local[0]


hoard = []


def hostile(request: Request) -> Response:
    segment = last_segment(request)
    if segment == "ok":
        return text(200, "ok")
    if segment == "loop":
        counter = 0
        while True:
            counter += 1
    if segment == "grow":
        while True:  # 1 MiB at a time, kept, until the memory cap refuses
            hoard.append(bytearray(1 << 20))
    if segment == "recurse":
        return text(200, str(recurse(0)))
    if segment == "panic":
        raise RuntimeError("deliberate panic")
    if segment == "big":
        return Response(200, [], b"x" * (number(request, "mb", 32) << 20))
    if segment == "status":
        code = number(request, "code", 200)
        if code in (204, 304):
            return Response(code, [("x-status", str(code).encode())], b"")
        return text(code, f"status {code}\n")
    if segment == "body-on-204":
        return text(204, "a 204 must not have a body")
    if segment == "bad-header":
        return Response(200, TEXT + [("x-bad", b"line\r\nbreak")], b"x")
    if segment == "bad-header-name":
        return Response(200, TEXT + [("bad name", b"v")], b"x")
    if segment == "framing":
        framing = [("content-length", b"9999"), ("transfer-encoding", b"chunked"),
                   ("connection", b"close")]
        return Response(200, TEXT + framing, b"framed by the host")
    return text(404, "unknown behaviour")


# What a request leaves here must not reach the next one.
counter = 0
buffer = bytearray(4096)


def stateful(request: Request) -> Response:
    global counter
    segment = last_segment(request)
    if segment == "count":
        counter += 1
        return text(200, str(counter))
    if segment == "peek":
        seen = buffer[:16].hex()
        buffer[:16] = b"previous-request"
        return text(200, seen)
    return text(404, "unknown")


def json_api(request: Request) -> Response:
    if path(request) == "/health":
        if request.method == "GET":
            return json(200, '{"status":"ok"}')
        response = json(405, '{"error":"method not allowed"}')
        response.headers.append(("allow", b"GET"))
        return response
    return json(404, '{"error":"not found"}')


ROLES = {
    "echo": echo,
    "hello": lambda request: text(200, "Hello from percore!\n"),
    "hostile": hostile,
    "stateful": stateful,
    "json-api": json_api,
}


class Guest(exports.Guest):
    def input_region(self, min_capacity: int) -> Region:
        return Region(offset=0, capacity=0)

    def handle_region(self, head_len: int, body_len: int) -> Response:
        return text(500, "probe-python offers no input region\n")

    def handle(self, request: Request) -> Response:
        role = config.get("PROBE_ROLE") or ""
        if role not in ROLES:
            return text(500, f"probe: PROBE_ROLE={role!r} names no role (set it in the deployment's config)\n")
        return ROLES[role](request)
