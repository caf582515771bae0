//! The keys the Compose specification defines at each level, and which of them shoal reads.
//!
//! A key that Compose does not define at all is an error (most likely a typo, so the loader
//! suggests the nearest key); a Compose key that swarm cannot honour is a warning.
//! When shoal learns a key, flip its entry to `Support::Read` and teach `load` to read it.

/// What shoal does with a key that Compose defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Support {
    /// shoal reads the key.
    Read,
    /// shoal accepts the key without a word: it is obsolete (`version`) or harmless to a stack.
    Quiet,
    /// swarm cannot honour the key (or shoal does not yet): it is ignored with a warning.
    Ignored,
}

/// The keys of one kind of mapping (the top level, a service, a service's `deploy`), sorted.
pub(crate) struct Keys(&'static [(&'static str, Support)]);

use Support::{Ignored, Quiet, Read};

/// The top level of a compose file.
pub(crate) const TOP_LEVEL: Keys = Keys(&[
    ("configs", Read),
    ("include", Ignored),
    ("models", Ignored),
    ("name", Read),
    ("networks", Read),
    ("secrets", Read),
    ("services", Read),
    ("version", Quiet),
    ("volumes", Read),
]);

/// A service under `services`.
pub(crate) const SERVICE: Keys = Keys(&[
    ("annotations", Ignored),
    ("attach", Ignored),
    ("blkio_config", Ignored),
    ("build", Ignored),
    ("cap_add", Read),
    ("cap_drop", Read),
    ("cgroup", Ignored),
    ("cgroup_parent", Ignored),
    ("command", Read),
    ("configs", Read),
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
    ("depends_on", Read),
    ("deploy", Read),
    ("develop", Ignored),
    ("device_cgroup_rules", Ignored),
    ("devices", Ignored),
    ("dns", Read),
    ("dns_opt", Read),
    ("dns_search", Read),
    ("domainname", Ignored),
    ("entrypoint", Read),
    ("env_file", Read),
    ("environment", Read),
    ("expose", Ignored),
    ("extends", Read),
    ("external_links", Ignored),
    ("extra_hosts", Read),
    ("gpus", Ignored),
    ("group_add", Ignored),
    ("healthcheck", Read),
    ("hostname", Read),
    ("image", Read),
    ("init", Read),
    ("ipc", Ignored),
    ("isolation", Ignored),
    ("label_file", Ignored),
    ("labels", Read),
    ("links", Ignored),
    ("logging", Read),
    ("mac_address", Ignored),
    ("mem_limit", Ignored),
    ("mem_reservation", Ignored),
    ("mem_swappiness", Ignored),
    ("memswap_limit", Ignored),
    ("models", Ignored),
    ("network_mode", Read),
    ("networks", Read),
    ("oom_kill_disable", Ignored),
    ("oom_score_adj", Ignored),
    ("pid", Ignored),
    ("pids_limit", Ignored),
    ("platform", Ignored),
    ("ports", Read),
    ("post_start", Ignored),
    ("pre_stop", Ignored),
    ("privileged", Ignored),
    ("profiles", Read),
    ("provider", Ignored),
    ("pull_policy", Ignored),
    ("pull_refresh_after", Ignored),
    ("read_only", Read),
    ("restart", Read),
    ("runtime", Ignored),
    ("scale", Ignored),
    ("secrets", Read),
    ("security_opt", Ignored),
    ("shm_size", Ignored),
    ("stdin_open", Read),
    ("stop_grace_period", Read),
    ("stop_signal", Read),
    ("storage_opt", Ignored),
    ("sysctls", Read),
    ("tmpfs", Ignored),
    ("tty", Read),
    ("ulimits", Read),
    ("use_api_socket", Ignored),
    ("user", Read),
    ("userns_mode", Ignored),
    ("uts", Ignored),
    ("volumes", Read),
    ("volumes_from", Ignored),
    ("working_dir", Read),
]);

/// A service's `deploy` mapping.
pub(crate) const DEPLOY: Keys = Keys(&[
    ("endpoint_mode", Read),
    ("labels", Read),
    ("mode", Read),
    ("placement", Read),
    ("replicas", Read),
    ("resources", Read),
    ("restart_policy", Read),
    ("rollback_config", Read),
    ("update_config", Read),
]);

/// `deploy.resources`.
pub(crate) const RESOURCES: Keys = Keys(&[("limits", Read), ("reservations", Read)]);

/// `deploy.resources.limits` and `.reservations`.
pub(crate) const RESOURCE_VALUES: Keys =
    Keys(&[("cpus", Read), ("devices", Ignored), ("generic_resources", Ignored), ("memory", Read), ("pids", Read)]);

/// `deploy.restart_policy`.
pub(crate) const RESTART_POLICY: Keys =
    Keys(&[("condition", Read), ("delay", Read), ("max_attempts", Read), ("window", Read)]);

/// `deploy.placement`.
pub(crate) const PLACEMENT: Keys =
    Keys(&[("constraints", Read), ("max_replicas_per_node", Read), ("preferences", Read)]);

/// `deploy.update_config` and `deploy.rollback_config`.
pub(crate) const UPDATE_CONFIG: Keys = Keys(&[
    ("delay", Read),
    ("failure_action", Read),
    ("max_failure_ratio", Read),
    ("monitor", Read),
    ("order", Read),
    ("parallelism", Read),
]);

/// A service's `healthcheck`.
pub(crate) const HEALTHCHECK: Keys = Keys(&[
    ("disable", Read),
    ("interval", Read),
    ("retries", Read),
    ("start_interval", Read),
    ("start_period", Read),
    ("test", Read),
    ("timeout", Read),
]);

/// A service's `logging`.
pub(crate) const LOGGING: Keys = Keys(&[("driver", Read), ("options", Read)]);

/// A service's `extends`.
pub(crate) const EXTENDS: Keys = Keys(&[("file", Read), ("service", Read)]);

/// A top-level network.
pub(crate) const NETWORK: Keys = Keys(&[
    ("attachable", Read),
    ("driver", Read),
    ("driver_opts", Read),
    ("enable_ipv4", Ignored),
    ("enable_ipv6", Read),
    ("external", Read),
    ("internal", Read),
    ("ipam", Read),
    ("labels", Read),
    ("name", Read),
]);

/// A top-level volume.
pub(crate) const VOLUME: Keys =
    Keys(&[("driver", Read), ("driver_opts", Read), ("external", Read), ("labels", Read), ("name", Read)]);

/// A top-level secret or config.
pub(crate) const FILE_OBJECT: Keys = Keys(&[
    ("content", Read),
    ("driver", Read),
    ("driver_opts", Read),
    ("environment", Read),
    ("external", Read),
    ("file", Read),
    ("labels", Read),
    ("name", Read),
    ("template_driver", Read),
]);

/// A port in the long syntax.
pub(crate) const PORT: Keys = Keys(&[
    ("app_protocol", Read),
    ("host_ip", Read),
    ("mode", Read),
    ("name", Read),
    ("protocol", Read),
    ("published", Read),
    ("target", Read),
]);

/// A mount in the long syntax of `volumes`.
pub(crate) const MOUNT: Keys = Keys(&[
    ("bind", Read),
    ("consistency", Read),
    ("image", Ignored),
    ("read_only", Read),
    ("source", Read),
    ("target", Read),
    ("tmpfs", Read),
    ("type", Read),
    ("volume", Read),
]);

/// A mount's `bind` options.
pub(crate) const BIND: Keys =
    Keys(&[("create_host_path", Read), ("propagation", Read), ("recursive", Read), ("selinux", Read)]);

/// A mount's `volume` options.
pub(crate) const VOLUME_OPTIONS: Keys = Keys(&[("labels", Ignored), ("nocopy", Read), ("subpath", Read)]);

/// A mount's `tmpfs` options.
pub(crate) const TMPFS: Keys = Keys(&[("mode", Read), ("size", Read)]);

/// A service's secret or config in the long syntax.
pub(crate) const FILE_REF: Keys =
    Keys(&[("gid", Read), ("mode", Read), ("source", Read), ("target", Read), ("uid", Read)]);

/// A service's settings on one network.
pub(crate) const SERVICE_NETWORK: Keys = Keys(&[
    ("aliases", Read),
    ("driver_opts", Read),
    ("gw_priority", Read),
    ("interface_name", Read),
    ("ipv4_address", Read),
    ("ipv6_address", Read),
    ("link_local_ips", Read),
    ("mac_address", Read),
    ("priority", Read),
]);

/// A `depends_on` entry in the long syntax.
pub(crate) const DEPENDENCY: Keys = Keys(&[("condition", Read), ("required", Read), ("restart", Read)]);

/// A `placement.preferences` entry.
pub(crate) const PREFERENCE: Keys = Keys(&[("spread", Read)]);

/// A network's `ipam`.
pub(crate) const IPAM: Keys = Keys(&[("config", Read), ("driver", Read), ("options", Read)]);

/// One pool of a network's `ipam.config`.
pub(crate) const IPAM_POOL: Keys =
    Keys(&[("aux_addresses", Read), ("gateway", Read), ("ip_range", Read), ("subnet", Read)]);

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
        for keys in [
            &TOP_LEVEL,
            &SERVICE,
            &DEPLOY,
            &RESOURCES,
            &RESOURCE_VALUES,
            &RESTART_POLICY,
            &PLACEMENT,
            &UPDATE_CONFIG,
            &HEALTHCHECK,
            &LOGGING,
            &EXTENDS,
            &NETWORK,
            &VOLUME,
            &FILE_OBJECT,
            &PORT,
            &MOUNT,
            &BIND,
            &VOLUME_OPTIONS,
            &TMPFS,
            &FILE_REF,
            &SERVICE_NETWORK,
            &DEPENDENCY,
            &PREFERENCE,
            &IPAM,
            &IPAM_POOL,
        ] {
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
        assert_eq!(SERVICE.support("ports"), Some(Support::Read));
        assert_eq!(SERVICE.support("build"), Some(Support::Ignored));
        assert_eq!(TOP_LEVEL.support("version"), Some(Support::Quiet));
        assert_eq!(SERVICE.support("imgae"), None);
        assert!(is_extension("x-common"));
        assert!(!is_extension("xcommon"));
    }
}
