//! Decoding `Transfer-Encoding: chunked` request bodies.

use crate::ParseError;

/// Where the decoder is inside the chunked stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { size: usize, digits: usize },
    /// After the size: an extension (ignored) up to CRLF.
    Extension { size: usize },
    /// Expecting the LF of the size line.
    SizeLf { size: usize },
    /// Inside chunk data, `left` bytes to go.
    Data { left: usize },
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// In the trailer section: at the start of a line.
    TrailerLineStart,
    /// Inside a trailer line (ignored).
    TrailerLine,
    /// Expecting the LF that ends a trailer line.
    TrailerLf { empty: bool },
    /// The body is complete.
    Done,
}

/// An incremental chunked-body decoder: feed it bytes as they arrive.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max_body: usize,
    decoded: usize,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies over `max_body` decoded bytes.
    pub fn new(max_body: usize) -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
            max_body,
            decoded: 0,
        }
    }

    /// Whether the final chunk and the trailer have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input`, appending body bytes to `out`. Returns how many input bytes were
    /// consumed; stops at the end of the body, leaving the rest (a pipelined request) unread.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        let bad = ParseError::Malformed("bad chunked encoding");
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Size { size, digits } => match (b as char).to_digit(16) {
                    Some(d) => {
                        if digits >= 15 {
                            return Err(ParseError::BodyTooLarge);
                        }
                        State::Size {
                            size: size * 16 + d as usize,
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return Err(bad),
                    None if b == b'\r' => State::SizeLf { size },
                    None if b == b';' || b == b' ' || b == b'\t' => State::Extension { size },
                    None => return Err(bad),
                },
                State::Extension { size } => match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Err(bad),
                    _ => State::Extension { size },
                },
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(bad);
                    }
                    if size == 0 {
                        State::TrailerLineStart
                    } else {
                        if self.decoded + size > self.max_body {
                            return Err(ParseError::BodyTooLarge);
                        }
                        State::Data { left: size }
                    }
                }
                State::Data { left } => {
                    let take = left.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    self.decoded += take;
                    i += take;
                    self.state = if take == left {
                        State::DataCr
                    } else {
                        State::Data { left: left - take }
                    };
                    continue;
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0 },
                State::DataCr | State::DataLf => return Err(bad),
                State::TrailerLineStart => match b {
                    b'\r' => State::TrailerLf { empty: true },
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLf { empty: false },
                    _ => State::TrailerLine,
                },
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(bad);
                    }
                    if empty {
                        State::Done
                    } else {
                        State::TrailerLineStart
                    }
                }
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ParseError> {
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = d.decode(piece, &mut out)?;
            used += n;
            if d.is_done() {
                break;
            }
        }
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (out, used, done) = decode_all(body, step).unwrap();
            assert_eq!(out, b"hello, world");
            assert!(done);
            assert_eq!(
                &body[used..used + 4.min(body.len() - used)],
                &b"NEXT"[..4.min(body.len() - used)],
                "step {step}"
            );
        }
    }

    #[test]
    fn rejects_garbage_and_oversize() {
        assert!(decode_all(b"zz\r\n", 4).is_err());
        assert!(decode_all(b"5\r\nhelloXX", 64).is_err());
        let mut d = ChunkedDecoder::new(4);
        assert_eq!(
            d.decode(b"5\r\nhello\r\n", &mut Vec::new()),
            Err(ParseError::BodyTooLarge)
        );
        let mut d = ChunkedDecoder::new(usize::MAX);
        assert_eq!(
            d.decode(b"ffffffffffffffffff\r\n", &mut Vec::new()),
            Err(ParseError::BodyTooLarge)
        );
    }
}
