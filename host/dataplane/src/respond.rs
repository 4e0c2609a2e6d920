//! Writing one response into a connection's output: a guest's response, a host-made one, or a
//! fault mapped to its status, header and counter.

use percore_engine::{Fault, Response};

use crate::counters::Counters;

/// Where one request's response goes, and how: with `connection: close` when the connection
/// ends, without a body in answer to `HEAD`.
#[derive(Debug)]
pub(crate) struct Reply<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    keep_alive: bool,
    is_head: bool,
    /// Answer a guest timeout with 500 (the suite's misbehaviour tests).
    #[cfg(feature = "misbehave")]
    pub(crate) timeout_as_500: bool,
}

impl<'a> Reply<'a> {
    /// A reply appended to `out` (responses queue there in request order).
    pub(crate) fn new(out: &'a mut Vec<u8>, keep_alive: bool, is_head: bool) -> Self {
        let start = out.len();
        Self {
            out,
            start,
            keep_alive,
            is_head,
            #[cfg(feature = "misbehave")]
            timeout_as_500: false,
        }
    }

    /// Bytes of response written so far.
    pub(crate) fn written(&self) -> usize {
        self.out.len() - self.start
    }

    /// A whole response with a body in memory.
    pub(crate) fn write<'h>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
    ) {
        percore_http::write_head(self.out, status, headers, body.len(), self.keep_alive);
        if !self.is_head {
            self.out.extend_from_slice(body);
        }
    }

    /// A guest's checked response.
    pub(crate) fn response(&mut self, response: &Response) -> u16 {
        let headers = response
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()));
        self.write(response.status, headers, &response.body);
        response.status
    }

    /// A short text response from the host itself.
    pub(crate) fn simple(&mut self, status: u16, extra: &[(&str, &[u8])], body: &str) {
        let headers = [("content-type", &b"text/plain; charset=utf-8"[..])]
            .into_iter()
            .chain(extra.iter().copied());
        self.write(status, headers, body.as_bytes());
    }

    /// A fault: its status (504 timeout, 502 a response that breaks the contract, 500 the rest,
    /// the host's own failures included), `x-percore-fault: KIND`, and its counter. Returns the
    /// status.
    pub(crate) fn fault(&mut self, fault: &Fault, counters: &mut Counters) -> u16 {
        match fault {
            Fault::Timeout { .. } => counters.fault_timeout += 1,
            Fault::OutOfMemory { .. } => counters.fault_out_of_memory += 1,
            Fault::Trap { .. } | Fault::Exit { .. } | Fault::Poisoned => counters.fault_trap += 1,
            Fault::BadResponse { .. } | Fault::ResponseTooLarge { .. } => {
                counters.fault_bad_response += 1
            }
            Fault::Host { .. } => counters.fault_host += 1,
        }
        #[allow(unused_mut)]
        let mut status = fault.http_status();
        #[cfg(feature = "misbehave")]
        if self.timeout_as_500 && matches!(fault, Fault::Timeout { .. }) {
            status = 500;
        }
        let kind = fault.kind();
        let body = match fault {
            Fault::Host { .. } => "host fault\n".to_owned(),
            _ => format!("guest fault: {kind}\n"),
        };
        self.simple(status, &[("x-percore-fault", kind.as_bytes())], &body);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_failure_is_a_host_fault_not_the_guests() {
        let mut out = Vec::new();
        let mut counters = Counters::default();
        let fault = Fault::Host {
            message: "the input region is not writable".into(),
        };
        let status = Reply::new(&mut out, true, false).fault(&fault, &mut counters);
        assert_eq!(status, 500);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        assert!(text.contains("x-percore-fault: host\r\n"), "{text}");
        assert_eq!(counters.fault_host, 1);
        assert_eq!(counters.fault_bad_response, 0);
    }

    #[test]
    fn head_responses_have_no_body_but_keep_its_length() {
        let mut out = Vec::new();
        let mut reply = Reply::new(&mut out, false, true);
        reply.write(200, [("content-type", &b"text/plain"[..])], b"hello");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
