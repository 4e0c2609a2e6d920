//! The CGI side (RFC 3875) of serving HTTP with a WASI command binary, WAGI style.
//!
//! A command knows nothing of HTTP: the request reaches it as environment variables
//! ([`environment`]), command-line arguments ([`arguments`]) and the body on stdin, and the
//! response leaves on stdout as an optional CGI header block and then the body
//! ([`parse_output`]). This module is that translation alone, with no I/O and no wasmtime, so
//! the runner that starts the command stays about running it. The variables follow WAGI (as in
//! Spin's `wagi` executor), except that `PATH_INFO` is left percent-encoded, exactly as received.

/// The `SERVER_SOFTWARE` a command sees.
const SERVER_SOFTWARE: &str = concat!("percore/", env!("CARGO_PKG_VERSION"));

/// Most header lines a command may print before its body.
const MAX_HEADERS: usize = 256;

/// Most command-line arguments a request gives a command, its path included: a hostile query
/// string must not turn into an unbounded argv.
const MAX_ARGUMENTS: usize = 256;

/// Request fields that never become `HTTP_` variables.
const OMITTED_HEADERS: [&str; 6] = [
    // Credentials and hop-by-hop fields (RFC 3875 §4.1.18).
    "authorization",
    "proxy-authorization",
    "connection",
    // Already given as CONTENT_LENGTH and CONTENT_TYPE.
    "content-length",
    "content-type",
    // "httpoxy": HTTP_PROXY would tell the guest's HTTP client to send its requests to the
    // client's proxy.
    "proxy",
];

/// First-line field names that can only mean the command is printing a CGI header block.
const ANNOUNCING_FIELDS: [&str; 3] = ["status", "content-type", "location"];

/// The facts about one HTTP request that a CGI command is given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgiRequest<'a> {
    /// The request method, for example `GET`.
    pub(crate) method: &'a str,
    /// The request target in origin form, as received: the path, then `?` and the query if any.
    pub(crate) path_with_query: &'a str,
    /// The request's header fields in the order received, one entry per field line.
    pub(crate) headers: &'a [(&'a str, &'a [u8])],
    /// The length of the body the command can read on stdin.
    pub(crate) body_len: usize,
    /// The path prefix of the route that matched, for example `/cgi` (or `/cgi/`), or `/`.
    pub(crate) route_prefix: &'a str,
    /// The host name the request was addressed to.
    pub(crate) server_name: &'a str,
    /// The port the request arrived on.
    pub(crate) server_port: u16,
    /// The client's IP address, as text.
    pub(crate) remote_addr: &'a str,
}

/// The CGI environment of a request, WAGI style, then the deployment's `extra` variables.
///
/// `PATH_INFO` is the path after the route prefix (`""` or starting with `/`), not
/// percent-decoded; `SCRIPT_NAME` is the prefix without a trailing `/`. Each request field
/// becomes `HTTP_<NAME>` (upper case, `-` as `_`), repeated fields joined by `", "` and bytes
/// that are not UTF-8 replaced, except the fields in `OMITTED_HEADERS`. An `extra` pair whose
/// name is already set (by CGI, by a request field or by an earlier pair) is skipped, so that
/// configuration can never pass itself off as a fact about the request.
pub(crate) fn environment(
    req: &CgiRequest<'_>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let (path, query) = split_query(req.path_with_query);
    let script_name = req.route_prefix.trim_end_matches('/');
    let path_info = match path.strip_prefix(script_name) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        // The router only hands over paths under the prefix; should another slip through, the
        // whole path tells the command more than an empty one.
        _ => path,
    };
    let content_type = req
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default();
    let full_url = format!(
        "http://{}:{}{}",
        req.server_name, req.server_port, req.path_with_query
    );
    let mut vars: Vec<(String, String)> = [
        ("AUTH_TYPE", String::new()),
        ("CONTENT_LENGTH", req.body_len.to_string()),
        ("CONTENT_TYPE", content_type),
        ("GATEWAY_INTERFACE", "CGI/1.1".to_owned()),
        ("PATH_INFO", path_info.to_owned()),
        ("PATH_TRANSLATED", path_info.to_owned()),
        ("QUERY_STRING", query.to_owned()),
        ("REMOTE_ADDR", req.remote_addr.to_owned()),
        ("REMOTE_HOST", req.remote_addr.to_owned()),
        ("REMOTE_USER", String::new()),
        ("REQUEST_METHOD", req.method.to_owned()),
        ("SCRIPT_NAME", script_name.to_owned()),
        ("SERVER_NAME", req.server_name.to_owned()),
        ("SERVER_PORT", req.server_port.to_string()),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_owned()),
        ("SERVER_SOFTWARE", SERVER_SOFTWARE.to_owned()),
        ("X_FULL_URL", full_url),
        // WAGI names a prefix route by its wildcard form.
        ("X_MATCHED_ROUTE", format!("{script_name}/...")),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();

    let first_header_var = vars.len();
    for (name, value) in req.headers {
        if OMITTED_HEADERS
            .iter()
            .any(|omitted| name.eq_ignore_ascii_case(omitted))
        {
            continue;
        }
        let var = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        let value = String::from_utf8_lossy(value);
        match vars[first_header_var..]
            .iter()
            .position(|(existing, _)| *existing == var)
        {
            Some(index) => {
                let joined = &mut vars[first_header_var + index].1;
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => vars.push((var, value.into_owned())),
        }
    }

    for (name, value) in extra {
        if !vars.iter().any(|(existing, _)| existing == name) {
            vars.push((name.clone(), value.clone()));
        }
    }
    vars
}

/// The command line of a request, WAGI style: the path (without the query), then for each
/// `&`-separated query pair its key and, if not empty, its value, both percent-decoded with `+`
/// as a space. Stops at `MAX_ARGUMENTS` in all; a pair that does not fit whole is dropped, with
/// every pair after it.
pub(crate) fn arguments(req: &CgiRequest<'_>) -> Vec<String> {
    let (path, query) = split_query(req.path_with_query);
    let mut args = vec![path.to_owned()];
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let needed = if value.is_empty() { 1 } else { 2 };
        if args.len() + needed > MAX_ARGUMENTS {
            break;
        }
        args.push(decode_query_component(key));
        if !value.is_empty() {
            args.push(decode_query_component(value));
        }
    }
    args
}

fn split_query(path_with_query: &str) -> (&str, &str) {
    path_with_query
        .split_once('?')
        .unwrap_or((path_with_query, ""))
}

/// Percent-decodes one key or value of a query, `+` as a space; a `%` not followed by two hex
/// digits stays as it is, and bytes that are not UTF-8 are replaced.
fn decode_query_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |index: usize| {
        bytes
            .get(index)
            .and_then(|&digit| char::from(digit).to_digit(16))
    };
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        index += 1;
        match (byte, hex(index), hex(index + 1)) {
            (b'+', _, _) => decoded.push(b' '),
            (b'%', Some(high), Some(low)) => {
                // Two hex digits are at most 0xff.
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                index += 2;
            }
            _ => decoded.push(byte),
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The response a command printed on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgiOutput {
    /// The HTTP status: from `Status`, else 302 with a `Location`, else 200.
    pub(crate) status: u16,
    /// The header fields to send, in the order printed, names as printed (compare them without
    /// regard to case), values trimmed; `Status` is not among them.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// Where the body starts in stdout: right after the empty line ending the header block, or
    /// 0 when stdout has no header block.
    pub(crate) body_offset: usize,
}

impl CgiOutput {
    /// All of stdout is the body; the caller supplies a content type.
    fn body_only() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body_offset: 0,
        }
    }
}

/// What is wrong with the CGI header block a command printed before its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CgiError {
    /// The output starts with a CGI header, but no empty line ends the block in time.
    #[error(
        "stdout starts with a CGI header (`Status`, `Content-Type` or `Location`) but no empty \
         line ends the header block within its first {max_head} bytes; print an empty line after \
         the last header, before the body"
    )]
    Unterminated {
        /// How many bytes the header block, its ending empty line included, may take.
        max_head: usize,
    },
    /// A `Status` whose code is not three digits from 200 to 599.
    #[error(
        "line {line} of stdout: `Status: {value}` is not a status from 200 to 599; write it as \
         `Status: 404` or `Status: 404 Not Found`"
    )]
    BadStatus {
        /// The line of stdout, counting from 1.
        line: usize,
        /// The start of the value printed.
        value: String,
    },
    /// A second `Status` line.
    #[error("line {line} of stdout: `Status` is given a second time; print it once")]
    DuplicateStatus {
        /// The line of stdout, counting from 1.
        line: usize,
    },
    /// A line of the header block that is not `Name: value` with a valid name.
    #[error(
        "line {line} of stdout is not a header `Name: value` (a name of letters, digits and `-`, \
         with no space before the colon); the header block ends at the first empty line"
    )]
    BadHeaderLine {
        /// The line of stdout, counting from 1.
        line: usize,
    },
    /// A header value holding a control character, such as NUL or a lone carriage return.
    #[error("line {line} of stdout: the value of `{name}` contains a control character")]
    BadHeaderValue {
        /// The line of stdout, counting from 1.
        line: usize,
        /// The header's name.
        name: String,
    },
    /// A line starting with a space or tab, continuing the header above (obsolete in HTTP).
    #[error(
        "line {line} of stdout starts with a space or tab, continuing the header above it, which \
         HTTP no longer allows; put each header on one line"
    )]
    ObsoleteLineFolding {
        /// The line of stdout, counting from 1.
        line: usize,
    },
    /// More header lines than the host accepts.
    #[error("stdout has more than {limit} header lines before the body")]
    TooManyHeaders {
        /// The most header lines accepted.
        limit: usize,
    },
    /// A header block without any of the fields RFC 3875 §6.2 requires.
    #[error(
        "the CGI header block has none of `Content-Type`, `Location` or `Status` (RFC 3875 \
         §6.2); add a `Content-Type`, or print the body alone without headers"
    )]
    MissingRequiredHeader,
}

/// Splits a command's stdout into the header block it printed, if any, and its body.
///
/// Whether stdout starts with a header block is decided by its first line, looked for within
/// the first `max_head` bytes:
/// 1. Unless the line starts with `Name:`, `Name` a non-empty HTTP token (RFC 9110 `tchar`s,
///    no space before the colon), there is no header block: all of stdout is the body, status
///    200, no headers.
/// 2. If `Name` is `Status`, `Content-Type` or `Location` (in any case), it is a header block.
///    An empty line must end it within the first `max_head` bytes, else
///    [`CgiError::Unterminated`], and each of its lines must be a valid header.
/// 3. For any other `Name`, it is a header block only if an empty line ends it within the first
///    `max_head` bytes and each line before it starts with `Name:` as in 1; otherwise all of
///    stdout is the body. Such a block must still hold one of the three fields above
///    ([`CgiError::MissingRequiredHeader`]).
///
/// So `hello world\n`, `{"a":1}` and `Error: x\n` are bodies, while `Content-Type: text/plain`
/// without an empty line after it is an error: its author meant a head and forgot to end it.
///
/// In the block, lines end with LF or CRLF and values are trimmed of spaces and tabs. `Status`
/// takes `NNN` or `NNN reason` (the reason is dropped); without it, a `Location` gives 302.
/// A `Location` is passed on as it is: no local redirects (RFC 3875 §6.2.2).
pub(crate) fn parse_output(stdout: &[u8], max_head: usize) -> Result<CgiOutput, CgiError> {
    let window = &stdout[..stdout.len().min(max_head)];
    let first_line = window
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default();
    let Some(first_name) = field_name(first_line) else {
        return Ok(CgiOutput::body_only());
    };
    let announced = ANNOUNCING_FIELDS
        .iter()
        .any(|name| first_name.eq_ignore_ascii_case(name.as_bytes()));
    let Some((fields_end, body_offset)) = find_head_end(window) else {
        return if announced {
            Err(CgiError::Unterminated { max_head })
        } else {
            Ok(CgiOutput::body_only())
        };
    };
    let fields = &stdout[..fields_end];
    if !announced && !field_lines(fields).all(|line| field_name(line).is_some()) {
        return Ok(CgiOutput::body_only());
    }
    parse_fields(fields, body_offset)
}

/// The end of the field lines and the start of the body: where the first empty line starts and
/// where it ends, if there is one in `window`.
fn find_head_end(window: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    while let Some(length) = window[line_start..].iter().position(|&byte| byte == b'\n') {
        let line_end = line_start + length;
        if matches!(&window[line_start..line_end], b"" | b"\r") {
            return Some((line_start, line_end + 1));
        }
        line_start = line_end + 1;
    }
    None
}

/// The lines of a header block without their LF or CRLF; `fields` ends with a line end.
fn field_lines(fields: &[u8]) -> impl Iterator<Item = &[u8]> {
    fields.split_inclusive(|&byte| byte == b'\n').map(|line| {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.strip_suffix(b"\r").unwrap_or(line)
    })
}

/// The name of a line that starts with `Name:`, `Name` an HTTP token.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&byte| byte == b':')?;
    let name = &line[..colon];
    let is_tchar = |byte: &u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(byte);
    (!name.is_empty() && name.iter().all(is_tchar)).then_some(name)
}

fn parse_fields(fields: &[u8], body_offset: usize) -> Result<CgiOutput, CgiError> {
    let mut status = None;
    let mut has_location = false;
    let mut has_content_type = false;
    let mut headers = Vec::new();
    for (index, line) in field_lines(fields).enumerate() {
        let line_number = index + 1;
        if index == MAX_HEADERS {
            return Err(CgiError::TooManyHeaders { limit: MAX_HEADERS });
        }
        if line
            .first()
            .is_some_and(|&byte| byte == b' ' || byte == b'\t')
        {
            return Err(CgiError::ObsoleteLineFolding { line: line_number });
        }
        let Some(name) = field_name(line) else {
            return Err(CgiError::BadHeaderLine { line: line_number });
        };
        let value = trim_spaces(&line[name.len() + 1..]);
        // What HTTP allows in a field value: no control characters but tab.
        if !value
            .iter()
            .all(|&byte| byte == b'\t' || (byte >= 0x20 && byte != 0x7f))
        {
            return Err(CgiError::BadHeaderValue {
                line: line_number,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        if name.eq_ignore_ascii_case(b"status") {
            if status.is_some() {
                return Err(CgiError::DuplicateStatus { line: line_number });
            }
            let code = parse_status(value).ok_or_else(|| CgiError::BadStatus {
                line: line_number,
                value: String::from_utf8_lossy(value).chars().take(40).collect(),
            })?;
            status = Some(code);
            continue;
        }
        has_location |= name.eq_ignore_ascii_case(b"location");
        has_content_type |= name.eq_ignore_ascii_case(b"content-type");
        // Tokens are ASCII: nothing is replaced.
        headers.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    if status.is_none() && !has_location && !has_content_type {
        return Err(CgiError::MissingRequiredHeader);
    }
    let status = status.unwrap_or(if has_location { 302 } else { 200 });
    Ok(CgiOutput {
        status,
        headers,
        body_offset,
    })
}

/// The code of a `Status` value, `NNN` or `NNN reason`, if it is from 200 to 599.
fn parse_status(value: &[u8]) -> Option<u16> {
    let code = value.split(|&byte| byte == b' ' || byte == b'\t').next()?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = code
        .iter()
        .fold(0u16, |total, digit| total * 10 + u16::from(digit - b'0'));
    (200..=599).contains(&status).then_some(status)
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests;
