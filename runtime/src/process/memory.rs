//! Giving back the memory a long-lived shim touched only while it started its container.
//!
//! Starting a container faults in pages of the shim binary's text and read-only data (JSON,
//! namespaces, mounts, seccomp…) that the copy loop it then runs for the container's lifetime
//! never touches again. Those pages are clean copies of the binary's and the libraries' files,
//! shared through the page cache with every other shim, but each shim still counts them in its
//! resident set.
//! [`release_startup_pages`] unmaps them from this process with `MADV_DONTNEED`: the page
//! cache keeps them, and a page touched again faults back in from it (a minor fault, no I/O).
//!
//! Only private, file-backed mappings that are not writable and hold no page of this process's
//! own (smaps `Anonymous: 0 kB`) are dropped: a page written since the mapping was made
//! (`.data.rel.ro` after the dynamic loader's relocations, or `.data`) would otherwise be lost
//! and read back as the file's unrelocated bytes.

use std::fs;

/// One mapping of `/proc/self/smaps`.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    /// `rwxp`-style permissions.
    perms: String,
    /// The file mapped, or `[heap]`, `[stack]`…, or empty for anonymous memory.
    path: String,
    /// Kilobytes of anonymous (private, written) pages in the mapping.
    anonymous_kb: u64,
}

impl Mapping {
    /// A mapping whose resident pages are all clean pages of its file: dropping them loses
    /// nothing.
    fn droppable(&self) -> bool {
        let perms = self.perms.as_bytes();
        self.path.starts_with('/')
            && perms.len() == 4
            && perms[1] != b'w'
            && perms[3] == b'p'
            && self.anonymous_kb == 0
            && self.end > self.start
    }
}

/// Parses the text of `/proc/<pid>/smaps`; lines it does not understand are skipped.
fn parse(smaps: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) {
                let perms = fields.next().unwrap_or_default().to_string();
                // offset, device, inode, then the path (which may contain spaces).
                let path = line.splitn(6, char::is_whitespace).nth(5).unwrap_or_default().trim().to_string();
                // Anonymous unknown until its line is read: count it as written.
                mappings.push(Mapping { start, end, perms, path, anonymous_kb: u64::MAX });
                continue;
            }
        }
        if first == "Anonymous:" {
            if let (Some(last), Some(kb)) = (mappings.last_mut(), fields.next().and_then(|v| v.parse().ok())) {
                last.anonymous_kb = kb;
            }
        }
    }
    mappings
}

/// Drops this process's resident pages of clean file mappings (see the module's
/// documentation) and returns unused heap to the kernel; returns the bytes of mappings
/// dropped. Call it only from a single-threaded process: another thread could remap or
/// `mprotect` a mapping between the read of smaps and the `madvise`.
pub(crate) fn release_startup_pages() -> usize {
    let mut dropped = 0;
    if let Ok(smaps) = fs::read_to_string("/proc/self/smaps") {
        for mapping in parse(&smaps).iter().filter(|m| m.droppable()) {
            let len = mapping.end - mapping.start;
            // SAFETY: the range is one whole mapping of this process, file-backed, private,
            // not writable and without a page of its own (see `droppable`): after
            // MADV_DONTNEED every access reads the file's pages again, exactly what the
            // mapping held. Nothing can write to it meanwhile (single-threaded, read-only).
            let rc = unsafe { libc::madvise(mapping.start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
            if rc == 0 {
                dropped += len;
            }
        }
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 fe:00 1234                       /usr/bin/shoal
Size:               1024 kB
Rss:                 512 kB
Anonymous:             0 kB
55d0c0100000-55d0c1000000 r-xp 00100000 fe:00 1234                       /usr/bin/shoal
Rss:                2048 kB
Anonymous:             0 kB
55d0c1000000-55d0c10a0000 r--p 01000000 fe:00 1234                       /usr/bin/shoal
Anonymous:           640 kB
55d0c10a0000-55d0c10a8000 rw-p 010a0000 fe:00 1234                       /usr/bin/shoal
Anonymous:            32 kB
55d0c2000000-55d0c2021000 rw-p 00000000 00:00 0                          [heap]
Anonymous:            32 kB
7f0000000000-7f0000010000 r-xp 00000000 fe:00 99                         /opt/my libs/libc.so.6
Anonymous:             0 kB
7f0000020000-7f0000021000 r--s 00000000 fe:00 77                         /shared/file
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
7ffd00010000-7ffd00011000 r--p 00000000 fe:00 5                          /no/anonymous/line
";

    #[test]
    fn only_clean_private_file_mappings_are_dropped() {
        let mappings = parse(SMAPS);
        assert_eq!(mappings.len(), 9);
        assert_eq!(mappings[5].path, "/opt/my libs/libc.so.6");
        let dropped: Vec<(usize, &str)> =
            mappings.iter().filter(|m| m.droppable()).map(|m| (m.start, m.perms.as_str())).collect();
        // rodata and text of the binary, the library's text; not the relocated read-only data
        // (its pages were written), not .data, the heap, a shared mapping, the vDSO, nor a
        // mapping whose smaps entry was cut short.
        assert_eq!(dropped, vec![(0x55d0c0000000, "r--p"), (0x55d0c0100000, "r-xp"), (0x7f0000000000, "r-xp")]);
    }

    #[test]
    fn dropping_keeps_what_the_process_reads() {
        // A relocated table and code in this very test binary still work after the drop.
        let table: &[&str] = &["a", "b", "c"];
        let before: Vec<String> = table.iter().map(|s| s.to_string()).collect();
        // Another test thread may run meanwhile; this test binary's threads only read the
        // mappings that are dropped, which fault back in.
        let dropped = release_startup_pages();
        assert!(dropped > 0, "nothing was dropped");
        let after: Vec<String> = table.iter().map(|s| s.to_string()).collect();
        assert_eq!(before, after);
        assert_eq!(format!("{:?}", parse("")), "[]");
    }
}
