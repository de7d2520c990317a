//! TLS settings for the client side: how the server certificate is checked.
//!
//! Configurations are built with an explicit crypto provider (see
//! [`default_provider`](super::default_provider)); no process-wide provider
//! is installed.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{TlsConfigError, certificates_from_pem, default_provider};

/// Whether a server's `alert` is about the certificate this client showed
/// or did not show: one it requires (TLS 1.3's `certificate_required`), or
/// one it refused. Under TLS 1.3 such an alert arrives on the first read
/// after the handshake.
#[cfg(feature = "fetch")]
pub(crate) fn is_client_certificate_alert(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::CertificateRequired
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
    )
}

/// A client certificate chain and its private key, shown to a server that
/// asks the client to prove who it is (TLS client authentication).
///
/// ```
/// use pop3_blocking::tls::ClientIdentity;
/// # let dir = tempfile::tempdir().unwrap();
/// # let cert = rcgen::generate_simple_self_signed(vec!["alice".to_string()]).unwrap();
/// # std::fs::write(dir.path().join("alice.pem"), cert.cert.pem()).unwrap();
/// # std::fs::write(dir.path().join("alice.key"), cert.key_pair.serialize_pem()).unwrap();
/// # let (cert_pem, key_pem) = (dir.path().join("alice.pem"), dir.path().join("alice.key"));
/// let identity = ClientIdentity::from_pem(cert_pem, key_pem)?; // "alice.pem", "alice.key"
/// assert_eq!(identity.chain().len(), 1);
/// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
/// ```
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// A certificate chain (leaf first) and the leaf's private key. rustls
    /// checks that they match when a configuration is built.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        ClientIdentity { chain, key }
    }

    /// Reads the chain (leaf first) and the private key (PKCS#8, PKCS#1 or
    /// SEC1) from PEM files; one file may hold both.
    pub fn from_pem(
        cert_pem: impl AsRef<Path>,
        key_pem: impl AsRef<Path>,
    ) -> Result<ClientIdentity, TlsConfigError> {
        let chain = certificates_from_pem(cert_pem, "client certificate")?;
        let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|source| TlsConfigError::Pem {
            what: "client private key",
            source,
        })?;
        Ok(ClientIdentity { chain, key })
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("ClientIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// How the server's certificate is verified.
///
/// Verification is on by default: the certificate chain must lead to a
/// trusted root and name the host connected to (a DNS name, or an IP address
/// listed in the certificate's IP SANs when the host is an IP literal).
/// The default trusts the bundled web PKI roots (feature `webpki-roots`)
/// and the platform's (feature `native-roots`), either alone when only its
/// feature is on, else no root at all: set a CA file or bring a whole
/// configuration.
///
/// ```
/// use pop3_blocking::tls::TlsVerification;
/// let default = TlsVerification::default();
/// # #[cfg(all(feature = "webpki-roots", not(feature = "native-roots")))]
/// assert!(matches!(default, TlsVerification::WebPkiRoots));
/// # #[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
/// let config = default.client_config()?;
/// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TlsVerification {
    /// Trust the Mozilla root set bundled with the `webpki-roots` crate.
    #[cfg(feature = "webpki-roots")]
    #[cfg_attr(docsrs, doc(cfg(feature = "webpki-roots")))]
    WebPkiRoots,
    /// Trust the platform's roots (the system certificate store, loaded
    /// with `rustls-native-certs` when the configuration is built).
    #[cfg(feature = "native-roots")]
    #[cfg_attr(docsrs, doc(cfg(feature = "native-roots")))]
    PlatformRoots,
    /// Trust both the bundled Mozilla roots and the platform's (the
    /// platform's store may be missing or empty: the bundled roots remain).
    #[cfg(all(feature = "webpki-roots", feature = "native-roots"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(all(feature = "webpki-roots", feature = "native-roots")))
    )]
    BundledAndPlatformRoots,
    /// Trust exactly these roots (e.g. a private CA; see
    /// [`TlsVerification::ca_file`]).
    Roots(Arc<RootCertStore>),
    /// Accept any certificate for any name. The connection is encrypted but
    /// not authenticated: anyone on the path can read the password. For
    /// tests against throw-away servers only.
    DangerouslyAcceptAnyCertificate,
}

impl Default for TlsVerification {
    fn default() -> Self {
        #[cfg(all(feature = "webpki-roots", feature = "native-roots"))]
        return TlsVerification::BundledAndPlatformRoots;
        #[cfg(all(feature = "webpki-roots", not(feature = "native-roots")))]
        return TlsVerification::WebPkiRoots;
        #[cfg(all(feature = "native-roots", not(feature = "webpki-roots")))]
        return TlsVerification::PlatformRoots;
        #[cfg(not(any(feature = "webpki-roots", feature = "native-roots")))]
        TlsVerification::Roots(Arc::new(RootCertStore::empty()))
    }
}

impl TlsVerification {
    /// Trust the CA certificates in a PEM file, and no other root.
    ///
    /// ```
    /// use pop3_blocking::tls::TlsVerification;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ca = rcgen::generate_simple_self_signed(vec!["Private CA".to_string()]).unwrap();
    /// # std::fs::write(dir.path().join("private-ca.pem"), ca.cert.pem()).unwrap();
    /// # let ca_pem = dir.path().join("private-ca.pem");
    /// let verification = TlsVerification::ca_file(ca_pem)?; // "private-ca.pem"
    /// # assert!(matches!(verification, TlsVerification::Roots(ref roots) if roots.len() == 1));
    /// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
    /// ```
    pub fn ca_file(path: impl AsRef<Path>) -> Result<TlsVerification, TlsConfigError> {
        let certs = certificates_from_pem(path, "CA certificate")?;
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(TlsConfigError::Rustls)?;
        }
        Ok(TlsVerification::Roots(Arc::new(roots)))
    }

    /// A rustls client configuration (TLS 1.2 and 1.3, with the
    /// [`default_provider`](super::default_provider)) verifying this way.
    ///
    /// ```
    /// # #[cfg(all(feature = "webpki-roots", any(feature = "ring", feature = "aws-lc-rs")))] {
    /// use pop3_blocking::tls::TlsVerification;
    /// let config = TlsVerification::WebPkiRoots.client_config()?;
    /// # }
    /// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
    /// ```
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsConfigError> {
        self.client_config_with_identity(None)
    }

    /// [`client_config`](Self::client_config), showing `identity` to a
    /// server that asks for a client certificate.
    ///
    /// ```
    /// # #[cfg(any(feature = "ring", feature = "aws-lc-rs"))] {
    /// use pop3_blocking::tls::{ClientIdentity, TlsVerification};
    /// # let cert = rcgen::generate_simple_self_signed(vec!["alice".to_string()]).unwrap();
    /// # let der = cert.cert.der().clone();
    /// # let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    /// let identity = ClientIdentity::new(vec![der], key);
    /// let config = TlsVerification::default().client_config_with_identity(Some(&identity))?;
    /// assert!(config.client_auth_cert_resolver.has_certs());
    /// # }
    /// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
    /// ```
    pub fn client_config_with_identity(
        &self,
        identity: Option<&ClientIdentity>,
    ) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let finish = |builder: ConfigBuilder<ClientConfig, WantsClientCert>| match identity {
            None => Ok(builder.with_no_client_auth()),
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(TlsConfigError::Rustls),
        };
        let provider = default_provider().ok_or(TlsConfigError::NoCryptoProvider)?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Rustls)?;
        let config = match self {
            #[cfg(feature = "webpki-roots")]
            TlsVerification::WebPkiRoots => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                finish(builder.with_root_certificates(roots))?
            }
            #[cfg(feature = "native-roots")]
            TlsVerification::PlatformRoots => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = match found.errors.first() {
                        Some(e) => e.to_string(),
                        None => "no certificate found".to_owned(),
                    };
                    return Err(TlsConfigError::PlatformRoots(why));
                }
                finish(builder.with_root_certificates(roots))?
            }
            #[cfg(all(feature = "webpki-roots", feature = "native-roots"))]
            TlsVerification::BundledAndPlatformRoots => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                finish(builder.with_root_certificates(roots))?
            }
            TlsVerification::Roots(roots) => finish(builder.with_root_certificates(roots.clone()))?,
            TlsVerification::DangerouslyAcceptAnyCertificate => finish(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
            )?,
        };
        Ok(Arc::new(config))
    }
}

/// Accepts every certificate; still checks the handshake signatures, so the
/// peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
