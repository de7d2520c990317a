//! `pop3d` and its host: the service user it drops root for, the listening
//! sockets a service manager hands over (systemd's socket activation), and
//! the readiness notices it sends that manager.

use super::{BoundListener, BoxError, Sourced, StartupError};
use pop3_proto::__tracing as tracing;

/// The account `pop3d` serves as once its listeners are bound and its
/// files read: `user` (and `group`, else the user's primary group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceUser {
    pub name: String,
    pub group: String,
    #[cfg(unix)]
    uid: nix::unistd::Uid,
    #[cfg(unix)]
    gid: nix::unistd::Gid,
}

/// How the process stands towards root at start.
#[derive(Debug)]
pub(crate) enum RootPolicy {
    /// Not root, or root with nowhere to go: serve as is.
    Stay,
    /// Root: become this user once everything is open.
    Drop(ServiceUser),
}

/// Looks up `user` and `group` and decides what to do about root: serving
/// as root is refused unless allowed, or the embedded demo maildrop is
/// served (with a warning).
pub(crate) fn root_policy(
    user: Option<&Sourced<String>>,
    group: Option<&Sourced<String>>,
    allow_root: bool,
    demo: bool,
) -> Result<RootPolicy, BoxError> {
    if let (None, Some(group)) = (user, group) {
        return Err(
            StartupError(format!("{} {}: needs user too", group.origin, group.value)).into(),
        );
    }
    #[cfg(unix)]
    {
        let target = match user {
            Some(user) => Some(lookup(user, group)?),
            None => None,
        };
        let root = nix::unistd::geteuid().is_root();
        match (root, target) {
            (true, Some(target)) => Ok(RootPolicy::Drop(target)),
            (false, Some(target)) => {
                let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
                if target.uid == uid && target.gid == gid {
                    Ok(RootPolicy::Stay)
                } else {
                    Err(StartupError(format!(
                        "user {}: becoming another user needs root (running as uid {uid}, gid {gid})",
                        target.name
                    ))
                    .into())
                }
            }
            (true, None) if allow_root => {
                tracing::warn!("serving as root, as allow_root says");
                Ok(RootPolicy::Stay)
            }
            (true, None) if demo => {
                tracing::warn!(
                    "serving the demo maildrop as root; a real deployment sets user (--user) to the account to serve as"
                );
                Ok(RootPolicy::Stay)
            }
            (true, None) => Err(StartupError(
                "refusing to serve as root: set user (--user) to the account to serve as, or pass --allow-root (allow_root = true) to serve as root anyway".into(),
            )
            .into()),
            (false, None) => Ok(RootPolicy::Stay),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (allow_root, demo);
        match user {
            Some(user) => Err(StartupError(format!(
                "{} {}: this platform has no users to switch to",
                user.origin, user.value
            ))
            .into()),
            None => Ok(RootPolicy::Stay),
        }
    }
}

#[cfg(unix)]
fn lookup(
    user: &Sourced<String>,
    group: Option<&Sourced<String>>,
) -> Result<ServiceUser, BoxError> {
    use nix::unistd::{Group, User};
    let found = User::from_name(&user.value)
        .map_err(|e| StartupError(format!("{} {}: {e}", user.origin, user.value)))?
        .ok_or_else(|| StartupError(format!("{} {}: no such user", user.origin, user.value)))?;
    let (gid, group_name) = match group {
        Some(group) => {
            let g = Group::from_name(&group.value)
                .map_err(|e| StartupError(format!("{} {}: {e}", group.origin, group.value)))?
                .ok_or_else(|| {
                    StartupError(format!("{} {}: no such group", group.origin, group.value))
                })?;
            (g.gid, g.name)
        }
        None => {
            let name = Group::from_gid(found.gid)
                .ok()
                .flatten()
                .map_or_else(|| found.gid.to_string(), |g| g.name);
            (found.gid, name)
        }
    };
    Ok(ServiceUser {
        name: found.name,
        group: group_name,
        uid: found.uid,
        gid,
    })
}

impl ServiceUser {
    /// Gives `path` (a file made as root that the server removes later) to
    /// the service user.
    pub fn give(&self, path: &std::path::Path) -> Result<(), BoxError> {
        #[cfg(unix)]
        std::os::unix::fs::chown(path, Some(self.uid.as_raw()), Some(self.gid.as_raw()))
            .map_err(|e| format!("cannot give {} to user {}: {e}", path.display(), self.name))?;
        #[cfg(not(unix))]
        let _ = path;
        Ok(())
    }

    /// Becomes the service user for good: its group as the only
    /// supplementary one, then the group, then the user; then checks that
    /// root cannot be regained.
    pub fn become_it(&self) -> Result<(), BoxError> {
        #[cfg(unix)]
        {
            use nix::unistd::{Uid, getegid, geteuid, getgid, getuid, setgid, setgroups, setuid};
            let failed = |what: &str, e: nix::Error| -> BoxError {
                StartupError(format!(
                    "cannot become user {} (group {}): {what}: {e}",
                    self.name, self.group
                ))
                .into()
            };
            setgroups(&[self.gid]).map_err(|e| failed("setgroups", e))?;
            setgid(self.gid).map_err(|e| failed("setgid", e))?;
            setuid(self.uid).map_err(|e| failed("setuid", e))?;
            let now = (getuid(), geteuid(), getgid(), getegid());
            if now != (self.uid, self.uid, self.gid, self.gid) {
                return Err(StartupError(format!(
                    "cannot become user {}: still uid {}/{}, gid {}/{}",
                    self.name, now.0, now.1, now.2, now.3
                ))
                .into());
            }
            if !self.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
                return Err(StartupError(format!(
                    "became user {} but could become root again",
                    self.name
                ))
                .into());
            }
            tracing::info!("serving as user {} (group {})", self.name, self.group);
        }
        Ok(())
    }
}

/// The listeners a service manager handed over (`LISTEN_FDS` for this
/// process, from fd 3 on), `None` when there are none. Each is named in
/// `LISTEN_FDNAMES`: `pop3` a plain listener (STLS offered), `pop3s` an
/// implicit TLS one; without names every one is plain.
pub(crate) fn activated_listeners() -> Result<Option<Vec<BoundListener>>, BoxError> {
    #[cfg(unix)]
    {
        let names = std::env::var("LISTEN_FDNAMES").ok();
        let mut fds = listenfd::ListenFd::from_env();
        if fds.len() == 0 {
            return Ok(None);
        }
        let names: Vec<String> = match &names {
            Some(n) => n.split(':').map(str::to_owned).collect(),
            None => vec!["pop3".to_owned(); fds.len()],
        };
        if names.len() != fds.len() {
            return Err(StartupError(format!(
                "socket activation: {} sockets but {} names in LISTEN_FDNAMES",
                fds.len(),
                names.len()
            ))
            .into());
        }
        let mut listeners = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let tls = match name.as_str() {
                "pop3" => false,
                "pop3s" => true,
                other => {
                    return Err(StartupError(format!(
                        "socket activation: socket {i} is named {other:?}: name each socket pop3 (plain, STLS offered) or pop3s (implicit TLS) with FileDescriptorName="
                    ))
                    .into());
                }
            };
            let listener = fds
                .take_tcp_listener(i)
                .map_err(|e| StartupError(format!("socket activation: socket {i} ({name}): {e}")))?
                .ok_or_else(|| StartupError(format!("socket activation: socket {i} is gone")))?;
            // Whether they expect a PROXY header is decided by the caller.
            listeners.push(BoundListener {
                listener,
                tls,
                proxy: None,
            });
        }
        Ok(Some(listeners))
    }
    #[cfg(not(unix))]
    Ok(None)
}

/// Tells the service manager (`NOTIFY_SOCKET`, a path or an abstract
/// `@name`) the server's state: `READY=1`, `RELOADING=1`, `STOPPING=1`.
/// Nothing without a manager; a failure is logged, never fatal.
pub(crate) fn notify(state: &str) {
    #[cfg(unix)]
    {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        if let Err(e) = send_notice(&socket, state) {
            tracing::warn!(
                "cannot tell the service manager {}: {e}",
                state.lines().next().unwrap_or(state)
            );
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

#[cfg(unix)]
fn send_notice(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::UnixDatagram;
    let bytes = socket.as_bytes();
    let sender = UnixDatagram::unbound()?;
    match bytes.split_first() {
        #[cfg(target_os = "linux")]
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some((b'/', _)) => {
            sender.send_to(state.as_bytes(), socket)?;
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract @name",
            ));
        }
    }
    Ok(())
}

/// `RELOADING=1` with the monotonic clock's time, as systemd asks of a
/// `Type=notify-reload` service.
pub(crate) fn reloading_notice() -> String {
    #[cfg(unix)]
    {
        let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| {
                u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
                    + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000
            })
            .unwrap_or(0);
        format!("RELOADING=1\nMONOTONIC_USEC={usec}")
    }
    #[cfg(not(unix))]
    "RELOADING=1".to_owned()
}
