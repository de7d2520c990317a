//! A byte stream that may be upgraded to TLS in place.

use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a session runs over: any tokio byte stream.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// The stream of a session, boxed so that one client and one server type
/// serve every stream (`TcpStream`, `UnixStream`, `DuplexStream`, a stream
/// wrapped by a proxy protocol or already secured), for one indirect call
/// per read or write.
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
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.pin().poll_read(cx, buf)
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

    fn is_write_vectored(&self) -> bool {
        match self.0.lock() {
            Ok(s) => s.is_write_vectored(),
            Err(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pin().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pin().poll_shutdown(cx)
    }
}

/// A connection that is plain or TLS over the stream, on either side.
pub(crate) enum Conn {
    Plain(Stream),
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    ServerTls(Box<tokio_rustls::server::TlsStream<Stream>>),
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    ClientTls(Box<tokio_rustls::client::TlsStream<Stream>>),
    /// Transient state while a handshake owns the socket.
    Upgrading,
}

impl Conn {
    #[cfg(feature = "server")]
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Conn::ServerTls(_) | Conn::ClientTls(_))
    }

    /// Takes the plain stream out for a TLS handshake.
    pub(crate) fn take_plain(&mut self) -> io::Result<Stream> {
        match std::mem::replace(self, Conn::Upgrading) {
            Conn::Plain(s) => Ok(s),
            other => {
                *self = other;
                Err(io::Error::other("TLS is already active"))
            }
        }
    }
}

fn upgrading() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during TLS upgrade",
    )
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Plain(_) => "Plain",
            Conn::ServerTls(_) => "ServerTls",
            Conn::ClientTls(_) => "ClientTls",
            Conn::Upgrading => "Upgrading",
        })
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }
}
