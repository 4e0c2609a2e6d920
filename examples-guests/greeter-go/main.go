// A percore guest in Go, run CGI style (a WASI preview 1 command, standard library only):
// the request body is stdin, the request is in CGI environment variables (RFC 3875), and
// stdout is the response, a CGI header block and then the body.
//
//	GET  /?name=Ada   -> {"message":"Hello, Ada!","language":"go","user_agent":"..."}
//	POST /echo        -> the body back, with its content-type
//	GET  /fail        -> panics: the host answers 500 (exit) and logs the panic
//	anything else     -> 404 {"error":"not found"}
//
// The greeting comes from the deployment's configuration (`greeting`, default "Hello"), which
// a command sees as an environment variable. Build: sh build.sh (GOOS=wasip1 GOARCH=wasm).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
)

func main() {
	log.SetFlags(0)
	method, path := os.Getenv("REQUEST_METHOD"), os.Getenv("PATH_INFO")
	switch {
	case path == "/echo" && method == "POST":
		body, err := io.ReadAll(os.Stdin)
		if err != nil {
			log.Fatalf("reading the body: %v", err)
		}
		contentType := os.Getenv("CONTENT_TYPE")
		if contentType == "" {
			contentType = "application/octet-stream"
		}
		respond("200 OK", contentType, body)
	case path == "/fail":
		panic("deliberate failure, as asked")
	case path == "/" || path == "":
		query, _ := url.ParseQuery(os.Getenv("QUERY_STRING"))
		name := query.Get("name")
		if name == "" {
			name = "world"
		}
		greeting := os.Getenv("greeting")
		if greeting == "" {
			greeting = "Hello"
		}
		log.Printf("greeting name=%s", name) // stderr: a line of the request's log
		document := map[string]any{
			"message":    fmt.Sprintf("%s, %s!", greeting, name),
			"language":   "go",
			"user_agent": nil,
		}
		if agent, ok := os.LookupEnv("HTTP_USER_AGENT"); ok {
			document["user_agent"] = agent
		}
		body, _ := json.Marshal(document)
		respond("200 OK", "application/json", body)
	default:
		respond("404 Not Found", "application/json", []byte(`{"error":"not found"}`))
	}
}

// respond writes the CGI header block (RFC 3875 section 6), a blank line, then the body.
func respond(status, contentType string, body []byte) {
	fmt.Printf("Status: %s\nContent-Type: %s\n\n", status, contentType)
	os.Stdout.Write(body)
}
