//! Before the shards start: compile each deployment of the configuration once, into the
//! artifact cache that the control plane uses too, so that every core only maps.

use percore_engine::{ArtifactCache, Engine, GuestKind, NotResettable};

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
                kind: GuestKind::Edge,
            });
            continue;
        }
        let bytes = std::fs::read(&deployment.component).map_err(|e| {
            error(percore_engine::Error::Io {
                path: deployment.component.clone(),
                error: e,
            })
        })?;
        let engine = match &mut engine {
            Some(engine) => engine,
            None => engine.insert(Engine::without_ticker(config.engine.clone())?),
        };
        if wasmtime_is_precompiled(&bytes) {
            let kind = engine
                .load_guest_artifact(&deployment.component)
                .map_err(error)?
                .kind();
            ready.push(Ready {
                id,
                spec: deployment.clone(),
                artifact: deployment.component.clone(),
                resettable: Err(NotResettable::Precompiled),
                kind: stated_kind(deployment, kind).map_err(error)?,
            });
            continue;
        }
        let cached = cache.get_or_compile(engine, &bytes).map_err(error)?;
        if cached.compiled {
            tracing::info!(deployment = %deployment.name, artifact = %cached.path.display(), "compiled");
        }
        ready.push(Ready {
            id,
            spec: deployment.clone(),
            artifact: cached.path,
            resettable: percore_engine::check_resettable(&bytes),
            kind: stated_kind(deployment, cached.kind).map_err(error)?,
        });
    }
    Ok(ready)
}

/// The kind found, checked against the one the configuration states, if it does.
fn stated_kind(
    deployment: &crate::DeploymentSpec,
    found: GuestKind,
) -> Result<GuestKind, percore_engine::Error> {
    match deployment.kind {
        Some(stated) if stated != found => {
            Err(percore_engine::Error::KindMismatch { stated, found })
        }
        _ => Ok(found),
    }
}

fn wasmtime_is_precompiled(bytes: &[u8]) -> bool {
    // wasmtime artifacts are ELF files; components start with "\0asm".
    bytes.starts_with(b"\x7fELF")
}
