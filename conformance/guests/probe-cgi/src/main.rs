//! `probe-cgi`: the conformance suite's probe as a WASI command run CGI style.
//!
//! The request arrives as CGI variables (`REQUEST_METHOD`, `X_FULL_URL`, `HTTP_<NAME>`,
//! `CONTENT_TYPE`, `CONTENT_LENGTH`, ...) with the body on stdin; the response leaves on stdout
//! as a header block (`Status: NNN reason`, the fields, a blank line) and then the body. It
//! answers as the edge test guest named by `PROBE_ROLE` (see `probe-roles`), and has two roles of
//! its own for what only CGI output can say:
//!
//! - `cgi`, by the last path segment: `/headers` prints `Status: 201 Created`, `Content-Type`,
//!   `X-Cgi` and a body; `/crlf` the same with CRLF line ends; `/plain` a body with no header
//!   block; `/redirect` only a `Location` field;
//! - `cgi-env`: every environment variable as an `x-env-<name>` field (`REQUEST_METHOD` as
//!   `x-env-request-method`), the body echoed.
//!
//! Whatever a CGI script cannot say (a field value with CR or LF: lines end at LF; a repeated
//! request field: CGI joins them into one variable) is not asked of it: the cases that need it
//! do not list the `cgi` kind.

use std::io::{Read as _, Write};

use probe_roles::{ROLE_VAR, Request, Response};

fn main() {
    let role = std::env::var(ROLE_VAR).unwrap_or_default();
    let mut body = Vec::new();
    // A stdin error ends the body where it is; the role answers what arrived.
    let _ = std::io::stdin().lock().read_to_end(&mut body);
    let mut stdout = std::io::stdout().lock();
    let written = match role.as_str() {
        "cgi" => cgi(&path_with_query(), body.len(), &mut stdout),
        "cgi-env" => write_response(&mut stdout, &environment(body)),
        _ => {
            let response = probe_roles::respond(&role, request(body))
                .unwrap_or_else(|| probe_roles::unknown_role(&role));
            write_response(&mut stdout, &response)
        }
    };
    // The host closes stdout once the output is over its limit: there is nothing more to say.
    let _ = written.and_then(|()| stdout.flush());
}

/// An environment variable, or empty.
fn var(name: &str) -> String {
    std::env::var_os(name)
        .map(|value| value.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The path with query the client sent: from `X_FULL_URL` (`http://host/a/b?x=1`), else rebuilt
/// from `SCRIPT_NAME`, `PATH_INFO` and `QUERY_STRING`.
fn path_with_query() -> String {
    let full_url = var("X_FULL_URL");
    let from_url = full_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find(['/', '?']).map(|start| rest[start..].to_owned()));
    from_url.unwrap_or_else(|| {
        let path = format!("{}{}", var("SCRIPT_NAME"), var("PATH_INFO"));
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path
        };
        match var("QUERY_STRING") {
            query if query.is_empty() => path,
            query => format!("{path}?{query}"),
        }
    })
}

/// The request the CGI variables describe. Field names come back lowercase with `-` for `_`
/// (`HTTP_X_MULTI` is `x-multi`); `CONTENT_TYPE` and `CONTENT_LENGTH` are `content-type` and
/// `content-length` unless an `HTTP_` variable gave them too.
fn request(body: Vec<u8>) -> Request {
    let mut headers: Vec<(String, Vec<u8>)> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.to_string_lossy();
            let field = name.strip_prefix("HTTP_")?;
            let value = value.to_string_lossy().into_owned().into_bytes();
            Some((field.to_ascii_lowercase().replace('_', "-"), value))
        })
        .collect();
    for (variable, field) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
    ] {
        let value = var(variable);
        if !value.is_empty() && !headers.iter().any(|(name, _)| name == field) {
            headers.push((field.to_owned(), value.into_bytes()));
        }
    }
    Request {
        method: var("REQUEST_METHOD"),
        path_with_query: path_with_query(),
        headers,
        body,
    }
}

/// A reason phrase for the `Status` line (the host does not need it to be right).
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        405 => "Method Not Allowed",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Other",
    }
}

/// Write `response` as CGI output: `Status`, the fields, a blank line, the body.
fn write_response(out: &mut impl Write, response: &Response) -> std::io::Result<()> {
    let mut head =
        format!("Status: {} {}\n", response.status, reason(response.status)).into_bytes();
    for (name, value) in &response.headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.push(b'\n');
    }
    head.push(b'\n');
    out.write_all(&head)?;
    out.write_all(&response.body)
}

/// The `cgi` role: output only a CGI script gives, written as it is.
fn cgi(path_with_query: &str, body_len: usize, out: &mut impl Write) -> std::io::Result<()> {
    let path = path_with_query.split('?').next().unwrap_or("");
    let output: &[u8] = match path.rsplit('/').next().unwrap_or("") {
        "headers" => b"Status: 201 Created\nContent-Type: text/plain\nX-Cgi: yes\n\ncreated by a CGI script\n",
        "crlf" => b"Status: 202 Accepted\r\nContent-Type: text/plain\r\nX-Cgi: crlf\r\n\r\nlines end in CRLF\n",
        "plain" => b"no header block, only this body\n",
        "redirect" => b"Location: /elsewhere\n\n",
        "malformed" => b"Status: abc\n\nthe status is not a number\n",
        "unterminated" => b"Status: 200 OK\nContent-Type: text/plain\n",
        "exit3" => {
            out.write_all(b"Status: 200 OK\n\nhalf an answer")?;
            out.flush()?;
            eprintln!("probe-cgi: giving up with exit status 3");
            std::process::exit(3);
        }
        "stdout-flood" => {
            // A gigabyte, whatever the host says: a host must cap it, not buffer it.
            let chunk = vec![b'x'; 64 << 10];
            out.write_all(b"Status: 200 OK\nContent-Type: text/plain\n\n")?;
            for _ in 0..(1 << 14) {
                let _ = out.write_all(&chunk);
            }
            return Ok(());
        }
        "stderr-flood" => {
            let chunk = vec![b'e'; 64 << 10];
            let mut err = std::io::stderr();
            // 4 MiB: 64 times the host's default cap on captured output.
            for _ in 0..64 {
                let _ = err.write_all(&chunk);
            }
            b"Status: 200 OK\nContent-Type: text/plain\n\nstderr flooded\n"
        }
        "stdin-twice" => {
            // `main` read stdin to its end; reading past it again gives end of file.
            let mut more = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut more);
            return write!(
                out,
                "Status: 200 OK\nContent-Type: text/plain\n\n{body_len} then {}\n",
                more.len()
            );
        }
        _ => b"Status: 404 Not Found\nContent-Type: text/plain\n\nunknown cgi behaviour\n",
    };
    out.write_all(output)
}

/// The `cgi-env` role: every environment variable as an `x-env-<name>` field, the body echoed.
fn environment(body: Vec<u8>) -> Response {
    let mut response = Response::new(200).with_header("content-type", "application/octet-stream");
    for (name, value) in std::env::vars_os() {
        let name = name
            .to_string_lossy()
            .to_ascii_lowercase()
            .replace('_', "-");
        let value = value.to_string_lossy().into_owned();
        response = response.with_header(format!("x-env-{name}"), value);
    }
    response.with_body(body)
}
