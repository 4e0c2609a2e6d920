//! The hosts' admin API, as the operator uses it: read, put and delete one deployment.

use std::future::Future;
use std::time::Duration;

use crate::plan::{Actual, Desired};

/// A percore host as the operator reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRef {
    /// Its pod's name (its address when it has none).
    pub name: String,
    /// Its admin API, `http://ADDRESS:PORT`.
    pub admin: String,
}

/// The calls the operator makes on a host; the tests give an in-memory host.
pub trait AdminApi: Send + Sync + 'static {
    /// The deployment `name` on `host`, if it has one.
    fn get(
        &self,
        host: &HostRef,
        name: &str,
    ) -> impl Future<Output = Result<Option<Actual>, String>> + Send;
    /// Deploy (or update) `name` on `host`; gives what the host then serves.
    fn put(
        &self,
        host: &HostRef,
        name: &str,
        desired: &Desired,
    ) -> impl Future<Output = Result<Actual, String>> + Send;
    /// Remove `name` from `host` (done when it was not there).
    fn delete(&self, host: &HostRef, name: &str)
    -> impl Future<Output = Result<(), String>> + Send;
}

/// The admin API over HTTP, with the hosts' bearer token.
#[derive(Debug, Clone)]
pub struct HttpAdmin {
    client: reqwest::Client,
    token: Option<String>,
}

impl HttpAdmin {
    /// `timeout` bounds each call; a deploy pulls and compiles, so give it minutes.
    pub fn new(token: Option<String>, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client, token })
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }
}

/// The host's own words for a refusal: its JSON `error`, else the body.
async fn refusal(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(text);
    format!("{message} (HTTP {status})")
}

fn unreachable(host: &HostRef, e: reqwest::Error) -> String {
    format!("admin API {} unreachable: {e}", host.admin)
}

impl AdminApi for HttpAdmin {
    async fn get(&self, host: &HostRef, name: &str) -> Result<Option<Actual>, String> {
        let url = format!("{}/v1/deployments/{name}", host.admin);
        let response = self
            .request(reqwest::Method::GET, url)
            .send()
            .await
            .map_err(|e| unreachable(host, e))?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => response
                .json::<Actual>()
                .await
                .map(Some)
                .map_err(|e| format!("unexpected answer from {}: {e}", host.admin)),
            _ => Err(refusal(response).await),
        }
    }

    async fn put(&self, host: &HostRef, name: &str, desired: &Desired) -> Result<Actual, String> {
        let url = format!("{}/v1/deployments/{name}", host.admin);
        let response = self
            .request(reqwest::Method::PUT, url)
            .json(desired)
            .send()
            .await
            .map_err(|e| unreachable(host, e))?;
        match response.status().as_u16() {
            200 | 201 => response
                .json::<Actual>()
                .await
                .map_err(|e| format!("unexpected answer from {}: {e}", host.admin)),
            _ => Err(refusal(response).await),
        }
    }

    async fn delete(&self, host: &HostRef, name: &str) -> Result<(), String> {
        let url = format!("{}/v1/deployments/{name}", host.admin);
        let response = self
            .request(reqwest::Method::DELETE, url)
            .send()
            .await
            .map_err(|e| unreachable(host, e))?;
        match response.status().as_u16() {
            200 | 404 => Ok(()),
            _ => Err(refusal(response).await),
        }
    }
}
