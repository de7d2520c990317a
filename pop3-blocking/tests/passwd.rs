//! The passwd-file user database.

use pop3_blocking::passwd::{LineProblem, PasswdError, PasswdFile};
use pop3_proto::scram::ScramKeys;
use pop3_proto::types::Secret;

/// `openssl passwd -6 -salt saltsalt secret`
const SHA512_SECRET: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
/// `openssl passwd -5 -salt saltsalt secret`
const SHA256_SECRET: &str = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";
/// glibc `crypt("secret", "$6$rounds=10000$saltsalt$")`
const SHA512_ROUNDS_SECRET: &str = "$6$rounds=10000$saltsalt$WowrPBpEDVlCoruBosYlrZycTCx3//TyDHYqEhX9DUHHt0XTztUqzQDDUuvUGRA8aUe9p55hcAxeGcu58sm3u.";
/// `openssl passwd -6 -salt saltsalt 'pass:with spaces'`
const SHA512_COLON: &str = "$6$saltsalt$emdTNTikSkMvxQISAhPMdJeKouxMjbt2Fe6Jzfme9TXoovVUxtvcnvK4UUaS3lcaHQtEK92CU4cWu7EqSfMk.1";
/// The reference `argon2` tool: `echo -n secret | argon2 saltsaltsalt -id -t 2 -m 10 -p 1 -e`
const ARGON2ID_SECRET: &str =
    "$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0$RGrC2kghhmdFPTu+VWYImMCAKqufCVt9PjEVxccoErs";
/// The same with `-i`.
const ARGON2I_SECRET: &str =
    "$argon2i$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0$Sco+PyWo9EHG/q2z71SS5BbVLkBzuEAHkIvicdoQX+A";

/// `doveadm pw -s SCRAM-SHA-256 -p secret` (Dovecot 2.3).
const DOVEADM_SCRAM_SHA256: &str = "{SCRAM-SHA-256}4096,BXlOE1p6JoeiFnkD9ogyoQ==,4i7fUBleYPKXBGlKwEq/8UEelRgTtAF20dvvSHHWQfk=,pYdAJYpbN39FVfVX/EH3dfIMQj4zePc0sFZ2KAT5zrE=";
/// `doveadm pw -s SCRAM-SHA-1 -p secret`.
const DOVEADM_SCRAM_SHA1: &str = "{SCRAM-SHA-1}4096,dyCLsjRAN0ezboeM1ngZFw==,x9soDW0Oi/a+VoLj4WGbcyFuH4k=,+On8n0oTFvBo/0z1/g712RIzhj8=";

fn s(text: &str) -> Secret {
    Secret::new(text.to_owned())
}

fn problem(text: &str) -> (usize, LineProblem) {
    match PasswdFile::parse(text) {
        Err(PasswdError::Line { line, problem }) => (line, problem),
        other => panic!("expected a line error for {text:?}, got {other:?}"),
    }
}

#[test]
fn plain_and_cleartext() {
    let users =
        PasswdFile::parse("alice:{PLAIN}wonderland\nbob:{cleartext}builder\ncarol:{Plain}p a:ss\n")
            .unwrap();
    assert!(users.verify("alice", &s("wonderland")));
    assert!(users.verify("bob", &s("builder")));
    // The password field ends at the next ':'.
    assert!(users.verify("carol", &s("p a")));
    for wrong in ["", "wonderlan", "wonderland ", "Wonderland", "wonderlandx"] {
        assert!(!users.verify("alice", &s(wrong)), "{wrong:?}");
    }
    assert!(!users.verify("alice", &s("builder")));
    assert_eq!(
        users.shared_secret("alice").unwrap().expose(),
        b"wonderland"
    );
    assert_eq!(users.shared_secret("bob").unwrap().expose(), b"builder");
    assert!(users.shared_secret("nobody").is_none());
    let forms = users.credential_forms();
    assert!(forms.password);
    assert!(forms.shared_secret);
}

#[test]
fn unknown_user_never_matches() {
    let users = PasswdFile::parse("alice:{PLAIN}wonderland\n").unwrap();
    assert!(!users.verify("bob", &s("wonderland")));
    assert!(!users.verify("", &s("")));
    assert!(!users.verify("Alice", &s("wonderland")));
    assert!(!users.contains("bob"));
    assert!(users.contains("alice"));
    assert!(!PasswdFile::parse("").unwrap().verify("x", &s("")));
}

#[test]
fn sha512_crypt_known_answers() {
    let text = format!(
        "a:{{SHA512-CRYPT}}{SHA512_SECRET}\n\
         b:{{sha512-crypt}}{SHA512_ROUNDS_SECRET}:1000:1000::/home/b:/bin/false:userdb_quota=1G\n\
         c:{{SHA256-CRYPT}}{SHA256_SECRET}\n\
         d:{{SHA512-CRYPT}}{SHA512_COLON}\n"
    );
    let users = PasswdFile::parse(&text).unwrap();
    for user in ["a", "b", "c"] {
        assert!(users.verify(user, &s("secret")), "{user}");
        assert!(!users.verify(user, &s("Secret")), "{user}");
        assert!(!users.verify(user, &s("")), "{user}");
        assert!(users.shared_secret(user).is_none());
    }
    assert!(users.verify("d", &s("pass:with spaces")));
    assert!(!users.credential_forms().shared_secret);
    assert!(users.credential_forms().password);
}

#[test]
fn sha512_crypt_generated_by_the_crate() {
    use sha_crypt::{PasswordHasher, ShaCrypt};
    let hash = ShaCrypt::default()
        .hash_password_with_salt(b"correct horse", b"0123456789abcdef")
        .unwrap();
    let hash = hash.as_str();
    assert!(hash.starts_with("$6$"));
    let users = PasswdFile::parse(&format!("eve:{{SHA512-CRYPT}}{hash}\n")).unwrap();
    assert!(users.verify("eve", &s("correct horse")));
    assert!(!users.verify("eve", &s("correct horse battery")));
}

#[test]
fn crypt_and_no_scheme() {
    let text = format!(
        "a:{{CRYPT}}{SHA512_SECRET}\n\
         b:{SHA512_SECRET}\n\
         c:{SHA256_SECRET}\n\
         d:secret\n\
         e:{{CRYPT}}saHW9GdxihkGQ\n"
    );
    let users = PasswdFile::parse(&text).unwrap();
    assert!(users.verify("a", &s("secret")));
    assert!(users.verify("b", &s("secret")));
    assert!(users.verify("c", &s("secret")));
    // No scheme means CRYPT, never plaintext.
    assert!(!users.verify("d", &s("secret")));
    assert!(users.shared_secret("d").is_none());
    // DES crypt is not supported: never matches.
    assert!(!users.verify("e", &s("secret")));
    let mut unusable: Vec<_> = users.unusable().collect();
    unusable.sort();
    assert_eq!(unusable, [(4, "d"), (5, "e")]);
}

#[test]
fn argon2_known_answers_and_generated() {
    use argon2::password_hash::PasswordHasher;
    let generated = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 2, 1, None).unwrap(),
    )
    .hash_password_with_salt(b"tanstaaf", b"0123456789abcdef")
    .unwrap()
    .to_string();
    assert!(generated.starts_with("$argon2id$"));
    let text = format!(
        "a:{{ARGON2ID}}{ARGON2ID_SECRET}\n\
         b:{{ARGON2I}}{ARGON2I_SECRET}\n\
         c:{{argon2id}}{generated}\n"
    );
    let users = PasswdFile::parse(&text).unwrap();
    assert!(users.verify("a", &s("secret")));
    assert!(!users.verify("a", &s("secreT")));
    assert!(users.verify("b", &s("secret")));
    assert!(!users.verify("b", &s("")));
    assert!(users.verify("c", &s("tanstaaf")));
    assert!(!users.verify("c", &s("secret")));
    assert_eq!(users.unusable().count(), 0);
}

#[test]
fn empty_passwords_never_match() {
    let users = PasswdFile::parse("a:\nb::1000\nc:{PLAIN}\nd:{PLAIN}x\n").unwrap();
    for user in ["a", "b", "c"] {
        assert!(!users.verify(user, &s("")), "{user}");
        assert!(users.shared_secret(user).is_none(), "{user}");
    }
    // Not every user has a usable plaintext: no shared-secret mechanisms.
    assert!(!users.credential_forms().shared_secret);
    assert_eq!(users.len(), 4);
}

#[test]
fn unknown_schemes_are_listed_and_never_match() {
    let users = PasswdFile::parse(
        "# header\nold:{SSHA}c2FsdGVkaGFzaA==\nblf:{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui\nok:{PLAIN}x\n",
    )
    .unwrap();
    assert!(!users.verify("old", &s("c2FsdGVkaGFzaA==")));
    assert!(!users.verify("old", &s("{SSHA}c2FsdGVkaGFzaA==")));
    let mut unusable: Vec<_> = users.unusable().collect();
    unusable.sort();
    assert_eq!(unusable, [(2, "old"), (3, "blf")]);
    assert!(!users.credential_forms().shared_secret);
}

#[test]
fn comments_blank_lines_and_crlf() {
    let users = PasswdFile::parse(
        "# users\r\n\r\n   \n  # indented comment\r\nalice:{PLAIN}wonderland\r\n\tbob-not-a-comment\n",
    );
    // The last line is not a comment and has no password field.
    assert_eq!(
        users.unwrap_err().line(),
        Some(6),
        "a tab-led line is not a comment"
    );
    let users = PasswdFile::parse(
        "# users\r\n\r\n   \n  # indented comment\r\nalice:{PLAIN}wonderland\r\n",
    )
    .unwrap();
    assert_eq!(users.len(), 1);
    assert!(users.verify("alice", &s("wonderland")));
    assert_eq!(users.users().collect::<Vec<_>>(), ["alice"]);
    assert!(PasswdFile::parse("").unwrap().is_empty());
    assert!(PasswdFile::parse("# nothing\n").unwrap().is_empty());
    // No users: nothing to offer APOP to.
    assert!(
        !PasswdFile::parse("")
            .unwrap()
            .credential_forms()
            .shared_secret
    );
}

#[test]
fn malformed_lines_have_line_numbers() {
    assert_eq!(
        problem("a:{PLAIN}x\nbob\n"),
        (2, LineProblem::MissingPassword)
    );
    assert_eq!(problem("# c\n:{PLAIN}x\n"), (2, LineProblem::EmptyUser));
    assert_eq!(
        problem("a:{PLAIN}x\n\na:{PLAIN}y\n"),
        (3, LineProblem::DuplicateUser)
    );
    assert_eq!(problem("a:{PLAIN\n"), (1, LineProblem::UnterminatedScheme));
    assert_eq!(
        problem("\n\n\na:{SHA512-CRYPT}not-a-hash\n"),
        (4, LineProblem::MalformedHash)
    );
    assert_eq!(
        problem(&format!("a:{{SHA512-CRYPT}}{SHA256_SECRET}\n")),
        (1, LineProblem::MalformedHash)
    );
    assert_eq!(
        problem("a:{SHA512-CRYPT}$6$salt\n"),
        (1, LineProblem::MalformedHash)
    );
    assert_eq!(
        problem("a:{SHA512-CRYPT}$6$rounds=12$salt$hash\n"),
        (1, LineProblem::MalformedHash)
    );
    assert_eq!(
        problem("a:{ARGON2ID}$argon2id$v=19$m=1024,t=2,p=1$c2FsdA\n"),
        (1, LineProblem::MalformedHash)
    );
    assert_eq!(
        problem(
            "a:{ARGON2ID}$argon2i$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0$Sco+PyWo9EHG/q2z71SS5BbVLkBzuEAHkIvicdoQX+A\n"
        ),
        (1, LineProblem::MalformedHash)
    );
    assert_eq!(
        problem(
            "a:{ARGON2ID}$argon2id$v=19$m=bad$c2FsdHNhbHRzYWx0$RGrC2kghhmdFPTu+VWYImMCAKqufCVt9PjEVxccoErs\n"
        ),
        (1, LineProblem::MalformedHash)
    );
    let err = PasswdFile::parse("a\n").unwrap_err();
    assert_eq!(err.to_string(), "passwd-file line 1: no password field");
}

#[test]
fn unsafe_user_names_are_refused() {
    for (text, line) in [
        ("../x:{PLAIN}p\n", 1),
        ("..:{PLAIN}p\n", 1),
        (".:{PLAIN}p\n", 1),
        (".hidden:{PLAIN}p\n", 1),
        ("a/b:{PLAIN}p\n", 1),
        ("ok:{PLAIN}p\na\\b:{PLAIN}p\n", 2),
        ("a\u{0}b:{PLAIN}p\n", 1),
        ("a b:{PLAIN}p\n", 1),
        (" a:{PLAIN}p\n", 1),
    ] {
        assert_eq!(problem(text), (line, LineProblem::BadUser), "{text:?}");
    }
    let long = "u".repeat(256);
    assert_eq!(
        problem(&format!("{long}:{{PLAIN}}p\n")),
        (1, LineProblem::BadUser)
    );
    // Addresses are fine.
    let users = PasswdFile::parse("alice@example.org:{PLAIN}p\n").unwrap();
    assert!(users.verify("alice@example.org", &s("p")));
}

#[test]
fn load_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::fs::write(
        &path,
        format!("alice:{{PLAIN}}wonderland\nbob:{{SHA512-CRYPT}}{SHA512_SECRET}\n"),
    )
    .unwrap();
    let users = PasswdFile::load(&path).unwrap();
    assert!(users.verify("alice", &s("wonderland")));
    assert!(users.verify("bob", &s("secret")));

    std::fs::write(&path, b"alice:{PLAIN}ok\nb\xffb:{PLAIN}x\n").unwrap();
    match PasswdFile::load(&path) {
        Err(PasswdError::Line { line, problem }) => {
            assert_eq!((line, problem), (2, LineProblem::NotUtf8));
        }
        other => panic!("{other:?}"),
    }

    let missing = PasswdFile::load(dir.path().join("absent")).unwrap_err();
    assert!(matches!(missing, PasswdError::Io(_)));
    assert_eq!(missing.line(), None);
    assert!(std::error::Error::source(&missing).is_some());
}

#[test]
fn debug_output_hides_secrets() {
    let users = PasswdFile::parse("alice:{PLAIN}wonderland\n").unwrap();
    let debug = format!("{users:?}");
    assert!(debug.contains("alice"));
    assert!(!debug.contains("wonderland"));
}

#[test]
fn single_plain_user() {
    let users = PasswdFile::single_plain("demo", s("a:b\nc")).unwrap();
    assert!(users.verify("demo", &s("a:b\nc")));
    assert!(!users.verify("demo", &s("a:b")));
    assert!(!users.verify("other", &s("a:b\nc")));
    assert_eq!(users.shared_secret("demo").unwrap().expose(), b"a:b\nc");
    assert!(users.credential_forms().shared_secret);

    let locked = PasswdFile::single_plain("demo", s("")).unwrap();
    assert!(!locked.verify("demo", &s("")));
    assert!(!locked.credential_forms().shared_secret);

    for (user, expected) in [
        ("", LineProblem::EmptyUser),
        ("a:b", LineProblem::BadUser),
        ("..", LineProblem::BadUser),
        ("a/b", LineProblem::BadUser),
    ] {
        match PasswdFile::single_plain(user, s("x")) {
            Err(PasswdError::Line { line: 1, problem }) => assert_eq!(problem, expected),
            other => panic!("{user:?}: {other:?}"),
        }
    }
}

#[test]
fn dovecot_scram_entries_are_the_keys_of_their_password() {
    use pop3_proto::scram::ScramHash;
    let users = PasswdFile::parse(&format!(
        "sha256:{DOVEADM_SCRAM_SHA256}\nsha1:{DOVEADM_SCRAM_SHA1}::::::\n"
    ))
    .unwrap();
    for (user, hash) in [("sha256", ScramHash::Sha256), ("sha1", ScramHash::Sha1)] {
        let keys = users.scram_keys(user, hash).unwrap();
        assert_eq!(keys.iterations(), 4096);
        let derived = ScramKeys::from_password(hash, "secret", keys.salt(), 4096).unwrap();
        assert_eq!(
            derived, keys,
            "{user}: doveadm's keys are those of \"secret\""
        );
        // The keys check a plaintext password too (USER/PASS, PLAIN, LOGIN).
        assert!(users.verify(user, &s("secret")), "{user}");
        assert!(!users.verify(user, &s("wrong")), "{user}");
        // No shared secret: no APOP or CRAM-MD5.
        assert!(users.shared_secret(user).is_none());
    }
    assert!(users.scram_keys("sha256", ScramHash::Sha1).is_none());
    // An unknown user gets decoy keys shaped like the stored ones.
    let real = users.scram_keys("sha256", ScramHash::Sha256).unwrap();
    let decoy = users.scram_keys("nobody", ScramHash::Sha256).unwrap();
    assert_eq!(decoy.iterations(), real.iterations());
    assert_eq!(decoy.salt().len(), real.salt().len());
    assert_eq!(
        users.scram_keys("nobody", ScramHash::Sha256).unwrap(),
        decoy
    );
    // Each SCRAM is offered only if every user can do it.
    let forms = users.credential_forms();
    assert!(forms.password && !forms.shared_secret && !forms.scram_sha1 && !forms.scram_sha256);
}

#[test]
fn plain_users_serve_every_mechanism_and_scram_forms_follow_the_users() {
    use pop3_proto::scram::ScramHash;
    let plain = PasswdFile::parse("a:{PLAIN}secret\nb:{CLEARTEXT}other\n").unwrap();
    let forms = plain.credential_forms();
    assert!(forms.password && forms.shared_secret && forms.scram_sha1 && forms.scram_sha256);
    // Keys derived from the plaintext, stable from one call to the next.
    let k1 = plain.scram_keys("a", ScramHash::Sha256).unwrap();
    assert_eq!(plain.scram_keys("a", ScramHash::Sha256).unwrap(), k1);
    assert_ne!(plain.scram_keys("b", ScramHash::Sha256).unwrap(), k1);

    let mixed =
        PasswdFile::parse(&format!("a:{{PLAIN}}secret\nb:{DOVEADM_SCRAM_SHA256}\n")).unwrap();
    let forms = mixed.credential_forms();
    assert!(forms.scram_sha256 && !forms.scram_sha1 && !forms.shared_secret);

    let hashed = PasswdFile::parse(&format!(
        "a:{{PLAIN}}secret\nb:{DOVEADM_SCRAM_SHA256}\nc:{{SHA512-CRYPT}}{SHA512_SECRET}\n"
    ))
    .unwrap();
    let forms = hashed.credential_forms();
    assert!(forms.password && !forms.scram_sha256 && !forms.scram_sha1);
}

#[test]
fn malformed_scram_entries_have_line_numbers() {
    for bad in [
        "{SCRAM-SHA-256}4096,BXlOE1p6JoeiFnkD9ogyoQ==,4i7fUBleYPKXBGlKwEq/8UEelRgTtAF20dvvSHHWQfk=",
        "{SCRAM-SHA-256}4096,BXlOE1p6JoeiFnkD9ogyoQ==,!!!,pYdAJYpbN39FVfVX/EH3dfIMQj4zePc0sFZ2KAT5zrE=",
        "{SCRAM-SHA-256}many,BXlOE1p6JoeiFnkD9ogyoQ==,4i7fUBleYPKXBGlKwEq/8UEelRgTtAF20dvvSHHWQfk=,pYdAJYpbN39FVfVX/EH3dfIMQj4zePc0sFZ2KAT5zrE=",
        // Fewer iterations than RFC 7677 allows.
        "{SCRAM-SHA-256}1000,BXlOE1p6JoeiFnkD9ogyoQ==,4i7fUBleYPKXBGlKwEq/8UEelRgTtAF20dvvSHHWQfk=,pYdAJYpbN39FVfVX/EH3dfIMQj4zePc0sFZ2KAT5zrE=",
        // SHA-1 keys under the SHA-256 scheme.
        "{SCRAM-SHA-256}4096,dyCLsjRAN0ezboeM1ngZFw==,x9soDW0Oi/a+VoLj4WGbcyFuH4k=,+On8n0oTFvBo/0z1/g712RIzhj8=",
    ] {
        assert_eq!(
            problem(&format!("ok:{{PLAIN}}x\nbad:{bad}\n")),
            (2, LineProblem::MalformedHash),
            "{bad}"
        );
    }
}

fn secret(octet: u8) -> pop3_proto::scram::DeploymentSecret {
    pop3_proto::scram::DeploymentSecret::new([octet; 32])
}

#[test]
fn scram_unknown_user_looks_like_a_plain_user_and_keeps_its_salt() {
    use pop3_proto::scram::ScramHash;
    let users = PasswdFile::parse("alice:{PLAIN}wonderland\n")
        .unwrap()
        .with_deployment_secret(secret(1));
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let real = users.scram_keys("alice", hash).unwrap();
        let decoy = users.scram_keys("nobody", hash).unwrap();
        // The same on every request (every connection), the same shape as
        // a real user's.
        assert_eq!(users.scram_keys("nobody", hash).unwrap(), decoy);
        assert_eq!(decoy.iterations(), real.iterations());
        assert_eq!(decoy.salt().len(), real.salt().len());
        assert_ne!(decoy.salt(), real.salt());
        // No password a client could try matches it.
        for password in ["wonderland", "", "nobody", "password"] {
            let tried = ScramKeys::from_password(hash, password, decoy.salt(), 4096).unwrap();
            assert_ne!(tried.stored_key(), decoy.stored_key(), "{password}");
        }
    }
    // Reading the file again with the same secret (a restart): the same.
    let again = PasswdFile::parse("alice:{PLAIN}wonderland\n")
        .unwrap()
        .with_deployment_secret(secret(1));
    assert_eq!(
        again.scram_keys("nobody", ScramHash::Sha256),
        users.scram_keys("nobody", ScramHash::Sha256)
    );
}

#[test]
fn scram_plain_user_salt_comes_from_the_deployment_secret_not_the_name() {
    use pop3_proto::scram::ScramHash;
    let one = PasswdFile::parse("alice:{PLAIN}wonderland\n")
        .unwrap()
        .with_deployment_secret(secret(1));
    let two = PasswdFile::parse("alice:{PLAIN}wonderland\n")
        .unwrap()
        .with_deployment_secret(secret(2));
    let a = one.scram_keys("alice", ScramHash::Sha256).unwrap();
    let b = two.scram_keys("alice", ScramHash::Sha256).unwrap();
    // Two deployments, two salts, for one name and one password.
    assert_ne!(a.salt(), b.salt());
    for keys in [&a, &b] {
        assert!(
            !keys.salt().windows(5).any(|w| w == b"alice"),
            "the name shows in the salt"
        );
        assert_ne!(keys.salt(), b"pop3-passwd-file:alice");
        // Still the keys of the password.
        let derived =
            ScramKeys::from_password(ScramHash::Sha256, "wonderland", keys.salt(), 4096).unwrap();
        assert_eq!(&derived, keys);
    }
    // Unknown users' decoys differ between deployments too.
    assert_ne!(
        one.scram_keys("nobody", ScramHash::Sha256).unwrap().salt(),
        two.scram_keys("nobody", ScramHash::Sha256).unwrap().salt()
    );
}
