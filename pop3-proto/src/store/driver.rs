//! Executes the server machine's store requests against a [`Store`].

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::future::Future;
use core::pin::Pin;

use super::{Cause, Maildrop, MessageReader, Store, StoreError};
use crate::command::Username;
use crate::server::{StoreReply, StoreRequest};

/// Runs [`StoreRequest`]s against a [`Store`], holding what a session has
/// open: the locked maildrop and the message being read.
///
/// It does no I/O and needs no runtime: [`StoreDriver::execute`] only awaits
/// the store's futures, so every adapter uses it as it is.
///
/// ```
/// use std::sync::Arc;
/// use std::task::{Context, Poll, Waker};
/// use pop3_proto::server::{ConnectionContext, Server, ServerConfig};
/// use pop3_proto::session::Action;
/// use pop3_proto::store::{MemoryStore, StoreDriver};
/// use pop3_proto::time::Instant;
///
/// // MemoryStore's futures are ready at once; a real adapter awaits them
/// // on its runtime instead.
/// fn ready<F: Future>(f: F) -> F::Output {
///     let mut f = std::pin::pin!(f);
///     match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
///         Poll::Ready(v) => v,
///         Poll::Pending => unreachable!("MemoryStore never waits"),
///     }
/// }
///
/// let store = Arc::new(MemoryStore::new());
/// store.add_user("demo", "demo");
/// store.add_message("demo", &b"Subject: hi\r\n\r\nHello.\r\n"[..]);
/// let config = Arc::new(ServerConfig::default().allow_plaintext_auth(true));
/// let now = Instant::ZERO;
/// let mut server = Server::new(config, now, ConnectionContext::new(7, false, false));
/// let mut driver = StoreDriver::new(store);
///
/// let mut input: &[u8] = b"USER demo\r\nPASS demo\r\nSTAT\r\nQUIT\r\n";
/// let mut wire = Vec::new();
/// loop {
///     while let Some(action) = server.poll_action() {
///         match action {
///             Action::Send(t) => wire.extend_from_slice(&t.bytes),
///             Action::Event(request) => {
///                 let reply = ready(driver.execute(request));
///                 server.handle_store(now, reply);
///             }
///             _ => {}
///         }
///     }
///     if server.is_closed() || input.is_empty() {
///         break;
///     }
///     let used = server.handle_input(now, input);
///     input = &input[used..];
/// }
/// let wire = String::from_utf8(wire).unwrap();
/// assert!(wire.contains("+OK 1 23\r\n"), "{wire}");
/// ```
///
/// A `Commit` is never cancelled once started (RFC 1939 §6: UPDATE runs to
/// completion). The driver keeps the commit itself: an adapter that stops
/// waiting for `execute` (the store timeout) drops only the call, and the
/// commit stays in the driver, where [`StoreDriver::finish`] runs it to its
/// end. An adapter therefore awaits `finish` when the session is over
/// (after closing the connection, so that the client is not held), before
/// it drops the driver. Dropping the driver releases an open maildrop
/// without deleting anything.
///
/// A message reader is dropped when its message ends, and otherwise (TOP
/// stops reading once it has its lines) at the next `Read`, `Open`,
/// `Commit` or `Release`.
pub struct StoreDriver<S: Store> {
    store: Arc<S>,
    maildrop: Option<S::Maildrop>,
    reader: Option<<S::Maildrop as Maildrop>::Reader>,
    /// The commit under way: it outlives a dropped call of `execute`.
    committing: Option<Commit>,
}

/// A commit under way.
type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

impl<S: Store> core::fmt::Debug for StoreDriver<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoreDriver")
            .field("maildrop_open", &self.maildrop.is_some())
            .field("reading", &self.reader.is_some())
            .field("committing", &self.committing.is_some())
            .finish()
    }
}

fn no_maildrop() -> StoreError {
    StoreError::Permanent(Cause::NoMaildrop)
}

impl<S: Store> StoreDriver<S> {
    /// A driver with nothing open.
    pub fn new(store: Arc<S>) -> Self {
        StoreDriver {
            store,
            maildrop: None,
            reader: None,
            committing: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Whether a maildrop is open (and locked).
    pub fn has_maildrop(&self) -> bool {
        self.maildrop.is_some()
    }

    /// Whether a commit is under way that a dropped call of
    /// [`execute`](StoreDriver::execute) left unfinished.
    pub fn is_committing(&self) -> bool {
        self.committing.is_some()
    }
}

impl<S: Store> StoreDriver<S>
where
    S::Maildrop: 'static,
{
    /// Runs the commit under way, if any, to its end: the one whose call of
    /// [`execute`](StoreDriver::execute) was dropped (the adapter stopped
    /// waiting for it at the store timeout). Its result, or `None` when no
    /// commit was under way. Await it before dropping the driver.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pop3_proto::store::{MemoryStore, StoreDriver};
    /// # fn ready<F: Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
    /// #         std::task::Poll::Ready(v) => v,
    /// #         std::task::Poll::Pending => unreachable!("MemoryStore never waits"),
    /// #     }
    /// # }
    /// let mut driver = StoreDriver::new(Arc::new(MemoryStore::new()));
    /// assert_eq!(ready(driver.finish()), None, "nothing under way");
    /// ```
    pub async fn finish(&mut self) -> Option<Result<(), StoreError>> {
        let commit = self.committing.as_mut()?;
        let result = commit.await;
        self.committing = None;
        Some(result)
    }

    /// Performs one request and returns the reply to pass to
    /// [`Server::handle_store`](crate::server::Server::handle_store).
    ///
    /// A commit that a dropped call left under way is finished first (the
    /// machine asks for nothing after a commit, so this does not happen in
    /// a session).
    pub async fn execute(&mut self, req: StoreRequest) -> StoreReply {
        self.finish().await;
        match req {
            StoreRequest::VerifyPassword { user, password } => {
                StoreReply::Verified(self.store.verify_password(user.as_str(), &password).await)
            }
            StoreRequest::SharedSecret { user } => {
                StoreReply::SharedSecret(self.store.shared_secret(user.as_str()).await)
            }
            StoreRequest::VerifyToken { user, token } => StoreReply::TokenVerified(
                self.store.verify_bearer_token(user.as_str(), &token).await,
            ),
            StoreRequest::TokenOwner { token } => StoreReply::TokenOwner(
                self.store
                    .bearer_token_owner(&token)
                    .await
                    .map(|user| user.and_then(|u| Username::new(&u).ok())),
            ),
            StoreRequest::ScramKeys { user, hash } => {
                StoreReply::ScramKeys(self.store.scram_keys(user.as_str(), hash).await)
            }
            StoreRequest::Open { user } => {
                self.reader = None;
                self.maildrop = None;
                match self.store.open(user.as_str()).await {
                    Ok(maildrop) => {
                        let list = maildrop.messages().to_vec();
                        self.maildrop = Some(maildrop);
                        StoreReply::Opened(Ok(list))
                    }
                    Err(e) => StoreReply::Opened(Err(e)),
                }
            }
            StoreRequest::Read { index } => {
                self.reader = None;
                match self.maildrop.as_mut() {
                    Some(maildrop) => match maildrop.read(index).await {
                        Ok(reader) => {
                            self.reader = Some(reader);
                            StoreReply::Reading(Ok(()))
                        }
                        Err(e) => StoreReply::Reading(Err(e)),
                    },
                    None => StoreReply::Reading(Err(no_maildrop())),
                }
            }
            StoreRequest::NextChunk => match self.reader.as_mut() {
                Some(reader) => {
                    let chunk = reader.next_chunk().await;
                    if !matches!(chunk, Ok(Some(_))) {
                        self.reader = None;
                    }
                    StoreReply::Chunk(chunk)
                }
                None => StoreReply::Chunk(Err(StoreError::Permanent(Cause::NotReading))),
            },
            StoreRequest::Commit(update) => {
                self.reader = None;
                match self.maildrop.take() {
                    Some(maildrop) => {
                        self.committing = Some(Box::pin(maildrop.commit(update)));
                        StoreReply::Committed(self.finish().await.unwrap_or(Err(no_maildrop())))
                    }
                    None => StoreReply::Committed(Err(no_maildrop())),
                }
            }
            StoreRequest::Release => {
                self.reader = None;
                self.maildrop = None;
                StoreReply::Released
            }
        }
    }
}
