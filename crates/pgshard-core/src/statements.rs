//! Statements prepared on one worker connection.
//!
//! A query the coordinator sends again and again with other values (a prepared statement of the
//! application, a query with `now()`) is prepared once per connection and then sent as
//! `EXECUTE name(values)`: the worker skips the parse, analysis and planning of the query.
//! This cache says which statement texts a connection has prepared, under which name.
//!
//! Names are never reused on a connection, so a statement whose PREPARE may or may not have run
//! (an error or a cancel in between) is simply prepared again under a new name. A statement is
//! recorded only once its PREPARE has succeeded ([`StatementCache::confirm`]).

use std::collections::HashMap;

/// Most statements one connection keeps; beyond that they are all deallocated and the cache
/// starts over, which bounds the memory they take on the worker.
pub const MAX_STATEMENTS: usize = 256;

/// What to send for a statement.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Already prepared under this name: send `EXECUTE name(…)`.
    Execute(String),
    /// Not prepared: send `PREPARE name …` (after `DEALLOCATE ALL` when `deallocate_first`),
    /// then the EXECUTE, and [`StatementCache::confirm`] once the PREPARE succeeded.
    Prepare {
        name: String,
        deallocate_first: bool,
        pending: Pending,
    },
}

/// A PREPARE in flight, to confirm when it succeeded.
#[derive(Debug, PartialEq, Eq)]
pub struct Pending {
    key: String,
    name: String,
    epoch: u64,
}

/// The statements prepared on one connection.
#[derive(Debug, Default)]
pub struct StatementCache {
    names: HashMap<String, String>,
    /// The metadata generation the names were prepared under; a newer one (a table was altered,
    /// moved, dropped) makes them stale.
    generation: u64,
    /// Counts the times everything was deallocated: a PREPARE sent before that is gone.
    epoch: u64,
    /// A PREPARE was sent since the session was last known to have no statement.
    sent_any: bool,
    /// Statements may exist on the worker that the cache no longer names: the next PREPARE
    /// deallocates everything first.
    stale_on_worker: bool,
    next_number: u64,
}

impl StatementCache {
    /// How to send the statement `key` (its parameter types and text) under metadata
    /// `generation`.
    pub fn lookup(&mut self, key: &str, generation: u64) -> Lookup {
        if generation != self.generation || self.names.len() >= MAX_STATEMENTS {
            self.start_over();
            self.generation = generation;
        }
        if let Some(name) = self.names.get(key) {
            return Lookup::Execute(name.clone());
        }
        self.next_number += 1;
        self.sent_any = true;
        let name = format!("pgshard_{}", self.next_number);
        Lookup::Prepare {
            name: name.clone(),
            deallocate_first: std::mem::take(&mut self.stale_on_worker),
            pending: Pending {
                key: key.to_string(),
                name,
                epoch: self.epoch,
            },
        }
    }

    /// Records a statement whose PREPARE succeeded, unless everything was deallocated since it
    /// was sent (a DEALLOCATE ALL after it removed it too).
    pub fn confirm(&mut self, pending: Pending) {
        if pending.epoch == self.epoch {
            self.names.insert(pending.key, pending.name);
        }
    }

    /// Forgets every statement: the connection's session was reset (DISCARD ALL), so none
    /// exists on the worker any more.
    pub fn forget_all(&mut self) {
        self.names.clear();
        self.epoch += 1;
        self.sent_any = false;
        self.stale_on_worker = false;
    }

    /// How many statements the cache names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn start_over(&mut self) {
        let sent_any = self.sent_any;
        self.forget_all();
        // Whatever was prepared before may still be on the worker; the next PREPARE drops it.
        self.stale_on_worker = sent_any;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(cache: &mut StatementCache, key: &str, generation: u64) -> (String, bool) {
        match cache.lookup(key, generation) {
            Lookup::Prepare {
                name,
                deallocate_first,
                pending,
            } => {
                cache.confirm(pending);
                (name, deallocate_first)
            }
            Lookup::Execute(name) => panic!("{key} was already prepared as {name}"),
        }
    }

    #[test]
    fn a_confirmed_statement_is_executed_by_name() {
        let mut cache = StatementCache::default();
        assert_eq!(
            prepare(&mut cache, "(integer) AS q1", 0),
            ("pgshard_1".into(), false)
        );
        assert_eq!(
            cache.lookup("(integer) AS q1", 0),
            Lookup::Execute("pgshard_1".into())
        );
        assert_eq!(
            prepare(&mut cache, "(text) AS q1", 0),
            ("pgshard_2".into(), false)
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn an_unconfirmed_prepare_is_sent_again_under_a_new_name() {
        let mut cache = StatementCache::default();
        let Lookup::Prepare { name, .. } = cache.lookup("q", 0) else {
            panic!("not prepared yet")
        };
        assert_eq!(name, "pgshard_1");
        // The PREPARE failed or was cancelled: never confirmed.
        assert_eq!(prepare(&mut cache, "q", 0), ("pgshard_2".into(), false));
    }

    #[test]
    fn a_new_metadata_generation_starts_over_and_deallocates() {
        let mut cache = StatementCache::default();
        prepare(&mut cache, "q", 1);
        assert_eq!(prepare(&mut cache, "q", 2), ("pgshard_2".into(), true));
        // Only the first PREPARE after the change deallocates.
        assert_eq!(prepare(&mut cache, "r", 2), ("pgshard_3".into(), false));
        assert_eq!(cache.lookup("q", 2), Lookup::Execute("pgshard_2".into()));
    }

    #[test]
    fn a_full_cache_starts_over() {
        let mut cache = StatementCache::default();
        for i in 0..MAX_STATEMENTS {
            assert!(!prepare(&mut cache, &format!("q{i}"), 0).1);
        }
        let (name, deallocate_first) = prepare(&mut cache, "one more", 0);
        assert!(deallocate_first);
        assert_eq!(name, format!("pgshard_{}", MAX_STATEMENTS + 1));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_prepare_sent_before_a_deallocation_is_not_recorded() {
        let mut cache = StatementCache::default();
        prepare(&mut cache, "q", 1);
        let Lookup::Prepare { pending, .. } = cache.lookup("r", 1) else {
            panic!("not prepared yet")
        };
        // Another statement on the connection deallocates everything before `r` is confirmed.
        let (_, deallocate_first) = prepare(&mut cache, "s", 2);
        assert!(deallocate_first);
        cache.confirm(pending);
        assert!(matches!(cache.lookup("r", 2), Lookup::Prepare { .. }));
    }

    #[test]
    fn a_reset_session_has_nothing_prepared() {
        let mut cache = StatementCache::default();
        prepare(&mut cache, "q", 0);
        cache.forget_all();
        assert!(cache.is_empty());
        // DISCARD ALL removed them on the worker too: nothing to deallocate.
        assert_eq!(prepare(&mut cache, "q", 0), ("pgshard_2".into(), false));
    }
}
