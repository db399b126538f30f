//! Two-phase commit naming and recovery decisions.
//!
//! A coordinator transaction that wrote on several workers prepares on each under a global
//! transaction id (gid) that says who made it: the coordinator server (its system identifier),
//! the coordinator database, the coordinator transaction (its 64-bit full transaction id) and
//! the worker. Recovery lists the prepared transactions on a worker, keeps those of this
//! coordinator database, and decides each one from the coordinator's commit records.

use std::fmt;

const PREFIX: &str = "pgshard";

/// The global id of one prepared transaction on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gid {
    pub system: u64,
    pub database: u32,
    pub xid: u64,
    pub worker: i32,
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}_{}_{}_{}_{}",
            self.system, self.database, self.xid, self.worker
        )
    }
}

impl Gid {
    /// Reads a gid written by [`Gid`]'s `Display`; `None` for anything else (gids of other
    /// software, or of people, are never touched).
    pub fn parse(text: &str) -> Option<Gid> {
        let mut fields = text.split('_');
        if fields.next()? != PREFIX {
            return None;
        }
        let gid = Gid {
            system: fields.next()?.parse().ok()?,
            database: fields.next()?.parse().ok()?,
            xid: fields.next()?.parse().ok()?,
            worker: fields.next()?.parse().ok()?,
        };
        (fields.next().is_none() && gid.to_string() == text).then_some(gid)
    }

    /// Whether this gid was made by the coordinator database `database` of server `system`.
    pub fn made_by(&self, system: u64, database: u32) -> bool {
        self.system == system && self.database == database
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gid_round_trips() {
        let gid = Gid {
            system: 7_312_345_678_901_234_567,
            database: 16_384,
            xid: (3u64 << 32) | 12_345,
            worker: 2,
        };
        let text = gid.to_string();
        assert_eq!(text, "pgshard_7312345678901234567_16384_12884914233_2");
        assert_eq!(Gid::parse(&text), Some(gid));
        assert!(gid.made_by(7_312_345_678_901_234_567, 16_384));
        assert!(!gid.made_by(7_312_345_678_901_234_567, 16_385));
        assert!(!gid.made_by(1, 16_384));
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
}
