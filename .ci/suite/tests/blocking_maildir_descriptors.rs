//! A session's descriptors stay few: a `RETR` on a Maildir of many small
//! messages, served on the session's thread, leaves no message file open
//! that was read to its end.

use std::net::TcpListener;

use pop3_blocking::server::{Pop3Server, Security};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::{Inline, OffloadStore};

#[path = "suite/descriptors.rs"]
mod descriptors;

#[test]
fn a_retr_on_a_maildir_of_small_messages_leaves_no_file_open_on_threads() {
    let (_root, store) = descriptors::small_messages();
    let store: OffloadStore<_, Inline> = OffloadStore::new(store);
    let server = Pop3Server::new(store, ServerConfig::default().allow_plaintext_auth(true));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = {
        let server = server.clone();
        std::thread::spawn(move || server.serve(listener, Security::Plain))
    };
    let (before, after) = descriptors::around_retr(addr);
    assert!(
        after <= before + descriptors::MOST_HELD_AFTER_RETR,
        "{before} descriptors before RETR 1, {after} after"
    );
    server.shutdown();
    serving.join().unwrap().unwrap();
}
