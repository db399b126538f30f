//! Two-phase commit naming and recovery decisions.
//!
//! A coordinator transaction that wrote on several workers prepares on each under a global
//! transaction id (gid) that says who made it and where its outcome is recorded. Two kinds:
//!
//! - **Decided by the coordinator**: the gid names the coordinator server (its system
//!   identifier), the coordinator database, the coordinator transaction (its 64-bit full
//!   transaction id) and the worker. The outcome is a commit record in the coordinator's own
//!   transaction. Used when the coordinator transaction itself writes.
//! - **Decided by a worker** (the last writer commits in one phase): the gid also names that
//!   worker (the decider), the coordinator session's transaction (postmaster start time, backend
//!   id, local transaction id) and the coordinator role whose connection wrote the decision.
//!   The outcome is a row in `pgshard.commit_decision` on the decider, inserted in the
//!   decider's own transaction just before its COMMIT.
//!
//! Recovery lists the prepared transactions on a worker, keeps those of this coordinator
//! database, and decides each one from where its kind says the outcome is.

use std::fmt;

const PREFIX: &str = "pgshard";

/// The coordinator transaction a gid belongs to, and where its outcome is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Decided by a commit record on the coordinator: the coordinator transaction's full id.
    Coordinator { xid: u64 },
    /// Decided by the commit of worker `decider`: the coordinator transaction's virtual id
    /// (`backend`, `lxid`) in the postmaster that started at `started`, and the coordinator
    /// role (`role`, an oid) on whose behalf the decision was written.
    Worker {
        started: i64,
        backend: i32,
        lxid: u32,
        role: u32,
        decider: i32,
    },
}

/// The global id of one prepared transaction on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gid {
    pub system: u64,
    pub database: u32,
    pub origin: Origin,
    pub worker: i32,
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (system, database, worker) = (self.system, self.database, self.worker);
        match self.origin {
            Origin::Coordinator { xid } => {
                write!(f, "{PREFIX}_{system}_{database}_{xid}_{worker}")
            }
            Origin::Worker {
                started,
                backend,
                lxid,
                role,
                decider,
            } => write!(
                f,
                "{PREFIX}_{system}_{database}_v{started}.{backend}.{lxid}.{role}_{worker}_{decider}"
            ),
        }
    }
}

impl Gid {
    /// The worker whose commit decides the transaction, for a worker-decided one.
    pub fn decider(&self) -> Option<i32> {
        match self.origin {
            Origin::Worker { decider, .. } => Some(decider),
            Origin::Coordinator { .. } => None,
        }
    }

    /// Reads a gid written by [`Gid`]'s `Display`; `None` for anything else (gids of other
    /// software, or of people, are never touched).
    pub fn parse(text: &str) -> Option<Gid> {
        let mut fields = text.split('_');
        if fields.next()? != PREFIX {
            return None;
        }
        let system = fields.next()?.parse().ok()?;
        let database = fields.next()?.parse().ok()?;
        let transaction = fields.next()?;
        let worker = fields.next()?.parse().ok()?;
        let origin = match transaction.strip_prefix('v') {
            None => Origin::Coordinator {
                xid: transaction.parse().ok()?,
            },
            Some(session) => {
                let mut parts = session.split('.');
                let origin = Origin::Worker {
                    started: parts.next()?.parse().ok()?,
                    backend: parts.next()?.parse().ok()?,
                    lxid: parts.next()?.parse().ok()?,
                    role: parts.next()?.parse().ok()?,
                    decider: fields.next()?.parse().ok()?,
                };
                // A virtual transaction id is never 0 in either part.
                let valid = matches!(origin, Origin::Worker { backend, lxid, .. } if backend > 0 && lxid > 0);
                if parts.next().is_some() || !valid {
                    return None;
                }
                origin
            }
        };
        let gid = Gid {
            system,
            database,
            origin,
            worker,
        };
        (fields.next().is_none() && gid.to_string() == text).then_some(gid)
    }

    /// Whether this gid was made by the coordinator database `database` of server `system`.
    pub fn made_by(&self, system: u64, database: u32) -> bool {
        self.system == system && self.database == database
    }

    /// The prefix shared by every gid of coordinator database `database` of server `system`,
    /// as a LIKE pattern.
    pub fn like_pattern(system: u64, database: u32) -> String {
        format!("{PREFIX}\\_{system}\\_{database}\\_%")
    }
}

/// What recovery does with a prepared transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Its coordinator transaction committed: COMMIT PREPARED.
    Commit,
    /// Its coordinator transaction ended without committing: ROLLBACK PREPARED.
    RollBack,
    /// Its coordinator transaction is still running and will finish it: leave it alone.
    Leave,
}

/// The decision for one prepared transaction. `coordinator_running` must be checked before
/// `has_commit_record` is read (with a snapshot taken after that check): a transaction that
/// was running and then committed between the two reads is seen with its record.
pub fn resolve(coordinator_running: bool, has_commit_record: bool) -> Resolution {
    match (coordinator_running, has_commit_record) {
        (true, _) => Resolution::Leave,
        (false, true) => Resolution::Commit,
        (false, false) => Resolution::RollBack,
    }
}

/// The row found (or not) in `pgshard.commit_decision` on the decider, after recovery tried to
/// insert its own "rolled back" row for the gid (which succeeds only if there was none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerDecision {
    /// The decider is unreachable, or its table cannot be read: nothing is known yet.
    Unknown,
    /// A row says committed, written by the role the coordinator connects as.
    Committed,
    /// A row says committed but was written by another role: not the coordinator's (a role
    /// with direct access to the worker), or the coordinator's connection role changed since.
    CommittedByOtherRole,
    /// A row says rolled back (recovery's own, or one that blocked the coordinator's insert).
    RolledBack,
}

/// The decision for a prepared transaction decided by a worker. `coordinator_running` is
/// checked first; `decision` is read after it. A "committed" row by another role is left to
/// an administrator: it proves the coordinator's own row cannot exist (the gid is the key), but
/// honouring it would let a role with direct access to the worker commit others' work.
pub fn resolve_by_worker(coordinator_running: bool, decision: WorkerDecision) -> Resolution {
    match (coordinator_running, decision) {
        (true, _) => Resolution::Leave,
        (false, WorkerDecision::Committed) => Resolution::Commit,
        (false, WorkerDecision::RolledBack) => Resolution::RollBack,
        (false, WorkerDecision::Unknown | WorkerDecision::CommittedByOtherRole) => {
            Resolution::Leave
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gid_round_trips() {
        let gid = Gid {
            system: 7_312_345_678_901_234_567,
            database: 16_384,
            origin: Origin::Coordinator {
                xid: (3u64 << 32) | 12_345,
            },
            worker: 2,
        };
        let text = gid.to_string();
        assert_eq!(text, "pgshard_7312345678901234567_16384_12884914233_2");
        assert_eq!(Gid::parse(&text), Some(gid));
        assert!(gid.made_by(7_312_345_678_901_234_567, 16_384));
        assert!(!gid.made_by(7_312_345_678_901_234_567, 16_385));
        assert!(!gid.made_by(1, 16_384));
        assert_eq!(gid.decider(), None, "the coordinator decides");
    }

    #[test]
    fn worker_decided_gid_round_trips() {
        let gid = Gid {
            system: 7_312_345_678_901_234_567,
            database: 16_384,
            origin: Origin::Worker {
                started: 848_123_456_789_012,
                backend: 17,
                lxid: 4_000_000_123,
                role: 10,
                decider: 3,
            },
            worker: 2,
        };
        let text = gid.to_string();
        assert_eq!(
            text,
            "pgshard_7312345678901234567_16384_v848123456789012.17.4000000123.10_2_3"
        );
        assert_eq!(Gid::parse(&text), Some(gid));
        assert!(
            text.len() < 200,
            "PREPARE TRANSACTION takes at most 199 bytes"
        );
        assert!(gid.made_by(7_312_345_678_901_234_567, 16_384));
        assert_eq!(gid.decider(), Some(3));
        // A gid from before a postmaster's start-time epoch is still read back.
        let early = Gid {
            origin: Origin::Worker {
                started: -5,
                backend: 1,
                lxid: 1,
                role: 10,
                decider: 1,
            },
            ..gid
        };
        assert_eq!(Gid::parse(&early.to_string()), Some(early));
    }

    #[test]
    fn like_pattern_matches_only_this_database() {
        assert_eq!(Gid::like_pattern(12, 345), r"pgshard\_12\_345\_%");
    }

    #[test]
    fn foreign_gids_are_not_ours() {
        for text in [
            "",
            "pgshard",
            "pgshard_1_2_3",
            "pgshard_1_2_3_4_5",
            "citus_0_1_2_3",
            "pgshard_x_2_3_4",
            "pgshard_01_2_3_4",
            "pgshard_1_2_3_-",
            "pgshard_1_2_v1.2.3.4_5",
            "pgshard_1_2_v1.2.3_5_6",
            "pgshard_1_2_v1.2.3.4.5_5_6",
            "pgshard_1_2_v1.2.3.4_5_6_7",
            "pgshard_1_2_v1.0.3.4_5_6",
            "pgshard_1_2_v1.2.0.4_5_6",
            "pgshard_1_2_v1.2.3.4_5_x']); DROP TABLE t; --",
            "pgshard_1_2_3_4_",
            "my transaction",
        ] {
            assert_eq!(Gid::parse(text), None, "{text}");
        }
    }

    #[test]
    fn running_transactions_are_left_alone() {
        assert_eq!(resolve(true, false), Resolution::Leave);
        assert_eq!(resolve(true, true), Resolution::Leave);
        assert_eq!(resolve(false, true), Resolution::Commit);
        assert_eq!(resolve(false, false), Resolution::RollBack);
    }

    #[test]
    fn worker_decisions() {
        use WorkerDecision::*;
        for decision in [Unknown, Committed, CommittedByOtherRole, RolledBack] {
            assert_eq!(resolve_by_worker(true, decision), Resolution::Leave);
        }
        assert_eq!(resolve_by_worker(false, Committed), Resolution::Commit);
        assert_eq!(resolve_by_worker(false, RolledBack), Resolution::RollBack);
        assert_eq!(resolve_by_worker(false, Unknown), Resolution::Leave);
        assert_eq!(
            resolve_by_worker(false, CommittedByOtherRole),
            Resolution::Leave
        );
    }
}
