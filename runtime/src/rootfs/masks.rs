//! Docker's masked and read-only paths (moby `oci/defaults.go`): kernel interfaces a container
//! has no business reading (masked: `/dev/null` over a file, an empty read-only tmpfs over a
//! directory) or writing (bound read-only onto themselves). Applied after `pivot_root`.

use std::{fs, io};

use nix::mount::{mount, MsFlags};

use crate::error::{Error, IoContext};

pub(crate) const MASKED: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub(crate) const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const NONE: Option<&str> = None;

/// Masks and write-protects Docker's paths in the current (the container's) root.
pub(crate) fn apply() -> Result<(), Error> {
    for path in MASKED {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            // This kernel does not have it: nothing to hide.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("inspecting {path}"), e)),
        };
        if meta.is_dir() {
            mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
        } else {
            mount(Some("/dev/null"), path, NONE, MsFlags::MS_BIND, NONE)
        }
        .context(|| format!("masking {path}"))?;
    }
    for path in READ_ONLY {
        match fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("inspecting {path}"), e)),
        }
        mount(Some(path), path, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE)
            .context(|| format!("binding {path} onto itself"))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        mount(NONE, path, NONE, flags, NONE).context(|| format!("making {path} read-only"))?;
    }
    Ok(())
}
