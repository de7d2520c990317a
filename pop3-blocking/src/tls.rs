//! TLS configuration helpers, for every runtime adapter: server
//! configurations from DER or PEM ([`server_config`],
//! [`server_config_from_pem`]), the client's certificate verification
//! ([`TlsVerification`]), and secure random octets ([`random_bytes`],
//! [`random_token`], [`secure_random`]).
//!
//! Nothing here installs a process-wide crypto provider: configurations are
//! built with an explicit one, [`crypto_provider`]: aws-lc-rs with the
//! feature `aws-lc-rs`, else ring with the feature `ring`. With neither,
//! the crate is built for plain TCP: a configuration is built only from the
//! provider the application installed process-wide
//! ([`CryptoProvider::install_default`]), or comes whole from the caller
//! (a client's `ConnectOptions::tls_config`, a server's TLS configuration);
//! otherwise [`TlsConfigError::NoCryptoProvider`].
//!
//! The random octets of nonces come from the provider of the TLS
//! configuration in use when there is one ([`secure_random`]), else from
//! the built-in provider, else from the process-wide one, else from the
//! operating system's generator.
//!
//! # The rustls version
//!
//! rustls's types are part of this API (client and server configurations,
//! [`rustls::Error`], [`CryptoProvider`]); [`rustls`] is re-exported here so
//! that an application builds them with the very version the crates were
//! built with, without naming it in its own manifest:
//! `pop3_blocking::tls::rustls`, which the async adapters show again as
//! `pop3_tokio::tls::rustls` and `pop3_async_std::tls::rustls`. The 0.1
//! releases of the four crates depend on rustls 0.23 (and tokio-rustls 0.26,
//! futures-rustls 0.26, which are built on it); the four move to a new
//! rustls major version together, and such a move is a breaking release of
//! these crates (0.1 → 0.2), never a patch release.
//!
//! ```
//! use pop3_blocking::tls::rustls;
//! let _ = rustls::ProtocolVersion::TLSv1_3;
//! ```

mod client;

/// The rustls crate these crates are built with (0.23 for the 0.1
/// releases; see [the rustls version](self#the-rustls-version)).
pub use rustls;

#[cfg(feature = "fetch")]
pub(crate) use client::is_client_certificate_alert;
pub use client::{ClientIdentity, TlsVerification};

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    Pem {
        /// What was being read ("certificate", "private key", ...).
        what: &'static str,
        /// The underlying error.
        source: rustls_pki_types::pem::Error,
    },
    /// The PEM file held no certificate.
    NoCertificate,
    /// rustls refused the configuration (e.g. the key does not match).
    Rustls(rustls::Error),
    /// No crypto provider: the crate was built without `ring` and
    /// `aws-lc-rs`, and the application installed none process-wide.
    NoCryptoProvider,
    /// The platform's trust roots could not be loaded (feature
    /// `native-roots`).
    PlatformRoots(String),
}

impl std::fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsConfigError::Pem { what, .. } => write!(f, "cannot read {what}"),
            TlsConfigError::NoCertificate => f.write_str("no certificate in the PEM file"),
            TlsConfigError::Rustls(_) => f.write_str("TLS configuration refused"),
            TlsConfigError::NoCryptoProvider => f.write_str(
                "no crypto provider: build with the feature `ring` or `aws-lc-rs`, \
                 or install one process-wide",
            ),
            TlsConfigError::PlatformRoots(why) => {
                write!(f, "cannot load the platform's trust roots: {why}")
            }
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsConfigError::Pem { source, .. } => Some(source),
            TlsConfigError::Rustls(e) => Some(e),
            TlsConfigError::NoCertificate
            | TlsConfigError::NoCryptoProvider
            | TlsConfigError::PlatformRoots(_) => None,
        }
    }
}

impl From<TlsConfigError> for io::Error {
    fn from(e: TlsConfigError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The crypto provider built into this crate, passed explicitly to every
/// configuration the helpers build: aws-lc-rs with the feature
/// `aws-lc-rs`, else ring.
#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "ring", feature = "aws-lc-rs"))))]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// The provider configurations are built with: the built-in one
/// ([`crypto_provider`]), else the one the application installed
/// process-wide, else none.
pub fn default_provider() -> Option<Arc<CryptoProvider>> {
    #[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
    return Some(crypto_provider());
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    CryptoProvider::get_default().cloned()
}

/// The secure generator nonces are drawn from: the one of `provider` (the
/// provider of the TLS configuration in use) when given, else that of
/// [`default_provider`], else the operating system's.
///
/// ```
/// # #[cfg(feature = "ring")] {
/// use pop3_blocking::tls::secure_random;
/// let provider = rustls::crypto::ring::default_provider();
/// let mut nonce = [0u8; 16];
/// secure_random(Some(&provider)).fill(&mut nonce).unwrap();
/// # }
/// ```
pub fn secure_random(provider: Option<&CryptoProvider>) -> &'static dyn SecureRandom {
    match provider {
        Some(p) => p.secure_random,
        None => match default_provider() {
            Some(p) => p.secure_random,
            None => &OsRandom,
        },
    }
}

/// The operating system's generator, for a build without a crypto provider.
#[derive(Debug)]
struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        getrandom::getrandom(buf).map_err(|_| GetRandomFailed)
    }
}

/// `N` random octets from `random` (see [`secure_random`]). There is no
/// weaker fallback: a failure is reported, never papered over.
pub fn random_bytes_from<const N: usize>(
    random: &dyn SecureRandom,
) -> Result<[u8; N], rustls::Error> {
    let mut buf = [0u8; N];
    random
        .fill(&mut buf)
        .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
    Ok(buf)
}

/// `N` random octets from the default generator ([`secure_random`] of
/// `None`). There is no weaker fallback: a failure is reported, never
/// papered over.
///
/// ```
/// let a: [u8; 16] = pop3_blocking::tls::random_bytes()?;
/// let b: [u8; 16] = pop3_blocking::tls::random_bytes()?;
/// assert_ne!(a, b);
/// # Ok::<(), rustls::Error>(())
/// ```
pub fn random_bytes<const N: usize>() -> Result<[u8; N], rustls::Error> {
    random_bytes_from(secure_random(None))
}

/// A random token of `len` lower-case hex characters drawn from `random`
/// (see [`secure_random`]), for SASL nonces.
pub fn random_token_from(random: &dyn SecureRandom, len: usize) -> Result<String, rustls::Error> {
    let mut out = String::with_capacity(len + 32);
    while out.len() < len {
        crate::hex::push_hex(&mut out, &random_bytes_from::<16>(random)?);
    }
    out.truncate(len);
    Ok(out)
}

/// A random token of `len` lower-case hex characters from the default
/// generator ([`secure_random`] of `None`), for SASL nonces.
///
/// ```
/// let nonce = pop3_blocking::tls::random_token(24)?;
/// assert_eq!(nonce.len(), 24);
/// assert!(nonce.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
/// # Ok::<(), rustls::Error>(())
/// ```
pub fn random_token(len: usize) -> Result<String, rustls::Error> {
    random_token_from(secure_random(None), len)
}

/// A server configuration (TLS 1.2 and 1.3, no client certificates) from a
/// certificate chain and a private key in DER form.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = default_provider().ok_or(TlsConfigError::NoCryptoProvider)?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsConfigError::Rustls)?;
    Ok(Arc::new(config))
}

/// The certificates of a PEM file (`what` names them in errors); none is
/// an error.
///
/// ```
/// use pop3_blocking::tls::{TlsConfigError, certificates_from_pem};
///
/// let err = certificates_from_pem("/nonexistent/ca.pem", "CA certificate").unwrap_err();
/// assert!(matches!(err, TlsConfigError::Pem { what: "CA certificate", .. }));
/// assert_eq!(err.to_string(), "cannot read CA certificate"); // why: err.source()
///
/// let empty = tempfile::NamedTempFile::new()?;
/// let err = certificates_from_pem(empty.path(), "certificate").unwrap_err();
/// assert!(matches!(err, TlsConfigError::NoCertificate));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn certificates_from_pem(
    path: impl AsRef<Path>,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsConfigError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certs)
}

/// A server configuration from PEM files: a certificate chain (leaf first)
/// and its private key (PKCS#8, PKCS#1 or SEC1).
///
/// ```
/// # #[cfg(any(feature = "ring", feature = "aws-lc-rs"))] {
/// # let dir = tempfile::tempdir().unwrap();
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// # std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
/// # std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
/// # let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
/// let config = pop3_blocking::tls::server_config_from_pem(cert_pem, key_pem)?; // "cert.pem", "key.pem"
/// # }
/// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
/// ```
pub fn server_config_from_pem(
    cert_pem: impl AsRef<Path>,
    key_pem: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = certificates_from_pem(cert_pem, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|source| TlsConfigError::Pem {
        what: "private key",
        source,
    })?;
    server_config(chain, key)
}

/// TLS 1.3 alone.
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The oldest TLS version a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MinTlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl MinTlsVersion {
    /// The versions rustls is to accept.
    pub(crate) fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            MinTlsVersion::Tls12 => rustls::DEFAULT_VERSIONS,
            MinTlsVersion::Tls13 => TLS13_ONLY,
        }
    }
}

impl std::str::FromStr for MinTlsVersion {
    type Err = UnknownTlsVersion;

    /// `1.2` or `1.3`.
    ///
    /// ```
    /// use pop3_blocking::tls::MinTlsVersion;
    /// assert_eq!("1.3".parse::<MinTlsVersion>().unwrap(), MinTlsVersion::Tls13);
    /// assert!("1.1".parse::<MinTlsVersion>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, UnknownTlsVersion> {
        match s {
            "1.2" => Ok(MinTlsVersion::Tls12),
            "1.3" => Ok(MinTlsVersion::Tls13),
            _ => Err(UnknownTlsVersion),
        }
    }
}

/// A TLS version other than `1.2` and `1.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownTlsVersion;

impl std::fmt::Display for UnknownTlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a TLS version this server offers (1.2 or 1.3)")
    }
}

impl std::error::Error for UnknownTlsVersion {}

/// Picks a server certificate by the name the client asks for (SNI): the
/// first certificate valid for that name, else the first of all (also for
/// a client that names none).
#[derive(Debug)]
struct ByName {
    keys: Vec<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for ByName {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        pick_by_name(&self.keys, hello.server_name())
    }
}

/// The first of `keys` valid for `name` (SNI), else the first of all.
pub(crate) fn pick_by_name(
    keys: &[Arc<rustls::sign::CertifiedKey>],
    name: Option<&str>,
) -> Option<Arc<rustls::sign::CertifiedKey>> {
    let first = keys.first().cloned();
    let Some(name) = name else {
        return first;
    };
    let covers = |key: &&Arc<rustls::sign::CertifiedKey>| {
        // rustls's own check of a certificate against a name.
        rustls::server::ResolvesServerCertUsingSni::new()
            .add(name, (***key).clone())
            .is_ok()
    };
    keys.iter().find(covers).cloned().or(first)
}

/// A server configuration (no client certificates) with several
/// certificates, each a chain and its private key in DER form, chosen by
/// the name the client asks for (SNI): the first certificate valid for
/// that name, else the first one. `min_version`: the oldest TLS version
/// accepted.
///
/// ```
/// use pop3_blocking::tls::{MinTlsVersion, server_config_for_certificates};
/// use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
///
/// let pair = |name: &str| {
///     let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
///     let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
///     (vec![CertificateDer::from(cert.cert.der().to_vec())], key)
/// };
/// # #[cfg(any(feature = "ring", feature = "aws-lc-rs"))] {
/// let config = server_config_for_certificates(
///     vec![pair("pop.example.org"), pair("pop.example.net")],
///     MinTlsVersion::Tls13,
/// )?;
/// # let _ = config; }
/// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
/// ```
pub fn server_config_for_certificates(
    certificates: Vec<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    min_version: MinTlsVersion,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = default_provider().ok_or(TlsConfigError::NoCryptoProvider)?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let mut keys = Vec::with_capacity(certificates.len());
    for (chain, key) in certificates {
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(TlsConfigError::Rustls)?;
        let certified = rustls::sign::CertifiedKey::new(chain, signer);
        certified.keys_match().map_err(TlsConfigError::Rustls)?;
        keys.push(Arc::new(certified));
    }
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(min_version.versions())
        .map_err(TlsConfigError::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByName { keys }));
    Ok(Arc::new(config))
}

/// [`server_config_for_certificates`] from PEM files: pairs of a
/// certificate chain file and its private key file.
pub fn server_config_from_pem_pairs(
    pairs: &[(impl AsRef<Path>, impl AsRef<Path>)],
    min_version: MinTlsVersion,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut certificates = Vec::with_capacity(pairs.len());
    for (cert_pem, key_pem) in pairs {
        let chain = certificates_from_pem(cert_pem, "certificate")?;
        let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|source| TlsConfigError::Pem {
            what: "private key",
            source,
        })?;
        certificates.push((chain, key));
    }
    server_config_for_certificates(certificates, min_version)
}
