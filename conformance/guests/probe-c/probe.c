// probe-c: the conformance suite's probe as an edge:handler guest written in C (clang,
// wasi-libc, `wit-bindgen c`). It answers as the guest named by its configuration value
// PROBE_ROLE (see conformance/guests/probe-roles), so that the cases any edge:handler guest can
// pass run against a C guest too:
//
//     percore-conformance --probe edge=probe-c --host '...'
//
// Requests come through the portable path (the input region is offered with capacity 0); the
// greeter example in examples-guests/greeter-c shows the region path in C.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"

typedef exports_edge_handler_guest_request_t request_t;
typedef exports_edge_handler_guest_response_t response_t;
typedef edge_handler_types_tuple2_field_name_field_value_t field_t;

static int is(const uint8_t *text, size_t len, const char *literal) {
    return len == strlen(literal) && memcmp(text, literal, len) == 0;
}

static void add_header_n(response_t *res, const char *name, const void *value, size_t len) {
    res->headers.ptr = realloc(res->headers.ptr, (res->headers.len + 1) * sizeof(field_t));
    field_t *h = &res->headers.ptr[res->headers.len++];
    handler_string_dup(&h->f0, name);
    h->f1.ptr = malloc(len ? len : 1);
    memcpy(h->f1.ptr, value, len);
    h->f1.len = len;
}

static void add_header(response_t *res, const char *name, const char *value) {
    add_header_n(res, name, value, strlen(value));
}

static void set_body_n(response_t *res, const void *bytes, size_t len) {
    res->body.ptr = malloc(len ? len : 1);
    memcpy(res->body.ptr, bytes, len);
    res->body.len = len;
}

static void text(response_t *res, uint16_t status, const char *body) {
    res->status = status;
    add_header(res, "content-type", "text/plain; charset=utf-8");
    set_body_n(res, body, strlen(body));
}

static void json(response_t *res, uint16_t status, const char *body) {
    res->status = status;
    add_header(res, "content-type", "application/json");
    set_body_n(res, body, strlen(body));
}

// The path without its query.
static size_t path_len(const request_t *req) {
    const uint8_t *q = memchr(req->path_with_query.ptr, '?', req->path_with_query.len);
    return q ? (size_t)(q - req->path_with_query.ptr) : req->path_with_query.len;
}

// The last segment of the path: roles match it, so that they work under any route prefix.
static const uint8_t *last_segment(const request_t *req, size_t *len) {
    size_t end = path_len(req), start = end;
    while (start > 0 && req->path_with_query.ptr[start - 1] != '/') start--;
    *len = end - start;
    return req->path_with_query.ptr + start;
}

// A query parameter's value as a number, as the Rust SDK finds it (`&`, then the first `=`).
static long query_number(const request_t *req, const char *name, long otherwise) {
    size_t at = path_len(req), total = req->path_with_query.len, want = strlen(name);
    const char *s = (const char *)req->path_with_query.ptr;
    while (at < total) {
        size_t start = at + 1, end = start;
        while (end < total && s[end] != '&') end++;
        if (end - start > want && s[start + want] == '=' && memcmp(s + start, name, want) == 0) {
            char digits[24] = {0};
            size_t n = end - start - want - 1;
            if (n == 0 || n >= sizeof digits) return otherwise;
            memcpy(digits, s + start + want + 1, n);
            char *rest;
            long v = strtol(digits, &rest, 10);
            return *rest ? otherwise : v;
        }
        at = end;
    }
    return otherwise;
}

static void echo(const request_t *req, response_t *res) {
    res->status = 200;
    const field_t *content_type = NULL;
    for (size_t i = 0; i < req->headers.len && !content_type; i++)
        if (is(req->headers.ptr[i].f0.ptr, req->headers.ptr[i].f0.len, "content-type"))
            content_type = &req->headers.ptr[i];
    if (content_type)
        add_header_n(res, "content-type", content_type->f1.ptr, content_type->f1.len);
    else
        add_header(res, "content-type", "application/octet-stream");
    add_header_n(res, "x-echo-method", req->method.ptr, req->method.len);
    add_header_n(res, "x-echo-path", req->path_with_query.ptr, req->path_with_query.len);
    for (size_t i = 0; i < req->headers.len; i++) {
        const field_t *h = &req->headers.ptr[i];
        char name[300];
        if (h->f0.len > 256) continue;
        memcpy(name, "x-echo-h-", 9);
        memcpy(name + 9, h->f0.ptr, h->f0.len);
        name[9 + h->f0.len] = 0;
        add_header_n(res, name, h->f1.ptr, h->f1.len);
    }
    set_body_n(res, req->body.ptr, req->body.len);
}

// Unbounded on purpose: the host must stop it with a trap. The frame keeps data used after
// the call, so the compiler cannot make it a loop.
#pragma clang diagnostic ignored "-Winfinite-recursion"
static uint64_t recurse(uint64_t depth) {
    volatile uint64_t local[16];
    for (int i = 0; i < 16; i++) local[i] = depth;
    return local[depth % 16] + recurse(depth + 1) + local[0];
}

static char *volatile kept;

static void hostile(const request_t *req, response_t *res) {
    size_t len;
    const uint8_t *seg = last_segment(req, &len);
    if (is(seg, len, "ok")) {
        text(res, 200, "ok");
    } else if (is(seg, len, "loop")) {
        volatile uint64_t counter = 0;
        for (;;) counter++;
    } else if (is(seg, len, "grow")) {
        // 1 MiB at a time, kept and touched, until the memory cap refuses: malloc then says
        // NULL, and abort() ends the call (the host reports out of memory).
        for (;;) {
            char *chunk = malloc(1 << 20);
            if (!chunk) abort();
            chunk[0] = 1;
            kept = chunk;  // escapes, so the compiler cannot drop the allocation
        }
    } else if (is(seg, len, "recurse")) {
        char out[32];
        snprintf(out, sizeof out, "%llu", (unsigned long long)recurse(0));
        text(res, 200, out);
    } else if (is(seg, len, "panic")) {
        fprintf(stderr, "probe-c: deliberate abort\n");
        abort();
    } else if (is(seg, len, "big")) {
        size_t size = (size_t)query_number(req, "mb", 32) << 20;
        res->status = 200;
        res->body.ptr = malloc(size ? size : 1);
        if (!res->body.ptr) abort();
        memset(res->body.ptr, 'x', size);
        res->body.len = size;
    } else if (is(seg, len, "status")) {
        long code = query_number(req, "code", 200);
        char out[32];
        snprintf(out, sizeof out, "%ld", code);
        res->status = (uint16_t)code;
        if (code == 204 || code == 304) {
            add_header(res, "x-status", out);
        } else {
            char body[48];
            snprintf(body, sizeof body, "status %ld\n", code);
            text(res, (uint16_t)code, body);
        }
    } else if (is(seg, len, "body-on-204")) {
        text(res, 204, "a 204 must not have a body");
    } else if (is(seg, len, "bad-header")) {
        text(res, 200, "x");
        add_header(res, "x-bad", "line\r\nbreak");
    } else if (is(seg, len, "bad-header-name")) {
        text(res, 200, "x");
        add_header(res, "bad name", "v");
    } else if (is(seg, len, "framing")) {
        text(res, 200, "framed by the host");
        add_header(res, "content-length", "9999");
        add_header(res, "transfer-encoding", "chunked");
        add_header(res, "connection", "close");
    } else {
        text(res, 404, "unknown behaviour");
    }
}

// What a request leaves here must not reach the next one.
static uint64_t counter;
static uint8_t buffer[4096];

static void stateful(const request_t *req, response_t *res) {
    size_t len;
    const uint8_t *seg = last_segment(req, &len);
    if (is(seg, len, "count")) {
        char out[24];
        snprintf(out, sizeof out, "%llu", (unsigned long long)++counter);
        text(res, 200, out);
    } else if (is(seg, len, "peek")) {
        char seen[33];
        for (int i = 0; i < 16; i++) snprintf(seen + 2 * i, 3, "%02x", buffer[i]);
        memcpy(buffer, "previous-request", 16);
        text(res, 200, seen);
    } else {
        text(res, 404, "unknown");
    }
}

static void json_api(const request_t *req, response_t *res) {
    if (is(req->path_with_query.ptr, path_len(req), "/health")) {
        if (is(req->method.ptr, req->method.len, "GET")) {
            json(res, 200, "{\"status\":\"ok\"}");
        } else {
            json(res, 405, "{\"error\":\"method not allowed\"}");
            add_header(res, "allow", "GET");
        }
    } else {
        json(res, 404, "{\"error\":\"not found\"}");
    }
}

void exports_edge_handler_guest_handle(request_t *req, response_t *res) {
    memset(res, 0, sizeof *res);
    handler_string_t key, role;
    handler_string_set(&key, "PROBE_ROLE");
    if (!edge_handler_config_get(&key, &role)) handler_string_dup(&role, "");
    if (is(role.ptr, role.len, "echo")) echo(req, res);
    else if (is(role.ptr, role.len, "hello")) text(res, 200, "Hello from percore!\n");
    else if (is(role.ptr, role.len, "hostile")) hostile(req, res);
    else if (is(role.ptr, role.len, "stateful")) stateful(req, res);
    else if (is(role.ptr, role.len, "json-api")) json_api(req, res);
    else text(res, 500, "probe: PROBE_ROLE names no role (set it in the deployment's config)\n");
    handler_string_free(&role);
    exports_edge_handler_guest_request_free(req);
}

void exports_edge_handler_guest_input_region(uint32_t min_capacity, exports_edge_handler_guest_region_t *ret) {
    (void)min_capacity;
    ret->offset = 0;
    ret->capacity = 0;
}

void exports_edge_handler_guest_handle_region(uint32_t head_len, uint32_t body_len, response_t *ret) {
    (void)head_len;
    (void)body_len;
    memset(ret, 0, sizeof *ret);
    text(ret, 500, "probe-c offers no input region\n");
}
