//! The container's view of the filesystem, set up by its init inside its new mount namespace:
//! `/` made a recursive slave (our mounts never reach the host; the host's unmounts reach us),
//! the overlay root bound onto itself, then `/proc`, a fresh `/dev` (tmpfs with the standard
//! device nodes and links, `/dev/pts`, `/dev/shm`, `/dev/mqueue`; plus the `--device` nodes,
//! or every host device when privileged), a read-only `/sys` (writable
//! when privileged), the container's own mounts ([`mounts`]: `/etc/hosts` and friends, tmpfs,
//! binds and volumes), then `pivot_root` into it with the old root detached; last, Docker's
//! masked and read-only paths ([`masks`]) and, if asked, a read-only root.
//!
//! Architecture invariant: nothing here runs in the host's mount namespace, and no mount
//! target is resolved outside the container's root, whatever symlinks the image holds.

mod masks;
mod mounts;

use std::{
    fs, io,
    os::unix::fs::{symlink, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sys::stat::{makedev, mknod, Mode, SFlag},
    unistd::{chdir, pivot_root},
};

use crate::{
    container::spec::{DeviceConfig, DeviceKind, HostConfig},
    error::{Error, IoContext},
};

/// Device nodes every container gets: (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Links every container's `/dev` gets: (name, target).
const DEV_LINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

const NONE: Option<&str> = None;

/// Sets up the mounts under `rootfs` and makes it the root. Must run in a new mount namespace.
pub(crate) fn enter(rootfs: &Path, host: &HostConfig) -> Result<(), Error> {
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_SLAVE, NONE)
        .context(|| "making / a recursive slave mount".to_string())?;
    // pivot_root wants the new root to be a mount point in this namespace.
    mount(Some(rootfs), rootfs, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE)
        .context(|| format!("bind-mounting {} onto itself", rootfs.display()))?;

    let proc = mount_point(rootfs, "proc")?;
    mount(Some("proc"), &proc, Some("proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, NONE)
        .context(|| format!("mounting proc on {}", proc.display()))?;

    mount_dev(rootfs)?;
    if host.privileged {
        for device in host_devices(Path::new("/dev"))? {
            add_device(rootfs, &device, false)?;
        }
    }
    for device in &host.devices {
        add_device(rootfs, device, true)?;
    }

    let sys = mount_point(rootfs, "sys")?;
    let sys_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let sys_flags = if host.privileged { sys_flags } else { sys_flags | MsFlags::MS_RDONLY };
    mount(Some("sysfs"), &sys, Some("sysfs"), sys_flags, NONE)
        .context(|| format!("mounting sysfs on {}", sys.display()))?;

    for m in &host.mounts {
        mounts::mount(rootfs, m)?;
    }

    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // only the container's root (the approach runc takes, which needs no put_old directory).
    chdir(rootfs).context(|| format!("entering {}", rootfs.display()))?;
    pivot_root(".", ".").context(|| format!("pivot_root into {}", rootfs.display()))?;
    umount2(".", MntFlags::MNT_DETACH).context(|| "detaching the old root".to_string())?;
    chdir("/").context(|| "entering the new root".to_string())?;

    if !host.privileged {
        masks::apply()?;
    }
    if host.read_only {
        mount(NONE, "/", NONE, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, NONE)
            .context(|| "making the root filesystem read-only".to_string())?;
    }
    Ok(())
}

fn mount_dev(rootfs: &Path) -> Result<(), Error> {
    let dev = mount_point(rootfs, "dev")?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .context(|| format!("mounting a tmpfs on {}", dev.display()))?;
    for (name, major, minor) in DEVICES {
        make_device(&dev.join(name), major, minor)?;
    }
    for (name, target) in DEV_LINKS {
        let link = dev.join(name);
        symlink(target, &link).context(|| format!("creating {}", link.display()))?;
    }

    let pts = mount_point(rootfs, "dev/pts")?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .context(|| format!("mounting devpts on {}", pts.display()))?;

    let shm = mount_point(rootfs, "dev/shm")?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .context(|| format!("mounting a tmpfs on {}", shm.display()))?;

    let mqueue = mount_point(rootfs, "dev/mqueue")?;
    match mount(
        Some("mqueue"),
        &mqueue,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        NONE,
    ) {
        // A kernel without POSIX message queues: the container simply has none.
        Err(nix::errno::Errno::ENODEV) => Ok(()),
        other => other.context(|| format!("mounting mqueue on {}", mqueue.display())),
    }
}

/// Creates a character device node, or binds the host's when mknod is not allowed.
fn make_device(path: &Path, major: u64, minor: u64) -> Result<(), Error> {
    let context = || format!("creating device {}", path.display());
    match mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor)) {
        Ok(()) => {
            // mknod's mode went through the umask.
            fs::set_permissions(path, fs::Permissions::from_mode(0o666)).context(context)
        }
        Err(nix::errno::Errno::EPERM) => {
            let host = Path::new("/dev").join(path.file_name().unwrap_or_default());
            fs::File::create(path).context(context)?;
            mount(Some(&host), path, NONE, MsFlags::MS_BIND, NONE).context(context)
        }
        Err(e) => Err(Error::io(context(), e.into())),
    }
}

/// Creates `device` at its path under `rootfs` (resolved inside the root) with the host node's
/// numbers, mode and owner; binds the host's node where mknod is not allowed. An existing
/// node is replaced when `replace` (a `--device` wins over the defaults), kept otherwise.
fn add_device(rootfs: &Path, device: &DeviceConfig, replace: bool) -> Result<(), Error> {
    let path = mounts::resolve_in_root(rootfs, &device.path)?;
    let context = || format!("creating device {} in the container", device.path);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => {
            return Err(Error::invalid(format!(
                "cannot create device {}: it is a directory in the container",
                device.path
            )))
        }
        Ok(_) if !replace => return Ok(()),
        Ok(_) => fs::remove_file(&path).context(context)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(context(), e)),
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).context(context)?;
    }
    let kind = match device.kind {
        DeviceKind::Char => SFlag::S_IFCHR,
        DeviceKind::Block => SFlag::S_IFBLK,
    };
    match mknod(&path, kind, Mode::from_bits_truncate(device.mode), makedev(device.major, device.minor)) {
        Ok(()) => {
            // mknod's mode went through the umask.
            fs::set_permissions(&path, fs::Permissions::from_mode(device.mode)).context(context)?;
            nix::unistd::chown(
                &path,
                Some(nix::unistd::Uid::from_raw(device.uid)),
                Some(nix::unistd::Gid::from_raw(device.gid)),
            )
            .context(context)
        }
        Err(nix::errno::Errno::EPERM) => {
            fs::File::create(&path).context(context)?;
            mount(Some(&device.host_path), &path, NONE, MsFlags::MS_BIND, NONE).context(context)
        }
        Err(e) => Err(Error::io(context(), e.into())),
    }
}

/// Every device node under the host's `/dev` (what a privileged container gets), leaving out
/// what each container has its own of (`pts`, `shm`, `mqueue`, `ptmx`, `console`).
fn host_devices(dev: &Path) -> Result<Vec<DeviceConfig>, Error> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut found = Vec::new();
    let mut pending = vec![dev.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A directory only root of the host's namespace may list: leave it out.
            Err(_) if dir != dev => continue,
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            let Ok(relative) = path.strip_prefix(dev) else { continue };
            let rel = relative.to_string_lossy();
            if matches!(rel.as_ref(), "pts" | "shm" | "mqueue" | "fd" | "ptmx" | "console") {
                continue;
            }
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let kind = if meta.file_type().is_char_device() {
                DeviceKind::Char
            } else if meta.file_type().is_block_device() {
                DeviceKind::Block
            } else {
                continue;
            };
            found.push(DeviceConfig {
                path: format!("/dev/{rel}"),
                host_path: path.clone(),
                kind,
                major: nix::sys::stat::major(meta.rdev()),
                minor: nix::sys::stat::minor(meta.rdev()),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                permissions: "rwm".into(),
            });
        }
    }
    Ok(found)
}

/// `rootfs/rel` as a directory to mount on: created if missing, refused if the image made it
/// a symlink or a file (a symlink could aim the mount anywhere in our namespace).
fn mount_point(rootfs: &Path, rel: &str) -> Result<PathBuf, Error> {
    let path = rootfs.join(rel);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => {
            Err(Error::invalid(format!("/{rel} in the image is not a directory; the runtime needs to mount there")))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(&path).context(|| format!("creating {}", path.display()))?;
            Ok(path)
        }
        Err(e) => Err(Error::io(format!("inspecting {}", path.display()), e)),
    }
}
