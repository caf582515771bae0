//! Whether this manager leads raft, as the dispatcher and the leader-only
//! loops see it.
//!
//! Two signals with two meanings, never mixed: [`Leadership`] (watched: is
//! this manager the leader now, and in which term) and a
//! [`CancellationToken`](tokio_util::sync::CancellationToken) per term of
//! leadership, which the loops started for that term take as their stop
//! signal. The manager's own stop token is the parent of every term's, so
//! stopping the manager also ends the term.

/// This manager's part in raft, as far as the work it may do goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Leadership {
    /// Not the leader (a follower, a candidate, or stopped): leader-only
    /// work is refused.
    #[default]
    Follower,
    /// The leader of raft term `term`.
    Leader { term: u64 },
}

impl Leadership {
    /// Whether this manager leads.
    pub fn is_leader(self) -> bool {
        matches!(self, Leadership::Leader { .. })
    }
}
