//! TLS for the text protocol: certificates from PEM files, reloaded without dropping anyone.
//!
//! [`TlsCertificates`] holds the current rustls server configuration behind an atomic swap: a new
//! connection takes whatever is current; a reload (SIGHUP, or `/reload` by an admin) reads and
//! checks the files first and swaps only when they are good, so a bad new certificate keeps the
//! old one in force and says why. Connections already open keep the session they have.
//!
//! Every problem with the files is one line naming the file: missing or unreadable, no
//! certificate or key in it, a key that does not belong to the certificate, a certificate that
//! has expired or is not valid yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Why the certificate files cannot be used. The message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The certificate and key in force, and where they come from. Cheap to clone.
#[derive(Clone)]
pub struct TlsCertificates {
    cert: Arc<PathBuf>,
    key: Arc<PathBuf>,
    current: Arc<ArcSwap<ServerConfig>>,
}

impl std::fmt::Debug for TlsCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TlsCertificates {
    /// Loads and checks `cert` and `key` (PEM).
    ///
    /// # Errors
    /// [`TlsError`] naming the file at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsCertificates, TlsError> {
        let config = server_config(cert, key)?;
        Ok(TlsCertificates {
            cert: Arc::new(cert.to_owned()),
            key: Arc::new(key.to_owned()),
            current: Arc::new(ArcSwap::from_pointee(config)),
        })
    }

    /// Reads the files again and swaps the new certificate in, if it is good; otherwise the old
    /// one stays and the error says why. Blocking (file reads): call it off the async workers.
    ///
    /// # Errors
    /// [`TlsError`] naming the file at fault; nothing changed then.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert, &self.key)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// Reloads and logs the outcome (for SIGHUP and `/reload`).
    pub fn reload_and_log(&self) -> Result<(), TlsError> {
        let result = self.reload();
        match &result {
            Ok(()) => tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded"),
            Err(error) => tracing::error!(
                %error,
                "TLS certificate reload failed; the previous certificate stays in force"
            ),
        }
        result
    }

    /// An acceptor with the certificate in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{}: cannot read: {e}", path.display())))
}

/// A rustls server configuration from the PEM files, checked.
fn server_config(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsError(format!(
                "{}: not a PEM certificate: {e}",
                cert_path.display()
            ))
        })?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError(format!(
            "{}: no certificate in the file",
            cert_path.display()
        )));
    };
    check_validity(cert_path, leaf)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError(format!("{}: no PEM private key: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError(format!(
                "{}: the key does not belong to the certificate in {}",
                key_path.display(),
                cert_path.display()
            )),
            other => TlsError(format!("{}: {other}", key_path.display())),
        })
}

/// Refuses a certificate that has expired or is not valid yet.
fn check_validity(path: &Path, cert: &CertificateDer<'_>) -> Result<(), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| TlsError(format!("{}: not an X.509 certificate: {e}", path.display())))?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        return Err(TlsError(format!(
            "{}: the certificate expired on {}",
            path.display(),
            validity.not_after
        )));
    }
    if validity.not_before > now {
        return Err(TlsError(format!(
            "{}: the certificate is not valid before {}",
            path.display(),
            validity.not_before
        )));
    }
    Ok(())
}

/// Writes a self-signed certificate for `name` and its key to `dir` (`cert.pem`, `key.pem`),
/// for trying TLS out. Returns the two paths.
///
/// # Errors
/// When the pair cannot be made or written.
pub fn generate_self_signed(name: &str, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()])
        .map_err(|e| format!("cannot make a certificate for {name}: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    std::fs::write(&key, certified.signing_key.serialize_pem())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600));
    }
    Ok((cert, key))
}
