//! Finding the percore hosts: the ready endpoints of their headless Service, through its
//! EndpointSlices, and the labels of their pods for an app's `hostSelector`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;

use crate::admin::HostRef;

/// Where the hosts are.
#[derive(Debug, Clone)]
pub struct HostsService {
    pub namespace: String,
    /// The headless Service in front of the hosts.
    pub service: String,
    /// The name of its admin API port.
    pub admin_port: String,
}

/// Every ready host of the Service.
pub async fn discover(
    client: &kube::Client,
    at: &HostsService,
) -> Result<Vec<HostRef>, kube::Error> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &at.namespace);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={}", at.service)))
        .await?;
    Ok(hosts_of(&list.items, &at.admin_port))
}

/// The hosts in `slices`: ready endpoints, with the port named `admin_port`. Pure, for tests.
pub fn hosts_of(slices: &[EndpointSlice], admin_port: &str) -> Vec<HostRef> {
    let mut hosts = BTreeMap::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(admin_port))
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // Unknown readiness counts as ready, as the API's conventions say.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            let Some(address) = endpoint.addresses.first() else {
                continue;
            };
            if !ready {
                continue;
            }
            let host = if address.contains(':') {
                format!("[{address}]")
            } else {
                address.clone()
            };
            let name = endpoint
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_else(|| address.clone());
            hosts.insert(
                name.clone(),
                HostRef {
                    name,
                    admin: format!("http://{host}:{port}"),
                },
            );
        }
    }
    hosts.into_values().collect()
}

/// The names of the hosts' pods whose labels match `labels`.
pub async fn pods_matching(
    client: &kube::Client,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<BTreeSet<String>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}
