//! VACUUM and ANALYZE of distributed tables: the statement every shard runs.
//!
//! The coordinator runs the user's statement on its own tables first (PostgreSQL validates the
//! options and refuses VACUUM in a transaction block there), then each shard runs the same
//! command with the same options and column list, named by its shard relation.

/// The value of an option as the parser gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// A word or string (`on`, `auto`, `'off'`): rendered as a string literal.
    Text(String),
    /// A number (`PARALLEL 2`), as written.
    Number(String),
}

/// One VACUUM or ANALYZE statement, without its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    /// VACUUM (possibly with ANALYZE among its options) rather than ANALYZE alone.
    pub vacuum: bool,
    /// The options by name (lower case, as the parser folds them), in the order given.
    pub options: Vec<(String, Option<OptionValue>)>,
}

impl Maintenance {
    /// The statement for one shard relation (quoted, schema-qualified) and the columns given
    /// (quoted; empty for all).
    pub fn statement(&self, relation: &str, columns: &[String]) -> String {
        let mut sql = String::from(if self.vacuum { "VACUUM" } else { "ANALYZE" });
        if !self.options.is_empty() {
            let options: Vec<String> = self
                .options
                .iter()
                .map(|(name, value)| match value {
                    None => name.clone(),
                    Some(OptionValue::Text(text)) => {
                        format!("{name} {}", crate::layout::quote_literal(text))
                    }
                    Some(OptionValue::Number(number)) => format!("{name} {number}"),
                })
                .collect();
            sql.push_str(&format!(" ({})", options.join(", ")));
        }
        sql.push(' ');
        sql.push_str(relation);
        if !columns.is_empty() {
            sql.push_str(&format!(" ({})", columns.join(", ")));
        }
        sql
    }

    /// Whether SKIP_LOCKED is on: a table whose lock is not free is skipped, not waited for.
    pub fn skip_locked(&self) -> bool {
        self.options
            .iter()
            .rfind(|(name, _)| name == "skip_locked")
            .is_some_and(|(_, value)| is_true(value.as_ref()))
    }

    /// Whether the shards run it outside transactions: VACUUM always (it cannot run in one);
    /// ANALYZE alone when the coordinator's statement is not part of a larger transaction (a
    /// transaction block, or a function's statement), which it otherwise joins.
    pub fn outside_transactions(&self, in_larger_transaction: bool) -> bool {
        self.vacuum || !in_larger_transaction
    }
}

/// A boolean option's value as PostgreSQL reads it (no value means true). The coordinator has
/// accepted the statement already, so anything else is one of the spellings of true.
fn is_true(value: Option<&OptionValue>) -> bool {
    match value {
        None => true,
        Some(OptionValue::Number(n)) => n != "0",
        Some(OptionValue::Text(t)) => !["false", "off", "0"]
            .iter()
            .any(|f| t.eq_ignore_ascii_case(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Option<OptionValue> {
        Some(OptionValue::Text(value.into()))
    }

    #[test]
    fn plain_statements_name_the_shard() {
        let vacuum = Maintenance {
            vacuum: true,
            options: vec![],
        };
        assert_eq!(vacuum.statement("public.t_102", &[]), "VACUUM public.t_102");
        let analyze = Maintenance {
            vacuum: false,
            options: vec![],
        };
        assert_eq!(
            analyze.statement("public.t_102", &["a".into(), "\"B\"".into()]),
            "ANALYZE public.t_102 (a, \"B\")"
        );
    }

    #[test]
    fn options_keep_their_values() {
        let vacuum = Maintenance {
            vacuum: true,
            options: vec![
                ("analyze".into(), None),
                ("index_cleanup".into(), text("auto")),
                ("parallel".into(), Some(OptionValue::Number("2".into()))),
                ("truncate".into(), text("it's")),
            ],
        };
        assert_eq!(
            vacuum.statement("s.t_1", &["c".into()]),
            "VACUUM (analyze, index_cleanup 'auto', parallel 2, truncate 'it''s') s.t_1 (c)"
        );
    }

    #[test]
    fn skip_locked_reads_booleans_as_postgres_does() {
        let with = |value| Maintenance {
            vacuum: true,
            options: vec![("skip_locked".into(), value)],
        };
        assert!(with(None).skip_locked());
        assert!(with(text("on")).skip_locked());
        assert!(with(text("TRUE")).skip_locked());
        assert!(with(Some(OptionValue::Number("1".into()))).skip_locked());
        assert!(!with(text("off")).skip_locked());
        assert!(!with(text("False")).skip_locked());
        assert!(!with(Some(OptionValue::Number("0".into()))).skip_locked());
        let none = Maintenance {
            vacuum: true,
            options: vec![("verbose".into(), None)],
        };
        assert!(!none.skip_locked());
        // The last one given counts, as in PostgreSQL.
        let twice = Maintenance {
            vacuum: true,
            options: vec![
                ("skip_locked".into(), None),
                ("skip_locked".into(), text("off")),
            ],
        };
        assert!(!twice.skip_locked());
    }

    #[test]
    fn only_analyze_in_a_block_joins_the_transaction() {
        let analyze = Maintenance {
            vacuum: false,
            options: vec![],
        };
        assert!(!analyze.outside_transactions(true));
        assert!(analyze.outside_transactions(false));
        let vacuum = Maintenance {
            vacuum: true,
            options: vec![],
        };
        assert!(vacuum.outside_transactions(false));
        assert!(vacuum.outside_transactions(true));
    }
}
