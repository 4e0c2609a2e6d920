//! Built-in native handlers, the reference line of the benchmarks: `native:hello` answers what
//! the `hello` guest answers and `native:json` what `bench-json` answers, computed in Rust on
//! the same data plane with no sandbox.

use std::path::Path;

use percore_engine::Request;

use super::{Cx, Outcome};

/// A built-in handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Native {
    /// Same answer as `examples-guests/hello`.
    Hello,
    /// Same answer as `examples-guests/bench-json` (the handler of `benches/compare.sh`).
    Json,
}

impl Native {
    /// The handler a component path names, if it is `native:<name>`.
    pub(crate) fn named(component: &Path) -> Option<Self> {
        match component.to_str()?.strip_prefix("native:")? {
            "hello" => Some(Self::Hello),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    pub(crate) fn run(&self, request: &Request<'_>, cx: &mut Cx<'_>) -> Outcome {
        match self {
            Self::Json => {
                let path = request
                    .path_with_query
                    .split('?')
                    .next()
                    .unwrap_or(request.path_with_query);
                let mut body = String::with_capacity(64);
                body.push_str("{\"method\":");
                json_quote(&mut body, request.method);
                body.push_str(",\"path\":");
                json_quote(&mut body, path);
                body.push_str(&format!(",\"body_bytes\":{}}}\n", request.body.len()));
                let headers = [("content-type", &b"application/json"[..])];
                cx.reply.write(200, headers, body.as_bytes());
            }
            Self::Hello => {
                let headers = [("content-type", &b"text/plain; charset=utf-8"[..])];
                cx.reply.write(200, headers, b"Hello from percore!\n");
            }
        }
        Outcome {
            status: 200,
            ..Outcome::new()
        }
    }
}

/// Append `s` as a JSON string.
fn json_quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_names() {
        assert_eq!(
            Native::named(Path::new("native:hello")),
            Some(Native::Hello)
        );
        assert_eq!(Native::named(Path::new("native:json")), Some(Native::Json));
        assert_eq!(Native::named(Path::new("native:nope")), None);
        assert_eq!(Native::named(Path::new("hello.wasm")), None);
    }

    #[test]
    fn json_is_quoted() {
        let mut s = String::new();
        json_quote(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\u000a""#);
    }
}
