//! Registry credentials from the docker config, as `docker login` (and podman, skopeo, crane)
//! leave them: `auths` entries and credential helpers.

use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use crate::Error;

/// The credentials stored for `registry`, or anonymous access when none are.
pub(crate) fn credentials(registry: &str) -> Result<RegistryAuth, Error> {
    // Docker Hub's credentials are filed under its old index address.
    let key = match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    if !config_file().is_some_and(|f| f.is_file()) {
        return Ok(RegistryAuth::Anonymous);
    }
    match docker_credential::get_credential(key) {
        Ok(DockerCredential::UsernamePassword(user, password)) => {
            Ok(RegistryAuth::Basic(user, password))
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(RegistryAuth::Bearer(token)),
        Err(
            CredentialRetrievalError::NoCredentialConfigured
            | CredentialRetrievalError::ConfigNotFound,
        ) => Ok(RegistryAuth::Anonymous),
        Err(e) => Err(Error::Credentials {
            registry: registry.to_owned(),
            detail: format!("{e} ({})", config_file().unwrap_or_default().display()),
        }),
    }
}

/// Where docker keeps its config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn config_file() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    Some(dir.join("config.json"))
}
