//! The public types an application holds across threads and `.await`s are
//! `Send` and `Sync` (checked when the tests compile).

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn clients_servers_and_bodies_are_send_and_sync() {
    assert_send_sync::<pop3_tokio::client::Pop3Client>();
    assert_send_sync::<pop3_tokio::client::Body<'static>>();
    assert_send_sync::<pop3_tokio::client::RetrBatch<'static>>();
    assert_send_sync::<pop3_tokio::client::ConnectOptions>();
    assert_send_sync::<pop3_tokio::client::Error>();
    assert_send_sync::<pop3_tokio::server::Pop3Server<pop3_proto::store::MemoryStore>>();
    assert_send_sync::<pop3_tokio::fetch::FetchSettings>();
    assert_send_sync::<pop3_tokio::fetch::FetchError>();
}
