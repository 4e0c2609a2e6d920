//! The reconciler: for each `PercoreApp`, bring every host to what [`crate::plan`] says, then
//! write the status. A finalizer removes the app from every host before the resource goes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::admin::{AdminApi, HostRef};
use crate::crd::PercoreApp;
use crate::hosts::{HostsService, discover, pods_matching};
use crate::plan::{self, HostOutcome, Step};

/// The finalizer the operator puts on every app.
pub const FINALIZER: &str = "percore.dev/cleanup";

/// How often an app is looked at again when nothing changes (a host that restarted empty, a
/// deployment removed by hand).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon after a host failed.
pub const RETRY: Duration = Duration::from_secs(20);

/// What the reconciler works with.
pub struct Context<A> {
    pub client: kube::Client,
    pub admin: A,
    pub hosts: HostsService,
    /// Name of the field manager in status patches.
    pub manager: String,
}

impl<A> std::fmt::Debug for Context<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("removing the app from {0}")]
    Cleanup(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Reconcile one app.
pub async fn reconcile<A: AdminApi>(
    app: Arc<PercoreApp>,
    ctx: Arc<Context<A>>,
) -> Result<Action, Error> {
    let namespace = app.namespace().unwrap_or_else(|| "default".into());
    let api: Api<PercoreApp> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, app, |event| async {
        match event {
            Event::Apply(app) => apply(&api, &app, &ctx).await,
            Event::Cleanup(app) => cleanup(&app, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// After an error the controller could not handle in `reconcile`: try again soon.
pub fn error_policy<A>(app: Arc<PercoreApp>, error: &Error, _: Arc<Context<A>>) -> Action {
    tracing::warn!(app = %app.name_any(), "reconcile failed: {error}");
    Action::requeue(RETRY)
}

async fn apply<A: AdminApi>(
    api: &Api<PercoreApp>,
    app: &PercoreApp,
    ctx: &Context<A>,
) -> Result<Action, Error> {
    let namespace = app.namespace().unwrap_or_else(|| "default".into());
    let name = app.name_any();
    let all = discover(&ctx.client, &ctx.hosts).await?;
    let selected: Vec<&HostRef> = match app
        .spec
        .host_selector
        .as_ref()
        .filter(|s| !s.match_labels.is_empty())
    {
        None => all.iter().collect(),
        Some(selector) => {
            let pods =
                pods_matching(&ctx.client, &ctx.hosts.namespace, &selector.match_labels).await?;
            all.iter().filter(|h| pods.contains(&h.name)).collect()
        }
    };

    // The spec, checked and resolved; a bad one changes nothing on any host.
    let desired = match plan::deployment_name(&namespace, &name) {
        Err(e) => Err(e),
        Ok(deployment) => match secrets(&ctx.client, &namespace, app).await {
            Err(e) => Err(e),
            Ok(values) => plan::desired(&name, &app.spec, values).map(|d| (deployment, d)),
        },
    };
    let (deployment, desired) = match desired {
        Ok(ok) => ok,
        Err(why) => {
            tracing::warn!(app = %name, namespace = %namespace, "not deployed: {why}");
            write_status(api, app, ctx, Some(&why), &[]).await?;
            return Ok(Action::await_change());
        }
    };

    let mut outcomes = Vec::new();
    for host in &all {
        let wanted = selected.contains(&host).then_some(&desired);
        let result = converge(&ctx.admin, host, &deployment, wanted).await;
        match (wanted, result) {
            (Some(_), Ok(Some(actual))) => {
                outcomes.push((host.name.clone(), HostOutcome::Serving(Box::new(actual))));
            }
            (Some(_), Ok(None)) => {
                outcomes.push((
                    host.name.clone(),
                    HostOutcome::Failed("not deployed".into()),
                ));
            }
            (Some(_), Err(e)) => outcomes.push((host.name.clone(), HostOutcome::Failed(e))),
            (None, Ok(_)) => {}
            (None, Err(e)) => {
                tracing::warn!(host = %host.name, app = %name, "could not remove from an unselected host: {e}");
            }
        }
    }
    write_status(api, app, ctx, None, &outcomes).await?;
    let failed = outcomes
        .iter()
        .any(|(_, o)| matches!(o, HostOutcome::Failed(_)));
    Ok(Action::requeue(if failed { RETRY } else { RESYNC }))
}

/// Bring one host to `wanted` (`None`: without the deployment). Gives what the host then holds.
async fn converge<A: AdminApi>(
    admin: &A,
    host: &HostRef,
    deployment: &str,
    wanted: Option<&plan::Desired>,
) -> Result<Option<plan::Actual>, String> {
    let actual = admin.get(host, deployment).await?;
    match (plan::step(wanted, actual.as_ref()), wanted) {
        (Step::Deploy, Some(desired)) => {
            let a = admin.put(host, deployment, desired).await?;
            tracing::info!(host = %host.name, deployment, version = a.version, "deployed");
            Ok(Some(a))
        }
        (Step::Remove, _) => {
            admin.delete(host, deployment).await?;
            tracing::info!(host = %host.name, deployment, "removed");
            Ok(None)
        }
        _ => Ok(actual),
    }
}

/// Remove the app from every host; the finalizer stays until all have confirmed.
async fn cleanup<A: AdminApi>(app: &PercoreApp, ctx: &Context<A>) -> Result<Action, Error> {
    let namespace = app.namespace().unwrap_or_else(|| "default".into());
    let Ok(deployment) = plan::deployment_name(&namespace, &app.name_any()) else {
        // Never deployable, so never deployed.
        return Ok(Action::await_change());
    };
    let mut failed = Vec::new();
    for host in discover(&ctx.client, &ctx.hosts).await? {
        if let Err(e) = ctx.admin.delete(&host, &deployment).await {
            failed.push(format!("{}: {e}", host.name));
        }
    }
    if failed.is_empty() {
        tracing::info!(deployment, "removed from every host");
        Ok(Action::await_change())
    } else {
        Err(Error::Cleanup(failed.join("; ")))
    }
}

/// The values of the app's `configFrom` Secrets. A missing Secret or a value that is not text is
/// a spec error.
async fn secrets(
    client: &kube::Client,
    namespace: &str,
    app: &PercoreApp,
) -> Result<BTreeMap<String, String>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut values = BTreeMap::new();
    for from in &app.spec.config_from {
        let name = &from.secret_ref.name;
        let secret = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(format!("Secret `{name}` (configFrom) does not exist")),
            Err(e) => return Err(format!("reading Secret `{name}`: {e}")),
        };
        for (key, value) in secret.data.unwrap_or_default() {
            let text = String::from_utf8(value.0)
                .map_err(|_| format!("Secret `{name}` key `{key}` is not UTF-8 text"))?;
            values.insert(key, text);
        }
        values.extend(secret.string_data.unwrap_or_default());
    }
    Ok(values)
}

async fn write_status<A>(
    api: &Api<PercoreApp>,
    app: &PercoreApp,
    ctx: &Context<A>,
    invalid: Option<&str>,
    outcomes: &[(String, HostOutcome)],
) -> Result<(), Error> {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now());
    let status = plan::status(
        app.metadata.generation,
        app.status.as_ref(),
        invalid,
        outcomes,
        &now.to_string(),
    );
    if app.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &app.name_any(),
        &PatchParams::apply(&ctx.manager),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Run the controller until the process is stopped: every app, again whenever the hosts'
/// endpoints change.
pub async fn run<A: AdminApi>(ctx: Arc<Context<A>>) {
    let apps: Api<PercoreApp> = Api::all(ctx.client.clone());
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ctx.hosts.namespace);
    let hosts_changed = watcher(
        slices,
        watcher::Config::default()
            .labels(&format!("kubernetes.io/service-name={}", ctx.hosts.service)),
    )
    .filter_map(|event| async move {
        match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(()),
            _ => None,
        }
    });
    Controller::new(apps, watcher::Config::default())
        .reconcile_all_on(hosts_changed)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((app, _)) => tracing::debug!(app = %app.name, "reconciled"),
                Err(e) => tracing::debug!("{e}"),
            }
        })
        .await;
}
