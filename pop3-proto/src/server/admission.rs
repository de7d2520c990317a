//! Who gets a session: the connection caps, kept apart from any socket so
//! that every adapter applies the same rules.

use alloc::collections::BTreeMap;
use core::fmt;
use core::net::{IpAddr, Ipv6Addr};

use super::ServerOptions;

/// Why a connection is refused. The adapter writes [`Refusal::reply`] and
/// closes at once: a client over a cap learns it promptly instead of
/// waiting, greeting-less, in the listen backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// [`ServerOptions::max_connections`] sessions are open.
    Full,
    /// [`ServerOptions::max_connections_per_address`] sessions are open
    /// from the client's address (its /64 for IPv6).
    AddressFull,
}

impl Refusal {
    /// The line to send before closing (RFC 2449 `SYS/TEMP`: try again
    /// later).
    pub fn reply(self) -> &'static [u8] {
        match self {
            Refusal::Full => b"-ERR [SYS/TEMP] Too many connections; try again later.\r\n",
            Refusal::AddressFull => {
                b"-ERR [SYS/TEMP] Too many connections from your address; try again later.\r\n"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Full => "the connection cap is reached",
            Refusal::AddressFull => "the per-address connection cap is reached",
        })
    }
}

/// A client address as the caps count it: IPv4 addresses one by one
/// (IPv4-mapped IPv6 addresses as the IPv4 address), IPv6 addresses by
/// their /64 prefix, which one subscriber usually holds whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `addr`.
    pub fn of(addr: IpAddr) -> AddressKey {
        match addr {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressKey(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// The connection caps of one server, shared by all its listeners: at most
/// [`ServerOptions::max_connections`] sessions, and at most
/// [`ServerOptions::max_connections_per_address`] from one client address,
/// so that one client (or one network) holding idle connections cannot
/// keep everyone else out.
///
/// Every [`Admission::admit`] that succeeds is matched by one
/// [`Admission::release`] with the same key when the session ends.
///
/// ```
/// use pop3_proto::server::{Admission, Refusal, ServerOptions};
///
/// let mut options = ServerOptions::default();
/// options.max_connections_per_address = 2;
/// let mut admission = Admission::new(&options);
/// let a = admission.admit("192.0.2.7".parse().unwrap()).unwrap();
/// let b = admission.admit("192.0.2.7".parse().unwrap()).unwrap();
/// assert_eq!(admission.admit("192.0.2.7".parse().unwrap()), Err(Refusal::AddressFull));
/// assert!(admission.admit("198.51.100.1".parse().unwrap()).is_ok());
/// admission.release(a);
/// assert!(admission.admit("192.0.2.7".parse().unwrap()).is_ok());
/// # let _ = b;
/// ```
#[derive(Debug, Clone)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    open: usize,
    by_address: BTreeMap<AddressKey, usize>,
}

impl Admission {
    /// Caps from `options`.
    pub fn new(options: &ServerOptions) -> Admission {
        Admission {
            max_total: options.max_connections.max(1),
            max_per_address: options.max_connections_per_address.max(1),
            open: 0,
            by_address: BTreeMap::new(),
        }
    }

    /// Counts a new connection from `peer`, or says why it is refused.
    pub fn admit(&mut self, peer: IpAddr) -> Result<AddressKey, Refusal> {
        let key = AddressKey::of(peer);
        if self.open >= self.max_total {
            return Err(Refusal::Full);
        }
        let count = self.by_address.entry(key).or_insert(0);
        if *count >= self.max_per_address {
            return Err(Refusal::AddressFull);
        }
        *count += 1;
        self.open += 1;
        Ok(key)
    }

    /// A session admitted under `key` ended.
    pub fn release(&mut self, key: AddressKey) {
        if let Some(count) = self.by_address.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.by_address.remove(&key);
            }
            self.open = self.open.saturating_sub(1);
        }
    }

    /// Puts new caps from `options` in force: sessions already open stay
    /// (over a lowered cap, new connections are refused until enough of
    /// them have ended).
    ///
    /// ```
    /// use pop3_proto::server::{Admission, Refusal, ServerOptions};
    ///
    /// let mut admission = Admission::new(&ServerOptions::default());
    /// let open = admission.admit("192.0.2.7".parse().unwrap()).unwrap();
    /// let mut options = ServerOptions::default();
    /// options.max_connections = 1;
    /// admission.set_caps(&options);
    /// assert_eq!(admission.open(), 1);
    /// assert_eq!(admission.admit("198.51.100.1".parse().unwrap()), Err(Refusal::Full));
    /// admission.release(open);
    /// assert!(admission.admit("198.51.100.1".parse().unwrap()).is_ok());
    /// ```
    pub fn set_caps(&mut self, options: &ServerOptions) {
        self.max_total = options.max_connections.max(1);
        self.max_per_address = options.max_connections_per_address.max(1);
    }

    /// The caps in force: sessions in all, and from one address.
    pub fn caps(&self) -> (usize, usize) {
        (self.max_total, self.max_per_address)
    }

    /// Counts a new connection under the total cap only, before its
    /// client's address is known (a connection from a proxy, whose header
    /// names the client): [`Admission::address`] then counts it under the
    /// client's address, or [`Admission::release_unaddressed`] gives its
    /// place back.
    ///
    /// ```
    /// use pop3_proto::server::{Admission, Refusal, ServerOptions};
    ///
    /// let mut options = ServerOptions::default();
    /// options.max_connections = 2;
    /// options.max_connections_per_address = 1;
    /// let mut admission = Admission::new(&options);
    /// admission.admit_unaddressed()?; // the header is being read
    /// admission.admit_unaddressed()?;
    /// assert_eq!(admission.admit_unaddressed(), Err(Refusal::Full));
    /// let key = admission.address("192.0.2.7".parse().unwrap())?;
    /// assert_eq!(admission.address("192.0.2.7".parse().unwrap()), Err(Refusal::AddressFull));
    /// admission.release_unaddressed(); // that one is closed
    /// admission.release(key);
    /// assert_eq!(admission.open(), 0);
    /// # Ok::<(), Refusal>(())
    /// ```
    pub fn admit_unaddressed(&mut self) -> Result<(), Refusal> {
        if self.open >= self.max_total {
            return Err(Refusal::Full);
        }
        self.open += 1;
        Ok(())
    }

    /// Counts a connection already counted by
    /// [`Admission::admit_unaddressed`] under its client's address `peer`,
    /// or says why it is refused (it then stays counted, until
    /// [`Admission::release_unaddressed`]). The key goes to
    /// [`Admission::release`] when the session ends.
    pub fn address(&mut self, peer: IpAddr) -> Result<AddressKey, Refusal> {
        let key = AddressKey::of(peer);
        let count = self.by_address.entry(key).or_insert(0);
        if *count >= self.max_per_address {
            return Err(Refusal::AddressFull);
        }
        *count += 1;
        Ok(key)
    }

    /// A connection counted by [`Admission::admit_unaddressed`] and never
    /// given an address ended.
    pub fn release_unaddressed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Sessions open now from `peer`'s address.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        self.by_address
            .get(&AddressKey::of(peer))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_address: usize) -> Admission {
        Admission::new(&ServerOptions {
            max_connections: total,
            max_connections_per_address: per_address,
            ..ServerOptions::default()
        })
    }

    #[test]
    fn the_total_cap_refuses_as_full() {
        let mut a = admission(2, 10);
        a.admit("10.0.0.1".parse().unwrap()).unwrap();
        a.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(a.admit("10.0.0.3".parse().unwrap()), Err(Refusal::Full));
        assert_eq!(a.open(), 2);
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address_and_mapped_ipv4_as_ipv4() {
        let mut a = admission(100, 2);
        a.admit("2001:db8::1".parse().unwrap()).unwrap();
        a.admit("2001:db8::ffff:1".parse().unwrap()).unwrap();
        assert_eq!(
            a.admit("2001:db8::2".parse().unwrap()),
            Err(Refusal::AddressFull)
        );
        assert!(a.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let v4 = a.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(a.open_from("::ffff:192.0.2.1".parse().unwrap()), 1);
        a.release(v4);
        assert_eq!(a.open_from("192.0.2.1".parse().unwrap()), 0);
    }

    #[test]
    fn release_frees_both_counts_and_a_stray_release_changes_nothing() {
        let mut a = admission(1, 1);
        let key = a.admit("10.0.0.1".parse().unwrap()).unwrap();
        a.release(key);
        a.release(key);
        assert_eq!(a.open(), 0);
        assert!(a.admit("10.0.0.9".parse().unwrap()).is_ok());
    }

    #[test]
    fn refusals_are_sys_temp_lines() {
        for r in [Refusal::Full, Refusal::AddressFull] {
            let line = r.reply();
            assert!(line.starts_with(b"-ERR [SYS/TEMP] "));
            assert!(line.ends_with(b"\r\n") && line.len() <= 512);
        }
    }

    #[test]
    fn lowered_caps_keep_open_sessions_and_refuse_new_ones_until_under() {
        let mut a = admission(3, 3);
        let keys: Vec<_> = (0..3)
            .map(|_| a.admit("10.0.0.1".parse().unwrap()).unwrap())
            .collect();
        a.set_caps(&ServerOptions {
            max_connections: 10,
            max_connections_per_address: 1,
            ..ServerOptions::default()
        });
        assert_eq!(a.open_from("10.0.0.1".parse().unwrap()), 3);
        assert_eq!(
            a.admit("10.0.0.1".parse().unwrap()),
            Err(Refusal::AddressFull)
        );
        a.release(keys[0]);
        a.release(keys[1]);
        assert_eq!(
            a.admit("10.0.0.1".parse().unwrap()),
            Err(Refusal::AddressFull)
        );
        a.release(keys[2]);
        assert!(a.admit("10.0.0.1".parse().unwrap()).is_ok());
    }

    #[test]
    fn an_unaddressed_connection_counts_under_the_total_cap_only() {
        let mut a = admission(2, 1);
        a.admit_unaddressed().unwrap();
        let key = a.admit("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(a.admit_unaddressed(), Err(Refusal::Full));
        assert_eq!(
            a.address("10.0.0.1".parse().unwrap()),
            Err(Refusal::AddressFull)
        );
        a.release_unaddressed();
        assert_eq!(a.open(), 1);
        a.release(key);
        a.admit_unaddressed().unwrap();
        let key = a.address("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(a.open(), 1);
        a.release(key);
        assert_eq!(a.open(), 0);
    }
}
