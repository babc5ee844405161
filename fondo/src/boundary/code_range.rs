//! `CodeRange`: where this executable's code is mapped in this process, read from
//! `/proc/self/maps`, so a worker jumps to no offset outside it.
//!
//! The executable's mappings are found by file identity (device and inode of the
//! mapping that holds a known function of ours), never by path: a path may contain
//! spaces, end in ` (deleted)`, or name a file that was replaced since the exec.
//! Whatever cannot be read or understood yields an empty range, which contains no
//! address: the check fails closed.

/// The executable's code, as mapped in this process: offsets must land inside it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CodeRange {
    ranges: Vec<(usize, usize)>,
}

impl CodeRange {
    /// The executable mappings of the file whose code holds `known`, an address
    /// of one of our own functions. Empty (refusing every address) if
    /// `/proc/self/maps` is unreadable or does not map `known` to a file.
    pub(crate) fn current(known: usize) -> CodeRange {
        match std::fs::read_to_string("/proc/self/maps") {
            Ok(maps) => CodeRange::from_maps(&maps, known),
            Err(_) => CodeRange::default(),
        }
    }

    /// The executable mappings, in `maps` (the text of a `/proc/<pid>/maps`), of
    /// the file mapped executable at `known`.
    pub(crate) fn from_maps(maps: &str, known: usize) -> CodeRange {
        let mappings: Vec<Mapping<'_>> = maps.lines().filter_map(Mapping::parse).collect();
        let Some(file) = mappings
            .iter()
            .find(|m| m.executable && (m.start..m.end).contains(&known))
            .and_then(|m| m.file)
        else {
            return CodeRange::default();
        };
        let ranges = mappings
            .iter()
            .filter(|m| m.executable && m.file == Some(file))
            .map(|m| (m.start, m.end))
            .collect();
        CodeRange { ranges }
    }

    /// True when `addr` lies in one of the executable's code mappings.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.ranges
            .iter()
            .any(|&(start, end)| (start..end).contains(&addr))
    }
}

/// A file as the kernel names it in the maps: device (`major:minor`, in hex) and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId<'a> {
    device: &'a str,
    inode: u64,
}

/// One line of the maps: `start-end perms offset device inode [path]`.
#[derive(Debug, PartialEq, Eq)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    executable: bool,
    /// The file mapped; `None` for anonymous memory (inode 0).
    file: Option<FileId<'a>>,
}

impl<'a> Mapping<'a> {
    /// Parses the five fixed fields of a line; the path after them (which may hold
    /// spaces or a ` (deleted)` suffix) is not needed and not read. `None` for a
    /// line that does not have their shape.
    fn parse(line: &'a str) -> Option<Mapping<'a>> {
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let _offset = fields.next()?;
        let device = fields.next()?;
        let inode: u64 = fields.next()?.parse().ok()?;
        Some(Mapping {
            start: usize::from_str_radix(start, 16).ok()?,
            end: usize::from_str_radix(end, 16).ok()?,
            executable: perms.as_bytes().get(2) == Some(&b'x'),
            file: (inode != 0).then_some(FileId { device, inode }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program at a path with spaces, since deleted, linking libc; plus anonymous
    /// executable memory and the vdso.
    const MAPS: &str = "\
55d0c0a00000-55d0c0a40000 r--p 00000000 fd:01 131 /opt/my app/bin (deleted)
55d0c0a40000-55d0c0b80000 r-xp 00040000 fd:01 131 /opt/my app/bin (deleted)
55d0c0b80000-55d0c0bc0000 r--p 00180000 fd:01 131 /opt/my app/bin (deleted)
55d0c0bc0000-55d0c0bd0000 r-xp 001c0000 fd:01 131 /opt/my app/bin (deleted)
55d0c0bd0000-55d0c0be0000 rw-p 001d0000 fd:01 131 /opt/my app/bin (deleted)
7f1200000000-7f1200021000 rwxp 00000000 00:00 0
7f1300028000-7f13001bd000 r-xp 00028000 fd:01 900                        /usr/lib/x86_64-linux-gnu/libc.so.6
7f1300400000-7f1300401000 r-xp 00000000 fd:02 131                        /mnt/other/same-inode
7ffd1e7f2000-7ffd1e7f4000 r-xp 00000000 00:00 0                          [vdso]
";

    const IN_TEXT: usize = 0x55d0_c0a4_1234;

    #[test]
    fn a_path_with_spaces_and_deleted_still_names_its_code() {
        let code = CodeRange::from_maps(MAPS, IN_TEXT);
        assert_eq!(
            code.ranges,
            [
                (0x55d0_c0a4_0000, 0x55d0_c0b8_0000),
                (0x55d0_c0bc_0000, 0x55d0_c0bd_0000)
            ]
        );
        assert!(code.contains(0x55d0_c0bc_0010), "the second text mapping");
    }

    #[test]
    fn other_files_data_and_anonymous_memory_are_outside() {
        let code = CodeRange::from_maps(MAPS, IN_TEXT);
        for outside in [
            0x55d0_c0a0_0010, // our own read-only data
            0x55d0_c0bd_0010, // our own writable data
            0x7f12_0000_0010, // anonymous executable memory
            0x7f13_0003_0000, // libc's code
            0x7f13_0040_0010, // the same inode on another device
            0x7ffd_1e7f_2010, // the vdso
            0x55d0_c0b8_0000, // one past the end of the text
            0,
            usize::MAX,
        ] {
            assert!(!code.contains(outside), "{outside:#x} should be outside");
        }
    }

    #[test]
    fn unreadable_or_foreign_maps_refuse_every_address() {
        for (maps, known) in [
            ("", IN_TEXT),
            ("garbage\nmore garbage", IN_TEXT),
            // The known address in anonymous memory, or in no mapping at all.
            (MAPS, 0x7f12_0000_0010),
            (MAPS, 0x1000),
            // The known address in a mapping that is not executable.
            (MAPS, 0x55d0_c0a0_0010),
        ] {
            let code = CodeRange::from_maps(maps, known);
            assert_eq!(code, CodeRange::default(), "{maps:?} at {known:#x}");
            assert!(!code.contains(known) && !code.contains(IN_TEXT));
        }
    }

    #[test]
    fn this_process_finds_its_own_code() {
        let here = this_process_finds_its_own_code as fn() as usize;
        let code = CodeRange::current(here);
        assert!(code.contains(here));
        let on_the_heap = Box::new(0u8);
        assert!(!code.contains(&*on_the_heap as *const u8 as usize));
    }
}
