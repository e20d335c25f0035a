//! rustls configuration for both sides: the certificate the proxy presents
//! to clients, and the CAs it trusts for the upstream.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;

use crate::config::{Config, UpstreamTls};

/// System CA bundle on Debian and friends.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("config key `{key}`: cannot read {path}: {message}")]
    Pem {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("config key `{key}`: {message}")]
    Rustls { key: &'static str, message: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(key: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::Pem {
        key,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn load_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(key, path, e))?;
    if certs.is_empty() {
        return Err(pem_err(key, path, "no certificate in file"));
    }
    Ok(certs)
}

/// The server config for client connections (implicit TLS and STARTTLS).
pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        return Err(TlsSetupError::Rustls {
            key: "tls.cert",
            message: "certificate and key are required".into(),
        });
    };
    let certs = load_certs("tls.cert", cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err("tls.key", key, e))?;
    let rustls_err = |key: &'static str| {
        move |e: rustls::Error| TlsSetupError::Rustls {
            key,
            message: e.to_string(),
        }
    };
    let sc = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err("tls"))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(rustls_err("tls.key"))?;
    Ok(Arc::new(sc))
}

/// The client config for the upstream, or `None` when it is plain text.
pub fn upstream_config(config: &Config) -> Result<Option<Arc<ClientConfig>>, TlsSetupError> {
    if config.upstream.tls == UpstreamTls::None {
        return Ok(None);
    }
    client_config("upstream.ca", config.upstream.ca.as_deref()).map(Some)
}

/// A client config trusting the CAs in `ca` (config key `key`), or the
/// system's when `None`: the upstream's, PostgreSQL's.
pub fn client_config(key: &'static str, ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let path = ca.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots.add(cert).map_err(|e| TlsSetupError::Rustls {
            key,
            message: e.to_string(),
        })?;
    }
    let cc = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls {
            key,
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cc))
}
