//! The session machines and the connection layers are `Send` and `Sync`
//! (checked when the tests compile): an adapter may hold them in a
//! shared structure or across `.await`s on a multi-threaded runtime.

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn machines_and_connections_are_send_and_sync() {
    assert_send_sync::<pop3_proto::client::Client>();
    assert_send_sync::<pop3_proto::client::Connection>();
    assert_send_sync::<pop3_proto::client::Error>();
    assert_send_sync::<pop3_proto::client::BoxedMechanism>();
    assert_send_sync::<pop3_proto::server::Server>();
    assert_send_sync::<pop3_proto::server::Connection>();
    assert_send_sync::<pop3_proto::store::MemoryStore>();
    assert_send_sync::<pop3_proto::fetch::Fetch>();
    assert_send_sync::<pop3_proto::fetch::FetchError>();
}
