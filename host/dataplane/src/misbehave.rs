//! Ways to break one rule of the contract on purpose, so that the conformance suite can show
//! it catches each. Compiled only with the `misbehave` feature, which the test script enables:
//! a release build of percore contains none of this.

use crate::backend::Backend;
use crate::deployments::Deployments;
use crate::{InstanceMode, ServeConfig};

/// One rule to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Keep only the first of repeated request header fields.
    DropRepeatedHeader,
    /// Let guests grow memory without a cap.
    IgnoreMemoryCap,
    /// Keep instances and hand one deployment's instance to another deployment of the same
    /// component.
    ReuseAcrossDeployments,
    /// Pass request bodies through a lossy UTF-8 conversion.
    MangleBinaryBody,
    /// Answer a guest timeout with 500 instead of 504.
    TimeoutAs500,
    /// Pool instances in reset mode but skip the reset.
    SkipReset,
}

/// Change the configuration before anything is loaded.
pub(crate) fn adjust(config: &mut ServeConfig) {
    let Some(m) = config.misbehave else { return };
    tracing::warn!(misbehaviour = ?m, "breaking a rule of the contract on purpose");
    match m {
        Misbehaviour::IgnoreMemoryCap => {
            for d in &mut config.deployments {
                d.limits.memory_bytes = usize::MAX;
            }
        }
        Misbehaviour::ReuseAcrossDeployments => config.instances = InstanceMode::Keep,
        _ => {}
    }
}

/// A deployment was loaded on a core.
pub(crate) fn on_load(m: Option<Misbehaviour>, backend: &mut Backend) {
    if m == Some(Misbehaviour::SkipReset)
        && let Some(pool) = backend.pool_mut()
    {
        pool.skip_reset = true;
    }
}

/// The body a guest gets: `Some` when it was changed.
pub(crate) fn request_body(m: Option<Misbehaviour>, body: &[u8]) -> Option<Vec<u8>> {
    (m == Some(Misbehaviour::MangleBinaryBody))
        .then(|| String::from_utf8_lossy(body).into_owned().into_bytes())
}

/// The header fields a guest gets.
pub(crate) fn request_headers<'a>(
    m: Option<Misbehaviour>,
    headers: Vec<(&'a str, &'a [u8])>,
) -> Vec<(&'a str, &'a [u8])> {
    if m != Some(Misbehaviour::DropRepeatedHeader) {
        return headers;
    }
    let mut seen = std::collections::HashSet::new();
    headers
        .into_iter()
        .filter(|(n, _)| seen.insert(n.to_ascii_lowercase()))
        .collect()
}

/// Before deployment `index` runs a request: hand it every idle instance of the other
/// deployments of the same component.
pub(crate) fn before_run(m: Option<Misbehaviour>, deployments: &mut Deployments, index: usize) {
    if m != Some(Misbehaviour::ReuseAcrossDeployments) {
        return;
    }
    let all = deployments.all_mut();
    let component = all[index].component.clone();
    let (before, rest) = all.split_at_mut(index);
    let (this, after) = rest.split_first_mut().expect("index is in range");
    let Some(pool) = this.backend.pool_mut() else {
        return;
    };
    for other in before.iter_mut().chain(after.iter_mut()) {
        if other.component == component
            && let Some(other_pool) = other.backend.pool_mut()
        {
            pool.take_idle_from(other_pool);
        }
    }
}
