//! TLS settings for the client side: how the server certificate is checked.
//!
//! Configurations are built with an explicit crypto provider (ring); no
//! process-wide provider is installed or read.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{TlsConfigError, certificates_from_pem, crypto_provider};

/// How the server's certificate is verified.
///
/// Verification is on by default: the certificate chain must lead to a
/// trusted root and name the host connected to (a DNS name, or an IP address
/// listed in the certificate's IP SANs when the host is an IP literal).
///
/// ```
/// use pop3_blocking::tls::TlsVerification;
/// let default = TlsVerification::default();
/// assert!(matches!(default, TlsVerification::WebPkiRoots));
/// let config = default.client_config()?;
/// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum TlsVerification {
    /// Trust the Mozilla root set bundled with the `webpki-roots` crate.
    #[default]
    WebPkiRoots,
    /// Trust exactly these roots (e.g. a private CA; see
    /// [`TlsVerification::ca_file`]).
    Roots(Arc<RootCertStore>),
    /// Accept any certificate for any name. The connection is encrypted but
    /// not authenticated: anyone on the path can read the password. For
    /// tests against throw-away servers only.
    DangerouslyAcceptAnyCertificate,
}

impl TlsVerification {
    /// Trust the CA certificates in a PEM file, and no other root.
    ///
    /// ```no_run
    /// use pop3_blocking::tls::TlsVerification;
    /// let verification = TlsVerification::ca_file("private-ca.pem")?;
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

    /// A rustls client configuration (TLS 1.2 and 1.3, ring) verifying this
    /// way.
    ///
    /// ```
    /// use pop3_blocking::tls::TlsVerification;
    /// let config = TlsVerification::WebPkiRoots.client_config()?;
    /// # Ok::<(), pop3_blocking::tls::TlsConfigError>(())
    /// ```
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let provider = crypto_provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Rustls)?;
        let config = match self {
            TlsVerification::WebPkiRoots => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            TlsVerification::Roots(roots) => builder
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
            TlsVerification::DangerouslyAcceptAnyCertificate => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth(),
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
