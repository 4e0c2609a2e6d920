// probe-go: the conformance suite's CGI probe written in Go (GOOS=wasip1, standard library
// only). It answers as the guest named by PROBE_ROLE, as conformance/guests/probe-cgi does in
// Rust, so that the CGI cases run against a Go program too:
//
//	percore-conformance --probe cgi=probe-go --host '...'
//
// What Go does its own way: a panic, a stack that grows past its limit and a failed memory
// grow end the program with exit status 2 (the Go runtime's choice, not a trap), so the host
// types them `exit` (or `out_of_memory` when its memory cap refused the growth).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

type header struct {
	name  string
	value string
}

type request struct {
	method        string
	pathWithQuery string
	headers       []header
	body          []byte
}

type response struct {
	status  int
	headers []header
	body    []byte
}

func text(status int, body string) response {
	return response{
		status:  status,
		headers: []header{{"content-type", "text/plain; charset=utf-8"}},
		body:    []byte(body),
	}
}

func (r request) path() string {
	path, _, _ := strings.Cut(r.pathWithQuery, "?")
	return path
}

func (r request) lastSegment() string {
	path := r.path()
	return path[strings.LastIndex(path, "/")+1:]
}

// queryParam finds a query parameter as the Rust SDK does: split on `&`, then on the first `=`,
// nothing decoded.
func (r request) queryParam(name string) (string, bool) {
	_, query, found := strings.Cut(r.pathWithQuery, "?")
	if !found {
		return "", false
	}
	for _, pair := range strings.Split(query, "&") {
		key, value, _ := strings.Cut(pair, "=")
		if key == name {
			return value, true
		}
	}
	return "", false
}

func (r request) header(name string) (string, bool) {
	for _, h := range r.headers {
		if strings.EqualFold(h.name, name) {
			return h.value, true
		}
	}
	return "", false
}

// pathWithQuery is the path and query the client sent: from X_FULL_URL, else rebuilt from
// SCRIPT_NAME, PATH_INFO and QUERY_STRING.
func pathWithQuery() string {
	if _, rest, ok := strings.Cut(os.Getenv("X_FULL_URL"), "://"); ok {
		if start := strings.IndexAny(rest, "/?"); start >= 0 {
			return rest[start:]
		}
	}
	path := os.Getenv("SCRIPT_NAME") + os.Getenv("PATH_INFO")
	if path == "" {
		path = "/"
	}
	if query := os.Getenv("QUERY_STRING"); query != "" {
		return path + "?" + query
	}
	return path
}

// readRequest rebuilds the request from the CGI variables: HTTP_X_MULTI is the field x-multi;
// CONTENT_TYPE and CONTENT_LENGTH are content-type and content-length.
func readRequest(body []byte) request {
	var headers []header
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if field, ok := strings.CutPrefix(name, "HTTP_"); ok {
			headers = append(headers, header{strings.ReplaceAll(strings.ToLower(field), "_", "-"), value})
		}
	}
	for _, pair := range [][2]string{{"CONTENT_TYPE", "content-type"}, {"CONTENT_LENGTH", "content-length"}} {
		value := os.Getenv(pair[0])
		present := false
		for _, h := range headers {
			present = present || h.name == pair[1]
		}
		if value != "" && !present {
			headers = append(headers, header{pair[1], value})
		}
	}
	return request{os.Getenv("REQUEST_METHOD"), pathWithQuery(), headers, body}
}

func echo(r request) response {
	contentType, ok := r.header("content-type")
	if !ok {
		contentType = "application/octet-stream"
	}
	out := response{status: 200, headers: []header{
		{"content-type", contentType},
		{"x-echo-method", r.method},
		{"x-echo-path", r.pathWithQuery},
	}, body: r.body}
	for _, h := range r.headers {
		out.headers = append(out.headers, header{"x-echo-h-" + h.name, h.value})
	}
	return out
}

// recurse never ends: each frame keeps data used after the call.
func recurse(depth uint64, trail []uint64) uint64 {
	var local [16]uint64
	for i := range local {
		local[i] = depth
	}
	trail = append(trail, local[depth%16])
	return local[0] + recurse(depth+1, trail)
}

var sink [][]byte

func hostile(r request) response {
	switch r.lastSegment() {
	case "ok":
		return text(200, "ok")
	case "loop":
		counter := uint64(0)
		for {
			counter++
			if counter == 0 {
				return text(200, "wrapped")
			}
		}
	case "grow":
		for {
			chunk := make([]byte, 1<<20)
			chunk[0] = 1
			sink = append(sink, chunk)
		}
	case "recurse":
		return text(200, strconv.FormatUint(recurse(0, nil), 10))
	case "panic":
		panic("deliberate panic")
	case "big":
		mb := 32
		if v, ok := r.queryParam("mb"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				mb = n
			}
		}
		return response{status: 200, body: []byte(strings.Repeat("x", mb<<20))}
	case "status":
		code := 200
		if v, ok := r.queryParam("code"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				code = n
			}
		}
		if code == 204 || code == 304 {
			return response{status: code, headers: []header{{"x-status", strconv.Itoa(code)}}}
		}
		return text(code, fmt.Sprintf("status %d\n", code))
	case "body-on-204":
		return text(204, "a 204 must not have a body")
	case "bad-header":
		out := text(200, "x")
		out.headers = append(out.headers, header{"x-bad", "line\r\nbreak"})
		return out
	case "bad-header-name":
		out := text(200, "x")
		out.headers = append(out.headers, header{"bad name", "v"})
		return out
	case "framing":
		out := text(200, "framed by the host")
		out.headers = append(out.headers, header{"content-length", "9999"},
			header{"transfer-encoding", "chunked"}, header{"connection", "close"})
		return out
	}
	return text(404, "unknown behaviour")
}

// The stateful role's state: what a request leaves here must not reach the next one.
var (
	counter uint64
	buffer  [4096]byte
)

func stateful(r request) response {
	switch r.lastSegment() {
	case "count":
		counter++
		return text(200, strconv.FormatUint(counter, 10))
	case "peek":
		seen := fmt.Sprintf("%x", buffer[:16])
		copy(buffer[:16], "previous-request")
		return text(200, seen)
	}
	return text(404, "unknown")
}

func jsonResponse(status int, body string) response {
	return response{status: status, headers: []header{{"content-type", "application/json"}}, body: []byte(body)}
}

func jsonAPI(r request) response {
	if r.path() == "/health" {
		if r.method == "GET" {
			return jsonResponse(200, `{"status":"ok"}`)
		}
		out := jsonResponse(405, `{"error":"method not allowed"}`)
		out.headers = append(out.headers, header{"allow", "GET"})
		return out
	}
	return jsonResponse(404, `{"error":"not found"}`)
}

var reasons = map[int]string{
	200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 404: "Not Found",
	405: "Method Not Allowed", 418: "I'm a teapot", 500: "Internal Server Error",
	503: "Service Unavailable",
}

func write(out *bufio.Writer, r response) {
	reason, ok := reasons[r.status]
	if !ok {
		reason = "Other"
	}
	fmt.Fprintf(out, "Status: %d %s\n", r.status, reason)
	for _, h := range r.headers {
		fmt.Fprintf(out, "%s: %s\n", h.name, h.value)
	}
	out.WriteString("\n")
	out.Write(r.body)
}

// cgi is the role for what only CGI output can say, written as it is.
func cgi(out *bufio.Writer, path string, bodyLen int) {
	segment := path[strings.LastIndex(path, "/")+1:]
	switch segment {
	case "headers":
		out.WriteString("Status: 201 Created\nContent-Type: text/plain\nX-Cgi: yes\n\ncreated by a CGI script\n")
	case "crlf":
		out.WriteString("Status: 202 Accepted\r\nContent-Type: text/plain\r\nX-Cgi: crlf\r\n\r\nlines end in CRLF\n")
	case "plain":
		out.WriteString("no header block, only this body\n")
	case "redirect":
		out.WriteString("Location: /elsewhere\n\n")
	case "malformed":
		out.WriteString("Status: abc\n\nthe status is not a number\n")
	case "unterminated":
		out.WriteString("Status: 200 OK\nContent-Type: text/plain\n")
	case "exit3":
		out.WriteString("Status: 200 OK\n\nhalf an answer")
		out.Flush()
		fmt.Fprintln(os.Stderr, "probe-go: giving up with exit status 3")
		os.Exit(3)
	case "stdout-flood":
		// A gigabyte, whatever the host says: a host must cap it, not buffer it.
		out.WriteString("Status: 200 OK\nContent-Type: text/plain\n\n")
		chunk := []byte(strings.Repeat("x", 64<<10))
		for i := 0; i < 1<<14; i++ {
			if _, err := out.Write(chunk); err != nil {
				return
			}
		}
	case "stderr-flood":
		chunk := []byte(strings.Repeat("e", 64<<10))
		for i := 0; i < 64; i++ {
			os.Stderr.Write(chunk)
		}
		out.WriteString("Status: 200 OK\nContent-Type: text/plain\n\nstderr flooded\n")
	case "stdin-twice":
		more, _ := io.ReadAll(os.Stdin)
		fmt.Fprintf(out, "Status: 200 OK\nContent-Type: text/plain\n\n%d then %d\n", bodyLen, len(more))
	default:
		out.WriteString("Status: 404 Not Found\nContent-Type: text/plain\n\nunknown cgi behaviour\n")
	}
}

// environment is the cgi-env role: every variable as an x-env-<name> field, the body echoed.
func environment(body []byte) response {
	out := response{status: 200, headers: []header{{"content-type", "application/octet-stream"}}, body: body}
	vars := os.Environ()
	sort.Strings(vars)
	for _, kv := range vars {
		name, value, _ := strings.Cut(kv, "=")
		name = strings.ReplaceAll(strings.ToLower(name), "_", "-")
		out.headers = append(out.headers, header{"x-env-" + name, value})
	}
	return out
}

func main() {
	role := os.Getenv("PROBE_ROLE")
	body, _ := io.ReadAll(os.Stdin)
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer out.Flush()
	switch role {
	case "cgi":
		cgi(out, strings.SplitN(pathWithQuery(), "?", 2)[0], len(body))
		return
	case "cgi-env":
		write(out, environment(body))
		return
	}
	r := readRequest(body)
	switch role {
	case "echo":
		write(out, echo(r))
	case "hello":
		write(out, text(200, "Hello from percore!\n"))
	case "hostile":
		write(out, hostile(r))
	case "stateful":
		write(out, stateful(r))
	case "json-api":
		write(out, jsonAPI(r))
	default:
		write(out, text(500, fmt.Sprintf("probe: PROBE_ROLE=%q names no role (set it in the deployment's config)\n", role)))
	}
}
