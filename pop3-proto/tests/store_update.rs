//! What a commit tells the store ([`Update`]): the messages to remove and
//! the messages the session retrieved in full with RETR, which a store
//! enforcing `EXPIRE n` records.

mod server_support;

use pop3_proto::response::Expire;
use pop3_proto::server::StoreRequest;
use pop3_proto::store::Update;
use proptest::prelude::*;
use server_support::*;

/// The commit the session asked for, if any.
fn commits(h: &Harness) -> Vec<Update> {
    h.requests
        .iter()
        .filter_map(|r| match r {
            StoreRequest::Commit(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_commit_lists_messages_retrieved_with_retr_and_not_with_top() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    assert!(h.cmd("RETR 3").starts_with("+OK"));
    assert!(h.cmd("TOP 1 99").starts_with("+OK"));
    assert!(h.cmd("DELE 2").starts_with("+OK"));
    assert_eq!(h.cmd("QUIT"), "+OK Logging out.\r\n");
    assert_eq!(commits(&h), [Update::new(vec![1]).with_retrieved(vec![2])]);
    let uids = h.store.retrieved_uids("alice");
    assert_eq!(uids.len(), 1);
    assert_eq!(h.store.message_count("alice"), 2);
}

#[test]
fn rset_unmarks_deletions_but_not_retrievals() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    h.cmd("RETR 1");
    h.cmd("DELE 1");
    h.cmd("RSET");
    h.cmd("RETR 1");
    h.cmd("QUIT");
    assert_eq!(commits(&h), [Update::new(vec![]).with_retrieved(vec![0])]);
    assert_eq!(h.store.message_count("alice"), 3);
}

#[test]
fn a_dropped_connection_commits_nothing_and_records_no_retrieval() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    h.cmd("RETR 1");
    h.cmd("DELE 2");
    h.eof();
    assert!(commits(&h).is_empty(), "{:?}", h.requests);
    assert!(h.store.retrieved_uids("alice").is_empty());
    assert_eq!(h.store.message_count("alice"), 3);
}

#[test]
fn expire_zero_also_lists_the_retrieved_messages_as_deleted() {
    let config = test_config().expire(Some(Expire::Days(0)));
    let mut h = Harness::new(config, plain(), standard_store());
    h.login("alice", "secret");
    h.cmd("RETR 2");
    h.cmd("TOP 3 0");
    h.cmd("QUIT");
    assert_eq!(commits(&h), [Update::new(vec![1]).with_retrieved(vec![1])]);
}

#[derive(Debug, Clone)]
enum Step {
    Retr(usize),
    Top(usize),
    Dele(usize),
    Rset,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4usize).prop_map(Step::Retr),
        (0..4usize).prop_map(Step::Top),
        (0..4usize).prop_map(Step::Dele),
        Just(Step::Rset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the session does, its commit lists exactly the messages it
    /// retrieved with RETR (once each, in order) and those marked since
    /// the last RSET; a session that ends without QUIT commits nothing.
    #[test]
    fn the_commit_lists_exactly_what_the_session_did(
        steps in proptest::collection::vec(step(), 0..16),
        quit in any::<bool>(),
    ) {
        let mut h = Harness::standard();
        h.login("alice", "secret");
        let mut retrieved = [false; 3];
        let mut deleted = [false; 3];
        for s in &steps {
            match *s {
                Step::Retr(i) => {
                    let ok = h.cmd(&format!("RETR {}", i + 1)).starts_with("+OK");
                    prop_assert_eq!(ok, i < 3 && !deleted[i]);
                    if ok {
                        retrieved[i] = true;
                    }
                }
                Step::Top(i) => {
                    h.cmd(&format!("TOP {} 100", i + 1));
                }
                Step::Dele(i) => {
                    if h.cmd(&format!("DELE {}", i + 1)).starts_with("+OK") {
                        deleted[i] = true;
                    }
                }
                Step::Rset => {
                    h.cmd("RSET");
                    deleted = [false; 3];
                }
            }
        }
        let which = |flags: [bool; 3]| -> Vec<usize> { (0..3).filter(|&i| flags[i]).collect() };
        if quit {
            h.cmd("QUIT");
            prop_assert_eq!(
                commits(&h),
                vec![Update::new(which(deleted)).with_retrieved(which(retrieved))]
            );
            let kept_and_retrieved = (0..3).filter(|&i| retrieved[i] && !deleted[i]).count();
            prop_assert_eq!(h.store.retrieved_uids("alice").len(), kept_and_retrieved);
        } else {
            h.eof();
            prop_assert!(commits(&h).is_empty());
            prop_assert!(h.store.retrieved_uids("alice").is_empty());
            prop_assert_eq!(h.store.message_count("alice"), 3);
        }
    }
}
