//! The files a container sees at `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`: written
//! into its directory at create and bound over the image's at start, as Docker does. The
//! resolver configuration is the host's, without loopback name servers (unreachable from the
//! container's own network namespace), falling back to public ones like Docker's; on the
//! host's network, the host's files.

use std::{fs, os::unix::fs::OpenOptionsExt as _, path::Path};

use super::spec::NetworkMode;
use crate::error::{Error, IoContext};

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// Docker's fallback when the host has no usable name server.
const FALLBACK_NAMESERVERS: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// Writes `hosts`, `hostname` and `resolv.conf` into the container directory `dir`. On the
/// host's network the container gets the host's `hosts` and `resolv.conf` as they are (its
/// loopback name servers are reachable there), as with Docker.
/// A `resolv` given by the caller replaces the derived one; `extra_hosts` lines (checked) are
/// added to `hosts`.
pub(crate) fn write(
    dir: &Path,
    hostname: &str,
    network: &NetworkMode,
    resolv: Option<&str>,
    extra_hosts: &[String],
) -> Result<(), Error> {
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (mut hosts, derived) = match network {
        NetworkMode::Host => (
            fs::read_to_string("/etc/hosts").unwrap_or_else(|_| HOSTS.to_string()),
            if host_resolv.trim().is_empty() { FALLBACK_NAMESERVERS.to_string() } else { host_resolv },
        ),
        NetworkMode::Private | NetworkMode::Join(_) => (HOSTS.to_string(), resolv_conf(&host_resolv)),
    };
    let resolv = resolv.map(str::to_owned).unwrap_or(derived);
    for line in extra_hosts {
        hosts.push_str(line);
        hosts.push('\n');
    }
    for (file, content) in [("hosts", hosts), ("hostname", format!("{hostname}\n")), ("resolv.conf", resolv)] {
        let path = dir.join(file);
        fs::write(&path, content).context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The longest `resolv.conf` read back or written: it is a handful of lines.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// Reads a container's `resolv.conf` (at most 64 KiB).
pub(crate) fn read_resolv_conf(path: &Path) -> Result<String, Error> {
    use std::io::Read as _;
    let file = fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_RESOLV_CONF).read_to_string(&mut text).context(|| format!("reading {}", path.display()))?;
    Ok(text)
}

/// Rewrites a container's `resolv.conf` in place (truncated, then written): the file is bind
/// mounted into the container, which would keep seeing the old inode after a rename.
pub(crate) fn rewrite_resolv_conf(path: &Path, content: &str) -> Result<(), Error> {
    if content.len() as u64 > MAX_RESOLV_CONF || content.contains('\0') {
        return Err(Error::invalid(format!(
            "a resolv.conf of {} bytes or with a NUL: at most {MAX_RESOLV_CONF} bytes of text",
            content.len()
        )));
    }
    // Not created if missing, and never through a link: the file is the container's own.
    let file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .context(|| format!("opening {}", path.display()))?;
    use std::io::Write as _;
    (&file).write_all(content.as_bytes()).context(|| format!("writing {}", path.display()))
}

/// The host's resolv.conf without loopback name servers.
pub(crate) fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or_default();
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str(FALLBACK_NAMESERVERS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_are_dropped() {
        assert_eq!(resolv_conf("nameserver 10.0.0.2\nsearch lan\n"), "nameserver 10.0.0.2\nsearch lan\n");
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\noptions edns0\n"),
            format!("options edns0\n{FALLBACK_NAMESERVERS}")
        );
    }

    #[test]
    fn resolv_conf_is_rewritten_in_place_and_never_through_a_link() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        fs::write(&path, "nameserver 10.0.0.2\n").expect("write");
        let inode = fs::metadata(&path).expect("stat").ino();
        rewrite_resolv_conf(&path, "nameserver 10.0.1.1\noptions ndots:0\n").expect("rewrite");
        assert_eq!(read_resolv_conf(&path).expect("read"), "nameserver 10.0.1.1\noptions ndots:0\n");
        assert_eq!(fs::metadata(&path).expect("stat").ino(), inode, "a bind mount sees only the same inode");

        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "untouched").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
        assert!(rewrite_resolv_conf(&link, "nameserver 10.0.1.1\n").is_err());
        assert!(rewrite_resolv_conf(&dir.path().join("missing"), "x").is_err());
        assert!(rewrite_resolv_conf(&path, "a\0b").is_err());
        assert_eq!(fs::read_to_string(&elsewhere).expect("read"), "untouched");
        assert!(!dir.path().join("missing").exists());
    }
}
