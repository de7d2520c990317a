//! What the client and the server faces share: a byte stream that may be
//! upgraded to TLS in place, blocking calls bounded by the stream's
//! timeouts, and the core's clock.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[cfg(feature = "client")]
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

/// A blocking byte stream a client or a server session runs over: std's
/// `TcpStream` and (on Unix) `UnixStream`, or a stream of the application's
/// own (a SOCKS or PROXY-protocol wrapper, a stream it already secured).
///
/// The session bounds each blocking read and write with
/// [`Transport::set_timeout`], to keep its deadlines (reply and idle
/// timeouts, the server's shutdown grace): a read or write that times out
/// fails with `WouldBlock` or `TimedOut`.
pub trait Transport: Read + Write + Send {
    /// Bounds every later read and write by `timeout` (`None`: no limit).
    /// A stream that cannot time out may return `Ok(())`: the session's
    /// deadlines are then checked only between its reads and writes.
    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Ends the writing direction (after QUIT, or a refusal); by default
    /// nothing (the stream ends when it is dropped).
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for TcpStream {
    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

#[cfg(unix)]
impl Transport for std::os::unix::net::UnixStream {
    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_timeout(timeout)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        (**self).shutdown_write()
    }
}

/// The stream of a session, boxed so that one client and one server type
/// serve every transport.
///
/// The box sits in a mutex that is never locked: every use has the socket
/// by `&mut` ([`Mutex::get_mut`]), and the mutex only makes a session
/// `Sync` (a client shared by reference) without asking `Sync` of the
/// caller's transport.
pub(crate) struct Socket(Mutex<Box<dyn Transport>>, Armed);

/// The timeout last given to the transport: `None` before the first.
type Armed = Option<Option<Duration>>;

impl Socket {
    pub(crate) fn new(transport: impl Transport + 'static) -> Socket {
        Socket(Mutex::new(Box::new(transport)), None)
    }

    /// Bounds the next blocking calls by `wait` (`None`: no limit), with as
    /// few calls into the transport as keep every call within `wait`.
    ///
    /// A socket timeout bounds each call, not a deadline, and the session
    /// asks for the time left until its deadline before every read and
    /// write: two `setsockopt` calls each time, several per message. So a
    /// limit is armed a little shorter than asked (7/8 of it) and kept for
    /// as long as it is no longer than the time then left and at least half
    /// of it. A call therefore never blocks past the deadline; it may end
    /// early (a timeout the session takes as "check the deadlines", and
    /// then arms again), which only an idle connection ever sees.
    fn arm(&mut self, wait: Option<Duration>) -> io::Result<()> {
        let keep = match (self.1, wait) {
            (Some(None), None) => true,
            (Some(Some(armed)), Some(wait)) => armed <= wait && armed >= wait / 2,
            _ => false,
        };
        if keep {
            return Ok(());
        }
        let limit = wait.map(|w| {
            let shorter = w - w / 8;
            if shorter.is_zero() { w } else { shorter }
        });
        // Unknown until the transport took it.
        self.1 = None;
        self.transport().set_timeout(limit)?;
        self.1 = Some(limit);
        Ok(())
    }

    fn transport(&mut self) -> &mut dyn Transport {
        &mut **self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.transport().read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        self.transport().read_vectored(bufs)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.transport().write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.transport().write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.transport().flush()
    }
}

/// A connection that is plain or TLS over the transport, on either side.
pub(crate) enum Stream {
    Plain(Socket),
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    Client(Box<StreamOwned<ClientConnection, Socket>>),
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Server(Box<StreamOwned<ServerConnection, Socket>>),
    /// Transient, while the socket moves under TLS.
    Upgrading,
}

/// Both directions of a stream, to dispatch on.
trait Duplex: Read + Write {}
impl<T: Read + Write> Duplex for T {}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during TLS upgrade",
    )
}

/// A blocking call's result, or `None` when it timed out (or was
/// interrupted): the caller then lets the connection check its deadlines.
fn settle<T>(result: io::Result<T>) -> Option<io::Result<T>> {
    match result {
        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => None,
        r => Some(r),
    }
}

/// A socket timeout expired (`WouldBlock` on Unix, `TimedOut` on Windows).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Plain",
            Stream::Client(_) => "Client",
            Stream::Server(_) => "Server",
            Stream::Upgrading => "Upgrading",
        })
    }
}

impl Stream {
    fn tcp(&mut self) -> io::Result<&mut Socket> {
        match self {
            Stream::Plain(s) => Ok(s),
            Stream::Client(s) => Ok(&mut s.sock),
            Stream::Server(s) => Ok(&mut s.sock),
            Stream::Upgrading => Err(not_connected()),
        }
    }

    fn duplex(&mut self) -> io::Result<&mut dyn Duplex> {
        match self {
            Stream::Plain(s) => Ok(s),
            Stream::Client(s) => Ok(s.as_mut()),
            Stream::Server(s) => Ok(s.as_mut()),
            Stream::Upgrading => Err(not_connected()),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Client(_) | Stream::Server(_))
    }

    /// Runs `f` with the socket's read and write timeouts set to `wait`
    /// (`None`: no limit); `None` when it timed out.
    pub(crate) fn timed<T>(
        &mut self,
        wait: Option<Duration>,
        f: impl FnOnce(&mut Stream) -> io::Result<T>,
    ) -> Option<io::Result<T>> {
        let armed = self.tcp().and_then(|sock| sock.arm(wait));
        settle(armed.and_then(|()| f(self)))
    }

    fn take_plain(&mut self) -> io::Result<Socket> {
        match std::mem::replace(self, Stream::Upgrading) {
            Stream::Plain(tcp) => Ok(tcp),
            other => {
                *self = other;
                Err(io::Error::other("TLS is already active"))
            }
        }
    }

    #[cfg(feature = "client")]
    /// Puts the client side of TLS over the plain socket (the handshake is
    /// [`Stream::handshake`]); nothing when TLS is already there.
    pub(crate) fn start_client_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<()> {
        if let Stream::Plain(_) = self {
            let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
            *self = Stream::Client(Box::new(StreamOwned::new(conn, self.take_plain()?)));
        }
        Ok(())
    }

    #[cfg(feature = "server")]
    /// Puts the server side of TLS over the plain socket; nothing when TLS
    /// is already there.
    pub(crate) fn start_server_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        if let Stream::Plain(_) = self {
            let conn = ServerConnection::new(config).map_err(io::Error::other)?;
            *self = Stream::Server(Box::new(StreamOwned::new(conn, self.take_plain()?)));
        }
        Ok(())
    }

    #[cfg(feature = "server")]
    /// Runs the TLS handshake to its end (within the socket timeouts).
    /// What a server-side handshake established (nothing on a plain or
    /// client stream).
    pub(crate) fn server_tls_info(&self) -> pop3_proto::server::TlsInfo {
        match self {
            Stream::Server(s) => crate::common::server_tls_info(&s.conn),
            _ => pop3_proto::server::TlsInfo::default(),
        }
    }

    #[cfg(feature = "client")]
    /// The channel binding of a client-side TLS stream (TLS 1.3 only).
    pub(crate) fn client_tls_exporter(&self) -> Option<[u8; 32]> {
        match self {
            Stream::Client(s) => crate::common::tls_exporter(&s.conn),
            _ => None,
        }
    }

    pub(crate) fn handshake(&mut self) -> io::Result<()> {
        fn run<C, S>(s: &mut StreamOwned<C, Socket>) -> io::Result<()>
        where
            C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
            S: rustls::SideData,
        {
            while s.conn.is_handshaking() {
                if s.conn.complete_io(&mut s.sock)? == (0, 0) {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Ok(())
        }
        match self {
            Stream::Client(s) => run(s),
            Stream::Server(s) => run(s),
            _ => Err(not_connected()),
        }
    }

    /// Runs the TLS handshake, failing with `TimedOut` at `deadline`.
    pub(crate) fn handshake_by(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ));
            }
            if let Some(done) = self.timed(Some(left), Stream::handshake) {
                return done;
            }
        }
    }

    /// Ends the stream politely: a TLS close_notify, then the end of the
    /// stream's writing direction, each write allowed `timeout`.
    pub(crate) fn close(&mut self, timeout: Duration) {
        let _ = self.timed(Some(timeout), |s| {
            match s {
                Stream::Client(t) => t.conn.send_close_notify(),
                Stream::Server(t) => t.conn.send_close_notify(),
                _ => {}
            }
            s.flush()?;
            s.tcp()?.transport().shutdown_write()
        });
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.duplex()?.read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.duplex()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.duplex()?.flush()
    }
}

/// The core's time for one connection: milliseconds since its start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock(Instant::now())
    }

    /// `at` in the core's time (the start if earlier).
    pub(crate) fn at(self, at: Instant) -> pop3_proto::time::Instant {
        let ms = at.saturating_duration_since(self.0).as_millis();
        pop3_proto::time::Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    pub(crate) fn now(self) -> pop3_proto::time::Instant {
        self.at(Instant::now())
    }

    /// The time left until `deadline` (zero when it is due).
    pub(crate) fn left(self, deadline: pop3_proto::time::Instant) -> Duration {
        let at = self.0 + Duration::from_millis(deadline.as_millis());
        at.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that records the timeouts it is given.
    struct Recorder(Arc<Mutex<Vec<Option<Duration>>>>);

    impl Read for Recorder {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for Recorder {
        fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
            self.0.lock().expect("recorder").push(timeout);
            Ok(())
        }
    }

    #[test]
    fn timeouts_are_armed_once_per_band_and_never_past_the_time_left() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut socket = Socket::new(Recorder(log.clone()));
        let secs = Duration::from_secs;
        // The time left to one deadline, shrinking call after call.
        let mut wanted = Vec::new();
        let mut left = secs(120);
        while left > secs(1) {
            wanted.push(Some(left));
            left -= Duration::from_millis(250);
        }
        // Then no limit, twice, and a longer deadline again.
        wanted.extend([None, None, Some(secs(300))]);
        let mut armed = None;
        for &w in &wanted {
            socket.arm(w).expect("arm");
            armed = *log.lock().expect("recorder").last().expect("armed once");
            match (armed, w) {
                (Some(a), Some(w)) => assert!(a <= w && a >= w / 2, "{a:?} for {w:?}"),
                (None, None) => {}
                other => panic!("armed {other:?}"),
            }
        }
        assert_eq!(armed, Some(secs(300) - secs(300) / 8));
        let calls = log.lock().expect("recorder").len();
        // 476 waits: a new limit only each time the time left fell past
        // the last one, then once for None and once for 300 s.
        assert!(
            calls < 40,
            "{calls} calls into the transport for {} waits",
            wanted.len()
        );
    }
}
