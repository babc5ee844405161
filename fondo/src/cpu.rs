//! How many CPUs this process may really use: affinity mask and cgroup CPU quota.

use std::fmt;
use std::path::{Path, PathBuf};

/// The number of CPUs this process may really use, and the default number of workers.
///
/// This is the smaller of
/// - the calling thread's scheduler affinity mask (`taskset`, `sched_setaffinity`, cgroup
///   cpusets, Docker `--cpuset-cpus`), and
/// - the cgroup CPU quota (Docker `--cpus`, Kubernetes CPU limits), rounded **up**: a quota of
///   1.5 CPUs gives 2, because two workers can use the 1.5 CPUs fully, where one would leave
///   half a CPU idle. The tightest quota among the process's cgroup and its ancestors applies.
///
/// It is never less than 1. Missing or unreadable files (no cgroup, a sandbox, not Linux) count
/// as "no limit". Unlike Python's `os.cpu_count()`, which counts the machine's CPUs, this is
/// what a container given 2 CPUs should use: 2.
///
/// It differs from [`std::thread::available_parallelism`] in two ways: that rounds the quota
/// **down** (1.5 CPUs gives 1), and it reads cgroup v2 only at `/sys/fs/cgroup`, while this
/// finds the cgroup mounts in `/proc/self/mountinfo`.
///
/// The value is recomputed on every call (limits can change while a program runs), from a
/// handful of small file reads: call it once when sizing a pool, not in a hot loop.
/// The affinity mask is per thread, so a thread pinned to fewer CPUs sees fewer.
/// [`cpu_info`] gives the parts this number is made from.
///
/// # Example
/// ```
/// assert!(fondo::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    let quota = cgroup_limit().and_then(|limit| limit.quota);
    usable(affinity_count(), quota)
}

/// The parts [`cpu_count`] is made from, for reports such as `fondo info`.
#[derive(Debug, Clone)]
pub struct CpuInfo {
    /// CPUs the kernel has online (`/sys/devices/system/cpu/online`), what Python's
    /// `os.cpu_count()` reports.
    pub online: usize,
    /// CPUs in the calling thread's scheduler affinity mask.
    pub affinity: usize,
    /// The tightest cgroup CPU quota, in CPUs (1.5 means 150 ms of CPU time every 100 ms), or
    /// `None` when no quota is set or none could be read.
    pub cgroup_quota: Option<f64>,
    /// The cgroup version (1 or 2) of the hierarchy holding this process's `cpu` controller, or
    /// `None` when the process's cgroup could not be found.
    pub cgroup_version: Option<u8>,
    /// What [`cpu_count`] returns: `min(affinity, ceil(cgroup_quota))`, at least 1.
    pub usable: usize,
}

/// Reads the CPU counts and limits that apply to the calling thread.
///
/// # Example
/// ```
/// let info = fondo::cpu_info();
/// assert!(info.usable >= 1 && info.usable <= info.affinity);
/// println!("{info}");
/// ```
pub fn cpu_info() -> CpuInfo {
    let affinity = affinity_count();
    let limit = cgroup_limit();
    let cgroup_quota = limit.as_ref().and_then(|l| l.quota);
    CpuInfo {
        online: online_count(),
        affinity,
        cgroup_quota,
        cgroup_version: limit.map(|l| l.version),
        usable: usable(affinity, cgroup_quota),
    }
}

impl fmt::Display for CpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CPUs online        {}", self.online)?;
        writeln!(f, "affinity mask      {}", self.affinity)?;
        let version = self
            .cgroup_version
            .map_or("-".to_string(), |v| format!("v{v}"));
        match self.cgroup_quota {
            Some(q) => writeln!(f, "cgroup {version:<3} quota   {q:.2} CPUs")?,
            None => writeln!(f, "cgroup {version:<3} quota   none")?,
        }
        write!(f, "usable CPUs        {}", self.usable)
    }
}

/// `min(affinity, ceil(quota))`, at least 1.
fn usable(affinity: usize, quota: Option<f64>) -> usize {
    // The quota is a ratio of two integers below 2^53, so an integral ratio is exact in f64
    // and `ceil` never rounds 2.0 up to 3. `as` saturates, so a huge quota is just no cap.
    let cap = quota.map_or(usize::MAX, |q| q.ceil() as usize);
    affinity.min(cap).max(1)
}

/// CPUs in the calling thread's affinity mask; the online count if the mask can't be read
/// (seccomp, or more CPUs than the fixed-size mask holds).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn affinity_count() -> usize {
    // SAFETY: an all-zero `cpu_set_t` is a valid, empty set (it is a plain bit array).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live `cpu_set_t` of the size passed; pid 0 is this thread.
    let got = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    let count = if got == 0 {
        // SAFETY: counts the bits of the set the kernel just filled in.
        unsafe { libc::CPU_COUNT(&set) }
    } else {
        0
    };
    match usize::try_from(count) {
        Ok(n) if n > 0 => n,
        _ => online_count(),
    }
}

/// Elsewhere std's estimate is the best there is.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn affinity_count() -> usize {
    std_parallelism()
}

/// CPUs online, read the way glibc's `sysconf(_SC_NPROCESSORS_ONLN)` reads it.
fn online_count() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|text| parse_cpu_list(&text))
        .unwrap_or_else(std_parallelism)
}

/// The portable last resort; it may already include affinity and a rounded-down quota.
fn std_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU limit found in the process's cgroup.
#[derive(Debug, Clone, PartialEq)]
struct CgroupLimit {
    version: u8,
    quota: Option<f64>,
}

/// Finds this process's cgroup and the tightest CPU quota on the way up to the mount's root.
fn cgroup_limit() -> Option<CgroupLimit> {
    let place = parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").ok()?)?;
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|text| parse_mountinfo(&text, place.version))
        .unwrap_or_else(|| CgroupMount::conventional(place.version));
    let dir = mount.dir_of(&place.path);
    let quota = dir
        .ancestors()
        .take_while(|d| d.starts_with(&mount.mount_point))
        .filter_map(|d| read_quota(d, place.version))
        .reduce(f64::min);
    Some(CgroupLimit {
        version: place.version,
        quota,
    })
}

/// The quota set on one cgroup directory, if any.
fn read_quota(dir: &Path, version: u8) -> Option<f64> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    if version == 2 {
        parse_cpu_max(&read("cpu.max")?)
    } else {
        parse_cfs(&read("cpu.cfs_quota_us")?, &read("cpu.cfs_period_us")?)
    }
}

/// Where the process sits in the hierarchy that holds its `cpu` controller.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupPlace {
    version: u8,
    /// Path inside the hierarchy, as `/proc/self/cgroup` shows it (starts with `/`).
    path: String,
}

/// Parses `/proc/self/cgroup` (`hierarchy-id:controllers:path` lines).
///
/// A v1 line listing the `cpu` controller wins over the v2 line `0::/path`: on a hybrid system
/// (both mounted) the CPU limits live where the `cpu` controller is, and that is v1.
fn parse_proc_cgroup(text: &str) -> Option<CgroupPlace> {
    let mut v2 = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        if controllers.split(',').any(|c| c == "cpu") {
            let path = path.to_string();
            return Some(CgroupPlace { version: 1, path });
        }
        if id == "0" && controllers.is_empty() {
            let path = path.to_string();
            v2 = Some(CgroupPlace { version: 2, path });
        }
    }
    v2
}

/// A mounted cgroup hierarchy: `root` is the hierarchy directory that appears at `mount_point`
/// (not `/` when a container runtime bind-mounts only the container's own cgroup).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    root: String,
    mount_point: PathBuf,
}

impl CgroupMount {
    /// The usual mount points (cgroups(7), file-hierarchy(7)), when mountinfo can't be read.
    fn conventional(version: u8) -> CgroupMount {
        let mount_point = if version == 2 {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/cpu"
        };
        CgroupMount {
            root: "/".to_string(),
            mount_point: PathBuf::from(mount_point),
        }
    }

    /// The directory of cgroup `path` under this mount.
    fn dir_of(&self, path: &str) -> PathBuf {
        match Path::new(path).strip_prefix(&self.root) {
            Ok(rel) => self.mount_point.join(rel),
            // The cgroup lies outside what is mounted (a namespaced or partial view): the mount
            // itself is then the closest directory we can see.
            Err(_) => self.mount_point.clone(),
        }
    }
}

/// Finds the mount of the v2 hierarchy, or of the v1 hierarchy holding `cpu`, in
/// `/proc/self/mountinfo`.
///
/// Line format (proc(5)): `id parent dev root mount-point options [optional...] - fstype source
/// super-options`. Octal escapes (`\040` for a space) are not decoded: cgroup mount points
/// don't contain such characters in practice, and a wrong path only means "no limit found".
fn parse_mountinfo(text: &str, version: u8) -> Option<CgroupMount> {
    text.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mut fields = before.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let super_options = after.nth(1).unwrap_or("");
        let wanted = match version {
            2 => fstype == "cgroup2",
            _ => fstype == "cgroup" && super_options.split(',').any(|o| o == "cpu"),
        };
        wanted.then(|| CgroupMount {
            root: root.to_string(),
            mount_point: PathBuf::from(mount_point),
        })
    })
}

/// Parses cgroup v2 `cpu.max`: `"$QUOTA $PERIOD"` in µs, or `"max $PERIOD"` for no limit.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    let period = fields.next()?;
    quota_ratio(quota, period)
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; a quota of `-1` means no limit.
fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    quota_ratio(quota.trim(), period.trim())
}

/// `quota / period` in CPUs, or `None` for "max", "-1", zero or anything unparsable.
fn quota_ratio(quota: &str, period: &str) -> Option<f64> {
    let quota: u64 = quota.parse().ok()?;
    let period: u64 = period.parse().ok()?;
    // The kernel never accepts a zero quota or period; seeing one means we misread something.
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// Counts the CPUs in a kernel CPU list such as `"0-3,8,10-11"`.
fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut count = 0usize;
    for part in text.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (lo.parse().ok()?, hi.parse().ok()?);
        count = count.checked_add(hi.checked_sub(lo)? + 1)?;
    }
    (count > 0).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_without_limit() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
    }

    #[test]
    fn cpu_max_whole_cpus() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(usable(8, Some(2.0)), 2);
    }

    #[test]
    fn cpu_max_fraction_rounds_up() {
        assert_eq!(parse_cpu_max("150000 100000"), Some(1.5));
        assert_eq!(usable(8, Some(1.5)), 2);
        assert_eq!(usable(8, parse_cpu_max("50000 100000")), 1);
    }

    #[test]
    fn cpu_max_garbage() {
        for text in [
            "",
            "\n",
            "max",
            "100000",
            "abc def",
            "-1 100000",
            "100000 0",
            "0 100000",
            "1.5 1",
            "99999999999999999999999 1",
            "\u{0}\u{fffd}",
        ] {
            assert_eq!(parse_cpu_max(text), None, "{text:?}");
        }
    }

    #[test]
    fn cfs_v1() {
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("200000\n", "100000\n"), Some(2.0));
        assert_eq!(parse_cfs("150000\n", "100000\n"), Some(1.5));
        assert_eq!(parse_cfs("", "100000"), None);
        assert_eq!(parse_cfs("x", "y"), None);
        assert_eq!(parse_cfs("100000", "0"), None);
    }

    #[test]
    fn usable_is_at_least_one_and_at_most_affinity() {
        assert_eq!(usable(4, None), 4);
        assert_eq!(usable(2, Some(16.0)), 2);
        assert_eq!(usable(0, None), 1);
        assert_eq!(usable(4, Some(0.01)), 1);
        assert_eq!(usable(4, Some(1e300)), 4);
    }

    #[test]
    fn proc_cgroup_v2_only() {
        let place = parse_proc_cgroup("0::/user.slice/session-1.scope\n");
        assert_eq!(
            place,
            Some(CgroupPlace {
                version: 2,
                path: "/user.slice/session-1.scope".into()
            })
        );
    }

    #[test]
    fn proc_cgroup_v1_cpu_wins_over_v2() {
        // The layout of the machine this was written on: hybrid, `cpu` on v1.
        let text = "9:name=systemd:/\n4:memory:/a/b\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let place = parse_proc_cgroup(text);
        assert_eq!(
            place,
            Some(CgroupPlace {
                version: 1,
                path: "/".into()
            })
        );
        let text = "0::/\n3:cpu,cpuacct:/docker/abc\n";
        assert_eq!(
            parse_proc_cgroup(text).map(|p| p.path),
            Some("/docker/abc".into())
        );
    }

    #[test]
    fn proc_cgroup_garbage() {
        for text in ["", "\n\n", "garbage", "1:cpu", "1:cpuacct:/", "0:x:/", "::"] {
            assert_eq!(parse_proc_cgroup(text), None, "{text:?}");
        }
    }

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
32 31 0:29 /docker/abc /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_finds_each_version() {
        let v1 = parse_mountinfo(MOUNTINFO, 1);
        assert_eq!(
            v1,
            Some(CgroupMount {
                root: "/docker/abc".into(),
                mount_point: "/sys/fs/cgroup/cpu".into()
            })
        );
        let v2 = parse_mountinfo(MOUNTINFO, 2).map(|m| m.mount_point);
        assert_eq!(v2, Some("/sys/fs/cgroup/unified".into()));
        assert_eq!(parse_mountinfo("garbage\n - \n1 2 3\n", 1), None);
    }

    #[test]
    fn cgroup_dir_strips_the_mount_root() {
        let mount = CgroupMount {
            root: "/docker/abc".into(),
            mount_point: "/sys/fs/cgroup/cpu".into(),
        };
        assert_eq!(
            mount.dir_of("/docker/abc/x"),
            Path::new("/sys/fs/cgroup/cpu/x")
        );
        assert_eq!(mount.dir_of("/docker/abc"), Path::new("/sys/fs/cgroup/cpu"));
        // Component-wise: "/docker/abcdef" is not inside "/docker/abc".
        assert_eq!(
            mount.dir_of("/docker/abcdef"),
            Path::new("/sys/fs/cgroup/cpu")
        );
        let plain = CgroupMount::conventional(2);
        assert_eq!(plain.dir_of("/a/b"), Path::new("/sys/fs/cgroup/a/b"));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(7));
        for text in ["", "x", "3-1", "0-", "-", "1,,2"] {
            assert_eq!(parse_cpu_list(text), None, "{text:?}");
        }
    }
}
