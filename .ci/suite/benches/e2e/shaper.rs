//! A loopback proxy that shapes a link: a one-way delay of half the
//! round trip in each direction, a rate cap (a serialising queue: each
//! piece leaves after the ones before it, at the link's rate, and arrives
//! a one-way delay later, so rate and delay compose as on a real link),
//! and a cut: both sides closed once a number of octets went down.
//!
//! The client connects to the proxy at once over loopback; the proxy
//! connects to the server one and a half round trips later, so the
//! server's greeting reaches the client two round trips after its
//! connect, as over a real link (SYN, SYN-ACK, then the ACK that
//! completes the server's accept, then the greeting).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Error;

/// The shape of a link.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The round-trip time; each direction delays by half of it.
    pub rtt: Duration,
    /// The rate of each direction, in bits per second.
    pub bits_per_second: f64,
    /// Close both sides once this many octets went from the server to the
    /// client.
    pub cut_after: Option<u64>,
}

impl Shape {
    /// The time `octets` take at the link's rate.
    pub fn transfer(&self, octets: u64) -> Duration {
        Duration::from_secs_f64(octets as f64 * 8.0 / self.bits_per_second)
    }
}

/// What went through the proxy since the last [`Proxy::take_counts`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Octets from the server to the client.
    pub down: u64,
    /// Client turns: writes of the client that came after it was sent
    /// something since its previous write (each one a round trip the
    /// client waited for), the TCP handshake and greeting not counted.
    pub turns: u64,
    /// Connections cut.
    pub cuts: u64,
}

#[derive(Default)]
struct Shared {
    down: AtomicU64,
    turns: AtomicU64,
    cuts: AtomicU64,
}

/// The proxy: listens on loopback, forwards each connection to
/// `upstream` through the shape. Stops on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The server and shape of the connections accepted from now on.
    route: Arc<Mutex<(SocketAddr, Shape)>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, shape: Shape) -> Result<Proxy, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let route = Arc::new(Mutex::new((upstream, shape)));
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (route, shared, stop) = (route.clone(), shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (upstream, shape) = *route.lock().expect("route lock");
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = connection(client, upstream, shape, &shared);
                    });
                }
            })
        };
        Ok(Proxy {
            addr,
            route,
            shared,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// Sends the connections accepted from now on to `upstream` through
    /// `shape` (the same address for the client: a client that keys its
    /// state by the server's port sees the same server).
    pub fn set_route(&self, upstream: SocketAddr, shape: Shape) {
        *self.route.lock().expect("route lock") = (upstream, shape);
    }

    /// The counts since the last call, reset to zero.
    pub fn take_counts(&self) -> Counts {
        let s = &self.shared;
        Counts {
            down: s.down.swap(0, Ordering::Relaxed),
            turns: s.turns.swap(0, Ordering::Relaxed),
            cuts: s.cuts.swap(0, Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the acceptor with a connection of our own.
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// A piece of one direction's stream and when the proxy read it.
struct Piece {
    at: Instant,
    data: Vec<u8>,
}

/// The largest piece the link serialises at once (about a TCP segment
/// burst), so that the rate is smooth at the client's side.
const PIECE: usize = 4096;

fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    shape: Shape,
    shared: &Arc<Shared>,
) -> Result<(), Error> {
    client.set_nodelay(true)?;
    // The handshake the loopback skipped, and the ACK's way to the server.
    std::thread::sleep(shape.rtt.mul_f64(1.5));
    let server = TcpStream::connect(upstream)?;
    server.set_nodelay(true)?;
    let server_spoke = Arc::new(AtomicBool::new(false));
    let closer = {
        let (c, s) = (client.try_clone()?, server.try_clone()?);
        Arc::new(move || {
            let _ = c.shutdown(Shutdown::Both);
            let _ = s.shutdown(Shutdown::Both);
        })
    };
    let half = shape.rtt / 2;
    // Down: server → client, counted, maybe cut.
    let down = {
        let (from, to) = (server.try_clone()?, client.try_clone()?);
        let (shared, spoke, closer) = (shared.clone(), server_spoke.clone(), closer.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            direction(
                from,
                to,
                half,
                shape,
                &|_| {},
                &mut |piece: &[u8]| {
                    let allowed = match shape.cut_after {
                        Some(limit) => limit.saturating_sub(sent).min(piece.len() as u64) as usize,
                        None => piece.len(),
                    };
                    sent += allowed as u64;
                    shared.down.fetch_add(allowed as u64, Ordering::Relaxed);
                    // Delivered: the client has something to answer.
                    spoke.store(true, Ordering::Relaxed);
                    let cut = shape.cut_after.is_some_and(|limit| sent >= limit);
                    if cut {
                        shared.cuts.fetch_add(1, Ordering::Relaxed);
                    }
                    (allowed, cut)
                },
                &*closer,
            );
        })
    };
    // Up: client → server, counted, with the client's turns.
    let up = {
        let (from, to) = (client.try_clone()?, server.try_clone()?);
        let (spoke, closer) = (server_spoke.clone(), closer.clone());
        let counter = shared.clone();
        std::thread::spawn(move || {
            direction(
                from,
                to,
                half,
                shape,
                &move |_| {
                    if spoke.swap(false, Ordering::Relaxed) {
                        counter.turns.fetch_add(1, Ordering::Relaxed);
                    }
                },
                &mut |piece: &[u8]| (piece.len(), false),
                &*closer,
            );
        })
    };
    let _ = down.join();
    let _ = up.join();
    Ok(())
}

/// Moves one direction: a reader thread stamps what it reads (`on_read`
/// sees each read's length), this thread delivers each piece when the
/// link would. `gate` says how much of a piece to deliver and whether to
/// cut after it.
fn direction(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    shape: Shape,
    on_read: &(dyn Fn(usize) + Sync),
    gate: &mut dyn FnMut(&[u8]) -> (usize, bool),
    close: &(dyn Fn() + Sync),
) {
    let (tx, rx) = mpsc::channel::<Piece>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        on_read(n);
                        let at = Instant::now();
                        for chunk in buf[..n].chunks(PIECE) {
                            if tx
                                .send(Piece {
                                    at,
                                    data: chunk.to_vec(),
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
        });
        // The time the link is busy until (the last piece's serialisation).
        let mut free = Instant::now();
        let mut pending: VecDeque<Piece> = VecDeque::new();
        loop {
            let piece = match pending.pop_front() {
                Some(p) => p,
                None => match rx.recv() {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let start = free.max(piece.at);
            let serialised = start + shape.transfer(piece.data.len() as u64);
            free = serialised;
            let arrive = serialised + delay;
            let now = Instant::now();
            if arrive > now {
                std::thread::sleep(arrive - now);
            }
            let (n, cut) = gate(&piece.data);
            if to.write_all(&piece.data[..n]).is_err() {
                break;
            }
            if cut {
                close();
                break;
            }
        }
        // The sender closed (or the link was cut): pass the close on.
        let _ = to.shutdown(Shutdown::Write);
        drop(rx);
    });
}
