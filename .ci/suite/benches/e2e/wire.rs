//! The harness's own ends of the wire: a raw pipelining client that costs
//! almost nothing (so a run measures the server), a session loop, idle
//! connections from many loopback addresses, and the sendfile server that
//! stands for the physical limit.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::Error;

/// A TLS client configuration trusting the CA in `ca_pem`.
pub fn tls_client(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pop3_blocking::tls::certificates_from_pem(ca_pem, "CA")? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(pop3_blocking::tls::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A plain or TLS stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects, with implicit TLS when `tls` is given.
pub fn connect(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Stream, Error> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(match tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            let name = ServerName::try_from("localhost")?.to_owned();
            let conn = rustls::ClientConnection::new(config.clone(), name)?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    })
}

/// `USER`, `PASS`, `RETR 1..=count` and `QUIT` in one write, then
/// everything the server sends until it closes: the cheapest client there
/// is. Checks that the session ended with `+OK` to QUIT and that at least
/// `min_octets` came.
pub fn retrieve_all(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    user: &str,
    count: usize,
    min_octets: u64,
) -> Result<(), Error> {
    let mut stream = connect(addr, tls)?;
    let mut script = format!("USER {user}\r\nPASS secret\r\n");
    for n in 1..=count {
        script.push_str(&format!("RETR {n}\r\n"));
    }
    script.push_str("QUIT\r\n");
    stream.write_all(script.as_bytes())?;
    stream.flush()?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut octets = 0u64;
    let mut last = Vec::with_capacity(256);
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // A TLS peer closing without close_notify after QUIT.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && octets > 0 => break,
            Err(e) => return Err(format!("reading from {addr}: {e}").into()),
        };
        octets += n as u64;
        last.extend_from_slice(&buf[n.saturating_sub(256)..n]);
        if last.len() > 256 {
            last.drain(..last.len() - 256);
        }
    }
    let tail = String::from_utf8_lossy(&last);
    let quit = tail.trim_end().rsplit("\r\n").next().unwrap_or_default();
    if !quit.starts_with("+OK") {
        return Err(format!("{addr}: the session did not end with +OK to QUIT: {quit:?}").into());
    }
    if octets < min_octets {
        return Err(format!(
            "{addr}: {octets} octets, fewer than the {min_octets} of the maildrop"
        )
        .into());
    }
    Ok(())
}

/// One line of a reply, without CRLF.
fn line(reader: &mut impl BufRead) -> Result<String, Error> {
    let mut s = String::new();
    if reader.read_line(&mut s)? == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(s.trim_end().to_owned())
}

/// One whole session with a reply read after each command: connect,
/// greeting, USER, PASS, STAT, QUIT. Checks every reply.
pub fn session(addr: SocketAddr, user: &str) -> Result<(), Error> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(tcp.try_clone()?);
    let mut writer = tcp;
    let greeting = line(&mut reader)?;
    if !greeting.starts_with("+OK") {
        return Err(format!("greeting: {greeting}").into());
    }
    for (cmd, want) in [
        (format!("USER {user}\r\n"), "+OK"),
        ("PASS secret\r\n".to_owned(), "+OK"),
        ("STAT\r\n".to_owned(), "+OK 1 "),
        ("QUIT\r\n".to_owned(), "+OK"),
    ] {
        writer.write_all(cmd.as_bytes())?;
        let reply = line(&mut reader)?;
        if !reply.starts_with(want) {
            return Err(format!("{}: {reply}", cmd.trim_end()).into());
        }
    }
    Ok(())
}

/// A connection from `source` (a loopback address) that has read its
/// greeting and then stays silent.
pub fn idle_connection(source: Ipv4Addr, to: SocketAddr) -> Result<TcpStream, Error> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddrV4::new(source, 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(30))?;
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut greeting = [0u8; 3];
    (&tcp).read_exact(&mut greeting)?;
    if &greeting != b"+OK" {
        return Err(format!(
            "{source}: no greeting: {:?}",
            String::from_utf8_lossy(&greeting)
        )
        .into());
    }
    Ok(tcp)
}

/// A server that answers a pipelined retrieval by handing the message
/// files to the kernel (`std::io::copy` from a file to a socket is
/// sendfile on Linux): no parsing, no line-end conversion, no stuffing.
/// What the loopback and page cache allow, and no POP3 server can beat.
///
/// With `from_memory`, the files are read into memory first and written
/// with plain writes instead: on some machines (virtual ones) a copy from
/// memory is faster than sendfile's page references, and the limit is the
/// faster of the two.
pub struct SendfileServer {
    pub addr: SocketAddr,
    listener: TcpListener,
    files: Vec<PathBuf>,
    memory: Option<Arc<Vec<Vec<u8>>>>,
}

impl SendfileServer {
    pub fn new(files: Vec<PathBuf>) -> Result<SendfileServer, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        Ok(SendfileServer {
            addr: listener.local_addr()?,
            listener,
            files,
            memory: None,
        })
    }

    pub fn from_memory(files: Vec<PathBuf>) -> Result<SendfileServer, Error> {
        let contents = files
            .iter()
            .map(std::fs::read)
            .collect::<io::Result<Vec<_>>>()?;
        let mut server = SendfileServer::new(files)?;
        server.memory = Some(Arc::new(contents));
        Ok(server)
    }

    /// Serves the next connection on a thread; join it after the client.
    pub fn serve_one(&self) -> Result<std::thread::JoinHandle<Result<(), String>>, Error> {
        let listener = self.listener.try_clone()?;
        let files = self.files.clone();
        let memory = self.memory.clone();
        Ok(std::thread::spawn(move || {
            let run = || -> io::Result<()> {
                let (mut tcp, _) = listener.accept()?;
                tcp.set_nodelay(true)?;
                tcp.write_all(b"+OK\r\n")?;
                // Read the whole script first: closing with unread input
                // would reset the connection under the client's reads.
                let mut reader = BufReader::new(tcp.try_clone()?);
                let mut l = String::new();
                loop {
                    l.clear();
                    if reader.read_line(&mut l)? == 0 || l.starts_with("QUIT") {
                        break;
                    }
                }
                tcp.write_all(b"+OK\r\n+OK\r\n")?;
                for (i, f) in files.iter().enumerate() {
                    tcp.write_all(b"+OK\r\n")?;
                    match &memory {
                        Some(m) => {
                            for piece in m[i].chunks(256 * 1024) {
                                tcp.write_all(piece)?;
                            }
                        }
                        None => {
                            io::copy(&mut std::fs::File::open(f)?, &mut tcp)?;
                        }
                    }
                    tcp.write_all(b".\r\n")?;
                }
                tcp.write_all(b"+OK bye\r\n")?;
                Ok(())
            };
            run().map_err(|e| e.to_string())
        }))
    }
}
