//! The keys the Compose specification defines at each level, and which of them shoal reads.
//!
//! The loader warns about a Compose key that shoal does not honour yet and about a key that
//! Compose does not define at all (most likely a typo, so it suggests the nearest key).
//! When shoal learns a key, flip its entry to `Support::Read` and teach `load` to read it.

/// What shoal does with a key that Compose defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Support {
    /// shoal reads the key.
    Read,
    /// shoal accepts the key without a word: it is obsolete (`version`) or not used yet but
    /// harmless to a stack.
    Quiet,
    /// shoal does not honour the key yet: it is ignored with a warning.
    Ignored,
}

/// The keys of one kind of mapping (the top level, a service, a service's `deploy`), sorted.
pub(crate) struct Keys(&'static [(&'static str, Support)]);

use Support::{Ignored, Quiet, Read};

/// The top level of a compose file.
pub(crate) const TOP_LEVEL: Keys = Keys(&[
    ("configs", Quiet),
    ("include", Ignored),
    ("models", Ignored),
    ("name", Quiet),
    ("networks", Quiet),
    ("secrets", Quiet),
    ("services", Read),
    ("version", Quiet),
    ("volumes", Quiet),
]);

/// A service under `services`.
pub(crate) const SERVICE: Keys = Keys(&[
    ("annotations", Ignored),
    ("attach", Ignored),
    ("blkio_config", Ignored),
    ("build", Ignored),
    ("cap_add", Ignored),
    ("cap_drop", Ignored),
    ("cgroup", Ignored),
    ("cgroup_parent", Ignored),
    ("command", Read),
    ("configs", Ignored),
    ("container_name", Ignored),
    ("cpu_count", Ignored),
    ("cpu_percent", Ignored),
    ("cpu_period", Ignored),
    ("cpu_quota", Ignored),
    ("cpu_rt_period", Ignored),
    ("cpu_rt_runtime", Ignored),
    ("cpu_shares", Ignored),
    ("cpus", Ignored),
    ("cpuset", Ignored),
    ("credential_spec", Ignored),
    ("depends_on", Ignored),
    ("deploy", Read),
    ("develop", Ignored),
    ("device_cgroup_rules", Ignored),
    ("devices", Ignored),
    ("dns", Ignored),
    ("dns_opt", Ignored),
    ("dns_search", Ignored),
    ("domainname", Ignored),
    ("entrypoint", Read),
    ("env_file", Ignored),
    ("environment", Read),
    ("expose", Ignored),
    ("extends", Ignored),
    ("external_links", Ignored),
    ("extra_hosts", Ignored),
    ("gpus", Ignored),
    ("group_add", Ignored),
    ("healthcheck", Ignored),
    ("hostname", Ignored),
    ("image", Read),
    ("init", Ignored),
    ("ipc", Ignored),
    ("isolation", Ignored),
    ("label_file", Ignored),
    ("labels", Ignored),
    ("links", Ignored),
    ("logging", Ignored),
    ("mac_address", Ignored),
    ("mem_limit", Ignored),
    ("mem_reservation", Ignored),
    ("mem_swappiness", Ignored),
    ("memswap_limit", Ignored),
    ("models", Ignored),
    ("network_mode", Ignored),
    ("networks", Ignored),
    ("oom_kill_disable", Ignored),
    ("oom_score_adj", Ignored),
    ("pid", Ignored),
    ("pids_limit", Ignored),
    ("platform", Ignored),
    ("ports", Ignored),
    ("post_start", Ignored),
    ("pre_stop", Ignored),
    ("privileged", Ignored),
    ("profiles", Ignored),
    ("provider", Ignored),
    ("pull_policy", Ignored),
    ("pull_refresh_after", Ignored),
    ("read_only", Ignored),
    ("restart", Ignored),
    ("runtime", Ignored),
    ("scale", Ignored),
    ("secrets", Ignored),
    ("security_opt", Ignored),
    ("shm_size", Ignored),
    ("stdin_open", Ignored),
    ("stop_grace_period", Ignored),
    ("stop_signal", Ignored),
    ("storage_opt", Ignored),
    ("sysctls", Ignored),
    ("tmpfs", Ignored),
    ("tty", Ignored),
    ("ulimits", Ignored),
    ("use_api_socket", Ignored),
    ("user", Ignored),
    ("userns_mode", Ignored),
    ("uts", Ignored),
    ("volumes", Ignored),
    ("volumes_from", Ignored),
    ("working_dir", Ignored),
]);

/// A service's `deploy` mapping.
pub(crate) const DEPLOY: Keys = Keys(&[
    ("endpoint_mode", Ignored),
    ("labels", Ignored),
    ("mode", Read),
    ("placement", Ignored),
    ("replicas", Read),
    ("resources", Ignored),
    ("restart_policy", Ignored),
    ("rollback_config", Ignored),
    ("update_config", Ignored),
]);

/// Extension keys (`x-…`) are free for users at every level Compose allows them.
pub(crate) fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

impl Keys {
    /// What shoal does with `key`, or `None` if Compose does not define it here.
    pub fn support(&self, key: &str) -> Option<Support> {
        self.0.binary_search_by(|(known, _)| (*known).cmp(key)).ok().map(|i| self.0[i].1)
    }

    /// The defined key nearest to an unknown `key`, if one is near enough to be a likely typo.
    pub fn suggest(&self, key: &str) -> Option<&'static str> {
        let limit = (key.chars().count() / 3).clamp(1, 3);
        self.0
            .iter()
            .map(|(known, _)| (edit_distance(key, known), *known))
            .filter(|(distance, _)| *distance <= limit)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, known)| known)
    }
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbours each cost one, so `imgae` is one step from `image`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_unique() {
        for keys in [&TOP_LEVEL, &SERVICE, &DEPLOY] {
            for pair in keys.0.windows(2) {
                assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
            }
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("image", "image"), 0);
        assert_eq!(edit_distance("imgae", "image"), 1);
        assert_eq!(edit_distance("port", "ports"), 1);
        assert_eq!(edit_distance("enviroment", "environment"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(SERVICE.suggest("imgae"), Some("image"));
        assert_eq!(SERVICE.suggest("enviroment"), Some("environment"));
        assert_eq!(SERVICE.suggest("comand"), Some("command"));
        assert_eq!(SERVICE.suggest("port"), Some("ports"));
        assert_eq!(DEPLOY.suggest("replica"), Some("replicas"));
        assert_eq!(TOP_LEVEL.suggest("service"), Some("services"));
        assert_eq!(SERVICE.suggest("flavour"), None);
        assert_eq!(SERVICE.suggest("x"), None);
    }

    #[test]
    fn support_lookup() {
        assert_eq!(SERVICE.support("image"), Some(Support::Read));
        assert_eq!(SERVICE.support("ports"), Some(Support::Ignored));
        assert_eq!(TOP_LEVEL.support("version"), Some(Support::Quiet));
        assert_eq!(SERVICE.support("imgae"), None);
        assert!(is_extension("x-common"));
        assert!(!is_extension("xcommon"));
    }
}
