//! Whom a worker serves: the checks a process started with the worker marker makes
//! before it reads a single frame, so that whoever sets the marker in a fondo-built
//! program's environment cannot make it run functions of their choosing unless
//! they could already run anything with its privileges.
//!
//! The threat model and the test of each check are in RELIABILITY.md ("Security").
//! In short: a worker serves only its parent process, over a Unix stream socket
//! that parent made itself (peer credentials), with the parent's user and group;
//! and a secure-execution launch (setuid, setgid, file capabilities) never serves.

use std::fmt;
use std::os::fd::{BorrowedFd, RawFd};

/// The exit code of a process that refused to serve as a worker (`EX_NOPERM`).
pub(crate) const REFUSED: i32 = 77;

/// How the kernel started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// With the privileges of whoever started it.
    Ordinary,
    /// Secure execution (`AT_SECURE`): setuid, setgid or file capabilities gave us
    /// privileges our caller lacks, or a security module asked for care. Whoever
    /// set our environment and descriptors may be less trusted than we now are.
    Secure,
}

/// How this process was started.
pub(crate) fn launch() -> Launch {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave this process; it
    // has no preconditions and returns 0 for a type it does not find.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) };
    if secure == 0 {
        Launch::Ordinary
    } else {
        Launch::Secure
    }
}

/// Refuses to start workers from a secure-execution launch: each would be a secure
/// launch too, and ignore the marker (running `main` again instead of serving).
pub(crate) fn may_start_workers(launch: Launch) -> crate::Result<()> {
    match launch {
        Launch::Ordinary => Ok(()),
        Launch::Secure => Err(crate::Error::Spawn(
            "worker processes are not available to a setuid, setgid or file-capability \
             program (a secure-execution launch): use threads"
                .into(),
        )),
    }
}

/// What the worker marker says this process was handed.
#[derive(Debug)]
pub(crate) struct Handed {
    /// The socket to the parent.
    pub(crate) sock: RawFd,
    /// The shared-memory files, by use; `None` for one the parent did not send.
    pub(crate) memory: Vec<(&'static str, Option<RawFd>)>,
    /// The PID of the parent that set the marker.
    pub(crate) parent: u32,
}

/// Checks everything a worker was handed; `Err` says why it must not serve.
pub(crate) fn admit(handed: &Handed) -> Result<(), Refusal> {
    judge_numbers(handed)?;
    judge_socket(handed.sock, observe(handed.sock))?;
    for &(what, fd) in &handed.memory {
        if let Some(fd) = fd {
            judge_memory(what, fd, observe(fd))?;
        }
    }
    let peer = peer_credentials(handed.sock).map_err(|e| Refusal::PeerUnknown(e.to_string()))?;
    let own = Credentials {
        pid: rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()),
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    };
    judge_peer(handed.parent, own, peer)
}

/// What a descriptor turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    NotOpen,
    /// A socket: whether it is a Unix one, and a stream one.
    Socket {
        unix: bool,
        stream: bool,
    },
    /// A regular file in memory (a memfd; tmpfs files look the same).
    MemoryFile,
    /// A regular file on disk.
    File,
    Pipe,
    Other,
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FdKind::NotOpen => "not open",
            FdKind::Socket {
                unix: true,
                stream: true,
            } => "a Unix stream socket",
            FdKind::Socket { unix: true, .. } => "a Unix socket that is not a stream",
            FdKind::Socket { unix: false, .. } => "a network (not Unix) socket",
            FdKind::MemoryFile => "a memory file",
            FdKind::File => "a file on disk",
            FdKind::Pipe => "a pipe",
            FdKind::Other => "a device or directory",
        })
    }
}

/// Looks at a descriptor without taking it over.
fn observe(fd: RawFd) -> FdKind {
    use rustix::fs::FileType;
    // SAFETY: F_GETFD on any number is harmless: it fails with EBADF unless the
    // descriptor is open, and changes nothing.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return FdKind::NotOpen;
    }
    // SAFETY: just found open; nothing closes it while this borrow lives (the
    // constructor runs alone, before `main`).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(stat) = rustix::fs::fstat(fd) else {
        return FdKind::Other;
    };
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Socket => {
            use rustix::net::{AddressFamily, SocketType, sockopt};
            FdKind::Socket {
                unix: sockopt::socket_domain(fd).ok() == Some(AddressFamily::UNIX),
                stream: sockopt::socket_type(fd).ok() == Some(SocketType::STREAM),
            }
        }
        // Only shared memory (memfd, tmpfs, hugetlbfs) answers F_GET_SEALS.
        FileType::RegularFile if rustix::fs::fcntl_get_seals(fd).is_ok() => FdKind::MemoryFile,
        FileType::RegularFile => FdKind::File,
        FileType::Fifo => FdKind::Pipe,
        _ => FdKind::Other,
    }
}

/// Who made the Unix socket `sock` (`SO_PEERCRED`): for a socketpair, the process
/// that called `socketpair`, with its effective user and group at the time.
fn peer_credentials(sock: RawFd) -> std::io::Result<Credentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes, a `ucred` (three plain
    // integers, any value valid: an unconnected socket reports PID 0), into `cred`,
    // which is that large; `sock` is a plain number, EBADF if it is not open.
    // (Not rustix's `socket_peercred`: it reads the PID into a non-zero type.)
    let got = unsafe {
        libc::getsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if got != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(std::io::Error::other("short SO_PEERCRED answer"));
    }
    Ok(Credentials {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The socket and the memory files must be named, each by a number of its own.
fn judge_numbers(handed: &Handed) -> Result<(), Refusal> {
    if handed.sock < 0 {
        return Err(Refusal::Missing("socket"));
    }
    let mut seen = vec![handed.sock];
    for &(what, fd) in &handed.memory {
        match fd {
            Some(fd) if fd < 0 => return Err(Refusal::Missing(what)),
            Some(fd) if seen.contains(&fd) => return Err(Refusal::NamedTwice(fd)),
            Some(fd) => seen.push(fd),
            None => {}
        }
    }
    Ok(())
}

/// The socket must be a Unix stream socket: the only kind whose peer the kernel vouches for.
fn judge_socket(fd: RawFd, kind: FdKind) -> Result<(), Refusal> {
    match kind {
        FdKind::Socket {
            unix: true,
            stream: true,
        } => Ok(()),
        found => Err(Refusal::WrongKind {
            what: "socket",
            fd,
            found,
            wanted: "a Unix stream socket",
        }),
    }
}

/// Shared memory must be a memory file, not a file on disk or anything else.
fn judge_memory(what: &'static str, fd: RawFd, kind: FdKind) -> Result<(), Refusal> {
    match kind {
        FdKind::MemoryFile => Ok(()),
        found => Err(Refusal::WrongKind {
            what,
            fd,
            found,
            wanted: "a memory file",
        }),
    }
}

/// A process's credentials as the kernel reports them: for the socket's peer, those
/// of the process that made the socket, when it made it; for us, our parent's PID
/// and our effective user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) pid: i32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The marker must name our parent, the socket must be our parent's own making, and
/// our parent must have had our user and group when it made it: then whoever can
/// talk to us could already run anything we can.
fn judge_peer(named: u32, own: Credentials, peer: Credentials) -> Result<(), Refusal> {
    let parent = own.pid;
    if i64::from(named) != i64::from(parent) {
        return Err(Refusal::NotOurParent { named, parent });
    }
    if peer.pid != parent {
        return Err(Refusal::SocketNotParents {
            maker: peer.pid,
            parent,
        });
    }
    if (peer.uid, peer.gid) != (own.uid, own.gid) {
        return Err(Refusal::OtherUser {
            maker: (peer.uid, peer.gid),
            own: (own.uid, own.gid),
        });
    }
    Ok(())
}

/// Why a process started with the worker marker does not serve.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The marker is not of the form the parent writes.
    Malformed(String),
    /// The marker names no descriptor for this.
    Missing(&'static str),
    /// The marker names this descriptor for two uses.
    NamedTwice(RawFd),
    /// A descriptor is not what its use needs.
    WrongKind {
        what: &'static str,
        fd: RawFd,
        found: FdKind,
        wanted: &'static str,
    },
    /// The marker names a process that is not our parent.
    NotOurParent { named: u32, parent: i32 },
    /// The socket was made by a process other than our parent.
    SocketNotParents { maker: i32, parent: i32 },
    /// The socket's maker ran as another user or group (uid, gid) than we do.
    OtherUser { maker: (u32, u32), own: (u32, u32) },
    /// The kernel would not say who made the socket.
    PeerUnknown(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(spec) => write!(f, "the marker {spec:?} is malformed"),
            Refusal::Missing(what) => write!(f, "the marker names no {what}"),
            Refusal::NamedTwice(fd) => write!(f, "the marker names descriptor {fd} twice"),
            Refusal::WrongKind {
                what,
                fd,
                found,
                wanted,
            } => write!(f, "descriptor {fd}, the {what}, is {found}, not {wanted}"),
            Refusal::NotOurParent { named, parent } => write!(
                f,
                "the marker names process {named} as the parent, but the parent is {parent}"
            ),
            Refusal::SocketNotParents { maker, parent } => write!(
                f,
                "the socket's peer is process {maker}, not the parent {parent}"
            ),
            Refusal::OtherUser { maker, own } => write!(
                f,
                "the socket's peer runs as uid {}, gid {}, this process as uid {}, gid {}",
                maker.0, maker.1, own.0, own.1
            ),
            Refusal::PeerUnknown(e) => write!(f, "the socket's peer is unknown ({e})"),
        }
    }
}

impl Refusal {
    /// Says why on stderr and exits with [`REFUSED`]: `main` does not run either,
    /// since the process was started to be a worker, not to be the program.
    pub(crate) fn exit(self) -> ! {
        crate::diag::diag!(
            "fondo: process {} refuses to serve as a worker: {self} \
             (it was started with the {} marker; see fondo's RELIABILITY.md, Security)",
            std::process::id(),
            crate::process::parent::spawn::WORKER_ENV,
        );
        std::process::exit(REFUSED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIX_STREAM: FdKind = FdKind::Socket {
        unix: true,
        stream: true,
    };

    fn handed(sock: RawFd, memory: &[(&'static str, Option<RawFd>)]) -> Result<(), Refusal> {
        judge_numbers(&Handed {
            sock,
            memory: memory.to_vec(),
            parent: 1,
        })
    }

    #[test]
    fn every_descriptor_is_named_once() {
        let all = [("progress", Some(4)), ("lanes", Some(5)), ("arena", None)];
        assert_eq!(handed(3, &all), Ok(()));
        assert_eq!(handed(-1, &all), Err(Refusal::Missing("socket")));
        assert_eq!(
            handed(3, &[("progress", Some(-1))]),
            Err(Refusal::Missing("progress"))
        );
        assert_eq!(
            handed(3, &[("progress", Some(3))]),
            Err(Refusal::NamedTwice(3))
        );
        assert_eq!(
            handed(3, &[("progress", Some(4)), ("lanes", Some(4))]),
            Err(Refusal::NamedTwice(4))
        );
    }

    #[test]
    fn only_a_unix_stream_socket_is_a_socket() {
        assert_eq!(judge_socket(3, UNIX_STREAM), Ok(()));
        for found in [
            FdKind::NotOpen,
            FdKind::Socket {
                unix: true,
                stream: false,
            },
            FdKind::Socket {
                unix: false,
                stream: true,
            },
            FdKind::MemoryFile,
            FdKind::File,
            FdKind::Pipe,
            FdKind::Other,
        ] {
            let refused = judge_socket(3, found);
            assert!(
                matches!(refused, Err(Refusal::WrongKind { found: f, .. }) if f == found),
                "{found:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn only_a_memory_file_is_shared_memory() {
        assert_eq!(judge_memory("lanes", 5, FdKind::MemoryFile), Ok(()));
        for found in [FdKind::File, FdKind::Pipe, UNIX_STREAM, FdKind::NotOpen] {
            assert!(judge_memory("lanes", 5, found).is_err(), "{found:?}");
        }
    }

    const OWN: Credentials = Credentials {
        pid: 100,
        uid: 1000,
        gid: 1000,
    };

    #[test]
    fn the_parent_that_made_the_socket_with_our_credentials_is_served() {
        assert_eq!(judge_peer(100, OWN, OWN), Ok(()));
    }

    #[test]
    fn anyone_else_at_the_other_end_is_refused() {
        // The marker names another process (or a parent that has since died).
        assert_eq!(
            judge_peer(99, OWN, OWN),
            Err(Refusal::NotOurParent {
                named: 99,
                parent: 100
            })
        );
        // A connection made by someone else, passed down through our parent.
        let client = Credentials { pid: 555, ..OWN };
        assert_eq!(
            judge_peer(100, OWN, client),
            Err(Refusal::SocketNotParents {
                maker: 555,
                parent: 100
            })
        );
        // Our parent made it, but as another user or group than we run as.
        for (uid, gid) in [(0, 1000), (1000, 0), (1001, 1001)] {
            let other = Credentials { uid, gid, ..OWN };
            assert!(
                matches!(judge_peer(100, OWN, other), Err(Refusal::OtherUser { .. })),
                "uid {uid} gid {gid}"
            );
        }
    }

    #[test]
    fn secure_launches_start_no_workers() {
        assert!(may_start_workers(Launch::Ordinary).is_ok());
        assert!(matches!(
            may_start_workers(Launch::Secure),
            Err(crate::Error::Spawn(_))
        ));
        assert_eq!(launch(), Launch::Ordinary, "tests run without setuid");
    }

    #[test]
    fn a_socketpair_of_ours_was_made_by_us() {
        use std::os::fd::AsRawFd;
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let made_by = peer_credentials(a.as_raw_fd()).expect("SO_PEERCRED");
        assert_eq!(
            made_by,
            Credentials {
                pid: std::process::id() as i32,
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
            }
        );
        assert!(peer_credentials(-1).is_err());
    }

    #[test]
    fn what_this_process_holds_is_told_apart() {
        use std::os::fd::AsRawFd;
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        assert_eq!(observe(a.as_raw_fd()), UNIX_STREAM);
        let (d, _e) = std::os::unix::net::UnixDatagram::pair().expect("socketpair");
        assert_eq!(
            observe(d.as_raw_fd()),
            FdKind::Socket {
                unix: true,
                stream: false
            }
        );
        let memfd = rustix::fs::memfd_create("fondo-trust-test", rustix::fs::MemfdFlags::CLOEXEC)
            .expect("memfd");
        assert_eq!(observe(memfd.as_raw_fd()), FdKind::MemoryFile);
        let (r, _w) = std::io::pipe().expect("pipe");
        assert_eq!(observe(r.as_raw_fd()), FdKind::Pipe);
        let exe = std::fs::File::open("/proc/self/exe").expect("open exe");
        assert_eq!(observe(exe.as_raw_fd()), FdKind::File);
        assert_eq!(observe(-1), FdKind::NotOpen);
        assert_eq!(observe(1_000_000), FdKind::NotOpen);
    }
}
