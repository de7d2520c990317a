//! SASL mechanisms on the server side, as small step machines.
//!
//! Each exchange turns client responses into either another challenge or a
//! credential check that the store performs (a password to verify, a shared
//! secret to fetch). Adding a mechanism means a [`SaslMechanism`] variant, a
//! state in `SaslExchange` and, when it needs a new kind of credential check
//! (an OAuth token, SCRAM keys), a new `StoreRequest` variant.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::command::Username;
use crate::scram::{ScramHash, ScramKeys};
use crate::types::Secret;

/// A SASL mechanism the server can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): the password in clear; needs TLS unless plaintext
    /// authentication is allowed.
    Plain,
    /// LOGIN (draft-murchison-sasl-login): user name and password in clear;
    /// needs TLS unless plaintext authentication is allowed.
    Login,
    /// CRAM-MD5 (RFC 2195): a challenge keyed with the shared secret; needs a
    /// store that hands out shared secrets.
    CramMd5,
    /// SCRAM-SHA-1 (RFC 5802), without channel binding; needs a store that
    /// hands out SCRAM-SHA-1 keys.
    ScramSha1,
    /// SCRAM-SHA-256 (RFC 7677), without channel binding; needs a store
    /// that hands out SCRAM-SHA-256 keys.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS (RFC 7677, RFC 5802 §6) with the `tls-exporter`
    /// channel binding (RFC 9266): offered only over TLS 1.3, when the
    /// adapter passed the exporter value
    /// ([`TlsInfo::tls_exporter`](super::TlsInfo::tls_exporter)).
    ScramSha256Plus,
    /// OAUTHBEARER (RFC 7628): an OAuth 2.0 bearer token, checked by the
    /// store's token validator; needs TLS unless plaintext authentication
    /// is allowed (a token is as good as a password while it lasts). A
    /// message without an authorization identity (`n,,`, RFC 7628 §3.1)
    /// logs in the user the store says the token was issued to
    /// ([`StoreRequest::TokenOwner`](super::StoreRequest::TokenOwner)).
    OAuthBearer,
    /// XOAUTH2 (Google, Microsoft): a bearer token like OAUTHBEARER, in
    /// the older framing.
    XOAuth2,
    /// EXTERNAL (RFC 4422 Appendix A): the identity of a verified TLS
    /// client certificate; offered only on a connection that has one
    /// ([`TlsInfo::client_certificate`](super::TlsInfo::client_certificate),
    /// mapped by [`ServerConfig::external_identity`](super::ServerConfig::external_identity)).
    External,
}

impl SaslMechanism {
    /// The registered name, upper case.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Login => "LOGIN",
            SaslMechanism::CramMd5 => "CRAM-MD5",
            SaslMechanism::ScramSha1 => "SCRAM-SHA-1",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
            SaslMechanism::XOAuth2 => "XOAUTH2",
            SaslMechanism::External => "EXTERNAL",
        }
    }

    /// The mechanism of this name (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            SaslMechanism::Plain,
            SaslMechanism::Login,
            SaslMechanism::CramMd5,
            SaslMechanism::ScramSha1,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha256Plus,
            SaslMechanism::OAuthBearer,
            SaslMechanism::XOAuth2,
            SaslMechanism::External,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether the mechanism reveals the password (or a bearer token) to
    /// an eavesdropper.
    pub fn is_plaintext(self) -> bool {
        matches!(
            self,
            SaslMechanism::Plain
                | SaslMechanism::Login
                | SaslMechanism::OAuthBearer
                | SaslMechanism::XOAuth2
        )
    }

    /// Whether the mechanism carries a bearer token (OAUTHBEARER, XOAUTH2).
    pub fn is_oauth(self) -> bool {
        matches!(self, SaslMechanism::OAuthBearer | SaslMechanism::XOAuth2)
    }

    /// The hash of a SCRAM mechanism.
    ///
    /// ```
    /// use pop3_proto::scram::ScramHash;
    /// use pop3_proto::server::SaslMechanism;
    /// assert_eq!(SaslMechanism::ScramSha1.scram_hash(), Some(ScramHash::Sha1));
    /// assert_eq!(SaslMechanism::Plain.scram_hash(), None);
    /// ```
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            SaslMechanism::ScramSha1 => Some(ScramHash::Sha1),
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            _ => None,
        }
    }
}

/// A SCRAM client-first message, parsed (RFC 5802 §7).
#[derive(Debug)]
pub(crate) struct ScramStart {
    pub(crate) hash: ScramHash,
    /// What the client-final message's `c=` must decode to: the GS2 header
    /// as sent, then the channel binding data for `p=`.
    cbind_input: Vec<u8>,
    /// client-first-message-bare, part of the AuthMessage.
    first_bare: String,
    client_nonce: String,
}

/// The server-first message was sent: the client's proof is next.
#[derive(Debug)]
pub(crate) struct ScramFinal {
    user: Username,
    hash: ScramHash,
    cbind_input: Vec<u8>,
    nonce: String,
    /// client-first-message-bare "," server-first-message ","
    auth_prefix: String,
    keys: ScramKeys,
}

/// The channel binding a SCRAM exchange runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Binding {
    /// A -PLUS mechanism: the client must bind to this `tls-exporter` value.
    TlsExporter([u8; 32]),
    /// No binding; `plus_offered`: the server offers the -PLUS variant, so
    /// a client saying `y` (it could bind, and thinks the server cannot)
    /// sees a downgrade and must be refused (RFC 5802 §6).
    None { plus_offered: bool },
}

/// An exchange in progress: what the next client response is.
#[derive(Debug)]
pub(crate) enum SaslExchange {
    Plain,
    LoginUser,
    LoginPassword {
        user: Username,
    },
    CramMd5 {
        challenge: Bytes,
    },
    ScramFirst {
        hash: ScramHash,
        binding: Binding,
    },
    ScramFinal(ScramFinal),
    /// The server-final message went out as a challenge: the empty
    /// response that acknowledges it is next (RFC 5034 §4).
    ScramAck {
        user: Username,
    },
    /// A bearer-token mechanism's message is next.
    OAuth {
        mech: SaslMechanism,
    },
    /// The error challenge went out: the client's acknowledgement (`AQ==`
    /// for OAUTHBEARER, an empty line for XOAUTH2) is next, then `-ERR`.
    OAuthFailed,
    /// EXTERNAL's authorization identity is next (two-step form).
    External {
        identity: Username,
    },
    Done,
}

/// What the machine does next.
#[derive(Debug)]
pub(crate) enum SaslOutcome {
    /// Send this challenge (raw; base64-encoded on the wire) and wait.
    Challenge(Bytes),
    /// Ask the store to verify this password.
    VerifyPassword { user: Username, password: Secret },
    /// Ask the store for the shared secret and check the CRAM-MD5 digest.
    CramMd5 {
        user: Username,
        challenge: Bytes,
        digest: Secret,
    },
    /// Ask the store for the user's SCRAM keys, then send the
    /// server-first message.
    ScramKeys { user: Username, start: ScramStart },
    /// The client proved who it is.
    Authenticated { user: Username },
    /// Ask the store whether this bearer token is good for the user (or,
    /// without one, whom it lets in).
    VerifyToken {
        user: Option<Username>,
        token: Secret,
        mech: SaslMechanism,
    },
    /// The credentials cannot be right (malformed or refused): a failed
    /// authentication.
    Failed,
    /// The response breaks the protocol (e.g. an initial response where the
    /// mechanism takes none).
    Malformed,
}

impl SaslExchange {
    /// Starts `mech`, with the initial response if one was sent; `challenge`
    /// is a fresh challenge for server-first mechanisms.
    pub(crate) fn start(
        mech: SaslMechanism,
        initial: Option<Secret>,
        challenge: Bytes,
    ) -> (Self, SaslOutcome) {
        match mech {
            SaslMechanism::Plain => {
                let mut ex = SaslExchange::Plain;
                let out = match initial {
                    Some(data) => ex.step(data),
                    None => SaslOutcome::Challenge(Bytes::new()),
                };
                (ex, out)
            }
            SaslMechanism::Login => {
                let mut ex = SaslExchange::LoginUser;
                let out = match initial {
                    Some(data) => ex.step(data),
                    None => SaslOutcome::Challenge(Bytes::from_static(b"Username:")),
                };
                (ex, out)
            }
            SaslMechanism::ScramSha1
            | SaslMechanism::ScramSha256
            | SaslMechanism::ScramSha256Plus => SaslExchange::start_scram(
                mech,
                initial,
                Binding::None {
                    plus_offered: false,
                },
            ),
            SaslMechanism::OAuthBearer | SaslMechanism::XOAuth2 => {
                let mut ex = SaslExchange::OAuth { mech };
                let out = match initial {
                    Some(data) => ex.step(data),
                    None => SaslOutcome::Challenge(Bytes::new()),
                };
                (ex, out)
            }
            // Started with the certificate's identity (start_external).
            SaslMechanism::External => (SaslExchange::Done, SaslOutcome::Failed),
            SaslMechanism::CramMd5 => match initial {
                Some(_) => (SaslExchange::Done, SaslOutcome::Malformed),
                None => (
                    SaslExchange::CramMd5 {
                        challenge: challenge.clone(),
                    },
                    SaslOutcome::Challenge(challenge),
                ),
            },
        }
    }

    /// Whether the store has been asked about the credentials of this
    /// exchange (SCRAM keys fetched, a token refused): from here on, a
    /// cancel or a malformed answer is a failed login.
    pub(crate) fn store_consulted(&self) -> bool {
        matches!(
            self,
            SaslExchange::ScramFinal(_) | SaslExchange::ScramAck { .. } | SaslExchange::OAuthFailed
        )
    }

    /// The client's next response.
    pub(crate) fn step(&mut self, data: Secret) -> SaslOutcome {
        match core::mem::replace(self, SaslExchange::Done) {
            SaslExchange::Plain => plain(&data),
            SaslExchange::LoginUser => match username(data.expose()) {
                Some(user) => {
                    *self = SaslExchange::LoginPassword { user };
                    SaslOutcome::Challenge(Bytes::from_static(b"Password:"))
                }
                None => SaslOutcome::Failed,
            },
            SaslExchange::LoginPassword { user } => SaslOutcome::VerifyPassword {
                user,
                password: data,
            },
            SaslExchange::CramMd5 { challenge } => {
                let d = data.expose();
                let Some(sp) = memchr::memrchr(b' ', d) else {
                    return SaslOutcome::Failed;
                };
                let digest = &d[sp + 1..];
                match username(&d[..sp]) {
                    Some(user)
                        if digest.len() == 32 && digest.iter().all(u8::is_ascii_hexdigit) =>
                    {
                        SaslOutcome::CramMd5 {
                            user,
                            challenge,
                            digest: Secret::new(data.expose_bytes().slice(sp + 1..)),
                        }
                    }
                    _ => SaslOutcome::Failed,
                }
            }
            SaslExchange::ScramFirst { hash, binding } => scram_first(hash, binding, data.expose()),
            SaslExchange::ScramFinal(f) => match f.verify(data.expose()) {
                Some((user, server_final)) => {
                    *self = SaslExchange::ScramAck { user };
                    SaslOutcome::Challenge(Bytes::from(server_final.into_bytes()))
                }
                None => SaslOutcome::Failed,
            },
            SaslExchange::ScramAck { user } => {
                if data.is_empty() {
                    SaslOutcome::Authenticated { user }
                } else {
                    SaslOutcome::Malformed
                }
            }
            SaslExchange::OAuth { mech } => {
                let parsed = if mech == SaslMechanism::OAuthBearer {
                    oauthbearer(data.expose())
                } else {
                    xoauth2(data.expose()).map(|(user, token)| (Some(user), token))
                };
                match parsed {
                    Some((user, token)) => SaslOutcome::VerifyToken {
                        user,
                        token: Secret::new(data.expose_bytes().slice(token)),
                        mech,
                    },
                    None => SaslOutcome::Failed,
                }
            }
            SaslExchange::OAuthFailed => SaslOutcome::Failed,
            SaslExchange::External { identity } => {
                // An empty authorization identity, or the certificate's
                // own: acting as someone else is not supported.
                let d = data.expose();
                if d.is_empty() || d == identity.as_str().as_bytes() {
                    SaslOutcome::Authenticated { user: identity }
                } else {
                    SaslOutcome::Failed
                }
            }
            SaslExchange::Done => SaslOutcome::Malformed,
        }
    }

    /// Starts a SCRAM mechanism with its channel binding.
    pub(crate) fn start_scram(
        mech: SaslMechanism,
        initial: Option<Secret>,
        binding: Binding,
    ) -> (Self, SaslOutcome) {
        let hash = mech.scram_hash().expect("a SCRAM mechanism");
        let mut ex = SaslExchange::ScramFirst { hash, binding };
        let out = match initial {
            Some(data) => ex.step(data),
            None => SaslOutcome::Challenge(Bytes::new()),
        };
        (ex, out)
    }

    /// Starts EXTERNAL for the certificate's `identity`.
    pub(crate) fn start_external(
        identity: Username,
        initial: Option<Secret>,
    ) -> (Self, SaslOutcome) {
        let mut ex = SaslExchange::External { identity };
        let out = match initial {
            Some(data) => ex.step(data),
            None => SaslOutcome::Challenge(Bytes::new()),
        };
        (ex, out)
    }

    /// The store refused the token: the error challenge (RFC 7628 §3.2.2,
    /// and its XOAUTH2 counterpart), answered by the client before `-ERR`.
    pub(crate) fn oauth_error(mech: SaslMechanism) -> (Self, SaslOutcome) {
        let json: &'static [u8] = if mech == SaslMechanism::XOAuth2 {
            br#"{"status":"401","schemes":"bearer"}"#
        } else {
            br#"{"status":"invalid_token"}"#
        };
        (
            SaslExchange::OAuthFailed,
            SaslOutcome::Challenge(Bytes::from_static(json)),
        )
    }

    /// The store's keys arrived (`None`: an unknown user, who goes through
    /// the same exchange with keys no password matches, from `secret` when
    /// the deployment has one, else from `random`): the server-first
    /// message, with `server_nonce` (printable, no `,`) appended to the
    /// client's nonce.
    pub(crate) fn scram_server_first(
        user: Username,
        start: ScramStart,
        keys: Option<ScramKeys>,
        server_nonce: &str,
        random: u64,
        secret: Option<&crate::scram::DeploymentSecret>,
    ) -> (Self, SaslOutcome) {
        use base64::Engine as _;
        let hash = start.hash;
        let keys = match keys {
            Some(k) if k.hash() == hash => k,
            _ => match secret {
                Some(secret) => {
                    secret.decoy_keys(hash, user.as_str(), crate::scram::MIN_ITERATIONS)
                }
                None => decoy_keys(hash, user.as_str(), random),
            },
        };
        let nonce = alloc::format!("{}{}", start.client_nonce, server_nonce);
        let salt = base64::engine::general_purpose::STANDARD.encode(keys.salt());
        let server_first = alloc::format!("r={nonce},s={salt},i={}", keys.iterations());
        let auth_prefix = alloc::format!("{},{server_first},", start.first_bare);
        let ex = SaslExchange::ScramFinal(ScramFinal {
            user,
            hash,
            cbind_input: start.cbind_input,
            nonce,
            auth_prefix,
            keys,
        });
        (
            ex,
            SaslOutcome::Challenge(Bytes::from(server_first.into_bytes())),
        )
    }
}

/// OAUTHBEARER's client response (RFC 7628 §3.1): `gs2-header` with the
/// user as `a=` (optional), then `^A`-separated `key=value` pairs, one of
/// them `auth=Bearer <token>`, ended by `^A^A`. Returns the user, if named,
/// and where the token is.
fn oauthbearer(d: &[u8]) -> Option<(Option<Username>, core::ops::Range<usize>)> {
    let text = core::str::from_utf8(d).ok()?;
    let (gs2, rest) = text.split_once('\x01')?;
    let mut fields = gs2.splitn(3, ',');
    let flag = fields.next()?;
    if flag != "n" && flag != "y" {
        return None;
    }
    let user = match fields.next()? {
        "" => None,
        a => {
            let name = a.strip_prefix("a=").and_then(crate::scram::unescape_name)?;
            Some(username(name.as_bytes())?)
        }
    };
    if fields.next() != Some("") {
        return None;
    }
    let token = bearer_token(d, gs2.len() + 1, rest)?;
    Some((user, token))
}

/// XOAUTH2's client response: `user=U ^A auth=Bearer T ^A ^A`.
fn xoauth2(d: &[u8]) -> Option<(Username, core::ops::Range<usize>)> {
    let text = core::str::from_utf8(d).ok()?;
    let (first, rest) = text.split_once('\x01')?;
    let user = username(first.strip_prefix("user=")?.as_bytes())?;
    let token = bearer_token(d, first.len() + 1, rest)?;
    Some((user, token))
}

/// Finds `auth=Bearer <token>` among the `^A`-separated pairs of `rest`
/// (which starts at `offset` in the message); the message must end with
/// `^A^A`.
fn bearer_token(d: &[u8], offset: usize, rest: &str) -> Option<core::ops::Range<usize>> {
    let body = rest.strip_suffix("\x01\x01")?;
    let mut at = offset;
    for pair in body.split('\x01') {
        if let Some(value) = pair.strip_prefix("auth=") {
            let (scheme, token) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("Bearer") || token.is_empty() {
                return None;
            }
            let start = at + "auth=".len() + scheme.len() + 1;
            debug_assert_eq!(&d[start..start + token.len()], token.as_bytes());
            return Some(start..start + token.len());
        }
        at += pair.len() + 1;
    }
    None
}

/// Keys for a user the store does not know, when the deployment has no
/// secret: the exchange fails at the proof, but the salt changes with every
/// connection (see [`ServerConfig::deployment_secret`](super::ServerConfig::deployment_secret)).
fn decoy_keys(hash: ScramHash, user: &str, random: u64) -> ScramKeys {
    let seed = random.to_le_bytes();
    let salt = hash.hmac(&seed, &[b"salt", user.as_bytes()]);
    let stored = hash.hmac(&seed, &[b"stored", user.as_bytes()]);
    let server = hash.hmac(&seed, &[b"server", user.as_bytes()]);
    ScramKeys::new(
        hash,
        salt[..16].to_vec(),
        crate::scram::MIN_ITERATIONS,
        stored,
        server,
    )
    .expect("well-formed decoy keys")
}

/// Parses the client-first message (RFC 5802 §7): `gs2-header
/// client-first-message-bare`. A -PLUS mechanism needs
/// `p=tls-exporter`; the others take `n`, and `y` (the client could bind
/// but believes the server cannot) unless the server offers -PLUS.
fn scram_first(hash: ScramHash, binding: Binding, data: &[u8]) -> SaslOutcome {
    let Ok(text) = core::str::from_utf8(data) else {
        return SaslOutcome::Failed;
    };
    let (flag, rest) = match text.split_once(',') {
        Some(p) => p,
        None => return SaslOutcome::Failed,
    };
    let exporter = match binding {
        Binding::TlsExporter(value) => value,
        Binding::None { .. } => [0; 32],
    };
    let cb_data: &[u8] = match (binding, flag) {
        (Binding::TlsExporter(_), "p=tls-exporter") => &exporter,
        (Binding::None { .. }, "n") => &[],
        (
            Binding::None {
                plus_offered: false,
            },
            "y",
        ) => &[],
        _ => return SaslOutcome::Failed,
    };
    let Some((authzid, bare)) = rest.split_once(',') else {
        return SaslOutcome::Failed;
    };
    let authzid = match authzid {
        "" => None,
        a => match a.strip_prefix("a=").and_then(crate::scram::unescape_name) {
            Some(a) => Some(a),
            None => return SaslOutcome::Failed,
        },
    };
    let mut attrs = bare.split(',');
    let (Some(n), Some(r)) = (attrs.next(), attrs.next()) else {
        return SaslOutcome::Failed;
    };
    // A mandatory extension (`m=`) cannot be understood.
    let Some(name) = n.strip_prefix("n=").and_then(crate::scram::unescape_name) else {
        return SaslOutcome::Failed;
    };
    let Some(nonce) = r.strip_prefix("r=") else {
        return SaslOutcome::Failed;
    };
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b',')
    {
        return SaslOutcome::Failed;
    }
    let name = match crate::scram::saslprep(&name) {
        Ok(n) => n.into_owned(),
        Err(_) => return SaslOutcome::Failed,
    };
    if authzid.is_some_and(|a| a != name) {
        return SaslOutcome::Failed;
    }
    match username(name.as_bytes()) {
        Some(user) => SaslOutcome::ScramKeys {
            user,
            start: ScramStart {
                hash,
                cbind_input: {
                    let mut v = Vec::from(&text.as_bytes()[..text.len() - bare.len()]);
                    v.extend_from_slice(cb_data);
                    v
                },
                first_bare: String::from(bare),
                client_nonce: String::from(nonce),
            },
        },
        None => SaslOutcome::Failed,
    }
}

impl ScramFinal {
    /// Checks the client-final message: the channel binding echo, the
    /// nonce and the proof. Returns the user and the server-final message.
    fn verify(self, data: &[u8]) -> Option<(Username, String)> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = core::str::from_utf8(data).ok()?;
        let (without_proof, proof) = text.rsplit_once(",p=")?;
        let mut attrs = without_proof.split(',');
        let c = attrs.next()?.strip_prefix("c=")?;
        let r = attrs.next()?.strip_prefix("r=")?;
        let echoed = b64.decode(c).ok()?;
        if !super::constant_time_eq(&echoed, &self.cbind_input) || r != self.nonce {
            return None;
        }
        let proof = b64.decode(proof).ok()?;
        let h = self.hash;
        if proof.len() != h.output_len() {
            return None;
        }
        let mut auth_message = self.auth_prefix.into_bytes();
        auth_message.extend_from_slice(without_proof.as_bytes());
        let client_signature = h.hmac(self.keys.stored_key(), &[&auth_message]);
        let client_key = crate::scram::xor(&proof, &client_signature);
        if !super::constant_time_eq(&h.hash(&client_key), self.keys.stored_key()) {
            return None;
        }
        let server_signature = h.hmac(self.keys.server_key(), &[&auth_message]);
        let mut server_final = String::from("v=");
        b64.encode_string(server_signature, &mut server_final);
        Some((self.user, server_final))
    }
}

fn username(raw: &[u8]) -> Option<Username> {
    core::str::from_utf8(raw)
        .ok()
        .and_then(|s| Username::new(s).ok())
}

/// PLAIN: `authzid NUL authcid NUL passwd` (RFC 4616 §2). Acting as another
/// user (an authzid other than the authcid) is not supported.
fn plain(data: &Secret) -> SaslOutcome {
    let d = data.expose();
    let Some(first) = memchr::memchr(0, d) else {
        return SaslOutcome::Failed;
    };
    let Some(second) = memchr::memchr(0, &d[first + 1..]).map(|i| i + first + 1) else {
        return SaslOutcome::Failed;
    };
    let authzid = &d[..first];
    let authcid = &d[first + 1..second];
    let passwd = &d[second + 1..];
    if memchr::memchr(0, passwd).is_some()
        || authcid.len() > 255
        || authzid.len() > 255
        || passwd.len() > 255
        || (!authzid.is_empty() && authzid != authcid)
    {
        return SaslOutcome::Failed;
    }
    match username(authcid) {
        Some(user) => SaslOutcome::VerifyPassword {
            user,
            password: Secret::new(data.expose_bytes().slice(second + 1..)),
        },
        None => SaslOutcome::Failed,
    }
}

/// Whether `digest` (hex, any case) is HMAC-MD5(secret, challenge) (RFC 2195).
pub(crate) fn cram_md5_matches(secret: &[u8], challenge: &[u8], digest: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = <Hmac<md5::Md5> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(challenge);
    let expected = crate::types::hex_lower(&mac.finalize().into_bytes());
    super::constant_time_eq(expected.as_bytes(), &digest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(s: &str) -> alloc::vec::Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    /// Runs the server side of an RFC example: the client's messages, the
    /// server nonce of the example, the keys derived from the password.
    fn rfc_exchange(
        mech: SaslMechanism,
        client_first: &str,
        server_nonce: &str,
        salt: &str,
        client_final: &str,
    ) -> (String, String) {
        let hash = mech.scram_hash().unwrap();
        let (_, out) = SaslExchange::start(
            mech,
            Some(Secret::new(client_first.to_owned())),
            Bytes::new(),
        );
        let SaslOutcome::ScramKeys { user, start } = out else {
            panic!("{out:?}");
        };
        assert_eq!(user.as_str(), "user");
        let keys = ScramKeys::from_password(hash, "pencil", &b64(salt), 4096).unwrap();
        let (mut ex, out) =
            SaslExchange::scram_server_first(user, start, Some(keys), server_nonce, 1, None);
        let SaslOutcome::Challenge(server_first) = out else {
            panic!("{out:?}");
        };
        let out = ex.step(Secret::new(client_final.to_owned()));
        let SaslOutcome::Challenge(server_final) = out else {
            panic!("{out:?}");
        };
        let out = ex.step(Secret::default());
        assert!(matches!(out, SaslOutcome::Authenticated { .. }), "{out:?}");
        (
            String::from_utf8(server_first.to_vec()).unwrap(),
            String::from_utf8(server_final.to_vec()).unwrap(),
        )
    }

    #[test]
    fn rfc5802_scram_sha1_example_server_side() {
        let (first, last) = rfc_exchange(
            SaslMechanism::ScramSha1,
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            "QSXCR+Q6sek8bf92",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        );
        assert_eq!(
            first,
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        assert_eq!(last, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn rfc7677_scram_sha256_example_server_side() {
        let (first, last) = rfc_exchange(
            SaslMechanism::ScramSha256,
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        );
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn scram_client_first_rules() {
        let first = |s: &str| {
            scram_first(
                ScramHash::Sha256,
                Binding::None {
                    plus_offered: false,
                },
                s.as_bytes(),
            )
        };
        assert!(matches!(
            first("n,,n=user,r=abc"),
            SaslOutcome::ScramKeys { .. }
        ));
        // The client could bind a channel but thinks the server cannot.
        assert!(matches!(
            first("y,,n=user,r=abc"),
            SaslOutcome::ScramKeys { .. }
        ));
        // Acting as oneself is allowed, as someone else not.
        assert!(matches!(
            first("n,a=user,n=user,r=abc"),
            SaslOutcome::ScramKeys { .. }
        ));
        assert!(matches!(
            first("n,a=root,n=user,r=abc"),
            SaslOutcome::Failed
        ));
        // Channel binding on a mechanism without it, a mandatory extension,
        // a bad escape, a missing nonce.
        assert!(matches!(
            first("p=tls-unique,,n=user,r=abc"),
            SaslOutcome::Failed
        ));
        assert!(matches!(
            first("n,,m=ext,n=user,r=abc"),
            SaslOutcome::Failed
        ));
        assert!(matches!(first("n,,n=us=2Der,r=abc"), SaslOutcome::Failed));
        assert!(matches!(first("n,,n=user"), SaslOutcome::Failed));
        assert!(matches!(first("n,,n=user,r="), SaslOutcome::Failed));
        // Escaped names are unescaped.
        match first("n,,n=a=3Db=2Cc,r=abc") {
            SaslOutcome::ScramKeys { user, .. } => assert_eq!(user.as_str(), "a=b,c"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scram_wrong_proof_nonce_or_binding_fails() {
        let start = || {
            let (_, out) = SaslExchange::start(
                SaslMechanism::ScramSha256,
                Some(Secret::new("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")),
                Bytes::new(),
            );
            let SaslOutcome::ScramKeys { user, start } = out else {
                panic!()
            };
            let keys = ScramKeys::from_password(
                ScramHash::Sha256,
                "pencil",
                &b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
                4096,
            )
            .unwrap();
            SaslExchange::scram_server_first(
                user,
                start,
                Some(keys),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                1,
                None,
            )
            .0
        };
        let good_nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        for bad in [
            // Another proof.
            alloc::format!("c=biws,r={good_nonce},p=AHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            // Another nonce.
            "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".into(),
            // Another GS2 header echoed.
            alloc::format!("c=eSws,r={good_nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            // No proof.
            alloc::format!("c=biws,r={good_nonce}"),
        ] {
            let mut ex = start();
            assert!(
                matches!(ex.step(Secret::new(bad.clone())), SaslOutcome::Failed),
                "{bad}"
            );
        }
        // An unknown user gets decoy keys: the same exchange, then failure.
        let (_, out) = SaslExchange::start(
            SaslMechanism::ScramSha256,
            Some(Secret::new("n,,n=nobody,r=abc")),
            Bytes::new(),
        );
        let SaslOutcome::ScramKeys { user, start } = out else {
            panic!()
        };
        let (mut ex, out) = SaslExchange::scram_server_first(user, start, None, "xyz", 9, None);
        assert!(matches!(out, SaslOutcome::Challenge(ref c) if c.starts_with(b"r=abcxyz,s=")));
        let out = ex.step(Secret::new(
            "c=biws,r=abcxyz,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        ));
        assert!(matches!(out, SaslOutcome::Failed));
    }

    #[test]
    fn machine_decoys_from_the_deployment_secret_do_not_change_per_connection() {
        use crate::scram::DeploymentSecret;
        let secret = DeploymentSecret::new([3; 32]);
        let server_first = |random: u64, secret: Option<&DeploymentSecret>| {
            let (_, out) = SaslExchange::start(
                SaslMechanism::ScramSha256,
                Some(Secret::new("n,,n=nobody,r=abc")),
                Bytes::new(),
            );
            let SaslOutcome::ScramKeys { user, start } = out else {
                panic!()
            };
            let (_, out) =
                SaslExchange::scram_server_first(user, start, None, "xyz", random, secret);
            let SaslOutcome::Challenge(c) = out else {
                panic!()
            };
            String::from_utf8(c.to_vec()).unwrap()
        };
        let a = server_first(1, Some(&secret));
        assert_eq!(a, server_first(2, Some(&secret)));
        assert!(a.ends_with(",i=4096"), "{a}");
        // The salt is the one a derived user's would be.
        let salt = base64::engine::general_purpose::STANDARD.encode(secret.salt("nobody"));
        assert!(a.contains(&alloc::format!(",s={salt},")), "{a}");
    }
}
