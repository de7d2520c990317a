//! Cancel safety: every client method's future, dropped after 1, 2, ... N
//! polls (each poll after the future woke, so at each of its await points
//! in turn), leaves the client usable with a true state, or closed with
//! [`Error::Cancelled`]: never a wrong answer, a refused retry, or
//! [`Error::Closed`] on a live connection.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use pop3_proto::store::MemoryStore;
use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security, msg};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

mod support;

/// Wakes the test's loop.
struct Woken(Notify);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

/// Polls `fut` at most `n` times, each poll after the last one's wake:
/// its output if it finished, `None` if it was dropped unfinished.
async fn poll_n<F: Future>(fut: F, n: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let woken = Arc::new(Woken(Notify::new()));
    let waker = Waker::from(woken.clone());
    for i in 0..n {
        if i > 0 {
            woken.0.notified().await;
        }
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Some(out);
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    Capa,
    Stat,
    List,
    ListOne,
    Uidl,
    UidlOne,
    Retr,
    Top,
    RetrMany,
    Noop,
    Dele,
    Rset,
    DeleMany,
    Quit,
}

impl Op {
    const ALL: [Op; 15] = [
        Op::Login,
        Op::Capa,
        Op::Stat,
        Op::List,
        Op::ListOne,
        Op::Uidl,
        Op::UidlOne,
        Op::Retr,
        Op::Top,
        Op::RetrMany,
        Op::Noop,
        Op::Dele,
        Op::Rset,
        Op::DeleMany,
        Op::Quit,
    ];

    /// Whether dropping it may close the session ([`Error::Cancelled`]);
    /// the others are always drained.
    fn may_poison(self) -> bool {
        matches!(self, Op::Login | Op::DeleMany | Op::Quit)
    }

    fn run<'a>(
        self,
        client: &'a mut Pop3Client,
        user: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>> {
        let one = msg(1).unwrap();
        Box::pin(async move {
            match self {
                Op::Login => client.login(user, PASSWORD).await,
                Op::Capa => client.capa().await.map(drop),
                Op::Stat => client.stat().await.map(drop),
                Op::List => client.list().await.map(drop),
                Op::ListOne => client.list_one(one).await.map(drop),
                Op::Uidl => client.uidl().await.map(drop),
                Op::UidlOne => client.uidl_one(one).await.map(drop),
                Op::Retr | Op::Top => {
                    let mut body = match self {
                        Op::Retr => client.retr(one).await?,
                        _ => client.top(one, 1).await?,
                    };
                    let mut text = Vec::new();
                    body.read_to_end(&mut text).await.map_err(Error::io)?;
                    assert!(text.starts_with(b"Subject: 1\r\n"), "{text:?}");
                    Ok(())
                }
                Op::RetrMany => {
                    let mut batch = client.retr_many([one, msg(2).unwrap()])?;
                    while let Some((_, body)) = batch.next().await {
                        let mut text = Vec::new();
                        body?.read_to_end(&mut text).await.map_err(Error::io)?;
                    }
                    Ok(())
                }
                Op::Noop => client.noop().await,
                Op::Dele => client.dele(one).await,
                Op::Rset => client.rset().await,
                Op::DeleMany => client.dele_many([one]).await.map(drop),
                Op::Quit => client.quit().await,
            }
        })
    }
}

const PASSWORD: &str = "pw";
/// Three messages of this size each.
const MESSAGE: &str = "Subject: 1\r\n\r\nbody\r\n";

#[tokio::test]
async fn every_method_dropped_at_any_await_point_leaves_a_usable_or_cancelled_session() {
    let store = Arc::new(MemoryStore::new());
    let (port, server) = support::server::serve_memory(store.clone()).await;
    let mut options = ConnectOptions::new(Security::Plain);
    options.session.insecure_cleartext_login = true;
    let size = MESSAGE.len() as u64;
    let mut sessions = 0;
    for op in Op::ALL {
        let mut polls = 1;
        loop {
            // A user per session: a session dropped without QUIT may still
            // hold its maildrop while the next one logs in.
            sessions += 1;
            let user = format!("u{sessions}");
            store.add_user(&user, PASSWORD);
            for _ in 0..3 {
                store.add_message(&user, MESSAGE);
            }
            let mut client = Pop3Client::connect("127.0.0.1", port, options.clone())
                .await
                .unwrap();
            if op != Op::Login {
                client.login(&user, PASSWORD).await.unwrap();
            }
            let finished = poll_n(op.run(&mut client, &user), polls).await;
            if let Some(result) = finished {
                result.unwrap_or_else(|e| panic!("{op:?} failed undisturbed: {e}"));
                break;
            }
            // The next call: a retry of the login, or STAT.
            let next = if op == Op::Login {
                client.login(&user, PASSWORD).await
            } else {
                Ok(())
            };
            let next = match next {
                Ok(()) => client.stat().await.map(Some),
                Err(e) => Err(e),
            };
            match next {
                Ok(Some(stat)) => {
                    // DELE reaches the server once started; RSET then
                    // unmarks nothing.
                    let count = if matches!(op, Op::Dele | Op::DeleMany) {
                        2
                    } else {
                        3
                    };
                    assert_eq!(
                        (stat.count, stat.size),
                        (count, count as u64 * size),
                        "{op:?} dropped after {polls} polls: a wrong answer"
                    );
                    client.noop().await.unwrap();
                }
                Ok(None) => unreachable!(),
                Err(Error::Cancelled) if op.may_poison() => {
                    let after = client.stat().await.unwrap_err();
                    assert!(matches!(after, Error::Closed), "{after:?}");
                }
                Err(e) => panic!("{op:?} dropped after {polls} polls, then: {e:?}"),
            }
            polls += 1;
            assert!(polls < 200, "{op:?} never finished");
        }
    }
    server.shutdown();
    server.wait_idle().await;
}
