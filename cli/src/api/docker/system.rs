//! The daemon itself as Docker's `GET /version` shows it.

use bollard_stubs::models as bollard;

/// `GET /version`: shoal's version, the API versions it serves, and the
/// kernel it runs on.
pub fn version(api_version: &str, min_api_version: &str, kernel_version: String) -> bollard::SystemVersion {
    let version = env!("CARGO_PKG_VERSION");
    let details = [
        ("ApiVersion", api_version),
        ("MinAPIVersion", min_api_version),
        ("GitCommit", ""),
        ("GoVersion", ""),
        ("Os", "linux"),
        ("Arch", std::env::consts::ARCH),
        ("BuildTime", ""),
        ("Experimental", "false"),
    ];
    bollard::SystemVersion {
        platform: Some(bollard::SystemVersionPlatform { name: "shoal".into() }),
        components: Some(vec![bollard::SystemVersionComponents {
            name: "Engine".into(),
            version: version.into(),
            details: Some(details.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        }]),
        version: Some(version.into()),
        api_version: Some(api_version.into()),
        min_api_version: Some(min_api_version.into()),
        os: Some("linux".into()),
        arch: Some(std::env::consts::ARCH.into()),
        kernel_version: Some(kernel_version),
        ..Default::default()
    }
}

/// How many of a node's containers run, are paused and are stopped, as
/// `GET /info` counts them: a paused container is counted as paused only.
pub fn container_counts(containers: &[shoal_runtime::ContainerInfo]) -> (i64, i64, i64) {
    use shoal_runtime::ContainerState::Running;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let running = containers.iter().filter(|c| c.state == Running && !c.paused).count();
    let paused = containers.iter().filter(|c| c.state == Running && c.paused).count();
    (count(running), count(paused), count(containers.len() - running - paused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_api_served() {
        let v = super::super::json(&version("1.51", "1.24", "6.1".into()));
        assert_eq!(
            (&v["ApiVersion"], &v["MinAPIVersion"], &v["KernelVersion"]),
            (&"1.51".into(), &"1.24".into(), &"6.1".into())
        );
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.51");
        assert_eq!(v["Platform"]["Name"], "shoal");
    }
}
