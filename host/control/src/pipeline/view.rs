//! What the admin API shows of the deployments, and where `/invoke` sends a deployment's calls.

use percore_dataplane::{InstanceMode, Ready};
use percore_engine::{GuestKind, NotResettable, Warmup};
use serde_json::{Value, json};

use super::{Failure, Plane, fail};
use crate::store::Stored;

impl Plane {
    pub(super) fn describe_stored(&self, row: &Stored) -> Value {
        json!({
            "name": row.name,
            "source": "api",
            "version": row.version,
            "component": row.component,
            "routes": row.doc.routes,
            "config": row.doc.config,
            "limits": row.doc.limits,
            "kind": row.doc.kind.as_deref().unwrap_or("edge"),
            "oci": row.doc.oci,
            "warmup": row.doc.warmup,
            "instances": instances(
                row.doc.kind.as_deref().and_then(|k| k.parse().ok()).unwrap_or(GuestKind::Edge),
                row.not_resettable.as_deref(),
                &Warmup::parse(&row.doc.warmup).unwrap_or_default(),
            ),
            "created": row.created,
            "updated": row.updated,
        })
    }

    fn describe_fixed(ready: &Ready) -> Value {
        json!({
            "name": ready.spec.name,
            "source": "config",
            "version": 1,
            "component": ready.spec.component,
            "routes": ready.spec.routes.iter().map(|r| json!({"host": r.host, "path": r.path_prefix})).collect::<Vec<_>>(),
            "config": ready.spec.config,
            "kind": ready.kind.as_str(),
            "warmup": ready.spec.warmup.to_strings(),
            "instances": percore_dataplane::describe_instances(
                ready.kind,
                InstanceMode::default(),
                &ready.resettable,
                &ready.spec.warmup,
            ),
        })
    }

    /// Every deployment.
    pub fn list(&self) -> Value {
        let mut all: Vec<Value> = self.fixed.iter().map(Self::describe_fixed).collect();
        all.extend(self.dynamic.values().map(|r| self.describe_stored(r)));
        json!({ "deployments": all })
    }

    /// One deployment.
    pub fn show(&self, name: &str) -> Result<Value, Failure> {
        if let Some(f) = self.fixed.iter().find(|f| f.spec.name == name) {
            return Ok(Self::describe_fixed(f));
        }
        self.dynamic
            .get(name)
            .map(|r| self.describe_stored(r))
            .ok_or_else(|| fail(404, format!("no deployment `{name}`")))
    }

    /// How many deployments are served.
    pub fn count(&self) -> usize {
        self.fixed.len() + self.dynamic.len()
    }

    /// Where `/invoke/{name}` sends its calls: the deployment's first route.
    pub fn invoke_target(&self, name: &str) -> Option<crate::invoke::Target> {
        if let Some(row) = self.dynamic.get(name) {
            let route = row.doc.routes.first()?;
            return Some(crate::invoke::Target {
                deployment: name.to_owned(),
                host: route.host.clone(),
                prefix: route.path.clone(),
                deadline: self.limits(&row.doc).0.wall_deadline,
            });
        }
        let ready = self.fixed.iter().find(|f| f.spec.name == name)?;
        let route = ready.spec.routes.first()?;
        Some(crate::invoke::Target {
            deployment: name.to_owned(),
            host: route.host.clone(),
            prefix: route.path_prefix.clone(),
            deadline: ready.spec.limits.wall_deadline,
        })
    }

    /// `GET /v1/deployments/{name}/coredumps`: the deployment's core dumps, newest first.
    pub fn coredumps(&self, name: &str) -> Result<Value, Failure> {
        if !self.exists(name) {
            return Err(fail(404, format!("no deployment `{name}`")));
        }
        Ok(match &self.coredumps {
            Some(dumps) => dumps.list(name),
            None => json!({ "deployment": name, "coredumps": [] }),
        })
    }

    /// `GET /v1/deployments/{name}/coredumps/{file}`: one core dump's bytes.
    pub fn coredump(&self, name: &str, file: &str) -> Result<Vec<u8>, Failure> {
        self.coredumps
            .as_ref()
            .filter(|_| self.exists(name))
            .and_then(|dumps| dumps.read(name, file))
            .ok_or_else(|| {
                fail(
                    404,
                    format!("deployment `{name}` has no core dump `{file}`"),
                )
            })
    }

    /// Whether a deployment exists.
    pub fn exists(&self, name: &str) -> bool {
        self.dynamic.contains_key(name) || self.fixed.iter().any(|f| f.spec.name == name)
    }
}

/// How a deployment's requests run (in the default instance mode), as `percore ls` shows it.
fn instances(kind: GuestKind, not_resettable: Option<&str>, warmup: &Warmup) -> String {
    let resettable = match not_resettable {
        None => Ok(()),
        Some(why) => Err(NotResettable::Recorded(why.to_owned())),
    };
    percore_dataplane::describe_instances(kind, InstanceMode::default(), &resettable, warmup)
}
