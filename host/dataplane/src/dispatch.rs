//! From a complete request to its response: route it to a deployment, give the deployment's
//! backend the request as the guest sees it, meter what happened. Also where large bodies are
//! routed early so that they can be received straight into guest memory.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use percore_engine::{Engine, Request};

use crate::backend::{Call, Cx, StreamPermits, Streamed};
use crate::counters::Counters;
use crate::deployments::Deployments;
use crate::intake::{Body, Incoming, Serve};
use crate::link::{InvocationRecord, Ready, Report, ShardLink};
use crate::meter::{Meter, RequestId};
use crate::respond::Reply;
use crate::{Error, ServeConfig};

/// Requests one core receives into guest memory at once (each holds an instance).
const MAX_STREAMS: usize = 64;

/// One core's dispatcher: its engine, its deployments, its meter.
#[derive(Debug)]
pub(crate) struct Dispatch {
    core: usize,
    config: Arc<ServeConfig>,
    /// The engine every component of this core is mapped into.
    engine: Engine,
    deployments: Deployments,
    pub(crate) meter: Meter,
    /// Requests dispatched on this core: request ids and the LRU clock.
    clock: u64,
    streams: StreamPermits,
}

impl Dispatch {
    pub(crate) fn new(
        core: usize,
        engine: Engine,
        config: Arc<ServeConfig>,
        initial: &[Ready],
        link: ShardLink,
    ) -> Result<Self, Error> {
        let deployments =
            Deployments::new(&engine, &config, initial, core).map_err(|e| Error::Deployment {
                name: e.deployment,
                source: e.source,
            })?;
        Ok(Self {
            core,
            config,
            engine,
            deployments,
            meter: Meter::new(core, link),
            clock: 0,
            streams: StreamPermits::default(),
        })
    }

    /// Apply what the control plane queued. Runs between requests, so a request never sees a
    /// deployment change halfway.
    pub(crate) fn apply_commands(&mut self) {
        while let Some(command) = self.meter.next_command() {
            let (seq, result) = self.deployments.apply(
                &self.engine,
                &self.config,
                command,
                self.core,
                self.clock,
                &mut self.meter.counters,
            );
            self.meter.report(Report::Applied {
                core: self.core,
                seq,
                result,
            });
        }
    }

    /// Bodies being received into guest memory right now.
    #[cfg(test)]
    pub(crate) fn streams_in_flight(&self) -> usize {
        self.streams.in_flight()
    }
}

impl Serve for Dispatch {
    /// Route, run and meter one request. The guest sees the decoded body, with no
    /// `transfer-encoding` and a `content-length` that gives the decoded length.
    fn serve(&mut self, incoming: &Incoming<'_>, body: Body<'_>, out: &mut Vec<u8>) {
        let started = Instant::now();
        let mut reply = Reply::new(out, incoming.keep_alive, incoming.method == "HEAD");
        let status = match self.deployments.resolve(incoming.host(), incoming.target) {
            None => {
                reply.simple(404, &[], "no deployment serves this route\n");
                404
            }
            Some((index, prefix_len)) => {
                let route_prefix = incoming.target.get(..prefix_len).unwrap_or("");
                self.run(index, route_prefix, incoming, body, reply, started)
            }
        };
        let counters = &mut self.meter.counters;
        counters.status(status);
        counters.latency_us(started.elapsed().as_micros() as u64);
    }

    fn begin_stream(
        &mut self,
        incoming: &Incoming<'_>,
        body_len: usize,
        first: &[u8],
    ) -> Option<Streamed> {
        #[cfg(feature = "misbehave")]
        if self.config.misbehave.is_some() {
            return None;
        }
        let index = self.deployments.route(incoming.host(), incoming.target)?;
        let permit = self.streams.try_take(MAX_STREAMS)?;
        let length = body_len.to_string();
        let headers = guest_headers(incoming.headers, &length, body_len);
        let request = Request {
            method: incoming.method,
            path_with_query: incoming.target,
            headers: &headers,
            body: &[],
        };
        let deployment = self.deployments.get_mut(index);
        let counters = &mut self.meter.counters;
        let into =
            deployment
                .backend
                .begin_stream(&request, body_len, &deployment.name, counters)?;
        counters.bodies_streamed += 1;
        let mut streamed = Streamed::new(deployment.id, deployment.generation, into, permit);
        streamed.push(first);
        Some(streamed)
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.meter.counters
    }
}

impl Dispatch {
    /// Run a routed request on deployment `index` and write its invocation record.
    fn run(
        &mut self,
        index: usize,
        route_prefix: &str,
        incoming: &Incoming<'_>,
        body: Body<'_>,
        reply: Reply<'_>,
        started: Instant,
    ) -> u16 {
        let deployed = self.deployments.get(index);
        // A streamed body runs only on the version of the deployment that received it; if the
        // deployment changed meanwhile, the body is copied back out.
        let copied_back;
        let (body, streamed) = match body {
            Body::Bytes(bytes) => (bytes, None),
            Body::Streamed(s)
                if s.deployment == deployed.id && s.generation == deployed.generation =>
            {
                (&[][..], Some(s))
            }
            Body::Streamed(s) => {
                copied_back = s.copy_out();
                (&copied_back[..], None)
            }
        };
        #[cfg(feature = "misbehave")]
        let mangled;
        #[cfg(feature = "misbehave")]
        let body = {
            mangled = crate::misbehave::request_body(self.config.misbehave, body);
            mangled.as_deref().unwrap_or(body)
        };
        let body_len = streamed.as_ref().map_or(body.len(), Streamed::len);
        let length = body_len.to_string();
        let headers = guest_headers(incoming.headers, &length, body_len);
        #[cfg(feature = "misbehave")]
        let headers = crate::misbehave::request_headers(self.config.misbehave, headers);
        let request = Request {
            method: incoming.method,
            path_with_query: incoming.target,
            headers: &headers,
            body,
        };
        #[cfg(feature = "misbehave")]
        let reply = {
            crate::misbehave::before_run(self.config.misbehave, &mut self.deployments, index);
            let mut reply = reply;
            reply.timeout_as_500 = self.config.misbehave == Some(crate::Misbehaviour::TimeoutAs500);
            reply
        };
        self.clock += 1;
        let id = RequestId {
            core: self.core,
            seq: self.clock,
        };
        let deployed = self.deployments.get_mut(index);
        let was_mapped = deployed.backend.is_mapped();
        let mut cx = Cx {
            engine: &self.engine,
            counters: &mut self.meter.counters,
            reply,
            coredump: None,
        };
        let call = Call {
            request: &request,
            streamed,
            id,
            deployment: &deployed.name,
            route_prefix,
            peer: incoming.peer,
        };
        let outcome = deployed.backend.run(call, &mut cx);
        let bytes_out = cx.reply.written() as u64;
        let coredump = cx.coredump.take();
        let deployment = deployed.id;
        self.deployments
            .used(index, self.clock, was_mapped, &mut self.meter.counters);
        let duration_us = started.elapsed().as_micros() as u64;
        let start_unix_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
            .saturating_sub(duration_us);
        self.meter.record(InvocationRecord {
            request_id: id.packed(),
            deployment,
            start_unix_us,
            duration_us,
            cpu_us: outcome.cpu_us,
            status: outcome.status,
            fault: outcome.fault,
            bytes_in: (incoming.wire_head_len() + body_len) as u64,
            bytes_out,
            requests: 1,
            cold_starts: u32::from(outcome.cold),
        });
        if let Some(dump) = coredump {
            self.meter.report(Report::CoreDump {
                deployment,
                request_id: id.packed(),
                dump,
            });
        }
        outcome.status
    }
}

/// The header fields a guest sees: framing fields replaced by one `content-length` giving the
/// decoded body's length (none for an empty body).
fn guest_headers<'a>(
    headers: &[(&'a str, &'a [u8])],
    length: &'a str,
    body_len: usize,
) -> Vec<(&'a str, &'a [u8])> {
    headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("transfer-encoding")
                && !n.eq_ignore_ascii_case("content-length")
        })
        .copied()
        .chain((body_len > 0).then_some(("content-length", length.as_bytes())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use percore_engine::EngineConfig;

    use super::*;
    use crate::intake::{Intake, IntakeSettings};
    use crate::link::{Command, CoreLink};
    use crate::router::{DEFAULT_MAX_INSTANCES_PER_CORE, DeploymentSpec, RouteSpec};

    /// Where `cargo build-guests` puts components (the README's test command builds them
    /// before the tests run).
    fn guest(name: &str) -> PathBuf {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/guests")
            .join(format!("{name}.wasm"));
        assert!(
            path.exists(),
            "{} is missing: run `cargo build-guests`",
            path.display()
        );
        path
    }

    fn spec(name: &str, component: PathBuf) -> DeploymentSpec {
        DeploymentSpec {
            name: name.into(),
            component,
            routes: vec![RouteSpec {
                host: None,
                path_prefix: "/".into(),
            }],
            limits: Default::default(),
            config: Default::default(),
            max_instances_per_core: DEFAULT_MAX_INSTANCES_PER_CORE,
            kind: None,
        }
    }

    struct Fixture {
        dispatch: Dispatch,
        control: CoreLink,
        config: Arc<ServeConfig>,
        _artifacts: tempfile::TempDir,
    }

    /// A dispatcher serving `echo` at `/`, with no socket and no shard thread.
    fn fixture() -> Fixture {
        let artifacts = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![spec("app", guest("echo"))],
        );
        config.artifacts = artifacts.path().to_owned();
        let ready = crate::prepare::artifacts(&config).unwrap();
        let config = Arc::new(config);
        let (control, link) = crate::link::pair(0, 1024).unwrap();
        let engine = Engine::without_ticker(EngineConfig::default()).unwrap();
        let dispatch = Dispatch::new(0, engine, config.clone(), &ready, link).unwrap();
        Fixture {
            dispatch,
            control,
            config,
            _artifacts: artifacts,
        }
    }

    fn settings(config: &ServeConfig) -> IntakeSettings<'_> {
        IntakeSettings {
            limits: &config.http,
            peer: None,
            draining: false,
            request_timeout: config.request_timeout,
            now: Instant::now(),
        }
    }

    /// The body of the last response in `out` (responses here carry a `content-length`).
    fn last_body(out: &[u8]) -> &[u8] {
        let text = String::from_utf8_lossy(out);
        let at = text.rfind("HTTP/1.1 ").unwrap();
        let head_end = at + text[at..].find("\r\n\r\n").unwrap() + 4;
        &out[head_end..]
    }

    fn large_request(len: usize) -> (Vec<u8>, Vec<u8>) {
        let body: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut wire =
            format!("POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n\r\n").into_bytes();
        wire.extend_from_slice(&body);
        (wire, body)
    }

    #[test]
    fn a_large_body_in_pieces_goes_straight_into_guest_memory() {
        let mut f = fixture();
        let (wire, body) = large_request(300_000);
        let mut intake = Intake::default();
        let mut out = Vec::new();
        let config = f.config.clone();
        for piece in wire.chunks(32 << 10) {
            assert!(intake.feed(piece, &mut out, &mut f.dispatch, &settings(&config)));
            if out.is_empty() {
                assert_eq!(f.dispatch.streams_in_flight(), 1);
            }
        }
        assert_eq!(f.dispatch.streams_in_flight(), 0, "the permit is back");
        let counters = &f.dispatch.meter.counters;
        assert_eq!(counters.bodies_streamed, 1);
        assert_eq!(
            counters.request_copies, 1,
            "one host copy: into guest memory"
        );
        assert!(
            out.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&out[..100])
        );
        assert_eq!(last_body(&out), &body[..]);
    }

    /// Send a body of `len` bytes to `echo`; after the first `cut` bytes of the request, deploy
    /// `app` again as `v2`; send the rest. Returns the output and the body sent.
    fn swap_mid_stream(v2: &str, len: usize, cut: usize) -> (Vec<u8>, Vec<u8>) {
        let mut f = fixture();
        let (wire, body) = large_request(len);
        let (first, rest) = wire.split_at(cut);
        let mut intake = Intake::default();
        let mut out = Vec::new();
        let config = f.config.clone();
        assert!(intake.feed(first, &mut out, &mut f.dispatch, &settings(&config)));
        assert_eq!(
            f.dispatch.meter.counters.bodies_streamed, 1,
            "received into `echo`"
        );
        assert_eq!(f.dispatch.streams_in_flight(), 1);
        let mut v2 = crate::prepare::artifacts(&ServeConfig {
            deployments: vec![spec("app", guest(v2))],
            ..(*config).clone()
        })
        .unwrap();
        let ready = Box::new(v2.remove(0));
        let deploy = Command::Deploy { seq: 1, ready };
        assert!(f.control.commands.push(deploy).is_ok());
        f.dispatch.apply_commands();
        assert!(intake.feed(rest, &mut out, &mut f.dispatch, &settings(&config)));
        assert_eq!(f.dispatch.streams_in_flight(), 0, "the permit is back");
        (out, body)
    }

    #[test]
    fn a_deployment_swapped_mid_stream_runs_the_request_on_the_new_version() {
        // Version 2 of `app` is `hello`, which ignores the body.
        let (out, _) = swap_mid_stream("hello", 200_000, 40_000);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(
            text.contains("Hello from percore"),
            "the new version answered: {text}"
        );
    }

    #[test]
    fn a_swap_to_a_new_load_copies_the_streamed_body_out_whole() {
        // Version 2 is `echo` again (a new load): the body received into version 1's instance
        // is copied back out and run on version 2.
        let (out, body) = swap_mid_stream("echo", 150_000, 70_000);
        assert!(out.starts_with(b"HTTP/1.1 200 "));
        assert_eq!(last_body(&out), &body[..], "byte-exact after the copy back");
    }

    #[test]
    fn pipelined_requests_to_a_guest_are_answered_in_order() {
        let mut f = fixture();
        let config = f.config.clone();
        let mut intake = Intake::default();
        let mut out = Vec::new();
        let wire = b"GET /1 HTTP/1.1\r\nhost: t\r\n\r\nPOST /2 HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi";
        assert!(intake.feed(wire, &mut out, &mut f.dispatch, &settings(&config)));
        let text = String::from_utf8_lossy(&out);
        let one = text.find("x-echo-path: /1\r\n").unwrap();
        let two = text.find("x-echo-path: /2\r\n").unwrap();
        assert!(one < two, "{text}");
        assert!(text.ends_with("hi"), "{text}");
        assert_eq!(f.dispatch.meter.counters.status_2xx, 2);
    }
}
