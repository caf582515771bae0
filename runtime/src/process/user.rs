//! The user a container's process runs as: `uid[:gid]` or `name[:group]`, names looked up in
//! the container's own `/etc/passwd` and `/etc/group` (read after entering its root), with the
//! user's supplementary groups and home directory, as Docker resolves them.

use std::fs;

use crate::error::Error;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from `/etc/group`).
    pub groups: Vec<u32>,
    /// From `/etc/passwd`; `/` for a uid it does not list.
    pub home: String,
}

/// Resolves `spec` in the current root (the container's).
pub(crate) fn lookup(spec: &str) -> Result<User, Error> {
    // A missing file means "numeric ids only", as in a scratch image.
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    resolve(spec, &passwd, &group)
}

/// Resolves `spec` against the text of `/etc/passwd` and `/etc/group`.
pub(crate) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<User, Error> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd_entries: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 7).collect();
    let group_entries: Vec<Vec<&str>> =
        group.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 4).collect();

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid)),
        Err(_) => passwd_entries.iter().find(|f| f[0] == user_part),
    };
    let (uid, mut gid, name, home) = match (user_part.parse::<u32>(), entry) {
        (Ok(uid), Some(f)) => (uid, f[3].parse().unwrap_or(0), Some(f[0]), f[5].to_string()),
        (Ok(uid), None) => (uid, 0, None, "/".to_string()),
        (Err(_), Some(f)) => {
            let uid =
                f[2].parse().map_err(|_| Error::invalid(format!("/etc/passwd has a bad uid for \"{user_part}\"")))?;
            (uid, f[3].parse().unwrap_or(0), Some(f[0]), f[5].to_string())
        }
        (Err(_), None) => {
            return Err(Error::invalid(format!(
                "unable to find user {user_part}: no matching entries in /etc/passwd of the image"
            )))
        }
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries.iter().find(|f| f[0] == g).and_then(|f| f[2].parse().ok()).ok_or_else(|| {
                Error::invalid(format!("unable to find group {g}: no matching entries in /etc/group of the image"))
            })?,
        };
    }
    // Supplementary groups only come with a named user and no explicit group.
    let groups = match (name, group_part) {
        (Some(name), None) => group_entries
            .iter()
            .filter(|f| f[3].split(',').any(|member| member == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(User { uid, gid, groups, home: if home.is_empty() { "/".to_string() } else { home } })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\nbad line\n";
    const GROUP: &str = "root:x:0:\nweb:x:1000:\nstaff:x:50:web,other\n";

    #[test]
    fn names_and_numbers() {
        let u = resolve("web", PASSWD, GROUP).expect("web");
        assert_eq!(u, User { uid: 1000, gid: 1000, groups: vec![50], home: "/home/web".into() });
        let u = resolve("1000:staff", PASSWD, GROUP).expect("1000:staff");
        assert_eq!((u.uid, u.gid, u.groups.len()), (1000, 50, 0));
        let u = resolve("4242", PASSWD, GROUP).expect("numeric");
        assert_eq!(u, User { uid: 4242, gid: 0, groups: vec![], home: "/".into() });
        let u = resolve("4242:7", "", "").expect("no files");
        assert_eq!((u.uid, u.gid), (4242, 7));
        assert!(resolve("nobody", PASSWD, GROUP).is_err());
        assert!(resolve("web:nogroup", PASSWD, GROUP).is_err());
    }
}
