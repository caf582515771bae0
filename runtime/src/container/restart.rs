//! Restart policies (Docker's `--restart`): what a container asks for ([`RestartPolicy`]), what
//! its directory records across daemon restarts (`restart.json`: [`RestartRecord`]) and the
//! rule that decides whether an exited container runs again ([`RestartPolicy::should_restart`]).
//!
//! The runtime only keeps these facts; whoever supervises containers (the daemon) watches them
//! exit, waits its back-off ([`Backoff`]) and starts them again.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// When an exited container is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// When it exits with a non-zero code, at most `max_retries` times (0: no limit).
    OnFailure { max_retries: u32 },
    /// Whenever it exits, unless the user stopped it; also when the daemon starts, even then.
    Always,
    /// Whenever it exits, unless the user stopped it (then not even when the daemon starts).
    UnlessStopped,
}

/// Why the supervisor is asking [`RestartPolicy::should_restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartOccasion {
    /// The container just exited while the daemon watched it.
    Exited,
    /// The daemon is starting and finds the container exited.
    DaemonStart,
}

impl RestartPolicy {
    /// Docker's rule: `exit_code` is the last run's, `restarts` how often the policy already
    /// restarted it, `stopped_by_user` whether a user stopped (or killed) it since its last start.
    pub fn should_restart(
        &self,
        exit_code: i32,
        restarts: u32,
        stopped_by_user: bool,
        occasion: RestartOccasion,
    ) -> bool {
        match self {
            RestartPolicy::No => false,
            // A stop by the user holds until the daemon restarts: then `always` runs again.
            RestartPolicy::Always => !stopped_by_user || occasion == RestartOccasion::DaemonStart,
            RestartPolicy::UnlessStopped => !stopped_by_user,
            RestartPolicy::OnFailure { max_retries } => {
                !stopped_by_user && exit_code != 0 && (*max_retries == 0 || restarts < *max_retries)
            }
        }
    }

    /// Docker's name for the policy (`no`, `on-failure`, `always`, `unless-stopped`).
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// The retry limit of `on-failure` (0 for the others and for "no limit").
    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max_retries } => *max_retries,
            _ => 0,
        }
    }

    /// Docker's API form: `Name` (empty means `no`) and `MaximumRetryCount`, which only
    /// `on-failure` may carry.
    pub fn from_parts(name: &str, max_retries: i64) -> Result<RestartPolicy, Error> {
        let policy = match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max_retries = u32::try_from(max_retries).map_err(|_| {
                    Error::invalid(format!(
                        "invalid maximum retry count {max_retries} for restart policy on-failure: use a number from 0 (no limit) up"
                    ))
                })?;
                return Ok(RestartPolicy::OnFailure { max_retries });
            }
            other => {
                return Err(Error::invalid(format!(
                    "invalid restart policy \"{other}\": use no, always, unless-stopped or on-failure[:max-retries]"
                )))
            }
        };
        if max_retries != 0 {
            return Err(Error::invalid(format!(
                "a maximum retry count ({max_retries}) only goes with restart policy on-failure, not {name}"
            )));
        }
        Ok(policy)
    }
}

impl FromStr for RestartPolicy {
    type Err = Error;

    /// Parses `--restart`: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    fn from_str(s: &str) -> Result<RestartPolicy, Error> {
        let (name, count) = match s.split_once(':') {
            Some((name, count)) => {
                let n: i64 = count.parse().map_err(|_| {
                    Error::invalid(format!(
                        "invalid restart policy \"{s}\": the maximum retry count \"{count}\" is not a number"
                    ))
                })?;
                (name, n)
            }
            None => (s, 0),
        };
        RestartPolicy::from_parts(name, count)
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::OnFailure { max_retries } if *max_retries > 0 => write!(f, "on-failure:{max_retries}"),
            other => f.write_str(other.name()),
        }
    }
}

/// `restart.json`: how often the policy restarted the container since a user last started
/// it, and whether a user stopped it since. Absent means both are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RestartRecord {
    pub count: u32,
    pub stopped_by_user: bool,
}

/// Docker's restart back-off: 100 ms, doubling on each restart up to a minute, and back to
/// 100 ms once a run lasted 10 seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    /// The first delay.
    pub const INITIAL: Duration = Duration::from_millis(100);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(60);
    /// A run at least this long resets the delay.
    pub const RESET_AFTER: Duration = Duration::from_secs(10);

    /// The delay before the next restart, after a run that lasted `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        if ran >= Backoff::RESET_AFTER || self.delay.is_zero() {
            self.delay = Backoff::INITIAL;
        } else {
            self.delay = (self.delay * 2).min(Backoff::MAX);
        }
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RestartOccasion::{DaemonStart, Exited};

    #[test]
    fn parses_docker_syntax() {
        assert_eq!("no".parse::<RestartPolicy>().expect("no"), RestartPolicy::No);
        assert_eq!("always".parse::<RestartPolicy>().expect("always"), RestartPolicy::Always);
        assert_eq!("unless-stopped".parse::<RestartPolicy>().expect("u-s"), RestartPolicy::UnlessStopped);
        assert_eq!("on-failure".parse::<RestartPolicy>().expect("o-f"), RestartPolicy::OnFailure { max_retries: 0 });
        assert_eq!(
            "on-failure:3".parse::<RestartPolicy>().expect("o-f:3"),
            RestartPolicy::OnFailure { max_retries: 3 }
        );
        for bad in ["sometimes", "always:2", "on-failure:x", "on-failure:-1", "no:1", "Always"] {
            let err = bad.parse::<RestartPolicy>().expect_err(bad).to_string();
            assert!(err.contains("restart policy") || err.contains("retry count"), "{bad}: {err}");
        }
        assert!("sometimes".parse::<RestartPolicy>().expect_err("bad").to_string().contains("\"sometimes\""));
        for p in ["no", "always", "unless-stopped", "on-failure", "on-failure:5"] {
            assert_eq!(p.parse::<RestartPolicy>().expect(p).to_string(), p);
        }
    }

    #[test]
    fn decides_like_docker() {
        let always = RestartPolicy::Always;
        assert!(always.should_restart(0, 9, false, Exited));
        assert!(!always.should_restart(0, 0, true, Exited));
        assert!(always.should_restart(0, 0, true, DaemonStart));
        let unless = RestartPolicy::UnlessStopped;
        assert!(unless.should_restart(1, 0, false, Exited));
        assert!(!unless.should_restart(1, 0, true, DaemonStart));
        let twice = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(!twice.should_restart(0, 0, false, Exited));
        assert!(twice.should_restart(1, 1, false, Exited));
        assert!(!twice.should_restart(1, 2, false, Exited));
        assert!(!twice.should_restart(137, 0, true, Exited));
        assert!(RestartPolicy::OnFailure { max_retries: 0 }.should_restart(1, 1000, false, DaemonStart));
        assert!(!RestartPolicy::No.should_restart(1, 0, false, DaemonStart));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(50);
        assert_eq!(b.next(short), Duration::from_millis(100));
        assert_eq!(b.next(short), Duration::from_millis(200));
        assert_eq!(b.next(short), Duration::from_millis(400));
        assert_eq!(b.next(Duration::from_secs(10)), Duration::from_millis(100));
        for _ in 0..20 {
            b.next(short);
        }
        assert_eq!(b.next(short), Backoff::MAX);
    }
}
