//! OAuth 2.0 access tokens for XOAUTH2 and OAUTHBEARER (feature `config`):
//! the refresh-token grant (RFC 6749 §6) at the provider's token endpoint.
//!
//! The refresh token lives in a file of its own (its first line), read at
//! each refresh. A token endpoint that rotates refresh tokens answers a new
//! one with the access token: it replaces the old one atomically (a
//! temporary file in the same directory, mode 0600, synced, renamed over the
//! old one, the directory synced), so a crash leaves either token whole.
//! Refreshes of one refresh token take turns, across processes, under the
//! lock of `.FILE.lock` beside it. Access tokens are kept in memory, per endpoint, client and refresh-token
//! file, until shortly before they expire (`expires_in`).
//!
//! The endpoint must be `https://`; plain `http://` only on a loopback host
//! (a test, or a local agent). HTTPS uses this crate's rustls crypto
//! provider and the default roots ([`TlsVerification::default`]; with
//! both the bundled and the platform's roots on, the bundled ones).
//!
//! ```no_run
//! use pop3_blocking::oauth2::{ClientSecret, OAuth2Settings, access_token};
//! let settings = OAuth2Settings::new(
//!     "https://oauth2.example.com/token",
//!     "my-client-id",
//!     "/home/alice/.config/pop3-fetch/work.refresh",
//! )
//! .with_client_secret(ClientSecret::Command("pass show mail/client-secret".into()));
//! let token = access_token(&settings)?;
//! // token is what XOAUTH2 or OAUTHBEARER sends as the password.
//! # Ok::<(), pop3_blocking::oauth2::OAuth2Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fetch::ExitKind;
use crate::tls::TlsVerification;

/// How long before its expiry a cached access token is no longer used.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The most of a token endpoint's answer that is read.
const RESPONSE_LIMIT: u64 = 64 * 1024;

/// How long a request to the token endpoint may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The client's secret, for a confidential client.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientSecret {
    /// The secret itself.
    Value(String),
    /// A command (`sh -c`) whose first line of output is the secret.
    Command(String),
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientSecret::Value(_) => f.write_str("Value(***)"),
            ClientSecret::Command(c) => f.debug_tuple("Command").field(c).finish(),
        }
    }
}

/// One account's OAuth 2.0 client: where and how it refreshes its token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuth2Settings {
    /// The token endpoint (`https://`, or `http://` on a loopback host).
    pub token_url: String,
    /// The client identifier.
    pub client_id: String,
    /// The client secret (`None` for a public client).
    pub client_secret: Option<ClientSecret>,
    /// The file holding the refresh token (its first line).
    pub refresh_token_file: PathBuf,
}

impl OAuth2Settings {
    /// A public client (no secret).
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        refresh_token_file: impl Into<PathBuf>,
    ) -> OAuth2Settings {
        OAuth2Settings {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: None,
            refresh_token_file: refresh_token_file.into(),
        }
    }

    /// With a client secret (a confidential client).
    #[must_use]
    pub fn with_client_secret(mut self, secret: ClientSecret) -> OAuth2Settings {
        self.client_secret = Some(secret);
        self
    }
}

/// Why no access token could be had.
#[derive(Debug)]
#[non_exhaustive]
pub enum OAuth2Error {
    /// The token endpoint is neither `https://` nor `http://` on a loopback
    /// host.
    InsecureEndpoint(String),
    /// The endpoint is `https://`, but no crypto provider is built in
    /// (features `ring`, `aws-lc-rs`) nor installed process-wide.
    NoCryptoProvider,
    /// The refresh-token file cannot be read (or is empty).
    ReadRefreshToken(PathBuf, io::Error),
    /// The rotated refresh token cannot be stored; the old one is intact.
    StoreRefreshToken(PathBuf, io::Error),
    /// The client-secret command failed (the message names it).
    ClientSecret(String),
    /// The token endpoint could not be reached (or its answer was cut).
    Unreachable(String, Box<ureq::Error>),
    /// The token endpoint failed on its side (an HTTP 5xx).
    ServerError(u16),
    /// The refresh token is no longer valid (`invalid_grant`): it was
    /// revoked or expired, so the account must be authorised again.
    InvalidGrant {
        /// The refresh-token file.
        file: PathBuf,
        /// The endpoint's `error_description`, if any.
        description: Option<String>,
    },
    /// The token endpoint refused otherwise (`invalid_client`,
    /// `unauthorized_client`...).
    Refused {
        /// The OAuth error code (or the HTTP status).
        error: String,
        /// The endpoint's `error_description`, if any.
        description: Option<String>,
    },
    /// The token endpoint's answer is not a token response.
    BadResponse(String),
}

impl OAuth2Error {
    /// Its exit status: a refused grant or client 77, unreachable or a
    /// server error 75, a bad answer 76, a bad endpoint or an unreadable
    /// refresh-token file 78, a token that cannot be stored 74.
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            OAuth2Error::InsecureEndpoint(_)
            | OAuth2Error::NoCryptoProvider
            | OAuth2Error::ReadRefreshToken(..) => ExitKind::Config,
            OAuth2Error::StoreRefreshToken(..) => ExitKind::IoErr,
            OAuth2Error::ClientSecret(_)
            | OAuth2Error::InvalidGrant { .. }
            | OAuth2Error::Refused { .. } => ExitKind::NoPerm,
            OAuth2Error::Unreachable(..) | OAuth2Error::ServerError(_) => ExitKind::TempFail,
            OAuth2Error::BadResponse(_) => ExitKind::Protocol,
        }
    }
}

impl fmt::Display for OAuth2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let described = |f: &mut fmt::Formatter<'_>, d: &Option<String>| match d {
            Some(d) => write!(f, " ({d})"),
            None => Ok(()),
        };
        match self {
            OAuth2Error::InsecureEndpoint(url) => write!(
                f,
                "the token endpoint {url} is not https:// (plain http:// only on a loopback host)"
            ),
            OAuth2Error::NoCryptoProvider => f.write_str(
                "no TLS crypto provider for the token endpoint (build with ring or aws-lc-rs)",
            ),
            OAuth2Error::ReadRefreshToken(path, _) => {
                write!(f, "cannot read the refresh token from {}", path.display())
            }
            OAuth2Error::StoreRefreshToken(path, _) => write!(
                f,
                "cannot store the new refresh token in {} (the old one is kept, but the server may have revoked it)",
                path.display()
            ),
            OAuth2Error::ClientSecret(m) => f.write_str(m),
            OAuth2Error::Unreachable(url, _) => write!(f, "the token endpoint {url} failed"),
            OAuth2Error::ServerError(status) => {
                write!(f, "the token endpoint failed with HTTP {status}")
            }
            OAuth2Error::InvalidGrant { file, description } => {
                f.write_str("the token endpoint refused the refresh token (invalid_grant")?;
                if let Some(d) = description {
                    write!(f, ": {d}")?;
                }
                write!(
                    f,
                    "): authorise the account again and put the new refresh token in {}",
                    file.display()
                )
            }
            OAuth2Error::Refused { error, description } => {
                write!(f, "the token endpoint refused: {error}")?;
                described(f, description)
            }
            OAuth2Error::BadResponse(m) => write!(f, "the token endpoint's answer is bad: {m}"),
        }
    }
}

impl std::error::Error for OAuth2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OAuth2Error::ReadRefreshToken(_, e) | OAuth2Error::StoreRefreshToken(_, e) => Some(e),
            OAuth2Error::Unreachable(_, e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Access tokens already obtained: by endpoint, client and refresh-token
/// file, the token and when it stops being used.
type Cache = BTreeMap<(String, String, PathBuf), (String, Instant)>;

static CACHE: Mutex<Cache> = Mutex::new(BTreeMap::new());

/// An access token for `settings`: the one in memory while it is fresh,
/// else a new one from the token endpoint (storing a rotated refresh token).
pub fn access_token(settings: &OAuth2Settings) -> Result<String, OAuth2Error> {
    let key = (
        settings.token_url.clone(),
        settings.client_id.clone(),
        settings.refresh_token_file.clone(),
    );
    let now = Instant::now();
    {
        let cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, until)) = cache.get(&key) {
            if now < *until {
                return Ok(token.clone());
            }
        }
    }
    let (token, expires_in) = refresh(settings)?;
    if let Some(secs) = expires_in {
        let until = now + Duration::from_secs(secs).saturating_sub(EXPIRY_MARGIN);
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key, (token.clone(), until));
    }
    Ok(token)
}

/// The token endpoint's answer (RFC 6749 §5.1, §5.2).
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Whether `url` may carry the refresh token: `https://`, or `http://` to
/// a loopback host (`localhost`, 127.0.0.0/8, `[::1]`).
pub(crate) fn endpoint_allowed(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        },
        None => authority.split(':').next().unwrap_or(""),
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The refresh token: the file's first line, trimmed.
fn read_refresh_token(path: &Path) -> Result<String, OAuth2Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OAuth2Error::ReadRefreshToken(path.to_path_buf(), e))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(OAuth2Error::ReadRefreshToken(
            path.to_path_buf(),
            io::Error::new(io::ErrorKind::InvalidData, "the file is empty"),
        ));
    }
    Ok(token.to_owned())
}

/// Replaces the file's content with `token` and a line end, atomically: a
/// temporary file beside it (mode 0600), synced, renamed over it, and the
/// directory synced.
pub fn store_refresh_token(path: &Path, token: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Takes the exclusive lock of `.NAME.lock` beside `path` (created mode
/// 0600, never removed), waiting for another holder; released on drop.
fn lock_beside(path: &Path) -> io::Result<std::fs::File> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut lock_name = std::ffi::OsString::from(".");
    lock_name.push(name);
    lock_name.push(".lock");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options.open(path.with_file_name(lock_name))?;
    // fs4's lock, named in full: from Rust 1.89 on, `File` has a `lock` of
    // its own.
    fs4::FileExt::lock(&lock)?;
    Ok(lock)
}

/// The client secret, from its source.
fn client_secret(secret: &ClientSecret) -> Result<String, OAuth2Error> {
    match secret {
        ClientSecret::Value(v) => Ok(v.clone()),
        ClientSecret::Command(cmd) => crate::config::password_from_command(cmd)
            .map_err(|e| OAuth2Error::ClientSecret(format!("client_secret_command: {e}"))),
    }
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 §2.3.1
/// encodes the client's id and secret so before HTTP Basic).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The agent: this crate's crypto provider, the default roots, no HTTP
/// status taken as an error (the body says why).
fn agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    let roots = match TlsVerification::default() {
        #[cfg(feature = "webpki-roots")]
        TlsVerification::WebPkiRoots => RootCerts::WebPki,
        // The token endpoints of the mail providers are under the bundled
        // roots.
        #[cfg(all(feature = "webpki-roots", feature = "native-roots"))]
        TlsVerification::BundledAndPlatformRoots => RootCerts::WebPki,
        #[cfg(feature = "native-roots")]
        TlsVerification::PlatformRoots => {
            let found = rustls_native_certs::load_native_certs();
            RootCerts::from(
                found
                    .certs
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    .collect::<Vec<_>>(),
            )
        }
        _ => RootCerts::from(Vec::new()),
    };
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots);
    if let Some(provider) = crate::tls::default_provider() {
        tls = tls.unversioned_rustls_crypto_provider(provider);
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        .build()
        .into()
}

/// One refresh-token grant: the access token and its lifetime in seconds;
/// a rotated refresh token is stored before the access token is answered.
fn refresh(settings: &OAuth2Settings) -> Result<(String, Option<u64>), OAuth2Error> {
    let url = &settings.token_url;
    if !endpoint_allowed(url) {
        return Err(OAuth2Error::InsecureEndpoint(url.clone()));
    }
    if crate::tls::default_provider().is_none() && url.to_ascii_lowercase().starts_with("https://")
    {
        return Err(OAuth2Error::NoCryptoProvider);
    }
    let file = &settings.refresh_token_file;
    // One refresh at a time per refresh token, across processes: a second
    // fetch reads the token the first one rotated in, rather than the one
    // it made stale.
    let _lock = lock_beside(file).map_err(|e| OAuth2Error::ReadRefreshToken(file.clone(), e))?;
    let refresh_token = read_refresh_token(file)?;
    let mut form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.clone()),
    ];
    let mut request = agent()
        .post(url)
        .header("Accept", "application/json")
        .header("Cache-Control", "no-store");
    match &settings.client_secret {
        Some(secret) => {
            use base64::Engine as _;
            let secret = client_secret(secret)?;
            let pair = format!(
                "{}:{}",
                form_encode(&settings.client_id),
                form_encode(&secret)
            );
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.header("Authorization", format!("Basic {basic}"));
        }
        None => form.push(("client_id", settings.client_id.clone())),
    }
    let mut response = request
        .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
        .map_err(|e| OAuth2Error::Unreachable(url.clone(), Box::new(e)))?;
    let status = response.status().as_u16();
    if status >= 500 {
        return Err(OAuth2Error::ServerError(status));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(RESPONSE_LIMIT)
        .read_to_string()
        .map_err(|e| OAuth2Error::Unreachable(url.clone(), Box::new(e)))?;
    let parsed: Option<TokenResponse> = serde_json::from_str(&body).ok();
    if status != 200 {
        let Some(parsed) = parsed else {
            return Err(OAuth2Error::Refused {
                error: format!("HTTP {status}"),
                description: None,
            });
        };
        return Err(match parsed.error.as_deref() {
            Some("invalid_grant") => OAuth2Error::InvalidGrant {
                file: file.clone(),
                description: parsed.error_description,
            },
            Some(error) => OAuth2Error::Refused {
                error: error.to_owned(),
                description: parsed.error_description,
            },
            None => OAuth2Error::Refused {
                error: format!("HTTP {status}"),
                description: None,
            },
        });
    }
    let parsed = parsed.ok_or_else(|| OAuth2Error::BadResponse("not a JSON object".into()))?;
    let access = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuth2Error::BadResponse("no access_token".into()))?;
    if let Some(kind) = &parsed.token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(OAuth2Error::BadResponse(format!(
                "token_type {kind}, not Bearer"
            )));
        }
    }
    // A number, or (some providers) a string of digits.
    let expires_in = match &parsed.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if let Some(rotated) = parsed.refresh_token.filter(|t| !t.is_empty()) {
        if rotated != refresh_token {
            store_refresh_token(file, &rotated)
                .map_err(|e| OAuth2Error::StoreRefreshToken(file.clone(), e))?;
        }
    }
    Ok((access, expires_in))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_endpoints_are_allowed() {
        for ok in [
            "https://oauth2.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/t",
            "HTTP://127.1.2.3/",
        ] {
            assert!(endpoint_allowed(ok), "{ok}");
        }
        for bad in [
            "http://oauth2.example.com/token",
            "http://127.0.0.1.example.com/",
            "http://127.0.0.1@evil.example/",
            "ftp://127.0.0.1/",
            "http://[::2]/",
            "token",
        ] {
            assert!(!endpoint_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn client_credentials_are_form_encoded_before_basic() {
        assert_eq!(form_encode("a b:c/d~é"), "a+b%3Ac%2Fd%7E%C3%A9");
    }

    #[test]
    fn a_stored_refresh_token_replaces_the_file_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh");
        std::fs::write(&path, "old\n").unwrap();
        store_refresh_token(&path, "new-token").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new-token\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }
}
