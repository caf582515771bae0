//! What one request may ask of the swarm: replicas per service,
//! [`DEFAULT_MAX_REPLICAS`] unless the cluster sets another limit
//! (`ClusterSpec.limits.max_replicas`, `swarm init|update --max-replicas`)
//! of at most [`MAX_REPLICAS_CEILING`].

use shoal_proto::ClusterSpec;

use super::ControlError;
use crate::store::State;

/// Replicas one service may ask for when the cluster sets no limit.
pub const DEFAULT_MAX_REPLICAS: u64 = 10_000;
/// The highest per-service replica limit a cluster may set.
pub const MAX_REPLICAS_CEILING: u64 = 1_000_000;

/// The limits a cluster applies, from its spec and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_replicas: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_replicas: DEFAULT_MAX_REPLICAS }
    }
}

impl Limits {
    /// The limits in force in `state` (the defaults before `swarm init`
    /// committed the cluster object).
    pub fn of(state: &State) -> Limits {
        state.cluster().and_then(|c| c.spec.as_ref()).map(Limits::of_spec).unwrap_or_default()
    }

    /// The limits a cluster spec sets, the defaults for what it leaves out.
    pub fn of_spec(spec: &ClusterSpec) -> Limits {
        let set = spec.limits.as_ref();
        Limits { max_replicas: set.map(|l| l.max_replicas).filter(|m| *m > 0).unwrap_or(DEFAULT_MAX_REPLICAS) }
    }
}

/// Checks a per-service replica limit a user wants to set (0: the default).
pub fn check_max_replicas(max_replicas: u64) -> Result<(), ControlError> {
    if max_replicas > MAX_REPLICAS_CEILING {
        return Err(ControlError::InvalidArgument(format!(
            "a limit of {max_replicas} replicas per service is too high: at most {MAX_REPLICAS_CEILING} \
             (0 sets the default, {DEFAULT_MAX_REPLICAS})"
        )));
    }
    Ok(())
}
