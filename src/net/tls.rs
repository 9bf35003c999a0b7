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

/// The names `chatpipe gen-cert` puts in a certificate by default: what a person trying TLS on
/// one machine connects to (`localhost`, `127.0.0.1`, `::1`). An address becomes an IP address
/// name, which is what clients connecting to an address check.
pub const DEFAULT_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why `chatpipe gen-cert` wrote nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum GenCertError {
    /// A file is there already, and replacing it was not asked for.
    #[error("{0} already exists; nothing was written (add --force to replace it)")]
    Exists(PathBuf),
    /// rcgen refused the names (a name that is neither a DNS name nor an address).
    #[error("cannot make a certificate for {names}: {reason}")]
    Make {
        /// The names asked for, comma-separated.
        names: String,
        /// rcgen's reason.
        reason: String,
    },
    /// The directory or a file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Writes a self-signed certificate for `name` and its key to `dir` (`cert.pem`, `key.pem`),
/// replacing them if they exist, for trying TLS out (and for tests). Returns the two paths.
///
/// # Errors
/// When the pair cannot be made or written.
pub fn generate_self_signed(name: &str, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    write_self_signed(&[name.to_owned()], dir, true).map_err(|e| e.to_string())
}

/// Writes a self-signed certificate for `names` (DNS names or IP addresses; see
/// [`DEFAULT_CERT_NAMES`]) and its key to `dir` as `cert.pem` and `key.pem`. Without `replace`
/// it refuses, writing nothing, when either file exists: a certificate in use is not lost to a
/// command retyped from the README. The key is readable by its owner only. Returns the paths.
///
/// # Errors
/// [`GenCertError`]: a file exists, a name is refused, or a write fails.
pub fn write_self_signed(
    names: &[String],
    dir: &Path,
    replace: bool,
) -> Result<(PathBuf, PathBuf), GenCertError> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !replace && let Some(existing) = [&cert, &key].into_iter().find(|p| p.exists()) {
        return Err(GenCertError::Exists(existing.clone()));
    }
    let certified =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| GenCertError::Make {
            names: names.join(", "),
            reason: e.to_string(),
        })?;
    std::fs::create_dir_all(dir).map_err(|source| GenCertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write_new(
        &key,
        certified.signing_key.serialize_pem().as_bytes(),
        replace,
        0o600,
    )?;
    write_new(&cert, certified.cert.pem().as_bytes(), replace, 0o644)?;
    Ok((cert, key))
}

/// Writes `bytes` to `path` with permissions `mode`; unless `replace`, only if it does not exist
/// yet (checked by the create itself, so a file made meanwhile is not overwritten either).
fn write_new(path: &Path, bytes: &[u8], replace: bool, mode: u32) -> Result<(), GenCertError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(path).and_then(|mut file| {
        // An existing file keeps its permissions on open: set them (the key's matter).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)
    });
    written.map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => GenCertError::Exists(path.to_owned()),
        _ => GenCertError::Write {
            path: path.to_owned(),
            source,
        },
    })
}
