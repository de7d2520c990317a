//! Cancel safety: every client method's future, dropped after 1, 2, ... N
//! polls (each poll after the future woke, so at each of its await points
//! in turn), leaves the client usable with a true state, or closed with
//! [`Error::Cancelled`]: never a wrong answer, a refused retry, or
//! [`Error::Closed`] on a live connection.

#[macro_use]
mod support;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use futures_lite::AsyncReadExt;
use pop3_async_std::client::{Error, Pop3Client, Security, msg};
use pop3_async_std::server::ServerOptions;
use pop3_proto::store::MemoryStore;
use support::start;

/// Polls `fut` at most `n` times, each poll after the last one's wake:
/// its output if it finished, `None` if it was dropped unfinished.
async fn poll_n<F: Future>(fut: F, n: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut polls = 0;
    poll_fn(|cx| {
        if polls == n {
            return Poll::Ready(None);
        }
        polls += 1;
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Stls,
    Login,
    Capa,
    Stat,
    List,
    Uidl,
    UidlOne,
    Retr,
    RetrMany,
    Noop,
    Dele,
    Rset,
    DeleMany,
    Quit,
}

impl Op {
    const ALL: [Op; 14] = [
        Op::Stls,
        Op::Login,
        Op::Capa,
        Op::Stat,
        Op::List,
        Op::Uidl,
        Op::UidlOne,
        Op::Retr,
        Op::RetrMany,
        Op::Noop,
        Op::Dele,
        Op::Rset,
        Op::DeleMany,
        Op::Quit,
    ];

    /// Whether it runs before the login.
    fn before_login(self) -> bool {
        matches!(self, Op::Stls | Op::Login)
    }

    /// Whether dropping it may close the session ([`Error::Cancelled`]);
    /// the others are always drained.
    fn may_poison(self) -> bool {
        matches!(self, Op::Stls | Op::Login | Op::DeleMany | Op::Quit)
    }

    fn run<'a>(
        self,
        client: &'a mut Pop3Client,
        user: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>> {
        let one = msg(1).unwrap();
        Box::pin(async move {
            match self {
                Op::Stls => client.stls().await,
                Op::Login => client.login(user, PASSWORD).await,
                Op::Capa => client.capa().await.map(drop),
                Op::Stat => client.stat().await.map(drop),
                Op::List => client.list().await.map(drop),
                Op::Uidl => client.uidl().await.map(drop),
                Op::UidlOne => client.uidl_one(one).await.map(drop),
                Op::Retr => {
                    let mut text = Vec::new();
                    let mut body = client.retr(one).await?;
                    body.read_to_end(&mut text).await.map_err(Error::io)?;
                    assert_eq!(text, MESSAGE.as_bytes());
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

on_both_runtimes! {
    /// Each method dropped after 1, 2, ... polls, until one run finishes;
    /// after each drop, the next call answers truly or says `Cancelled`.
    async fn every_method_dropped_at_any_await_point_leaves_a_usable_or_cancelled_session<R: Runtime>() {
        let r = start::<R>(std::sync::Arc::new(MemoryStore::new()), ServerOptions::default());
        let size = MESSAGE.len() as u64;
        let mut sessions = 0;
        for op in Op::ALL {
            let mut polls = 1;
            loop {
                // A user per session: a session dropped without QUIT may
                // still hold its maildrop while the next one logs in.
                sessions += 1;
                let user = format!("u{sessions}");
                r.store.add_user(&user, PASSWORD);
                for _ in 0..3 {
                    r.store.add_message(&user, MESSAGE);
                }
                let options = r.options(Security::Plain);
                let mut client = Pop3Client::connect("127.0.0.1", r.plain.port(), options)
                    .await
                    .unwrap();
                if !op.before_login() {
                    client.login(&user, PASSWORD).await.unwrap();
                }
                if let Some(result) = poll_n(op.run(&mut client, &user), polls).await {
                    result.unwrap_or_else(|e| panic!("{op:?} failed undisturbed: {e}"));
                    break;
                }
                // The next call: the login (again), then STAT.
                let next = match op.before_login() {
                    true => client.login(&user, PASSWORD).await,
                    false => Ok(()),
                };
                match next {
                    Ok(()) => match client.stat().await {
                        Ok(stat) => {
                            let count = if matches!(op, Op::Dele | Op::DeleMany) { 2 } else { 3 };
                            assert_eq!(
                                (stat.count, stat.size),
                                (count, count as u64 * size),
                                "{op:?} dropped after {polls} polls: a wrong answer"
                            );
                            client.noop().await.unwrap();
                        }
                        Err(Error::Cancelled) if op.may_poison() && !op.before_login() => {
                            let after = client.stat().await.unwrap_err();
                            assert!(matches!(after, Error::Closed), "{after:?}");
                        }
                        Err(e) => panic!("{op:?} dropped after {polls} polls, then STAT: {e:?}"),
                    },
                    Err(Error::Cancelled) if op.may_poison() => {
                        let after = client.stat().await.unwrap_err();
                        assert!(matches!(after, Error::Closed), "{after:?}");
                    }
                    Err(e) => panic!("{op:?} dropped after {polls} polls, then login: {e:?}"),
                }
                polls += 1;
                assert!(polls < 200, "{op:?} never finished");
            }
        }
        r.stop().await;
    }
}
