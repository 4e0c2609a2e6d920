//! The deploy pipeline and the deployment table: validate, compile once, store, commit, then
//! tell every core and wait until each has applied the change.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use percore_dataplane::{
    Command, DEFAULT_MAX_INSTANCES_PER_CORE, DeploymentSpec, Ready, RouteSpec,
};
use percore_engine::{
    AllowedHosts, ArtifactCache, Cached, Engine, EngineConfig, GuestKind, Limits, NotResettable,
    OutboundPolicy, Warmup,
};
use percore_rt::notify::Notifier;
use serde_json::{Value, json};

use crate::content::Content;
use crate::deploy_request::{
    DeployRequest, check_collisions, check_limits, route_key, show_route, valid_name,
};
use crate::meter::{Applied, Metrics, lock};
use crate::store::{DeploymentDoc, RouteDoc, Store, Stored};
use crate::{ControlConfig, Error, error_chain};

mod source;
mod state;
mod view;

/// How long a change may take to reach every core.
const APPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// A failed admin operation: HTTP status and message.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

pub(crate) fn fail(status: u16, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

/// The control plane's view of what is deployed.
pub struct Plane {
    engine_config: EngineConfig,
    engine: Option<Engine>,
    defaults: Limits,
    pub max_upload: usize,
    /// How components are pulled from registries.
    registry: percore_oci::Settings,
    content: Option<Content>,
    /// Core dumps of trapped guests, when there is a state directory.
    coredumps: Option<crate::coredumps::CoreDumps>,
    /// Compiled components: `artifacts/` of the state directory, else the user's cache.
    artifacts: ArtifactCache,
    store: Option<Store>,
    /// Deployments made through the API (persisted when there is a state directory).
    dynamic: BTreeMap<String, Stored>,
    /// Deployments of the configuration file or command line.
    fixed: Vec<Ready>,
    producers: Vec<(rtrb::Producer<Command>, Arc<Notifier>)>,
    applied: Receiver<Applied>,
    seq: u64,
    pub metrics: Arc<Mutex<Metrics>>,
    /// Ids for API deployments when nothing is persisted.
    next_id: u32,
    /// The state database's file, watched under the running host.
    state_watch: state::StateWatch,
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane")
            .field("dynamic", &self.dynamic.len())
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Plane {
    pub fn new(
        config: &ControlConfig,
        producers: Vec<(rtrb::Producer<Command>, Arc<Notifier>)>,
        applied: Receiver<Applied>,
        metrics: Arc<Mutex<Metrics>>,
    ) -> Result<Self, Error> {
        let (content, artifacts, store) = match &config.state {
            Some(dir) => {
                let io = |source| Error::Io {
                    context: format!("state directory {}", dir.display()),
                    source,
                };
                std::fs::create_dir_all(dir).map_err(io)?;
                let content = Content::new(dir).map_err(io)?;
                let artifacts = ArtifactCache::new(dir.join("artifacts"), &config.engine);
                // Find an unwritable state directory now rather than at the first deploy.
                std::fs::create_dir_all(artifacts.dir()).map_err(io)?;
                let store = Store::open(&dir.join("percore.db"))?;
                (Some(content), artifacts, Some(store))
            }
            None => (
                None,
                ArtifactCache::new(ArtifactCache::default_dir(), &config.engine),
                None,
            ),
        };
        Ok(Self {
            engine_config: config.engine.clone(),
            engine: None,
            defaults: config.default_limits.clone(),
            max_upload: config.max_upload,
            registry: percore_oci::Settings {
                insecure: config.insecure_registries.clone(),
                max_bytes: config.max_upload as u64,
                ..percore_oci::Settings::default()
            },
            content,
            artifacts,
            store,
            dynamic: BTreeMap::new(),
            fixed: config.fixed.clone(),
            producers,
            applied,
            seq: 0,
            metrics,
            next_id: crate::store::FIRST_ID,
            state_watch: state::StateWatch::new(),
            coredumps: config
                .state
                .as_deref()
                .map(crate::coredumps::CoreDumps::new),
        })
    }

    /// Put every persisted deployment back on the cores. Artifacts are reused; a missing one is
    /// compiled again from the stored component.
    pub fn restore(&mut self) -> Result<usize, Error> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let stored = store.deployments()?;
        let mut restored = 0;
        for row in stored {
            if self.fixed.iter().any(|f| f.spec.name == row.name) {
                tracing::warn!(deployment = %row.name, "a deployment of the configuration file has this name; the stored one is not served");
                continue;
            }
            let mut row = row;
            // The reason recorded at deploy, read back: a restart parses no component unless
            // its artifact is missing (then it is compiled and checked again).
            let mut resettable = match &row.not_resettable {
                None => Ok(()),
                Some(why) => Err(NotResettable::Recorded(why.clone())),
            };
            if !row.artifact.exists() {
                tracing::warn!(deployment = %row.name, artifact = %row.artifact.display(), "artifact missing: compiling the stored component again");
                let compiled = self.stored_component(&row.component).and_then(|bytes| {
                    resettable = percore_engine::check_resettable(&bytes);
                    self.compile_into(&bytes).map(|cached| cached.path)
                });
                match compiled {
                    Ok(path) => row.artifact = path,
                    Err(f) => {
                        tracing::error!(deployment = %row.name, "cannot restore: {}", f.message);
                        continue;
                    }
                }
                row.not_resettable = resettable.as_ref().err().map(ToString::to_string);
            }
            lock(&self.metrics).names.insert(row.id, row.name.clone());
            let ready = self.ready(&row, resettable);
            if let Err(f) = self.broadcast(|seq| Command::Deploy {
                seq,
                ready: Box::new(ready.clone()),
            }) {
                tracing::error!(deployment = %row.name, "cannot restore: {}", f.message);
                continue;
            }
            tracing::info!(deployment = %row.name, version = row.version, "restored");
            self.next_id = self.next_id.max(row.id + 1);
            self.dynamic.insert(row.name.clone(), row);
            restored += 1;
        }
        Ok(restored)
    }

    /// The bytes of a component in the state directory.
    fn stored_component(&self, hash: &str) -> Result<Vec<u8>, Failure> {
        let content = self
            .content
            .as_ref()
            .ok_or_else(|| fail(500, "no state directory"))?;
        content
            .component(hash)
            .map_err(|e| fail(500, format!("stored component {hash}: {e}")))
    }

    /// Compile unless this component's artifact for this engine exists already.
    fn compile_into(&mut self, bytes: &[u8]) -> Result<Cached, Failure> {
        let started = Instant::now();
        let engine = compiler(&mut self.engine, &self.engine_config)?;
        let cached =
            self.artifacts
                .get_or_compile(engine, bytes)
                .map_err(|e| match e {
                    percore_engine::Error::WriteArtifact { .. }
                    | percore_engine::Error::Engine(_) => fail(500, error_chain(&e)),
                    e => fail(400, format!("the component was refused: {e}")),
                })?;
        if cached.compiled {
            lock(&self.metrics).compilations += 1;
            tracing::info!(component = %cached.component_sha256, ms = started.elapsed().as_millis() as u64, "compiled");
        } else {
            lock(&self.metrics).compile_cache_hits += 1;
        }
        Ok(cached)
    }

    fn limits(&self, doc: &DeploymentDoc) -> (Limits, usize) {
        let d = &self.defaults;
        let l = &doc.limits;
        (
            Limits {
                memory_bytes: l
                    .memory_mb
                    .map_or(d.memory_bytes, |m| m.saturating_mul(1 << 20)),
                cpu_budget: l.cpu_ms.map_or(d.cpu_budget, Duration::from_millis),
                wall_deadline: l.timeout_ms.map_or(d.wall_deadline, Duration::from_millis),
                max_response_body: l
                    .max_response_mb
                    .map_or(d.max_response_body, |m| m.saturating_mul(1 << 20)),
                // Dumps need a state directory to go to.
                coredump_max_bytes: match (&self.coredumps, l.coredump_mb) {
                    (Some(_), Some(m)) => m.saturating_mul(1 << 20),
                    _ => 0,
                },
                outbound: Arc::new(OutboundPolicy {
                    // Checked when deployed; a stored list that no longer parses allows nothing.
                    allowed: AllowedHosts::parse(&doc.allowed_outbound_hosts).unwrap_or_default(),
                    timeout: l
                        .outbound_timeout_ms
                        .map_or(d.outbound.timeout, Duration::from_millis),
                    max_per_request: l
                        .max_outbound_per_request
                        .unwrap_or(d.outbound.max_per_request),
                    max_response_bytes: l
                        .max_outbound_response_mb
                        .map_or(d.outbound.max_response_bytes, |m| m.saturating_mul(1 << 20)),
                }),
                ..d.clone()
            },
            l.max_instances_per_core
                .unwrap_or(DEFAULT_MAX_INSTANCES_PER_CORE),
        )
    }

    fn ready(&self, row: &Stored, resettable: Result<(), NotResettable>) -> Ready {
        let (limits, max_instances) = self.limits(&row.doc);
        Ready {
            id: row.id,
            spec: DeploymentSpec {
                name: row.name.clone(),
                component: row.artifact.clone(),
                routes: row
                    .doc
                    .routes
                    .iter()
                    .map(|r| RouteSpec {
                        host: r.host.clone(),
                        path_prefix: r.path.clone(),
                    })
                    .collect(),
                limits,
                config: row.doc.config.clone(),
                max_instances_per_core: max_instances,
                kind: None,
                // Checked when deployed; a stored list that no longer parses warms nothing up.
                warmup: Warmup::parse(&row.doc.warmup).unwrap_or_default(),
            },
            artifact: row.artifact.clone(),
            resettable,
            kind: row
                .doc
                .kind
                .as_deref()
                .and_then(|k| k.parse().ok())
                .unwrap_or(GuestKind::Edge),
        }
    }

    /// Send a command to every core and wait until each has applied it.
    fn broadcast(&mut self, command: impl Fn(u64) -> Command) -> Result<(), Failure> {
        self.seq += 1;
        let seq = self.seq;
        for (core, (producer, wake)) in self.producers.iter_mut().enumerate() {
            let deadline = Instant::now() + APPLY_TIMEOUT;
            let mut cmd = command(seq);
            loop {
                match producer.push(cmd) {
                    Ok(()) => {
                        wake.notify();
                        break;
                    }
                    Err(rtrb::PushError::Full(back)) if Instant::now() < deadline => {
                        cmd = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {
                        return Err(fail(503, format!("core #{core} is not taking commands")));
                    }
                }
            }
        }
        let mut pending = self.producers.len();
        let mut errors = Vec::new();
        let deadline = Instant::now() + APPLY_TIMEOUT;
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.applied.recv_timeout(left) {
                Ok((_, s, _)) if s != seq => continue,
                Ok((_, _, result)) => {
                    pending -= 1;
                    if let Err(e) = result {
                        // The error names its core.
                        errors.push(error_chain(&e));
                    }
                }
                Err(_) => {
                    return Err(fail(
                        503,
                        format!(
                            "{pending} core(s) did not apply the change within {APPLY_TIMEOUT:?}"
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            lock(&self.metrics).deploys += 1;
            Ok(())
        } else {
            Err(fail(500, errors.join("; ")))
        }
    }

    /// Store an uploaded component. Returns its SHA-256.
    pub fn upload(&mut self, bytes: &[u8]) -> Result<String, Failure> {
        if !bytes.starts_with(b"\0asm") {
            return Err(fail(
                400,
                "this is not WebAssembly (no \\0asm magic): upload a component (.wasm)",
            ));
        }
        let content = self.content.as_ref().ok_or_else(|| {
            fail(
                409,
                "uploads need a state directory (start the host with --state DIR)",
            )
        })?;
        content
            .put_component(bytes)
            .map_err(|e| fail(500, format!("cannot store the component: {e}")))
    }

    /// Create or replace a deployment.
    pub fn deploy(&mut self, name: &str, body: &[u8]) -> Result<(u16, Value), Failure> {
        if !valid_name(name) {
            return Err(fail(
                400,
                format!(
                    "bad deployment name {name:?}: use 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
                ),
            ));
        }
        if self.fixed.iter().any(|f| f.spec.name == name) {
            return Err(fail(
                409,
                format!(
                    "deployment `{name}` is defined by the host's configuration and cannot be changed here"
                ),
            ));
        }
        let request: DeployRequest = serde_json::from_slice(body)
            .map_err(|e| fail(400, format!("bad deployment request: {e}")))?;
        let mut routes = request.routes;
        if routes.is_empty() {
            routes.push(RouteDoc {
                host: None,
                path: format!("/{name}"),
            });
        }
        for r in &routes {
            if !r.path.starts_with('/') {
                return Err(fail(
                    400,
                    format!("route path {:?} must start with '/'", r.path),
                ));
            }
            if r.host
                .as_deref()
                .is_some_and(|h| h.is_empty() || h.contains(['/', ' ']))
            {
                return Err(fail(400, format!("bad route host {:?}", r.host)));
            }
        }
        for (i, a) in routes.iter().enumerate() {
            if routes[..i].iter().any(|b| {
                route_key(a.host.as_deref(), &a.path) == route_key(b.host.as_deref(), &b.path)
            }) {
                return Err(fail(
                    400,
                    format!("route {} is listed twice", show_route(a)),
                ));
            }
        }
        check_collisions(name, &routes, &self.fixed, &self.dynamic)?;
        let stated = match request.kind.as_deref() {
            None => None,
            Some(kind) => Some(
                kind.parse::<GuestKind>()
                    .map_err(|e| fail(400, e.to_string()))?,
            ),
        };
        let mut doc = DeploymentDoc {
            routes,
            config: request.config,
            limits: request.limits,
            allowed_outbound_hosts: request.allowed_outbound_hosts,
            warmup: percore_engine::Warmup::parse(&request.warmup)
                .map_err(|e| fail(400, e.to_string()))?
                .to_strings(),
            kind: None,
            oci: None,
        };
        check_limits(&doc.limits)?;
        percore_engine::AllowedHosts::parse(&doc.allowed_outbound_hosts)
            .map_err(|e| fail(400, e.to_string()))?;
        if doc.limits.coredump_mb.is_some() && self.coredumps.is_none() {
            return Err(fail(
                400,
                "core dumps are kept in the state directory, and this host has none (--state)",
            ));
        }

        // The component's bytes.
        let bytes = self.component_bytes(name, &request.component, &mut doc)?;
        // Store, then validate and compile (once per component and engine). Without a state
        // directory nothing is stored and the artifact goes to the user's artifact cache.
        if let Some(content) = &self.content {
            content
                .put_component(&bytes)
                .map_err(|e| fail(500, format!("cannot store the component: {e}")))?;
        }
        let Cached {
            path: artifact,
            component_sha256: hash,
            kind,
            ..
        } = self.compile_into(&bytes)?;
        if let Some(stated) = stated.filter(|&s| s != kind) {
            return Err(fail(
                400,
                percore_engine::Error::KindMismatch {
                    stated,
                    found: kind,
                }
                .to_string(),
            ));
        }
        if !doc.warmup.is_empty() && !matches!(kind, GuestKind::Edge | GuestKind::HttpP2) {
            return Err(fail(
                400,
                format!(
                    "a warm-up runs before an instance's snapshot, and a {kind} guest's \
                     instances are not reset: only edge and wasi-http guests take one"
                ),
            ));
        }
        doc.kind = Some(kind.as_str().to_owned());
        let resettable = percore_engine::check_resettable(&bytes);
        let not_resettable = resettable.as_ref().err().map(ToString::to_string);
        let updated = self.dynamic.contains_key(name);
        self.refuse_if_state_unusable()?;
        let row = match &mut self.store {
            Some(store) => store
                .put(
                    name,
                    &hash,
                    &artifact,
                    not_resettable.as_deref(),
                    &doc,
                    now(),
                )
                .map_err(|e| fail(500, error_chain(&e)))?,
            None => {
                let (id, version, created) = match self.dynamic.get(name) {
                    Some(old) => (old.id, old.version + 1, old.created),
                    None => {
                        self.next_id += 1;
                        (self.next_id - 1, 1, now())
                    }
                };
                Stored {
                    name: name.to_owned(),
                    id,
                    component: hash,
                    artifact,
                    not_resettable,
                    doc,
                    version,
                    created,
                    updated: now(),
                }
            }
        };
        lock(&self.metrics).names.insert(row.id, row.name.clone());
        let ready = self.ready(&row, resettable);
        self.dynamic.insert(name.to_owned(), row.clone());
        self.broadcast(|seq| Command::Deploy {
            seq,
            ready: Box::new(ready.clone()),
        })?;
        tracing::info!(deployment = %name, version = row.version, "deployed");
        Ok((if updated { 200 } else { 201 }, self.describe_stored(&row)))
    }

    /// Remove a deployment.
    pub fn remove(&mut self, name: &str) -> Result<Value, Failure> {
        if self.fixed.iter().any(|f| f.spec.name == name) {
            return Err(fail(
                409,
                format!(
                    "deployment `{name}` is defined by the host's configuration and cannot be removed here"
                ),
            ));
        }
        if !self.dynamic.contains_key(name) {
            return Err(fail(404, format!("no deployment `{name}`")));
        }
        self.refuse_if_state_unusable()?;
        if let Some(store) = &mut self.store {
            store.remove(name).map_err(|e| fail(500, error_chain(&e)))?;
        }
        let row = self.dynamic.remove(name).expect("checked above");
        if let Some(dumps) = &self.coredumps {
            dumps.remove(name);
        }
        let owned = name.to_owned();
        self.broadcast(|seq| Command::Remove {
            seq,
            name: owned.clone(),
        })?;
        tracing::info!(deployment = %name, "removed");
        Ok(json!({ "removed": name, "version": row.version }))
    }
}

/// The compiler, created at the first compilation (a host that restores its deployments from
/// their artifacts never needs one).
fn compiler<'a>(
    engine: &'a mut Option<Engine>,
    config: &EngineConfig,
) -> Result<&'a Engine, Failure> {
    if engine.is_none() {
        let created = Engine::without_ticker(config.clone())
            .map_err(|e| fail(500, format!("cannot create the compiler: {e}")))?;
        *engine = Some(created);
    }
    Ok(engine.as_ref().expect("just created"))
}
