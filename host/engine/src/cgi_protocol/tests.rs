//! Unit tests of the CGI environment, arguments and output parsing.

use super::*;

fn parse(stdout: &str) -> Result<CgiOutput, CgiError> {
    parse_output(stdout.as_bytes(), 4096)
}

#[test]
fn output_without_a_header_block_is_the_body() {
    for stdout in [
        "",
        "hello world\n",
        "{\"a\":1}",
        "Error: x\n",
        "Error: x\nsecond line\n",
        "Note: a\nsome prose\n\nmore",
        "\nContent-Type: text/plain\n\n",
        "Status : 200\n\n",
    ] {
        let expected = CgiOutput {
            status: 200,
            headers: Vec::new(),
            body_offset: 0,
        };
        assert_eq!(parse(stdout), Ok(expected), "{stdout:?}");
    }
}

/// The status, headers (as `Name: value`) and body of an output with a header block.
fn response(stdout: &str) -> (u16, Vec<String>, &str) {
    let output = parse(stdout).unwrap();
    let headers = output
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value)));
    (
        output.status,
        headers.collect(),
        &stdout[output.body_offset..],
    )
}

#[test]
fn header_blocks_give_status_headers_and_body() {
    for stdout in [
        "Status: 404 Not Found\nContent-Type: text/plain\n\nnope",
        "Status: 404\r\nContent-Type: text/plain\r\n\r\nnope",
        "Status: 404\r\nContent-Type: text/plain\n\nnope",
    ] {
        let (status, headers, body) = response(stdout);
        assert_eq!((status, body), (404, "nope"), "{stdout:?}");
        assert_eq!(headers, ["Content-Type: text/plain"], "{stdout:?}");
    }
    let (status, headers, _) = response("Location: /elsewhere\n\n");
    assert_eq!(status, 302);
    assert_eq!(headers, ["Location: /elsewhere"]);
    let (status, headers, _) = response("Location: https://example.com/\nStatus: 301\n\n");
    assert_eq!(status, 301);
    assert_eq!(headers, ["Location: https://example.com/"]);
    // Any header may come first when an empty line ends the block.
    let (_, headers, body) = response("X-Powered-By: me\nContent-Type: text/html\n\n<p>");
    assert_eq!(headers, ["X-Powered-By: me", "Content-Type: text/html"]);
    assert_eq!(body, "<p>");
    // The body is not searched for a second head.
    let stdout = "Content-Type: text/plain\r\n\r\nfirst\r\n\r\nStatus: 500\r\n\r\n";
    let (status, _, body) = response(stdout);
    assert_eq!((status, body), (200, "first\r\n\r\nStatus: 500\r\n\r\n"));
}

#[test]
fn repeated_headers_are_kept_in_order_and_values_trimmed() {
    let stdout = "content-type: \t text/html \t\nSet-Cookie: a=1\nX-Other:\nSet-Cookie: b=2\n\n";
    let expected = [
        "content-type: text/html",
        "Set-Cookie: a=1",
        "X-Other: ",
        "Set-Cookie: b=2",
    ];
    assert_eq!(response(stdout).1, expected);
}

#[test]
fn status_codes_are_checked() {
    for code in ["99", "600", "abc", "199", "2000", "", "-20", "200OK"] {
        let result = parse(&format!("Status: {code}\n\n"));
        assert!(
            matches!(result, Err(CgiError::BadStatus { line: 1, .. })),
            "{code:?}"
        );
    }
    assert_eq!(response("Status: 599 Odd\n\n").0, 599);
    assert_eq!(response("Status: 200\n\n").0, 200);
}

#[test]
fn malformed_header_blocks_are_errors() {
    use super::CgiError::*;
    let unterminated = Unterminated { max_head: 4096 };
    let nul = BadHeaderValue {
        line: 2,
        name: "X-A".to_owned(),
    };
    for (stdout, error) in [
        ("Status: 200\n", unterminated.clone()),
        ("Content-Type: text/plain", unterminated.clone()),
        ("content-type: text/plain\nhello", unterminated.clone()),
        ("LOCATION: /x\r\n", unterminated),
        ("Subject: hello\n\nDear reader", MissingRequiredHeader),
        (
            "Content-Type: a\n  folded\n\n",
            ObsoleteLineFolding { line: 2 },
        ),
        ("Status: 200\nnot a header\n\n", BadHeaderLine { line: 2 }),
        ("Status: 200\nBad Name: x\n\n", BadHeaderLine { line: 2 }),
        ("Status: 200\nStatus: 404\n\n", DuplicateStatus { line: 2 }),
        ("Content-Type: a\nX-A: a\0b\n\n", nul),
    ] {
        assert_eq!(parse(stdout), Err(error), "{stdout:?}");
    }
}

#[test]
fn the_head_must_fit_in_max_head() {
    let long = format!("Content-Type: a\nX-Pad: {}\n\nbody", "a".repeat(100));
    let result = parse_output(long.as_bytes(), 64);
    assert_eq!(result, Err(CgiError::Unterminated { max_head: 64 }));
    assert_eq!(response(&long).2, "body");
    // The ending empty line counts towards the limit.
    let exact = "Content-Type: a\n\n";
    assert!(parse_output(exact.as_bytes(), exact.len()).is_ok());
    let max_head = exact.len() - 1;
    let result = parse_output(exact.as_bytes(), max_head);
    assert_eq!(result, Err(CgiError::Unterminated { max_head }));
}

#[test]
fn a_binary_body_is_left_alone() {
    let mut stdout = b"Content-Type: application/octet-stream\n\n".to_vec();
    let head_len = stdout.len();
    stdout.extend_from_slice(&[0, 0xff, b'\n', b'\n', 0x80]);
    let output = parse_output(&stdout, 4096).unwrap();
    assert_eq!(output.body_offset, head_len);
    assert_eq!(&stdout[output.body_offset..], [0, 0xff, b'\n', b'\n', 0x80]);
}

#[test]
fn header_count_is_limited() {
    let within = format!("Content-Type: a\n{}\n", "X-A: b\n".repeat(MAX_HEADERS - 1));
    assert_eq!(response(&within).1.len(), MAX_HEADERS);
    let over = format!("Content-Type: a\n{}\n", "X-A: b\n".repeat(MAX_HEADERS));
    let limit = MAX_HEADERS;
    assert_eq!(parse(&over), Err(CgiError::TooManyHeaders { limit }));
}

fn request<'a>(
    path_with_query: &'a str,
    route_prefix: &'a str,
    headers: &'a [(&'a str, &'a [u8])],
) -> CgiRequest<'a> {
    CgiRequest {
        method: "GET",
        path_with_query,
        headers,
        body_len: 0,
        route_prefix,
        server_name: "example.com",
        server_port: 8080,
        remote_addr: "192.0.2.7",
    }
}

fn var<'v>(vars: &'v [(String, String)], name: &str) -> Option<&'v str> {
    vars.iter()
        .find(|(existing, _)| existing == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn environment_under_a_route_prefix() {
    let headers = [
        ("host", b"example.com:8080".as_slice()),
        ("accept", b"text/html".as_slice()),
        ("Accept", b"application/json".as_slice()),
        ("authorization", b"Bearer secret".as_slice()),
        ("proxy-authorization", b"Basic secret".as_slice()),
        ("connection", b"keep-alive".as_slice()),
        ("proxy", b"http://proxy.example".as_slice()),
        ("content-type", b"text/plain".as_slice()),
        ("content-length", b"5".as_slice()),
        ("x-raw", b"\xffok".as_slice()),
    ];
    let mut req = request("/cgi/a/b?x=1&y=", "/cgi", &headers);
    req.method = "POST";
    req.body_len = 5;
    let vars = environment(&req, &[]);
    for (name, value) in [
        ("AUTH_TYPE", ""),
        ("CONTENT_LENGTH", "5"),
        ("CONTENT_TYPE", "text/plain"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("PATH_INFO", "/a/b"),
        ("PATH_TRANSLATED", "/a/b"),
        ("QUERY_STRING", "x=1&y="),
        ("REMOTE_ADDR", "192.0.2.7"),
        ("REMOTE_HOST", "192.0.2.7"),
        ("REMOTE_USER", ""),
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", "/cgi"),
        ("SERVER_NAME", "example.com"),
        ("SERVER_PORT", "8080"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("X_FULL_URL", "http://example.com:8080/cgi/a/b?x=1&y="),
        ("X_MATCHED_ROUTE", "/cgi/..."),
        ("HTTP_HOST", "example.com:8080"),
        ("HTTP_ACCEPT", "text/html, application/json"),
        ("HTTP_X_RAW", "\u{fffd}ok"),
    ] {
        assert_eq!(var(&vars, name), Some(value), "{name}");
    }
    assert!(
        var(&vars, "SERVER_SOFTWARE")
            .unwrap()
            .starts_with("percore/")
    );
    for omitted in [
        "HTTP_AUTHORIZATION",
        "HTTP_PROXY_AUTHORIZATION",
        "HTTP_CONNECTION",
        "HTTP_PROXY",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
    ] {
        assert_eq!(var(&vars, omitted), None, "{omitted}");
    }
    assert_eq!(arguments(&req), ["/cgi/a/b", "x", "1", "y"]);
}

#[test]
fn environment_of_the_root_route_and_a_bare_prefix() {
    let vars = environment(&request("/", "/", &[]), &[]);
    assert_eq!(var(&vars, "PATH_INFO"), Some("/"));
    assert_eq!(var(&vars, "SCRIPT_NAME"), Some(""));
    assert_eq!(var(&vars, "X_MATCHED_ROUTE"), Some("/..."));
    assert_eq!(var(&vars, "QUERY_STRING"), Some(""));
    assert_eq!(var(&vars, "CONTENT_LENGTH"), Some("0"));
    assert_eq!(var(&vars, "CONTENT_TYPE"), Some(""));
    let vars = environment(&request("/x/y?q", "/", &[]), &[]);
    assert_eq!(var(&vars, "PATH_INFO"), Some("/x/y"));
    assert_eq!(var(&vars, "QUERY_STRING"), Some("q"));
    let vars = environment(&request("/cgi", "/cgi/", &[]), &[]);
    assert_eq!(var(&vars, "PATH_INFO"), Some(""));
    assert_eq!(var(&vars, "SCRIPT_NAME"), Some("/cgi"));
    assert_eq!(var(&vars, "X_MATCHED_ROUTE"), Some("/cgi/..."));
}

#[test]
fn extra_variables_never_override() {
    let headers = [("accept", b"*/*".as_slice())];
    let extra = [
        ("REQUEST_METHOD", "DELETE"),
        ("HTTP_ACCEPT", "x"),
        ("API_URL", "first"),
        ("API_URL", "second"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let vars = environment(&request("/", "/", &headers), &extra);
    assert_eq!(var(&vars, "REQUEST_METHOD"), Some("GET"));
    assert_eq!(var(&vars, "HTTP_ACCEPT"), Some("*/*"));
    assert_eq!(var(&vars, "API_URL"), Some("first"));
    for name in ["REQUEST_METHOD", "HTTP_ACCEPT", "API_URL"] {
        let count = vars.iter().filter(|(existing, _)| existing == name).count();
        assert_eq!(count, 1, "{name}");
    }
}

#[test]
fn arguments_are_decoded_and_capped() {
    let req = request(
        "/p?name=J%C3%B6rg+M&a%26b=c%3Dd&&bad=%zz%4&raw=%FF&flag",
        "/",
        &[],
    );
    assert_eq!(
        arguments(&req),
        [
            "/p", "name", "Jörg M", "a&b", "c=d", "bad", "%zz%4", "raw", "\u{fffd}", "flag"
        ]
    );
    let keys = format!("/p?{}", ["k"; 1000].join("&"));
    assert_eq!(arguments(&request(&keys, "/", &[])).len(), MAX_ARGUMENTS);
    let pairs = format!("/p?{}", ["k=v"; 1000].join("&"));
    assert_eq!(
        arguments(&request(&pairs, "/", &[])).len(),
        MAX_ARGUMENTS - 1
    );
}
