//! Linux capabilities: their names, Docker's default set, resolving `cap_add`/`cap_drop`
//! against it, and applying a set to the container's init just before it drops to its user.
//!
//! The bounding set is cut down to the container's set, so nothing executed later can regain
//! more; the effective and permitted sets equal it (execve then gives a root user exactly the
//! set and a non-root user none, as Docker does); the inheritable and ambient sets are empty.

use std::io;

use crate::error::Error;

/// Every capability the kernel headers of this era define, by number.
pub(crate) const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub(crate) const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `net_raw`, `NET_RAW` or `CAP_NET_RAW` → `CAP_NET_RAW`, if it names a capability.
fn canonical(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    NAMES.iter().copied().find(|n| *n == full)
}

/// The container's capabilities: Docker's defaults, plus `add`, minus `drop` (`ALL` in `add`
/// means every capability; in `drop`, none of the defaults; an explicit add beats a drop of
/// ALL), or every capability when `privileged`.
pub(crate) fn resolve(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>, Error> {
    let parse = |list: &[String]| -> Result<(bool, Vec<&'static str>), Error> {
        let mut all = false;
        let mut caps = Vec::new();
        for name in list {
            if name.trim().eq_ignore_ascii_case("ALL") {
                all = true;
            } else {
                caps.push(canonical(name).ok_or_else(|| {
                    Error::invalid(format!(
                        "unknown capability \"{name}\": use a name like NET_ADMIN or CAP_NET_ADMIN, or ALL"
                    ))
                })?);
            }
        }
        Ok((all, caps))
    };
    let (add_all, add) = parse(add)?;
    let (drop_all, drop) = parse(drop)?;
    if privileged || add_all {
        let all = NAMES.iter().filter(|n| privileged || !drop.contains(n));
        return Ok(all.map(|n| n.to_string()).collect());
    }
    let mut set: Vec<&str> = if drop_all { Vec::new() } else { DEFAULT.to_vec() };
    set.retain(|c| !drop.contains(c));
    for cap in add {
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    Ok(set.into_iter().map(str::to_string).collect())
}

/// Whether `names` holds capability `cap` (a `CAP_…` name).
pub(crate) fn has(names: &[String], cap: &str) -> bool {
    names.iter().any(|n| n == cap)
}

/// The bit mask of `names` (names [`resolve`] produced).
fn mask(names: &[String]) -> u64 {
    names.iter().filter_map(|n| NAMES.iter().position(|known| known == n)).fold(0, |m, i| m | (1u64 << i))
}

/// Drops every capability outside `names` from the bounding set. Needs CAP_SETPCAP, so it runs
/// before the process changes user.
pub(crate) fn limit_bounding_set(names: &[String]) -> io::Result<()> {
    let keep = mask(names);
    for cap in 0..64u64 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            let e = io::Error::last_os_error();
            // Past the kernel's last capability.
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(e);
        }
    }
    Ok(())
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

/// The calling thread's permitted set.
fn permitted() -> io::Result<u64> {
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two data structs, which `data` has room for.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32))
}

/// Sets the effective and permitted sets to `names` (those of them the process still has:
/// a runtime that itself runs with fewer capabilities cannot grant more), the inheritable set
/// empty, and clears the ambient set.
pub(crate) fn set(names: &[String]) -> io::Result<()> {
    let bits = mask(names) & permitted()?;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let low = Data { effective: bits as u32, permitted: bits as u32, inheritable: 0 };
    let high = Data { effective: (bits >> 32) as u32, permitted: (bits >> 32) as u32, inheritable: 0 };
    let data = [low, high];
    // SAFETY: capset reads one header and two data structs laid out as the kernel defines them.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn add_and_drop_follow_docker() {
        let default = resolve(&[], &[], false).expect("ok");
        assert_eq!(default, DEFAULT.map(str::to_string));
        let set = resolve(&strings(&["net_admin"]), &strings(&["NET_RAW", "CAP_KILL"]), false).expect("ok");
        assert!(set.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!set.contains(&"CAP_NET_RAW".to_string()) && !set.contains(&"CAP_KILL".to_string()));
        assert_eq!(resolve(&strings(&["CHOWN"]), &strings(&["ALL"]), false).expect("ok"), ["CAP_CHOWN"]);
        assert_eq!(resolve(&strings(&["ALL"]), &[], false).expect("ok").len(), NAMES.len());
        assert_eq!(resolve(&[], &strings(&["ALL"]), true).expect("ok").len(), NAMES.len());
        assert!(resolve(&strings(&["FLY"]), &[], false).is_err());
        assert_eq!(mask(&strings(&["CAP_CHOWN", "CAP_NET_RAW"])), 1 | (1 << 13));
    }
}
