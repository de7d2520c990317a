//! The public types an application holds across threads are
//! `Send` and `Sync` (checked when the tests compile).

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn clients_servers_and_bodies_are_send_and_sync() {
    assert_send_sync::<pop3_async_std::client::Pop3Client>();
    assert_send_sync::<pop3_async_std::client::Body<'static>>();
    assert_send_sync::<pop3_async_std::client::RetrBatch<'static>>();
    assert_send_sync::<pop3_async_std::client::ConnectOptions>();
    assert_send_sync::<pop3_async_std::client::Error>();
    assert_send_sync::<pop3_async_std::server::Pop3Server<pop3_proto::store::MemoryStore>>();
    assert_send_sync::<pop3_async_std::fetch::FetchSettings>();
    assert_send_sync::<pop3_async_std::fetch::FetchError>();
}
