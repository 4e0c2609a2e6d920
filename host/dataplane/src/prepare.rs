//! Before the shards start: compile each deployment of the configuration once, into the
//! artifact cache that the control plane uses too, so that every core only maps.

use percore_engine::{ArtifactCache, Engine, NotResettable};

use crate::backend::native::Native;
use crate::link::Ready;
use crate::{Error, ServeConfig};

/// Compile (or find in the cache) every deployment of the configuration; ids are positions.
pub(crate) fn artifacts(config: &ServeConfig) -> Result<Vec<Ready>, Error> {
    let cache = ArtifactCache::new(&config.artifacts, &config.engine);
    let mut engine: Option<Engine> = None;
    let mut ready = Vec::new();
    for deployment in &config.deployments {
        let id = ready.len() as u32;
        let error = |source| Error::Deployment {
            name: deployment.name.clone(),
            source,
        };
        if Native::named(&deployment.component).is_some() {
            ready.push(Ready {
                id,
                spec: deployment.clone(),
                artifact: deployment.component.clone(),
                resettable: Err(NotResettable::Builtin),
            });
            continue;
        }
        let bytes = std::fs::read(&deployment.component).map_err(|e| {
            error(percore_engine::Error::Io {
                path: deployment.component.clone(),
                error: e,
            })
        })?;
        if wasmtime_is_precompiled(&bytes) {
            ready.push(Ready {
                id,
                spec: deployment.clone(),
                artifact: deployment.component.clone(),
                resettable: Err(NotResettable::Precompiled),
            });
            continue;
        }
        let engine = match &mut engine {
            Some(engine) => engine,
            None => engine.insert(Engine::without_ticker(config.engine.clone())?),
        };
        let cached = cache.get_or_compile(engine, &bytes).map_err(error)?;
        if cached.compiled {
            tracing::info!(deployment = %deployment.name, artifact = %cached.path.display(), "compiled");
        }
        ready.push(Ready {
            id,
            spec: deployment.clone(),
            artifact: cached.path,
            resettable: percore_engine::check_resettable(&bytes),
        });
    }
    Ok(ready)
}

fn wasmtime_is_precompiled(bytes: &[u8]) -> bool {
    // wasmtime artifacts are ELF files; components start with "\0asm".
    bytes.starts_with(b"\x7fELF")
}
