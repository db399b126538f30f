//! What interrupted moves and splits leave on a worker, and the statements that remove it.
//! Names arrive quoted (the worker's `quote_ident`).

use crate::layout::quote_literal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A move's subscription (on its target).
    Subscription(String),
    /// A move's publication (on its source).
    Publication(String),
    /// A move's replication slot no subscription uses any more.
    Slot(String),
    /// A move's marker table.
    Marker(String),
    /// A split's capture trigger on a shard still in use.
    Trigger { name: String, table: String },
    /// Entries of the split log.
    SplitLog,
    /// A shard table that no placement or orphan names on its worker.
    ShardTable(String),
}

impl Leftover {
    /// Whether it goes before the others, on every worker: dropping a subscription drops its
    /// slot on the source, which an active subscription would keep.
    pub fn goes_first(&self) -> bool {
        matches!(self, Leftover::Subscription(_))
    }

    /// The statements that remove it, each run on its own (one that fails does not stop the
    /// others; a later cleanup retries it).
    pub fn statements(&self) -> Vec<String> {
        match self {
            // Without its slot when the source cannot be reached.
            Leftover::Subscription(name) => vec![
                format!("ALTER SUBSCRIPTION {name} DISABLE"),
                format!("DROP SUBSCRIPTION IF EXISTS {name}"),
                format!("ALTER SUBSCRIPTION {name} SET (slot_name = NONE)"),
                format!("DROP SUBSCRIPTION IF EXISTS {name}"),
            ],
            Leftover::Publication(name) => vec![format!("DROP PUBLICATION IF EXISTS {name}")],
            Leftover::Slot(name) => vec![format!(
                "SELECT pg_drop_replication_slot({})",
                quote_literal(name)
            )],
            Leftover::Marker(name) => vec![format!("DROP TABLE IF EXISTS {name}")],
            Leftover::Trigger { name, table } => {
                vec![format!("DROP TRIGGER IF EXISTS {name} ON {table}")]
            }
            Leftover::SplitLog => vec!["DELETE FROM public.pgshard_split_log".to_string()],
            Leftover::ShardTable(name) => vec![format!("DROP TABLE IF EXISTS {name} CASCADE")],
        }
    }

    /// How a NOTICE names it; helpers that every move or split leaves go unmentioned.
    pub fn description(&self) -> Option<String> {
        match self {
            Leftover::Subscription(name) => Some(format!("subscription {name}")),
            Leftover::Publication(name) => Some(format!("publication {name}")),
            Leftover::Slot(name) => Some(format!("replication slot {name}")),
            Leftover::Trigger { name, table } => Some(format!("trigger {name} on {table}")),
            Leftover::ShardTable(name) => Some(format!("shard table {name}")),
            Leftover::Marker(_) | Leftover::SplitLog => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_go_first_and_fall_back_to_dropping_without_their_slot() {
        let subscription = Leftover::Subscription("pgshard_move_7".into());
        assert!(subscription.goes_first());
        assert!(!Leftover::Slot("pgshard_move_7".into()).goes_first());
        assert_eq!(
            subscription.statements(),
            [
                "ALTER SUBSCRIPTION pgshard_move_7 DISABLE",
                "DROP SUBSCRIPTION IF EXISTS pgshard_move_7",
                "ALTER SUBSCRIPTION pgshard_move_7 SET (slot_name = NONE)",
                "DROP SUBSCRIPTION IF EXISTS pgshard_move_7",
            ]
        );
    }

    #[test]
    fn statements_and_descriptions() {
        assert_eq!(
            Leftover::Slot("pgshard_move_7".into()).statements(),
            ["SELECT pg_drop_replication_slot('pgshard_move_7')"]
        );
        let trigger = Leftover::Trigger {
            name: "pgshard_split_7".into(),
            table: "public.t_7".into(),
        };
        assert_eq!(
            trigger.statements(),
            ["DROP TRIGGER IF EXISTS pgshard_split_7 ON public.t_7"]
        );
        assert_eq!(
            trigger.description().as_deref(),
            Some("trigger pgshard_split_7 on public.t_7")
        );
        assert_eq!(Leftover::SplitLog.description(), None);
        assert_eq!(
            Leftover::ShardTable("public.t_9".into()).statements(),
            ["DROP TABLE IF EXISTS public.t_9 CASCADE"]
        );
    }
}
