//! Why a store failed: the typed cause carried by
//! [`StoreError::Temporary`](super::StoreError::Temporary) and
//! [`StoreError::Permanent`](super::StoreError::Permanent).

use core::fmt;

/// What went wrong in a store, beyond whether trying again may help.
///
/// The server machine never shows a cause to the client (the reply carries
/// only a response code); causes are for logs and for the application.
///
/// ```
/// use pop3_proto::store::{Cause, IoKind, StoreError};
///
/// let e = StoreError::Temporary(Cause::Io { context: "lock file", kind: IoKind::PermissionDenied });
/// assert_eq!(e.to_string(), "temporary store failure: lock file: permission denied");
/// assert!(e.is_transient());
/// assert_eq!(e.cause(), Some(&Cause::Io { context: "lock file", kind: IoKind::PermissionDenied }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// An I/O operation failed.
    Io {
        /// What the store was doing or touching (`"lock file"`, `"reading
        /// message"`), for messages; match on `kind`, not on this.
        context: &'static str,
        /// The kind of I/O error.
        kind: IoKind,
    },
    /// Deleting messages failed for some of them.
    NotDeleted {
        /// How many deletions failed.
        failed: usize,
        /// The kind of the first failure.
        kind: IoKind,
    },
    /// The user name cannot name a maildrop (not a safe path component,
    /// say): it came from the network.
    BadUserName,
    /// The user is unknown to the store.
    NoSuchUser,
    /// The user has no maildrop, and the store does not create one.
    MaildropNotFound,
    /// No maildrop is open: a read or a commit without a successful open.
    NoMaildrop,
    /// No message is being read: a chunk asked for without a successful read.
    NotReading,
    /// The maildrop has no message at that index.
    NoSuchMessage,
    /// Stored data is damaged or malformed.
    Corrupt,
    /// A task running a blocking store call panicked or was cancelled.
    TaskFailed,
    /// The store's shared state was poisoned by an earlier panic.
    Poisoned,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Io { context, kind } => write!(f, "{context}: {kind}"),
            Cause::NotDeleted { failed, kind } => {
                write!(f, "{failed} failure(s) deleting messages: {kind}")
            }
            Cause::BadUserName => f.write_str("user name not allowed"),
            Cause::NoSuchUser => f.write_str("no such user"),
            Cause::MaildropNotFound => f.write_str("no maildrop for this user"),
            Cause::NoMaildrop => f.write_str("no maildrop is open"),
            Cause::NotReading => f.write_str("no message is being read"),
            Cause::NoSuchMessage => f.write_str("no such message"),
            Cause::Corrupt => f.write_str("stored data is damaged or malformed"),
            Cause::TaskFailed => f.write_str("store task panicked or was cancelled"),
            Cause::Poisoned => f.write_str("store state poisoned by an earlier panic"),
        }
    }
}

/// The kind of an I/O error, as a store reports it: the kinds of
/// `std::io::ErrorKind` a store meets, available without `std`.
///
/// With the `std` feature, `IoKind::from(error.kind())` converts (kinds
/// without a counterpart here become [`IoKind::Other`]).
///
/// ```
/// use pop3_proto::store::IoKind;
///
/// assert_eq!(IoKind::NotFound.to_string(), "not found");
/// # #[cfg(feature = "std")]
/// assert_eq!(IoKind::from(std::io::ErrorKind::StorageFull), IoKind::StorageFull);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoKind {
    /// An entity was not found (a file, a directory).
    NotFound,
    /// The operation lacked the necessary privileges.
    PermissionDenied,
    /// An entity already exists.
    AlreadyExists,
    /// The operation would block, or a lock is held elsewhere.
    WouldBlock,
    /// An invalid parameter was given.
    InvalidInput,
    /// Data read was not valid.
    InvalidData,
    /// The operation timed out.
    TimedOut,
    /// The operation was interrupted.
    Interrupted,
    /// The operation is not supported here.
    Unsupported,
    /// The end of a file came before it was expected.
    UnexpectedEof,
    /// Memory ran out.
    OutOfMemory,
    /// A directory was expected and something else found.
    NotADirectory,
    /// A non-directory was expected and a directory found.
    IsADirectory,
    /// A directory to remove is not empty.
    DirectoryNotEmpty,
    /// The filesystem is read-only.
    ReadOnlyFilesystem,
    /// A symbolic link where none is followed, or a loop of links.
    FilesystemLoop,
    /// A network filesystem handle went stale.
    StaleNetworkFileHandle,
    /// The storage is full.
    StorageFull,
    /// A filesystem quota is exceeded.
    QuotaExceeded,
    /// A file is larger than allowed.
    FileTooLarge,
    /// A resource is busy.
    ResourceBusy,
    /// A deadlock was avoided.
    Deadlock,
    /// A connection was refused (a store on the network).
    ConnectionRefused,
    /// A connection was reset.
    ConnectionReset,
    /// A connection was aborted.
    ConnectionAborted,
    /// There is no connection.
    NotConnected,
    /// The other end of a pipe or connection is gone.
    BrokenPipe,
    /// The network or host cannot be reached.
    Unreachable,
    /// Any other kind.
    Other,
}

impl fmt::Display for IoKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoKind::NotFound => "not found",
            IoKind::PermissionDenied => "permission denied",
            IoKind::AlreadyExists => "already exists",
            IoKind::WouldBlock => "operation would block",
            IoKind::InvalidInput => "invalid input parameter",
            IoKind::InvalidData => "invalid data",
            IoKind::TimedOut => "timed out",
            IoKind::Interrupted => "operation interrupted",
            IoKind::Unsupported => "unsupported",
            IoKind::UnexpectedEof => "unexpected end of file",
            IoKind::OutOfMemory => "out of memory",
            IoKind::NotADirectory => "not a directory",
            IoKind::IsADirectory => "is a directory",
            IoKind::DirectoryNotEmpty => "directory not empty",
            IoKind::ReadOnlyFilesystem => "read-only filesystem",
            IoKind::FilesystemLoop => "symbolic link not followed, or a loop of links",
            IoKind::StaleNetworkFileHandle => "stale network file handle",
            IoKind::StorageFull => "no storage space",
            IoKind::QuotaExceeded => "filesystem quota exceeded",
            IoKind::FileTooLarge => "file too large",
            IoKind::ResourceBusy => "resource busy",
            IoKind::Deadlock => "deadlock",
            IoKind::ConnectionRefused => "connection refused",
            IoKind::ConnectionReset => "connection reset",
            IoKind::ConnectionAborted => "connection aborted",
            IoKind::NotConnected => "not connected",
            IoKind::BrokenPipe => "broken pipe",
            IoKind::Unreachable => "network or host unreachable",
            IoKind::Other => "other I/O error",
        })
    }
}

#[cfg(feature = "std")]
impl From<std::io::ErrorKind> for IoKind {
    fn from(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind as K;
        match kind {
            K::NotFound => IoKind::NotFound,
            K::PermissionDenied => IoKind::PermissionDenied,
            K::AlreadyExists => IoKind::AlreadyExists,
            K::WouldBlock => IoKind::WouldBlock,
            K::InvalidInput => IoKind::InvalidInput,
            K::InvalidData => IoKind::InvalidData,
            K::TimedOut => IoKind::TimedOut,
            K::Interrupted => IoKind::Interrupted,
            K::Unsupported => IoKind::Unsupported,
            K::UnexpectedEof => IoKind::UnexpectedEof,
            K::OutOfMemory => IoKind::OutOfMemory,
            K::NotADirectory => IoKind::NotADirectory,
            K::IsADirectory => IoKind::IsADirectory,
            K::DirectoryNotEmpty => IoKind::DirectoryNotEmpty,
            K::ReadOnlyFilesystem => IoKind::ReadOnlyFilesystem,
            K::StaleNetworkFileHandle => IoKind::StaleNetworkFileHandle,
            K::StorageFull => IoKind::StorageFull,
            K::QuotaExceeded => IoKind::QuotaExceeded,
            K::FileTooLarge => IoKind::FileTooLarge,
            K::ResourceBusy => IoKind::ResourceBusy,
            K::Deadlock => IoKind::Deadlock,
            K::ConnectionRefused => IoKind::ConnectionRefused,
            K::ConnectionReset => IoKind::ConnectionReset,
            K::ConnectionAborted => IoKind::ConnectionAborted,
            K::NotConnected => IoKind::NotConnected,
            K::BrokenPipe => IoKind::BrokenPipe,
            K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => IoKind::Unreachable,
            _ => IoKind::Other,
        }
    }
}
