//! A byte stream that may be upgraded to TLS in place, and the one timer of
//! each connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};

/// Any `futures-io` byte stream.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + ?Sized> Transport for T {}

/// The socket under a connection, boxed: one client and server type serve
/// every stream (`async_io::Async<TcpStream>`, `smol::net::TcpStream`,
/// `async_std::net::TcpStream`, ...), for one indirect call per read or
/// write.
///
/// The box sits in a mutex that is never locked: every read and write has
/// the stream by `&mut` ([`Mutex::get_mut`]), and the mutex only makes a
/// session `Sync` (a client shared by reference) without asking `Sync` of
/// the caller's stream.
pub(crate) struct Stream(Mutex<Box<dyn Transport>>);

impl Stream {
    pub(crate) fn new(stream: impl Transport + 'static) -> Stream {
        Stream(Mutex::new(Box::new(stream)))
    }

    fn pin(self: Pin<&mut Self>) -> Pin<&mut dyn Transport> {
        let inner = self.get_mut().0.get_mut();
        Pin::new(&mut **inner.unwrap_or_else(PoisonError::into_inner))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.pin().poll_read(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.pin().poll_read_vectored(cx, bufs)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pin().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.pin().poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pin().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pin().poll_close(cx)
    }
}

/// A connection's stream: plain, or TLS over the plain stream (boxed again,
/// so both sides and both kinds are one type).
pub(crate) struct Conn {
    /// `None` while a handshake owns the plain stream.
    stream: Option<Stream>,
    tls: bool,
}

impl Conn {
    pub(crate) fn plain(stream: Stream) -> Conn {
        Conn {
            stream: Some(stream),
            tls: false,
        }
    }

    pub(crate) fn tls(stream: impl Transport + 'static) -> Conn {
        Conn {
            stream: Some(Stream::new(stream)),
            tls: true,
        }
    }

    #[cfg(feature = "server")]
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// Takes the plain stream out for a TLS handshake.
    pub(crate) fn take_plain(&mut self) -> io::Result<Stream> {
        match self.stream.take_if(|_| !self.tls) {
            Some(s) => Ok(s),
            None if self.tls => Err(io::Error::other("TLS is already active")),
            None => Err(upgrading()),
        }
    }

    fn stream(self: Pin<&mut Self>) -> io::Result<Pin<&mut Stream>> {
        self.get_mut()
            .stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(upgrading)
    }
}

fn upgrading() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during TLS upgrade",
    )
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.stream()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream()?.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_close(cx),
            Err(_) => Poll::Ready(Ok(())),
        }
    }
}

/// A connection's clock: the core's time is milliseconds since the
/// connection's epoch, and one `async_io::Timer` wakes the connection at
/// the core's next deadline.
pub(crate) struct Clock {
    epoch: Instant,
    timer: Timer,
    /// The deadline the timer is set to.
    armed: Option<pop3_proto::time::Instant>,
}

impl Clock {
    pub(crate) fn new(epoch: Instant) -> Clock {
        Clock {
            epoch,
            timer: Timer::never(),
            armed: None,
        }
    }

    pub(crate) fn now(&self) -> pop3_proto::time::Instant {
        core_time(self.epoch, Instant::now())
    }

    /// `Ready` once `deadline` has passed.
    pub(crate) fn poll_until(
        &mut self,
        cx: &mut Context<'_>,
        deadline: pop3_proto::time::Instant,
    ) -> Poll<()> {
        if self.now() < deadline {
            if self.armed != Some(deadline) {
                let at = self.epoch + Duration::from_millis(deadline.as_millis());
                self.timer.set_at(at);
                self.armed = Some(deadline);
            }
            if Pin::new(&mut self.timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.armed = None;
        Poll::Ready(())
    }
}

/// Milliseconds since `epoch`, as the core's time.
pub(crate) fn core_time(epoch: Instant, at: Instant) -> pop3_proto::time::Instant {
    let ms = at.saturating_duration_since(epoch).as_millis();
    pop3_proto::time::Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// `future`, or `Err(TimedOut)` once `limit` has passed.
pub(crate) async fn timeout<T>(
    limit: Duration,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    futures_lite::future::or(future, async {
        Timer::after(limit).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}
