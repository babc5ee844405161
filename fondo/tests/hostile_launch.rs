//! A fondo-built program started by someone other than a fondo parent, with the
//! worker marker in its environment: the launches of the threat model in
//! RELIABILITY.md ("Security"), each made for real against this very test binary
//! (it links fondo, so fondo's constructor diverts it before `main`).
//!
//! Each forged launch hands the program a `Run` frame naming `plant`, which writes
//! a file if it ever runs. The file must never appear, and the program must refuse
//! with a message and exit code 77 — or, for a secure-execution (setuid) launch,
//! ignore the marker and run `main`. Only its own parent, with its own user and
//! group, over a socket that parent made, gets its tasks run: that launch is shown
//! too, from an executable whose path holds spaces or that was deleted, where an
//! offset outside the code must still be refused.
//!
//! Every launched copy gets the arguments `--exact probe_main`: should the marker
//! be ignored, `main` (this test harness) runs `probe_main` alone, which writes
//! down that it ran — never the launches again. A copy fondo itself started as a
//! worker that then ran `main` anyway (it has no such arguments) exits at once:
//! should a regression let a secure launch start workers, each would otherwise run
//! every test here, and launch copies of copies.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fondo::process::forge;

/// The exit code of a process that refuses to serve as a worker.
const REFUSED: i32 = 77;
/// Where `plant` writes, if it ever runs.
const PLANT_AT: &str = "FONDO_HOSTILE_PLANT_AT";
/// Where `probe_main` writes, if `main` runs.
const PROBE_AT: &str = "FONDO_HOSTILE_PROBE_AT";
/// The user and group `nobody`.
const NOBODY: u32 = 65534;

/// What a hostile launcher wants run: leaves a file behind if it ever runs.
fn plant() -> u32 {
    if let Some(path) = std::env::var_os(PLANT_AT) {
        let _ = std::fs::write(path, "planted");
    }
    7
}

/// Ends this process if fondo started it as a worker and it runs `main` instead
/// (its first argument ends with " [fondo worker]"): it must launch nothing.
fn exit_if_a_worker_runs_main() {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    if arg0.to_string_lossy().ends_with("[fondo worker]") {
        std::process::exit(0);
    }
}

/// Not a test of its own: `main` of a launched copy that ignored the marker runs
/// this alone, and it says so, with what became of its attempt to start a worker.
#[test]
fn probe_main() {
    exit_if_a_worker_runs_main();
    let Some(path) = std::env::var_os(PROBE_AT) else {
        return;
    };
    let workers = fondo::Pool::processes(1)
        .map(|_| "started")
        .map_err(|e| e.to_string());
    std::fs::write(path, format!("main ran; workers: {workers:?}")).expect("write the probe");
}

/// Frames naming `plant`, then a shutdown.
fn plant_frames() -> Vec<u8> {
    forge::run_then_stop(forge::entry_offset(plant))
}

/// This test process's PID, as a marker names a parent.
fn me() -> String {
    std::process::id().to_string()
}

/// How the program is started.
enum Launcher {
    /// Directly, by this test process.
    Direct,
    /// By a shell this test process starts: the shell is the program's parent and
    /// fills in its own PID (`$$`) as the marker's parent.
    Shell,
    /// Through setpriv, as user and group nobody.
    AsNobody,
}

/// A directory of its own for one test, writable by nobody too; removed after.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        exit_if_a_worker_runs_main();
        let dir = std::env::temp_dir().join(format!("fondo-hostile-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A file holding `bytes`, opened for reading and writing.
    fn file(&self, name: &str, bytes: &[u8]) -> OwnedFd {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write scratch file");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open scratch file");
        file.into()
    }

    /// A copy of this test binary named `name`.
    fn copy_of_this_binary(&self, name: &str) -> PathBuf {
        let copy = self.path(name);
        common::copy_executable(&std::env::current_exe().expect("current_exe"), &copy);
        copy
    }

    /// Starts `program` with `fds` at the given numbers and `marker` in its
    /// environment, writes `frames` (if any) to `ours`, and waits for it to end.
    fn launch(
        &self,
        program: &Path,
        launcher: Launcher,
        fds: &[(&OwnedFd, i32)],
        marker: &str,
        ours: Option<(&mut dyn Write, &[u8])>,
    ) -> Outcome {
        let args = ["--exact", "probe_main"];
        let mut cmd = match launcher {
            Launcher::Direct => {
                let mut cmd = Command::new(program);
                cmd.args(args).env(forge::WORKER_ENV, marker);
                cmd
            }
            Launcher::Shell => {
                let mut cmd = Command::new("/bin/sh");
                cmd.arg("-c")
                    .arg(format!(
                        r#"{}="{marker}" "$0" "$@" & wait $!"#,
                        forge::WORKER_ENV
                    ))
                    .arg(program)
                    .args(args);
                cmd
            }
            Launcher::AsNobody => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={NOBODY}"))
                    .arg(format!("--regid={NOBODY}"))
                    .args(["--clear-groups", "--"])
                    .arg(program)
                    .args(args)
                    .env(forge::WORKER_ENV, marker);
                cmd
            }
        };
        // Out of the way of the target numbers first (all above 100, close-on-exec).
        let moved: Vec<(OwnedFd, i32)> = fds
            .iter()
            .map(|(fd, at)| {
                let high = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 100).expect("dup");
                (high, *at)
            })
            .collect();
        let placements: Vec<(i32, i32)> =
            moved.iter().map(|(fd, at)| (fd.as_raw_fd(), *at)).collect();
        // SAFETY: runs in the forked child before exec and only calls dup2, which is
        // async-signal-safe; the sources are open (held in `moved` by the parent).
        unsafe {
            cmd.pre_exec(move || {
                for &(from, to) in &placements {
                    if libc::dup2(from, to) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .env(PLANT_AT, self.path("planted"))
            .env(PROBE_AT, self.path("probe"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("launch");
        drop(moved);
        let group = Group(child.id());
        if let Some((sock, frames)) = ours {
            // Unread frames may be refused: only a full socket would be a failure.
            let _ = sock.write_all(frames);
        }
        let mut stderr = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the launched program did not end within 20 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        drop(group);
        Outcome {
            status,
            stderr: reader.join().expect("stderr reader"),
            planted: self.path("planted").exists(),
            probe: std::fs::read_to_string(self.path("probe")).ok(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills whatever is left of a launched program's process group.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(p) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        }
    }
}

/// How a launch ended.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stderr: String,
    planted: bool,
    probe: Option<String>,
}

impl Outcome {
    /// Refused, with a message saying `why`; nothing planted, `main` not run.
    fn assert_refused(&self, why: &str) {
        assert!(!self.planted, "the launcher's function ran: {self:?}");
        assert_eq!(self.probe, None, "main ran: {self:?}");
        assert_eq!(self.status.code(), Some(REFUSED), "{self:?}");
        assert!(
            self.stderr.contains("refuses to serve as a worker") && self.stderr.contains(why),
            "expected a refusal saying {why:?}: {self:?}"
        );
    }
}

/// A page-sized memory file, as a progress page is.
fn memory_page() -> OwnedFd {
    let fd =
        rustix::fs::memfd_create("hostile-page", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&fd, 4096).expect("ftruncate");
    fd
}

fn this_binary() -> PathBuf {
    std::env::current_exe().expect("current_exe")
}

/// Root, and a scratch directory where set-user-ID bits take effect.
fn may_change_users(scratch: &Scratch) -> bool {
    let root = rustix::process::geteuid().is_root();
    let nosuid = rustix::fs::statvfs(&scratch.dir)
        .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID))
        .unwrap_or(true);
    if !root || nosuid {
        eprintln!("skipped: needs root and a scratch directory without nosuid");
    }
    root && !nosuid
}

#[test]
fn two_plain_files_are_refused() {
    let s = Scratch::new("two-files");
    let frames = s.file("frames", &plant_frames());
    let page = s.file("page", &[0; 4096]);
    let out = s.launch(
        &this_binary(),
        Launcher::Direct,
        &[(&frames, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        None,
    );
    out.assert_refused("descriptor 3, the socket, is a file on disk");
}

#[test]
fn a_pipe_is_refused() {
    let s = Scratch::new("pipe");
    let (r, mut w) = std::io::pipe().expect("pipe");
    let page = memory_page();
    let r: OwnedFd = r.into();
    let frames = plant_frames();
    let out = s.launch(
        &this_binary(),
        Launcher::Direct,
        &[(&r, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        Some((&mut w, &frames)),
    );
    out.assert_refused("is a pipe, not a Unix stream socket");
}

#[test]
fn a_network_connection_is_refused() {
    let s = Scratch::new("tcp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let theirs = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("tcp");
    let (mut ours, _) = listener.accept().expect("accept");
    let theirs: OwnedFd = theirs.into();
    let page = memory_page();
    let frames = plant_frames();
    let out = s.launch(
        &this_binary(),
        Launcher::Direct,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        Some((&mut ours, &frames)),
    );
    out.assert_refused("is a network (not Unix) socket");
}

#[test]
fn a_datagram_socket_is_refused() {
    let s = Scratch::new("datagram");
    let (ours, theirs) = UnixDatagram::pair().expect("socketpair");
    let theirs: OwnedFd = theirs.into();
    let page = memory_page();
    ours.send(&plant_frames()).expect("send");
    let out = s.launch(
        &this_binary(),
        Launcher::Direct,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        None,
    );
    out.assert_refused("is a Unix socket that is not a stream");
}

#[test]
fn a_socket_made_by_another_process_is_refused() {
    // The shell is the program's parent, and the marker names it; the socket is
    // ours: a connection passed down by a parent that did not make it.
    let s = Scratch::new("not-the-parents");
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs: OwnedFd = theirs.into();
    let page = memory_page();
    let frames = plant_frames();
    let out = s.launch(
        &this_binary(),
        Launcher::Shell,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, "$$"),
        Some((&mut ours, &frames)),
    );
    out.assert_refused(&format!(
        "the socket's peer is process {}, not the parent",
        me()
    ));
}

#[test]
fn a_marker_naming_another_parent_is_refused() {
    let s = Scratch::new("other-parent");
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs: OwnedFd = theirs.into();
    let page = memory_page();
    let frames = plant_frames();
    let out = s.launch(
        &this_binary(),
        Launcher::Direct,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, "1"),
        Some((&mut ours, &frames)),
    );
    out.assert_refused("the marker names process 1 as the parent");
}

#[test]
fn a_socket_made_as_another_user_is_refused() {
    // We (root) make the socket and start the program as nobody: its parent, but
    // not its user.
    let s = Scratch::new("other-user");
    if !may_change_users(&s) {
        return;
    }
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs: OwnedFd = theirs.into();
    let page = memory_page();
    let frames = plant_frames();
    let out = s.launch(
        &this_binary(),
        Launcher::AsNobody,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        Some((&mut ours, &frames)),
    );
    out.assert_refused(&format!(
        "the socket's peer runs as uid 0, gid 0, this process as uid {NOBODY}, gid {NOBODY}"
    ));
}

#[test]
fn shared_memory_in_a_file_on_disk_is_refused() {
    let s = Scratch::new("disk-page");
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs: OwnedFd = theirs.into();
    let page = s.file("page", &[0; 4096]);
    let frames = plant_frames();
    let out = s.launch(
        &this_binary(),
        Launcher::Direct,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        Some((&mut ours, &frames)),
    );
    out.assert_refused("descriptor 4, the progress page, is a file on disk");
}

#[test]
fn a_malformed_marker_is_refused() {
    let s = Scratch::new("malformed");
    let out = s.launch(&this_binary(), Launcher::Direct, &[], "3,4", None);
    out.assert_refused("the marker \"3,4\" is malformed");
}

#[test]
fn a_setuid_copy_ignores_the_marker_and_runs_main() {
    let s = Scratch::new("setuid");
    if !may_change_users(&s) {
        return;
    }
    let copy = s.copy_of_this_binary("setuid-copy");
    rustix::fs::chown(
        &copy,
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        Some(rustix::fs::Gid::from_raw(NOBODY)),
    )
    .expect("chown");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o6755)).expect("chmod");
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs: OwnedFd = theirs.into();
    let page = memory_page();
    let frames = plant_frames();
    let out = s.launch(
        &copy,
        Launcher::Direct,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        Some((&mut ours, &frames)),
    );
    assert!(!out.planted, "the launcher's function ran: {out:?}");
    assert!(out.status.success(), "{out:?}");
    let probe = out.probe.as_deref().unwrap_or_default();
    assert!(
        probe.starts_with("main ran") && probe.contains("setuid"),
        "main should have run, and been refused workers: {out:?}"
    );
}

/// Our own child, with our user and group, over a socketpair we made: the one
/// launch a worker serves (we could run anything as ourselves anyway).
fn launch_as_parent(program: &Path, s: &Scratch, entry: i64) -> (Outcome, Vec<u8>) {
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs: OwnedFd = theirs.into();
    let page = memory_page();
    let outcome = s.launch(
        program,
        Launcher::Direct,
        &[(&theirs, 3), (&page, 4)],
        &forge::marker(3, 4, &me()),
        Some((&mut ours, &forge::run_then_stop(entry))),
    );
    // The worker has exited: what it answered is all in the socket now.
    drop(theirs);
    let mut answered = Vec::new();
    let _ = std::io::Read::read_to_end(&mut ours, &mut answered);
    (outcome, answered)
}

/// An offset far outside any code: jumping there would crash.
const NOWHERE: i64 = 1 << 40;

/// The parent's task runs; an offset outside the code is refused, not jumped to:
/// the worker answers that task with the refusal and serves on.
fn parent_served_within_the_code(program: &Path, s: &Scratch) {
    let (served, _) = launch_as_parent(program, s, forge::entry_offset(plant));
    assert!(served.planted && served.status.success(), "{served:?}");
    std::fs::remove_file(s.path("planted")).expect("remove");
    let (out, answered) = launch_as_parent(program, s, NOWHERE);
    assert!(!out.planted, "{out:?}");
    assert!(out.status.success(), "{out:?}");
    let refusal = b"outside this executable's code";
    assert!(
        answered.windows(refusal.len()).any(|w| w == refusal),
        "no refusal in the answer: {:?}",
        String::from_utf8_lossy(&answered)
    );
}

#[test]
fn offsets_outside_the_code_are_refused_when_the_path_has_spaces() {
    let s = Scratch::new("spaces");
    std::fs::create_dir(s.path("a dir")).expect("mkdir");
    let copy = s.copy_of_this_binary("a dir/a copy");
    parent_served_within_the_code(&copy, &s);
}

#[test]
fn offsets_outside_the_code_are_refused_when_the_executable_was_deleted() {
    let s = Scratch::new("deleted");
    let copy = s.copy_of_this_binary("deleted copy");
    let file = std::fs::File::open(&copy).expect("open copy");
    std::fs::remove_file(&copy).expect("delete copy");
    // Above the numbers the launch places descriptors at; close-on-exec, but still
    // open when exec resolves the path.
    let file = rustix::io::fcntl_dupfd_cloexec(&file, 200).expect("dup");
    let program = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    parent_served_within_the_code(&program, &s);
}
