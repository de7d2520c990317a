//! The public types an application holds across threads are `Send` and
//! `Sync` (checked when the tests compile).

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn clients_servers_and_bodies_are_send_and_sync() {
    assert_send_sync::<pop3_blocking::client::Pop3Client>();
    assert_send_sync::<pop3_blocking::client::Body<'static>>();
    assert_send_sync::<pop3_blocking::client::RetrBatch<'static>>();
    assert_send_sync::<pop3_blocking::client::ConnectOptions>();
    assert_send_sync::<pop3_blocking::client::Error>();
    assert_send_sync::<pop3_blocking::server::Pop3Server<pop3_proto::store::MemoryStore>>();
    assert_send_sync::<pop3_blocking::fetch::FetchSettings>();
    assert_send_sync::<pop3_blocking::fetch::FetchError>();
    assert_send_sync::<pop3_blocking::maildir::MaildirStore>();
    assert_send_sync::<pop3_blocking::passwd::PasswdFile>();
    assert_send_sync::<pop3_blocking::sink::MaildirSink>();
}
