// A percore guest in C: greets by name, echoes bodies, logs, reads its configuration.
//
//     GET  /?name=Ada   -> {"message":"Hello, Ada!","language":"c","user_agent":"..."}
//     POST /echo        -> the body back, with its content-type
//     GET  /fail        -> abort(): the host answers 500 (trap) and logs the message
//     anything else     -> 404 {"error":"not found"}
//
// The greeting comes from the deployment's configuration (`greeting`, default "Hello").
// Bindings come from `wit-bindgen c` (gen/, made by build.sh). C can hand the host a region of
// its own memory, so requests arrive there (handle-region) and are read in place; the portable
// path (handle) answers the same.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"

typedef exports_edge_handler_guest_response_t response_t;

// A request as both paths see it: pointers into the region, or into the portable request.
typedef struct {
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    const uint8_t *body;
    size_t body_len;
    const char *user_agent;
    size_t user_agent_len;
    const char *content_type;
    size_t content_type_len;
} request_t;

static int is(const char *text, size_t len, const char *literal) {
    return len == strlen(literal) && memcmp(text, literal, len) == 0;
}

static void add_header(response_t *res, const char *name, const char *value, size_t value_len) {
    res->headers.ptr = realloc(res->headers.ptr, (res->headers.len + 1) * sizeof *res->headers.ptr);
    edge_handler_types_tuple2_field_name_field_value_t *h = &res->headers.ptr[res->headers.len++];
    handler_string_dup(&h->f0, name);
    h->f1.ptr = malloc(value_len ? value_len : 1);
    memcpy(h->f1.ptr, value, value_len);
    h->f1.len = value_len;
}

static void set_body(response_t *res, const void *bytes, size_t len) {
    res->body.ptr = malloc(len ? len : 1);
    memcpy(res->body.ptr, bytes, len);
    res->body.len = len;
}

static void json(response_t *res, uint16_t status, const char *text) {
    res->status = status;
    add_header(res, "content-type", "application/json", strlen("application/json"));
    set_body(res, text, strlen(text));
}

// Writes `len` bytes of `text` as the inside of a JSON string (quotes and control bytes escaped).
static size_t json_escape(char *out, const char *text, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)sprintf(out + n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

static void respond(const request_t *req, response_t *res) {
    memset(res, 0, sizeof *res);
    const char *query = memchr(req->path, '?', req->path_len);
    size_t path_len = query ? (size_t)(query - req->path) : req->path_len;
    if (is(req->path, path_len, "/echo") && is(req->method, req->method_len, "POST")) {
        res->status = 200;
        if (req->content_type)
            add_header(res, "content-type", req->content_type, req->content_type_len);
        else
            add_header(res, "content-type", "application/octet-stream", 24);
        set_body(res, req->body, req->body_len);
        return;
    }
    if (is(req->path, path_len, "/fail")) {
        fprintf(stderr, "greeter-c: deliberate failure, as asked\n");
        abort();
    }
    if (!is(req->path, path_len, "/")) {
        json(res, 404, "{\"error\":\"not found\"}");
        return;
    }
    // name=... from the query, as sent (not percent-decoded, to keep this short).
    const char *name = "world";
    size_t name_len = 5;
    for (const char *p = query; p && p < req->path + req->path_len;) {
        const char *end = memchr(p + 1, '&', (size_t)(req->path + req->path_len - p - 1));
        if (!end) end = req->path + req->path_len;
        if ((size_t)(end - p) >= 6 && memcmp(p + 1, "name=", 5) == 0) {
            name = p + 6;
            name_len = (size_t)(end - name);
        }
        p = end < req->path + req->path_len ? end : NULL;
    }
    handler_string_t key, greeting;
    handler_string_set(&key, "greeting");
    int configured = edge_handler_config_get(&key, &greeting);
    handler_list_tuple2_string_string_t fields = {0};
    handler_tuple2_string_string_t field;
    handler_string_set(&field.f0, "name");
    field.f1.ptr = (uint8_t *)name;
    field.f1.len = name_len;
    fields.ptr = &field;
    fields.len = 1;
    handler_string_t message;
    handler_string_set(&message, "greeting");
    edge_handler_log_log(EDGE_HANDLER_LOG_LEVEL_INFO, &message, &fields);

    // Every input byte may become six when escaped.
    size_t cap = 96 + 6 * (name_len + req->user_agent_len + (configured ? greeting.len : 5));
    char *body = malloc(cap);
    size_t n = (size_t)sprintf(body, "{\"message\":\"");
    n += configured ? json_escape(body + n, (const char *)greeting.ptr, greeting.len)
                    : json_escape(body + n, "Hello", 5);
    n += (size_t)sprintf(body + n, ", ");
    n += json_escape(body + n, name, name_len);
    n += (size_t)sprintf(body + n, "!\",\"language\":\"c\",\"user_agent\":");
    if (req->user_agent) {
        body[n++] = '"';
        n += json_escape(body + n, req->user_agent, req->user_agent_len);
        body[n++] = '"';
    } else {
        n += (size_t)sprintf(body + n, "null");
    }
    body[n++] = '}';
    if (configured) handler_string_free(&greeting);
    res->status = 200;
    add_header(res, "content-type", "application/json", strlen("application/json"));
    res->body.ptr = (uint8_t *)body;
    res->body.len = n;
}

// The portable path: the request as a record.
void exports_edge_handler_guest_handle(exports_edge_handler_guest_request_t *request, response_t *ret) {
    request_t req = {
        .method = (const char *)request->method.ptr,
        .method_len = request->method.len,
        .path = (const char *)request->path_with_query.ptr,
        .path_len = request->path_with_query.len,
        .body = request->body.ptr,
        .body_len = request->body.len,
    };
    for (size_t i = 0; i < request->headers.len; i++) {
        edge_handler_types_tuple2_field_name_field_value_t *h = &request->headers.ptr[i];
        if (is((const char *)h->f0.ptr, h->f0.len, "user-agent") && !req.user_agent) {
            req.user_agent = (const char *)h->f1.ptr;
            req.user_agent_len = h->f1.len;
        }
        if (is((const char *)h->f0.ptr, h->f0.len, "content-type") && !req.content_type) {
            req.content_type = (const char *)h->f1.ptr;
            req.content_type_len = h->f1.len;
        }
    }
    respond(&req, ret);
    exports_edge_handler_guest_request_free(request);
}

// The input region: memory of ours the host writes each request into (wit/handler.wit).
static uint8_t *region;
static uint32_t region_capacity;

void exports_edge_handler_guest_input_region(uint32_t min_capacity, exports_edge_handler_guest_region_t *ret) {
    if (min_capacity > region_capacity) {
        free(region);
        region = malloc(min_capacity);
        region_capacity = region ? min_capacity : 0;
    }
    ret->offset = (uint32_t)(uintptr_t)region;
    ret->capacity = region_capacity;
}

static uint32_t u32_at(uint32_t offset) {
    uint32_t v;
    memcpy(&v, region + offset, sizeof v);  // little-endian, as wasm is
    return v;
}

void exports_edge_handler_guest_handle_region(uint32_t head_len, uint32_t body_len, response_t *ret) {
    request_t req = {
        .method = (const char *)region + u32_at(0),
        .method_len = u32_at(4),
        .path = (const char *)region + u32_at(8),
        .path_len = u32_at(12),
        .body = region + head_len,
        .body_len = body_len,
    };
    uint32_t count = u32_at(16);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t entry = 20 + 16 * i;
        const char *name = (const char *)region + u32_at(entry);
        size_t name_len = u32_at(entry + 4);
        const char *value = (const char *)region + u32_at(entry + 8);
        size_t value_len = u32_at(entry + 12);
        if (is(name, name_len, "user-agent") && !req.user_agent) {
            req.user_agent = value;
            req.user_agent_len = value_len;
        }
        if (is(name, name_len, "content-type") && !req.content_type) {
            req.content_type = value;
            req.content_type_len = value_len;
        }
    }
    respond(&req, ret);
}
