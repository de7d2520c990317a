//! A session's descriptors stay few: a `RETR` on a Maildir of many small
//! messages, served through [`Unblock`] with its read-ahead, leaves no
//! message file open that was read to its end.

use std::net::TcpListener;

use pop3_async_std::Unblock;
use pop3_async_std::server::{Async, Pop3Server, Security};
use pop3_proto::server::ServerConfig;

#[path = "suite/descriptors.rs"]
mod descriptors;

#[test]
fn a_retr_on_a_maildir_of_small_messages_leaves_no_file_open_on_smol() {
    let (_root, store) = descriptors::small_messages();
    let server = Pop3Server::new(
        Unblock::new(store),
        ServerConfig::default().allow_plaintext_auth(true),
    );
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let serving = {
        let server = server.clone();
        std::thread::spawn(move || smol::block_on(server.serve(listener, Security::Plain)))
    };
    let (before, after) = descriptors::around_retr(addr);
    assert!(
        after <= before + descriptors::MOST_HELD_AFTER_RETR,
        "{before} descriptors before RETR 1, {after} after"
    );
    server.shutdown();
    serving.join().unwrap().unwrap();
}
