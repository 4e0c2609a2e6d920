//! What can go wrong between percore and a registry, each case with the words a user needs.

use oci_client::errors::{OciDistributionError, OciErrorCode};

/// A failed push or pull.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`{reference}` is not an OCI reference ({detail}); expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]"
    )]
    BadReference { reference: String, detail: String },
    #[error("registry {registry} cannot be reached: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error(
        "registry {registry} refused the credentials (or asked for some): {detail}; log in with `docker login {registry}` (percore reads the docker config: $DOCKER_CONFIG/config.json or ~/.docker/config.json)"
    )]
    Unauthorized { registry: String, detail: String },
    #[error("reading registry credentials for {registry}: {detail}")]
    Credentials { registry: String, detail: String },
    #[error("{reference} was not found in the registry: {detail}")]
    NotFound { reference: String, detail: String },
    #[error("{reference} holds no Wasm: {detail}")]
    NotWasm { reference: String, detail: String },
    #[error("{reference} is {size}; the limit is {limit} bytes")]
    TooLarge {
        reference: String,
        /// `N bytes`, or `more than N bytes` when a layer outgrew what its manifest said.
        size: String,
        limit: u64,
    },
    #[error("{reference}: the content does not match its digest ({detail}); nothing was kept")]
    DigestMismatch { reference: String, detail: String },
    #[error("{what} {reference} took longer than {seconds} s")]
    Timeout {
        what: &'static str,
        reference: String,
        seconds: u64,
    },
    #[error("registry {registry}: {detail}")]
    Registry { registry: String, detail: String },
    #[error("cannot push {what}: {detail}")]
    Push { what: String, detail: String },
    #[error("starting the registry client: {0}")]
    Runtime(String),
}

impl Error {
    /// The HTTP status the admin API answers with when a deploy fails this way.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadReference { .. } | Error::NotWasm { .. } | Error::Push { .. } => 400,
            Error::NotFound { .. } => 404,
            Error::TooLarge { .. } => 413,
            Error::Unauthorized { .. } | Error::Credentials { .. } => 403,
            Error::DigestMismatch { .. }
            | Error::Unreachable { .. }
            | Error::Registry { .. }
            | Error::Timeout { .. } => 502,
            Error::Runtime(_) => 500,
        }
    }
}

/// Sort a client error into the case a user can act on.
pub(crate) fn classify(e: OciDistributionError, registry: &str, reference: &str) -> Error {
    let registry = registry.to_owned();
    let reference = reference.to_owned();
    match e {
        OciDistributionError::UnauthorizedError { url } => Error::Unauthorized {
            registry,
            detail: format!("401 from {url}"),
        },
        OciDistributionError::AuthenticationFailure(detail) => {
            Error::Unauthorized { registry, detail }
        }
        OciDistributionError::DigestError(d) => Error::DigestMismatch {
            reference,
            detail: d.to_string(),
        },
        OciDistributionError::RegistryError { envelope, url } => {
            let not_found = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            });
            let denied = envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied));
            let detail = format!("{envelope} ({url})");
            if not_found {
                Error::NotFound { reference, detail }
            } else if denied {
                Error::Unauthorized { registry, detail }
            } else {
                Error::Registry { registry, detail }
            }
        }
        OciDistributionError::ServerError { code, url, message } => match code {
            404 => Error::NotFound {
                reference,
                detail: format!("404 from {url}"),
            },
            401 | 403 => Error::Unauthorized {
                registry,
                detail: format!("{code} from {url}: {message}"),
            },
            _ => Error::Registry {
                registry,
                detail: format!("{code} from {url}: {message}"),
            },
        },
        OciDistributionError::ImageManifestNotFoundError(detail) => {
            Error::NotFound { reference, detail }
        }
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            Error::Unreachable {
                registry,
                detail: chain(&r),
            }
        }
        OciDistributionError::RequestError(r) => Error::Registry {
            registry,
            detail: chain(&r),
        },
        other => Error::Registry {
            registry,
            detail: other.to_string(),
        },
    }
}

/// An error with its causes, `a: b: c`, as reqwest keeps the useful part in the sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
