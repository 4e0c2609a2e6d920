//! Where a deploy's component comes from: a file the host reads, an upload, or a registry.

use std::time::Instant;

use super::{Failure, Plane, fail};
use crate::content::is_sha256;
use crate::deploy_request::{ComponentRef, read_component};
use crate::store::{DeploymentDoc, OciSource};

impl Plane {
    /// The bytes of the component a deploy names. A pull from a registry records, in `doc`,
    /// the digest it resolved to.
    pub(super) fn component_bytes(
        &self,
        name: &str,
        component: &ComponentRef,
        doc: &mut DeploymentDoc,
    ) -> Result<Vec<u8>, Failure> {
        match (&component.path, &component.sha256, &component.oci) {
            (Some(path), None, None) => read_component(path, self.max_upload),
            (None, Some(hash), None) => {
                if !is_sha256(hash) {
                    return Err(fail(
                        400,
                        format!("{hash:?} is not a SHA-256 in lowercase hex"),
                    ));
                }
                let content = self
                    .content
                    .as_ref()
                    .ok_or_else(|| fail(409, "no state directory"))?;
                content.component(hash).map_err(|_| {
                    fail(
                        404,
                        format!("no uploaded component {hash}: upload it with POST /v1/components"),
                    )
                })
            }
            (None, None, Some(reference)) => {
                let started = Instant::now();
                let pulled = percore_oci::pull(reference, &self.registry)
                    .map_err(|e| fail(e.status(), e.to_string()))?;
                tracing::info!(deployment = %name, reference = %reference, digest = %pulled.digest, layout = %pulled.layout, bytes = pulled.bytes.len(), ms = started.elapsed().as_millis() as u64, "pulled");
                doc.oci = Some(OciSource {
                    reference: reference.clone(),
                    digest: pulled.digest,
                    pinned: pulled.pinned,
                });
                Ok(pulled.bytes)
            }
            _ => Err(fail(
                400,
                "give the component as one of {\"path\": ...}, {\"sha256\": ...} or {\"oci\": \"REGISTRY/REPOSITORY:TAG\"}",
            )),
        }
    }
}
