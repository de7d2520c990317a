//! Logging in gives no free guesses: a cancel after the store's verdict is
//! a failed login, and every connection has a cap on login attempts of any
//! kind.

mod server_support;

use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pop3_proto::server::{CloseReason, ServerConfig, State, StoreRequest};
use pop3_proto::store::TokenValidator;
use server_support::*;

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

const FAILED: &str = "-ERR [AUTH] Authentication failed.\r\n";

/// A store whose token validator counts its calls and accepts nothing.
fn counting_oauth(config: impl Fn(ServerConfig) -> ServerConfig) -> (Harness, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let store = standard_store().with_token_validator(TokenValidator::new(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        false
    }));
    let config = config(ServerConfig::for_store(&store).allow_plaintext_auth(true));
    let mut h = Harness::new(config, plain(), store);
    h.take_output();
    // Timers fire only when the test moves the clock.
    h.auto_timer = Duration::ZERO;
    (h, calls)
}

/// Checks that the reply to `line` is a failed login held for the whole
/// failure delay (1 s by default) and counted as a bad command.
fn assert_failed_login_after_delay(h: &mut Harness, line: &str, bad_before: u32) {
    assert_eq!(h.cmd(line), "", "{line}: answered before the delay");
    h.advance(Duration::from_millis(999));
    assert_eq!(h.take_output(), "", "{line}: answered before the delay");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.take_output(), FAILED, "{line}");
    assert_eq!(h.server.summary().bad_commands, bad_before + 1, "{line}");
    assert_eq!(h.server.state(), State::Authorization);
}

#[test]
fn oauthbearer_cancel_after_the_error_challenge_is_a_delayed_counted_failure() {
    let (mut h, calls) = counting_oauth(|c| c);
    let bad = b"n,a=alice,\x01auth=Bearer guess\x01\x01";
    let r = h.cmd(&format!("AUTH OAUTHBEARER {}", b64(bad)));
    assert!(r.starts_with("+ "), "{r}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_failed_login_after_delay(&mut h, "*", 0);
}

#[test]
fn xoauth2_cancel_after_the_error_challenge_is_a_delayed_counted_failure() {
    let (mut h, _) = counting_oauth(|c| c);
    let bad = b"user=alice\x01auth=Bearer guess\x01\x01";
    let r = h.cmd(&format!("AUTH XOAUTH2 {}", b64(bad)));
    assert!(r.starts_with("+ "), "{r}");
    assert_failed_login_after_delay(&mut h, "*", 0);
}

#[test]
fn oauth_malformed_answer_to_the_error_challenge_is_a_delayed_counted_failure() {
    let (mut h, _) = counting_oauth(|c| c);
    let bad = b"n,a=alice,\x01auth=Bearer guess\x01\x01";
    h.cmd(&format!("AUTH OAUTHBEARER {}", b64(bad)));
    assert_failed_login_after_delay(&mut h, "not base64!", 0);
}

#[test]
fn token_guesses_by_cancelling_end_at_the_bad_command_limit() {
    let (mut h, calls) = counting_oauth(|c| c);
    let bad = b"n,a=alice,\x01auth=Bearer guess\x01\x01";
    for round in 0..3 {
        let r = h.cmd(&format!("AUTH OAUTHBEARER {}", b64(bad)));
        assert!(r.starts_with("+ "), "round {round}: {r}");
        h.cmd("*");
        h.advance(Duration::from_secs(1));
        assert!(h.take_output().starts_with(FAILED), "round {round}");
    }
    assert!(h.closed);
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::TooManyBadCommands)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn scram_cancel_after_server_first_is_a_delayed_counted_failure() {
    let mut h = Harness::standard();
    h.take_output();
    h.auto_timer = Duration::ZERO;
    let r = h.cmd(&format!(
        "AUTH SCRAM-SHA-256 {}",
        b64(b"n,,n=alice,r=abcdefgh")
    ));
    assert!(r.starts_with("+ "), "{r}");
    assert!(
        h.requests
            .iter()
            .any(|q| matches!(q, StoreRequest::ScramKeys { .. }))
    );
    assert_failed_login_after_delay(&mut h, "*", 0);
}

#[test]
fn scram_malformed_client_final_is_a_delayed_counted_failure() {
    let mut h = Harness::standard();
    h.take_output();
    h.auto_timer = Duration::ZERO;
    h.cmd(&format!(
        "AUTH SCRAM-SHA-256 {}",
        b64(b"n,,n=alice,r=abcdefgh")
    ));
    assert_failed_login_after_delay(&mut h, "@@@", 0);
}

#[test]
fn over_long_answer_after_the_verdict_is_a_delayed_counted_failure() {
    let (mut h, _) = counting_oauth(|c| c);
    let bad = b"n,a=alice,\x01auth=Bearer guess\x01\x01";
    h.cmd(&format!("AUTH OAUTHBEARER {}", b64(bad)));
    let long = "A".repeat(70 * 1024);
    assert_failed_login_after_delay(&mut h, &long, 0);
}

#[test]
fn cancel_before_the_store_is_asked_is_not_a_failure_but_is_an_attempt() {
    let mut h = Harness::standard();
    h.take_output();
    h.auto_timer = Duration::ZERO;
    assert_eq!(h.cmd("AUTH PLAIN"), "+ \r\n");
    // Answered at once, no delay, nothing counted against the client but
    // the attempt.
    assert_eq!(h.cmd("*"), "-ERR Authentication cancelled.\r\n");
    assert_eq!(h.server.summary().bad_commands, 0);
    assert_eq!(h.server.summary().login_attempts, 1);
    assert!(h.requests.is_empty());
    assert_eq!(h.server.state(), State::Authorization);
    h.login("alice", "secret");
    assert_eq!(h.server.summary().login_attempts, 2);
}

#[test]
fn login_attempts_are_capped_per_connection_whatever_the_mechanism() {
    // No bad-command limit: only the attempt cap stops the client.
    let config = test_config().max_bad_commands(0, 0);
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    // Five attempts of different kinds, each failing or cancelled.
    assert_eq!(h.cmd("AUTH PLAIN"), "+ \r\n");
    assert_eq!(h.cmd("*"), "-ERR Authentication cancelled.\r\n");
    h.cmd("USER alice");
    assert_eq!(h.cmd("PASS wrong"), FAILED);
    assert_eq!(h.cmd("APOP alice 0123456789abcdef0123456789abcdef"), FAILED);
    assert_eq!(h.cmd("AUTH LOGIN"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(h.cmd("*"), "-ERR Authentication cancelled.\r\n");
    assert_eq!(
        h.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0no"))),
        FAILED
    );
    assert_eq!(h.server.summary().login_attempts, 5);
    assert!(!h.closed);
    // The sixth, even with the right password, is refused.
    let requests = h.requests.len();
    h.cmd("USER alice");
    assert_eq!(h.cmd("PASS secret"), "-ERR Too many login attempts.\r\n");
    assert!(h.closed);
    assert_eq!(h.requests.len(), requests, "the store was not asked");
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::TooManyLoginAttempts)
    );
}

#[test]
fn login_attempt_cap_is_configurable_and_zero_lifts_it() {
    let config = test_config().max_bad_commands(0, 0).max_login_attempts(1);
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    h.cmd("AUTH LOGIN");
    h.cmd("*");
    assert_eq!(h.cmd("AUTH LOGIN"), "-ERR Too many login attempts.\r\n");
    assert!(h.closed);

    let config = test_config().max_bad_commands(0, 0).max_login_attempts(0);
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    for _ in 0..50 {
        h.cmd("AUTH LOGIN");
        assert_eq!(h.cmd("*"), "-ERR Authentication cancelled.\r\n");
    }
    h.login("alice", "secret");
}

/// The salt and iteration count of the server-first message SCRAM-SHA-256
/// sends `user` on a new connection (with its own randomness) to `store`.
fn scram_salt_and_iterations(
    store: &pop3_proto::store::MemoryStore,
    random: u64,
    user: &str,
) -> (Vec<u8>, String) {
    use base64::Engine as _;
    let ctx =
        pop3_proto::server::ConnectionContext::new(random, false, false).seed([random as u8; 32]);
    let mut h = Harness::new(test_config(), ctx, store.clone());
    h.take_output();
    let first = format!("n,,n={user},r=abcdefgh");
    let r = h.cmd(&format!("AUTH SCRAM-SHA-256 {}", b64(first.as_bytes())));
    let data = r.trim_end().strip_prefix("+ ").expect(&r);
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap();
    let mut salt = None;
    let mut iterations = None;
    for attr in text.split(',') {
        if let Some(s) = attr.strip_prefix("s=") {
            salt = Some(base64::engine::general_purpose::STANDARD.decode(s).unwrap());
        }
        if let Some(i) = attr.strip_prefix("i=") {
            iterations = Some(i.to_owned());
        }
    }
    (salt.unwrap(), iterations.unwrap())
}

#[test]
fn scram_unknown_user_gets_the_same_salt_on_every_connection_shaped_like_a_real_one() {
    let store = standard_store();
    let (salt1, iter1) = scram_salt_and_iterations(&store, 1, "nobody");
    let (salt2, iter2) = scram_salt_and_iterations(&store, 0xdead_beef, "nobody");
    assert_eq!(
        salt1, salt2,
        "an unknown user's salt changes per connection"
    );
    assert_eq!(iter1, iter2);
    let (real, real_iter) = scram_salt_and_iterations(&store, 1, "alice");
    assert_eq!(iter1, real_iter);
    assert_eq!(salt1.len(), real.len());
    // The real user's salt is stable too, and not made of the name.
    assert_eq!(scram_salt_and_iterations(&store, 7, "alice").0, real);
    assert!(!real.windows(5).any(|w| w == b"alice"));
}

#[test]
fn scram_salts_differ_between_deployments() {
    use pop3_proto::scram::DeploymentSecret;
    let one = standard_store().with_deployment_secret(DeploymentSecret::new([1; 32]));
    let two = standard_store().with_deployment_secret(DeploymentSecret::new([2; 32]));
    for user in ["alice", "nobody"] {
        assert_ne!(
            scram_salt_and_iterations(&one, 1, user).0,
            scram_salt_and_iterations(&two, 1, user).0,
            "{user}"
        );
    }
}

/// RFC 7628 §4.1's message without the authorization identity (`n,,`).
const RFC7628_WITHOUT_AUTHZID: &[u8] = b"n,,\x01host=server.example.com\x01port=143\x01\
auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";

fn owner_harness(validator: TokenValidator) -> Harness {
    let store = standard_store();
    store.add_user("user@example.com", "unused");
    let store = store.with_token_validator(validator);
    let config = ServerConfig::for_store(&store).allow_plaintext_auth(true);
    let mut h = Harness::new(config, plain(), store);
    h.take_output();
    h.auto_timer = Duration::ZERO;
    h
}

fn rfc7628_validator() -> TokenValidator {
    TokenValidator::new(|user, token| {
        user == "user@example.com"
            && token.expose() == b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    })
    .with_owner(|token| {
        (token.expose() == b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==")
            .then(|| "user@example.com".to_owned())
    })
}

#[test]
fn oauthbearer_without_authzid_logs_in_the_user_the_token_was_issued_to() {
    let mut h = owner_harness(rfc7628_validator());
    let r = h.cmd(&format!(
        "AUTH OAUTHBEARER {}",
        b64(RFC7628_WITHOUT_AUTHZID)
    ));
    assert!(r.starts_with("+OK Logged in"), "{r}");
    assert_eq!(
        h.server.user().map(|u| u.as_str()),
        Some("user@example.com")
    );
    assert!(h.requests.iter().any(|q| matches!(
        q,
        StoreRequest::TokenOwner { token }
            if token.expose() == b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    )));
    // The two-step form too.
    let mut h = owner_harness(rfc7628_validator());
    assert_eq!(h.cmd("AUTH OAUTHBEARER"), "+ \r\n");
    let r = h.cmd(&b64(RFC7628_WITHOUT_AUTHZID));
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

#[test]
fn oauthbearer_without_authzid_and_a_token_for_nobody_fails_like_a_bad_token() {
    let no_owner = TokenValidator::new(|_, _| true);
    let unknown_owner = TokenValidator::new(|_, _| true).with_owner(|_| Some("ghost".to_owned()));
    let refused = TokenValidator::new(|_, _| true).with_owner(|_| None);
    for validator in [no_owner, unknown_owner, refused] {
        let mut h = owner_harness(validator);
        let r = h.cmd(&format!(
            "AUTH OAUTHBEARER {}",
            b64(RFC7628_WITHOUT_AUTHZID)
        ));
        assert_eq!(
            r,
            format!("+ {}\r\n", b64(br#"{"status":"invalid_token"}"#))
        );
        assert_failed_login_after_delay(&mut h, "AQ==", 0);
        assert_eq!(h.server.user(), None);
    }
}
