//! Components as OCI artifacts, the way the Wasm ecosystem moves them.
//!
//! [`push`] writes the CNCF Wasm artifact layout (through `oci-wasm`: config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), which wkg and wasmCloud
//! read and write too. [`pull`] reads that layout and Spin's (a locked-app config with
//! `application/vnd.wasm.content.layer.v1+wasm` layers), checks the layer's size before
//! downloading it and its digest after, and answers with the manifest's digest so that a caller
//! can pin what it deployed.
//!
//! Credentials come from the docker config (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, credential helpers included). Registries on loopback are spoken to in
//! plain HTTP, as docker does; others only over TLS (rustls) unless named in
//! [`Settings::insecure`].
//!
//! Everything here blocks: each call runs the async client on a runtime of its own, on the
//! calling thread. Deploys are rare and never on a core's thread.
#![forbid(unsafe_code)]

mod auth;
mod error;

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use oci_wasm::{WasmClient, WasmConfig};

pub use error::Error;

/// How a reference to a registry is written where a file path could be too.
pub const SCHEME: &str = "oci://";

/// The Wasm layer of the CNCF layout (oci-wasm, wkg, wasmCloud).
pub const WASM_LAYER: &str = oci_wasm::WASM_LAYER_MEDIA_TYPE;
/// The Wasm layer of Spin's layout.
pub const SPIN_WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The config of Spin's layout: the locked application.
pub const SPIN_CONFIG: &str = "application/vnd.fermyon.spin.application.v1+config";

/// Whether `text` names a registry artifact (`oci://...`) rather than a file.
pub fn is_oci(text: &str) -> bool {
    text.starts_with(SCHEME)
}

/// Parse `[oci://]REGISTRY/REPOSITORY[:TAG][@DIGEST]`.
pub fn reference(text: &str) -> Result<Reference, Error> {
    let bare = text.strip_prefix(SCHEME).unwrap_or(text);
    bare.parse::<Reference>().map_err(|e| Error::BadReference {
        reference: text.to_owned(),
        detail: e.to_string(),
    })
}

/// Limits and transport of one push or pull.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Registries (`host:port` as in the reference) to speak plain HTTP to, besides loopback.
    pub insecure: Vec<String>,
    /// The largest Wasm layer accepted.
    pub max_bytes: u64,
    /// The whole operation, connecting included.
    pub timeout: Duration,
}

impl Default for Settings {
    /// 128 MiB, two minutes, TLS for every registry not on loopback.
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            max_bytes: 128 << 20,
            timeout: Duration::from_secs(120),
        }
    }
}

/// A component fetched from a registry.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The Wasm binary.
    pub bytes: Vec<u8>,
    /// The manifest's digest (`sha256:...`): what was pulled, whatever the tag says later.
    pub digest: String,
    /// The reference pinned to that digest: `REGISTRY/REPOSITORY@sha256:...`.
    pub pinned: String,
    /// The Wasm layer's digest.
    pub layer_digest: String,
    /// Which layout it was in: `wasm` (CNCF), `spin`, or the config's media type.
    pub layout: String,
}

/// A component written to a registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest.
    pub digest: String,
    /// The reference pinned to that digest.
    pub pinned: String,
}

/// Fetch the one Wasm component of an artifact.
pub fn pull(text: &str, settings: &Settings) -> Result<Pulled, Error> {
    let reference = reference(text)?;
    let registry = reference.resolve_registry().to_owned();
    let shown = reference.whole();
    let auth = auth::credentials(&registry)?;
    let client = client(&registry, settings);
    let classify = |e| error::classify(e, &registry, &shown);
    run(settings, "pulling", &shown, async {
        let (manifest, digest) = client
            .pull_image_manifest(&reference, &auth)
            .await
            .map_err(classify)?;
        let layer = wasm_layer(&manifest, &shown)?;
        let size = u64::try_from(layer.size).unwrap_or(0);
        if size > settings.max_bytes {
            return Err(Error::TooLarge {
                reference: shown.clone(),
                size: format!("{size} bytes"),
                limit: settings.max_bytes,
            });
        }
        let mut out = Bounded::new(settings.max_bytes);
        let pulled = client.pull_blob(&reference, layer, &mut out).await;
        match pulled {
            Err(OciDistributionError::IoError(io))
                if io.kind() == std::io::ErrorKind::FileTooLarge =>
            {
                return Err(Error::TooLarge {
                    reference: shown.clone(),
                    size: format!(
                        "more than {} bytes (its manifest said {size})",
                        settings.max_bytes
                    ),
                    limit: settings.max_bytes,
                });
            }
            other => other.map_err(classify)?,
        }
        let bytes = out.bytes;
        if !bytes.starts_with(b"\0asm") {
            return Err(Error::NotWasm {
                reference: shown.clone(),
                detail: format!(
                    "its {} layer does not start with the Wasm magic bytes",
                    layer.media_type
                ),
            });
        }
        let layout = match manifest.config.media_type.as_str() {
            oci_wasm::WASM_MANIFEST_CONFIG_MEDIA_TYPE => "wasm".to_owned(),
            SPIN_CONFIG => "spin".to_owned(),
            other => other.to_owned(),
        };
        Ok(Pulled {
            pinned: reference.clone_with_digest(digest.clone()).whole(),
            layer_digest: layer.digest.clone(),
            digest,
            bytes,
            layout,
        })
    })
}

/// Write a component (or a core module) in the CNCF Wasm layout under `text`'s tag.
pub fn push(bytes: Vec<u8>, text: &str, settings: &Settings) -> Result<Pushed, Error> {
    let reference = reference(text)?;
    let registry = reference.resolve_registry().to_owned();
    let shown = reference.whole();
    if !bytes.starts_with(b"\0asm") {
        return Err(Error::Push {
            what: shown,
            detail: "not a Wasm binary (no \\0asm magic)".into(),
        });
    }
    if bytes.len() as u64 > settings.max_bytes {
        return Err(Error::TooLarge {
            reference: shown,
            size: format!("{} bytes", bytes.len()),
            limit: settings.max_bytes,
        });
    }
    // Bytes 4..8: a component's layer and version, or a core module's version.
    let is_component = bytes.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00]);
    let made = if is_component {
        WasmConfig::from_raw_component(bytes, None)
    } else {
        WasmConfig::from_raw_module(bytes, None)
    };
    let (config, layer) = made.map_err(|e| Error::Push {
        what: shown.clone(),
        detail: format!("{e:#}"),
    })?;
    let auth = auth::credentials(&registry)?;
    let client = WasmClient::new(client(&registry, settings));
    run(settings, "pushing", &shown, async {
        client
            .push(&reference, &auth, layer, config, None)
            .await
            .map_err(|e| match e.downcast::<OciDistributionError>() {
                Ok(e) => error::classify(e, &registry, &shown),
                Err(e) => Error::Registry {
                    registry: registry.clone(),
                    detail: format!("{e:#}"),
                },
            })?;
        let digest = client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .map_err(|e| error::classify(e, &registry, &shown))?;
        Ok(Pushed {
            pinned: reference.clone_with_digest(digest.clone()).whole(),
            digest,
        })
    })
}

/// A client for `registry`: plain HTTP for loopback and the insecure list, TLS otherwise; image
/// indexes resolved to their Wasm entry.
fn client(registry: &str, settings: &Settings) -> Client {
    let protocol = if plain_http(registry, settings) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(Duration::from_secs(10).min(settings.timeout)),
        read_timeout: Some(settings.timeout),
        platform_resolver: Some(Box::new(wasm_entry)),
        user_agent: concat!("percore/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    })
}

/// Whether a registry is reached without TLS: loopback (as docker treats it), or listed.
fn plain_http(registry: &str, settings: &Settings) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost"
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || settings.insecure.iter().any(|r| r == registry)
}

/// In an image index, the entry built for Wasm (architecture `wasm`).
fn wasm_entry(entries: &[ImageIndexEntry]) -> Option<String> {
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.architecture.to_string() == oci_wasm::WASM_ARCHITECTURE)
        })
        .map(|e| e.digest.clone())
}

/// The manifest's single Wasm layer.
fn wasm_layer<'m>(manifest: &'m OciImageManifest, shown: &str) -> Result<&'m OciDescriptor, Error> {
    let wasm: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER || l.media_type == SPIN_WASM_LAYER)
        .collect();
    match wasm.as_slice() {
        [one] => Ok(one),
        [] => {
            let found: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            Err(Error::NotWasm {
                reference: shown.to_owned(),
                detail: format!(
                    "its layers are [{}]; a component is a layer of type {WASM_LAYER} (or Spin's {SPIN_WASM_LAYER})",
                    found.join(", ")
                ),
            })
        }
        several => Err(Error::NotWasm {
            reference: shown.to_owned(),
            detail: format!(
                "it has {} Wasm layers (an application of several components?); a percore deployment is one component: push that one with `percore push`",
                several.len()
            ),
        }),
    }
}

/// Run one operation to completion on this thread, within the settings' time.
fn run<T>(
    settings: &Settings,
    what: &'static str,
    shown: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    runtime.block_on(async {
        tokio::time::timeout(settings.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    what,
                    reference: shown.to_owned(),
                    seconds: settings.timeout.as_secs(),
                })
            })
    })
}

/// A sink for a layer that refuses to grow past `max` bytes, whatever the manifest claimed.
#[derive(Debug)]
struct Bounded {
    bytes: Vec<u8>,
    max: u64,
    offered: u64,
}

impl Bounded {
    fn new(max: u64) -> Self {
        Self {
            bytes: Vec::new(),
            max,
            offered: 0,
        }
    }
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.offered += buf.len() as u64;
        if self.offered > self.max {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "layer larger than the limit",
            )));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
