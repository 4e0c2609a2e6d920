//! One core's deployment table: what each deployment runs on (its [`Backend`]), the route
//! table over them, the least-recently-used unmapping of components past a cap, and the
//! control plane's commands applied between requests.

use percore_engine::Engine;

use crate::ServeConfig;
use crate::backend::Backend;
use crate::counters::Counters;
use crate::link::{ApplyError, Command, Ready};
use crate::router::{RouteSpec, Router};

/// One deployment as loaded on one core.
#[derive(Debug)]
pub(crate) struct Deployed {
    /// Id carried by invocation records.
    pub(crate) id: u32,
    pub(crate) name: String,
    /// Where the component came from (the suite's misbehaviour tests compare it).
    #[cfg(feature = "misbehave")]
    pub(crate) component: std::path::PathBuf,
    routes: Vec<RouteSpec>,
    /// Which load of a deployment this is (a streamed body only runs on the version that
    /// received it).
    pub(crate) generation: u64,
    /// The core's request clock when this deployment last served (LRU).
    last_used: u64,
    /// Its calls in flight on this core.
    pub(crate) in_flight: usize,
    pub(crate) backend: Backend,
}

/// The deployments of one core.
#[derive(Debug)]
pub(crate) struct Deployments {
    list: Vec<Deployed>,
    router: Router,
    /// Loads so far (each load gets the next number as its generation).
    loads: u64,
    /// Components kept mapped at most.
    max_mapped: usize,
}

impl Deployments {
    /// The table with the configuration's deployments loaded.
    pub(crate) fn new(
        engine: &Engine,
        config: &ServeConfig,
        initial: &[Ready],
        core: usize,
    ) -> Result<Self, ApplyError> {
        let mut table = Self {
            list: Vec::new(),
            router: Router::new(std::iter::empty()),
            loads: 0,
            max_mapped: config.max_loaded_per_core.max(1),
        };
        for ready in initial {
            let deployed = table.load(engine, config, ready, core)?;
            table.list.push(deployed);
        }
        table.reroute();
        Ok(table)
    }

    fn load(
        &mut self,
        engine: &Engine,
        config: &ServeConfig,
        ready: &Ready,
        core: usize,
    ) -> Result<Deployed, ApplyError> {
        #[allow(unused_mut)]
        let mut backend = Backend::load(engine, config, ready).map_err(|source| ApplyError {
            core,
            deployment: ready.spec.name.clone(),
            source,
        })?;
        #[cfg(feature = "misbehave")]
        crate::misbehave::on_load(config.misbehave, &mut backend);
        self.loads += 1;
        Ok(Deployed {
            id: ready.id,
            name: ready.spec.name.clone(),
            #[cfg(feature = "misbehave")]
            component: ready.spec.component.clone(),
            routes: ready.spec.routes.clone(),
            generation: self.loads,
            last_used: 0,
            in_flight: 0,
            backend,
        })
    }

    fn reroute(&mut self) {
        self.router = Router::new(
            self.list
                .iter()
                .enumerate()
                .map(|(i, d)| (i, &d.routes[..])),
        );
    }

    /// The deployment serving a request with this `Host` value and target.
    pub(crate) fn route(&self, host: Option<&[u8]>, target: &str) -> Option<usize> {
        self.router.route(host, target)
    }

    /// The deployment for a request and the length of the route prefix that matched.
    pub(crate) fn resolve(&self, host: Option<&[u8]>, target: &str) -> Option<(usize, usize)> {
        self.router.resolve(host, target)
    }

    /// The index of a deployment by id, if this load of it (`generation`) is still the one
    /// deployed.
    pub(crate) fn find(&self, id: u32, generation: u64) -> Option<usize> {
        self.list
            .iter()
            .position(|d| d.id == id && d.generation == generation)
    }

    pub(crate) fn get(&self, index: usize) -> &Deployed {
        &self.list[index]
    }

    pub(crate) fn get_mut(&mut self, index: usize) -> &mut Deployed {
        &mut self.list[index]
    }

    /// Every deployment (the suite's misbehaviour tests).
    #[cfg(feature = "misbehave")]
    pub(crate) fn all_mut(&mut self) -> &mut [Deployed] {
        &mut self.list
    }

    /// Mark `index` as used at `clock`; if that mapped its component, unmap the least recently
    /// used others past the cap.
    pub(crate) fn used(
        &mut self,
        index: usize,
        clock: u64,
        was_mapped: bool,
        counters: &mut Counters,
    ) {
        self.list[index].last_used = clock;
        if !was_mapped && self.list[index].backend.is_mapped() {
            self.unmap_beyond_cap(index, counters);
        }
    }

    /// Unmap least recently used components until at most `max_mapped` are mapped, never
    /// `keep`'s.
    fn unmap_beyond_cap(&mut self, keep: usize, counters: &mut Counters) {
        let mut mapped = self.list.iter().filter(|d| d.backend.is_mapped()).count();
        while mapped > self.max_mapped {
            let victim = self
                .list
                .iter()
                .enumerate()
                .filter(|(i, d)| *i != keep && d.backend.is_mapped())
                .min_by_key(|(_, d)| d.last_used)
                .map(|(i, _)| i);
            let Some(victim) = victim else { break };
            self.list[victim].backend.unmap();
            counters.artifacts_evicted += 1;
            mapped -= 1;
        }
    }

    /// Apply one command. Returns its sequence number and result. A deploy replaces the
    /// deployment of the same name: requests already running finish on the old version (a
    /// core applies commands between requests), the next ones run on the new one.
    pub(crate) fn apply(
        &mut self,
        engine: &Engine,
        config: &ServeConfig,
        command: Command,
        core: usize,
        clock: u64,
        counters: &mut Counters,
    ) -> (u64, Result<(), ApplyError>) {
        let (seq, result) = match command {
            Command::Deploy { seq, ready } => match self.load(engine, config, &ready, core) {
                Ok(mut deployed) => {
                    deployed.last_used = clock;
                    tracing::debug!(core, deployment = %deployed.name, instances = %deployed.backend.describe(), "deployment applied");
                    let index = match self.list.iter().position(|d| d.name == deployed.name) {
                        Some(i) => {
                            self.list[i] = deployed;
                            i
                        }
                        None => {
                            self.list.push(deployed);
                            self.list.len() - 1
                        }
                    };
                    self.unmap_beyond_cap(index, counters);
                    (seq, Ok(()))
                }
                Err(e) => (seq, Err(e)),
            },
            Command::Remove { seq, name } => {
                self.list.retain(|d| d.name != name);
                (seq, Ok(()))
            }
        };
        self.reroute();
        (seq, result)
    }
}
