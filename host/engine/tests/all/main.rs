//! Engine integration tests against real guest components.
//!
//! The guests are built by `cargo build-guests` into `target/guests/` (the README's test
//! command does this first). Each guest is compiled once per test run and shared.

mod bad_input;
mod examples;
mod hostile;
mod kinds;
mod reset;
mod slices;
mod warmup;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use percore_engine::{
    Engine, EngineConfig, Handler, InputPath, InputPreference, Invocation, Limits, Request,
};

/// Where `cargo build-guests` puts components.
pub fn guest_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build-guests` first (the README's test command does)",
        path.display()
    );
    path
}

/// Whether the guest of another language (Python, JavaScript, C) `name` was built: the
/// languages' toolchains are optional unless `PERCORE_REQUIRE_LANGUAGES` is set, as CI sets it.
pub fn language_guest_built(name: &str) -> bool {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests")
        .join(format!("{name}.wasm"))
        .exists();
    if !built {
        assert!(
            std::env::var_os("PERCORE_REQUIRE_LANGUAGES").is_none(),
            "{name}.wasm is missing and PERCORE_REQUIRE_LANGUAGES is set: run \
             `cargo build-guests --require-languages`"
        );
        eprintln!("skipped {name}: not built (its language's toolchain is not installed)");
    }
    built
}

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(EngineConfig::default()).expect("engine"))
}

/// The loaded guest `name`, compiled once per test run.
pub fn handler(name: &str) -> Handler {
    static CACHE: OnceLock<Mutex<HashMap<String, Handler>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().unwrap().get(name) {
        return h.clone();
    }
    let handler = match guest(name) {
        percore_engine::Guest::Edge(handler) => handler,
        other => panic!("{name} is a {} guest, not edge", other.kind()),
    };
    cache
        .lock()
        .unwrap()
        .insert(name.to_owned(), handler.clone());
    handler
}

/// Configuration values as a deployment holds them.
fn config_map(config: &[(&str, &str)]) -> Arc<BTreeMap<String, String>> {
    Arc::new(
        config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The loaded guest `name` of any kind, compiled once per test run.
pub fn guest(name: &str) -> percore_engine::Guest {
    static CACHE: OnceLock<Mutex<HashMap<String, percore_engine::Guest>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(g) = cache.lock().unwrap().get(name) {
        return g.clone();
    }
    let guest = engine()
        .load_file(&guest_path(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    cache.lock().unwrap().insert(name.to_owned(), guest.clone());
    guest
}

/// A request to build in tests.
#[derive(Debug)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

pub fn get(path: &str) -> Req {
    Req {
        method: "GET",
        path: path.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Req {
    pub fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Call `f` with this request as the engine takes it.
    pub fn with_request<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        f(&Request {
            method: self.method,
            path_with_query: &self.path,
            headers: &headers,
            body: &self.body,
        })
    }

    /// Run on a guest of any kind (wasi:http, command, through the data plane's calls) with
    /// `limits` and `config`; commands see the root route.
    pub fn run_kind(
        &self,
        guest_name: &str,
        limits: Limits,
        config: &[(&str, &str)],
    ) -> Invocation {
        let (limits, config) = (Arc::new(limits), config_map(config));
        self.with_request(|request| match guest(guest_name) {
            percore_engine::Guest::Http(h) => h.handle(limits, config, request),
            percore_engine::Guest::HttpP3(h) => h.handle(limits, config, request),
            percore_engine::Guest::Cgi(h) => {
                h.handle(limits, config, request, &percore_engine::CgiSite::default())
            }
            percore_engine::Guest::Edge(h) => {
                h.handle_fresh(limits, config, request, InputPreference::Region)
            }
            percore_engine::Guest::Bare(_) => panic!("bare modules are called, not requested"),
        })
    }

    /// Run on a fresh instance of `guest` with `limits` and `config`.
    pub fn run_with(
        &self,
        guest: &str,
        input: InputPreference,
        limits: Limits,
        config: &[(&str, &str)],
    ) -> Invocation {
        let (limits, config) = (Arc::new(limits), config_map(config));
        let invocation = self
            .with_request(|request| handler(guest).handle_fresh(limits, config, request, input));
        if invocation.result.is_ok() {
            let expected = match input {
                InputPreference::Region => InputPath::Region,
                InputPreference::Portable => InputPath::Portable,
            };
            assert_eq!(invocation.stats.input, expected);
        }
        invocation
    }

    pub fn run(&self, guest: &str, input: InputPreference) -> Invocation {
        self.run_with(guest, input, Limits::default(), &[])
    }
}

/// Both input paths, for tests that must hold on each.
pub const PATHS: [InputPreference; 2] = [InputPreference::Region, InputPreference::Portable];
