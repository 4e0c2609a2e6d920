//! HTTP/1.1 for percore's data plane, without I/O: parse a request head under limits, decode
//! chunked bodies, write responses. Everything works on byte slices so that it can be fuzzed and
//! tested without sockets; [`blocking`] reads one request from any `Read` for the admin API.
#![forbid(unsafe_code)]

pub mod blocking;
mod chunked;
mod request;
mod response;

pub use chunked::ChunkedDecoder;
pub use request::{BodyFraming, Head, Limits, ParseError, parse_head};
pub use response::{reason_phrase, write_head, write_simple};
