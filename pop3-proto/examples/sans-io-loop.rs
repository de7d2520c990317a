//! The sans-IO core driven by hand, both sides, over `std::net` on
//! loopback: no runtime, no adapter crate, just the loop every adapter runs.
//!
//! ```text
//! cargo run -p pop3-proto --example sans-io-loop
//! ```
//!
//! A thread serves one connection: a server [`Connection`](ServerConnection)
//! over a `TcpStream`, its store requests answered by a [`StoreDriver`] on a
//! [`MemoryStore`]. The main thread is the client: a client
//! [`Connection`](ClientConnection) over another `TcpStream`, running typed
//! tasks (greeting, USER/PASS, STAT, LIST, RETR, QUIT) with the loop of the
//! README's "How a runtime drives the core":
//!
//! ```text
//! loop {
//!     if let Some(result) = conn.poll_task(now, &mut task) { return result }
//!     match conn.want(now) {
//!         Want::Write(octets) => conn.wrote(now, socket.write(octets)),
//!         Want::Flush         => conn.flushed(now, socket.flush()),
//!         Want::Read(buf)     => conn.received(now, socket.read(buf)),
//!         ...
//!     }
//! }
//! ```
//!
//! Timeouts are the core's too: before blocking, the loop asks
//! `poll_timeout` for the next deadline, sets it as the socket's read
//! timeout, and calls `handle_timeout` when the read times out.

use std::future::Future;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pop3_proto::client::task::{Connect, List, Login, Retrieve, Simple, Stat, Task};
use pop3_proto::client::{Connection as ClientConnection, ConnectionConfig, Error, Want};
use pop3_proto::command::Command;
use pop3_proto::server::{
    Connection as ServerConnection, ConnectionContext, Server, ServerConfig, ServerOptions,
    Want as ServerWant,
};
use pop3_proto::store::{MemoryStore, StoreDriver};
use pop3_proto::time::Instant;
use pop3_proto::types::MessageNumber;

/// The core counts time in milliseconds from any origin: here, the start.
#[derive(Clone, Copy)]
struct Clock(std::time::Instant);

impl Clock {
    fn now(self) -> Instant {
        Instant::from_millis(self.0.elapsed().as_millis() as u64)
    }
}

/// The socket's read timeout for the core's next deadline (`None`: block).
fn read_timeout(deadline: Option<Instant>, now: Instant) -> Option<Duration> {
    // A zero timeout means "block" to std: wait at least a millisecond.
    deadline.map(|d| d.saturating_since(now).max(Duration::from_millis(1)))
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

// ----- the client side -----

/// One I/O step of the client connection: what it wants, done on the
/// socket, and reported back.
fn client_step(conn: &mut ClientConnection, socket: &mut TcpStream, clock: Clock) {
    let now = clock.now();
    socket
        .set_read_timeout(read_timeout(conn.poll_timeout(now), now))
        .expect("set a read timeout");
    match conn.want(now) {
        Want::Write(octets) => {
            let written = socket.write(octets);
            conn.wrote(now, written)
        }
        Want::Flush => conn.flushed(now, socket.flush()),
        Want::Read(buf) => match socket.read(buf) {
            Err(e) if timed_out(&e) => conn.handle_timeout(clock.now()),
            result => conn.received(clock.now(), result),
        },
        // This example speaks plain POP3 (an adapter runs rustls here).
        Want::StartTls => conn.tls_done(now, Err(io::Error::other("no TLS in this example"))),
        // A SCRAM key derivation: a blocking program may run it inline.
        Want::Compute(work) => conn.computed(now, Ok(work.run())),
        Want::Done => {}
    }
}

/// Runs one task to its result.
fn run<T: Task>(
    conn: &mut ClientConnection,
    socket: &mut TcpStream,
    clock: Clock,
    task: T,
) -> Result<T::Output, Error> {
    let mut task = conn.start(task)?;
    loop {
        if let Some(result) = conn.poll_task(clock.now(), &mut task) {
            return result;
        }
        client_step(conn, socket, clock);
    }
}

/// RETR: the task gives the body's state; its chunks come with the same
/// loop (zero-copy `Bytes`, never the whole message unless kept).
fn retrieve(
    conn: &mut ClientConnection,
    socket: &mut TcpStream,
    clock: Clock,
    msg: MessageNumber,
) -> Result<Vec<u8>, Error> {
    let mut body = run(conn, socket, clock, Retrieve::retr(msg))?;
    let mut message = Vec::new();
    loop {
        match conn.poll_body(clock.now(), &mut body) {
            Some(Ok(Some(chunk))) => message.extend_from_slice(&chunk),
            Some(Ok(None)) => return Ok(message),
            Some(Err(e)) => return Err(e),
            None => client_step(conn, socket, clock),
        }
    }
}

// ----- the server side -----

/// The result of a future that never waits: `MemoryStore`'s are ready at
/// once. (A store that waits needs an executor here; a blocking store is
/// called directly by a blocking server.)
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("MemoryStore never waits"),
    }
}

/// Serves one session on `socket` until the core says it is over.
fn serve(socket: &mut TcpStream, store: Arc<MemoryStore>, clock: Clock) -> io::Result<()> {
    let config = Arc::new(ServerConfig::default().allow_plaintext_auth(true));
    // A real server draws the random number from a secure generator (it
    // seeds the APOP timestamp and SCRAM nonces).
    let context = ConnectionContext::new(0x5eed, false, false);
    let machine = Server::new(config, clock.now(), context);
    let mut conn = ServerConnection::new(machine, &ServerOptions::default());
    let mut driver = StoreDriver::new(store);
    loop {
        let now = clock.now();
        socket.set_read_timeout(read_timeout(conn.poll_timeout(), now))?;
        match conn.want(now) {
            ServerWant::Write(octets) => {
                let written = socket.write(octets);
                conn.wrote(now, written)
            }
            ServerWant::Flush => conn.flushed(now, socket.flush()),
            ServerWant::Read(buf) => match socket.read(buf) {
                Err(e) if timed_out(&e) => conn.handle_timeout(clock.now()),
                result => conn.received(clock.now(), result),
            },
            ServerWant::Store(request) => {
                let reply = ready(driver.execute(request));
                conn.store_done(clock.now(), reply);
            }
            ServerWant::Wait => {
                if let Some(deadline) = conn.poll_timeout() {
                    std::thread::sleep(deadline.saturating_since(now));
                }
                conn.handle_timeout(clock.now());
            }
            ServerWant::StartTls => conn.tls_done(now, Err(io::Error::other("no TLS here"))),
            ServerWant::Close { .. } => break,
        }
    }
    // A commit the session started (QUIT's UPDATE) runs to its end.
    if let Some(result) = ready(driver.finish()) {
        result.map_err(io::Error::other)?;
    }
    socket
        .shutdown(std::net::Shutdown::Both)
        .or_else(|e| match e.kind() {
            ErrorKind::NotConnected => Ok(()),
            _ => Err(e),
        })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = Clock(std::time::Instant::now());

    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    store.add_message(
        "alice",
        &b"Subject: first\r\n\r\nHello from the core.\r\n"[..],
    );
    store.add_message(
        "alice",
        &b"Subject: second\r\n\r\n.a line that starts with a dot\r\n"[..],
    );

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let server = std::thread::spawn({
        let store = store.clone();
        move || -> io::Result<()> {
            let (mut socket, _) = listener.accept()?;
            serve(&mut socket, store, clock)
        }
    });

    let mut socket = TcpStream::connect(address)?;
    socket.set_nodelay(true)?;
    let mut config = ConnectionConfig::default();
    // USER/PASS in clear text: loopback only.
    config.session.insecure_cleartext_login = true;
    let mut conn = ClientConnection::new(config, clock.now(), None);

    run(&mut conn, &mut socket, clock, Connect::new(false))?;
    if let Some(greeting) = conn.machine().greeting() {
        println!(
            "greeting: +OK {}",
            String::from_utf8_lossy(greeting.line.text.as_bytes())
        );
    }
    run(&mut conn, &mut socket, clock, Login::new("alice", "secret"))?;
    let stat = run(&mut conn, &mut socket, clock, Stat::new())?;
    println!("STAT: {} messages, {} octets", stat.count, stat.size);
    for entry in run(&mut conn, &mut socket, clock, List::new())? {
        let message = retrieve(&mut conn, &mut socket, clock, entry.msg)?;
        println!("RETR {} ({} octets, as LIST said):", entry.msg, entry.size);
        println!("{}", String::from_utf8_lossy(&message).trim_end());
        assert_eq!(message.len() as u64, entry.size);
    }
    run(&mut conn, &mut socket, clock, Simple::new(Command::Quit))?;
    drop(socket);

    server.join().expect("the server thread")?;
    println!("both sides done");
    Ok(())
}
