//! Which joins with reference tables can run on the shards.
//!
//! A reference table has a whole copy on every worker. A join runs "on the shards" when each
//! shard (group) joins its own rows with the copies on its worker and the coordinator only
//! concatenates the results: right when every output row comes from exactly one shard.

/// A join's type, as the planner sees it (semi and anti joins come from EXISTS / IN / NOT
/// EXISTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    Semi,
    Anti,
}

/// Whether a join of these sides runs on the shards; `None` when both are sharded (then it
/// depends on their keys being equated, which the caller checks).
///
/// A reference side may be joined to a sharded side when the sharded side's rows drive the
/// output: the inner side of inner, left, semi and anti joins (the outer side of a right
/// join). Were the reference side preserved (its unmatched rows kept) or the outer side of a
/// semi or anti join, each shard would return its rows once more. Two reference sides run
/// whole on one copy.
pub fn join_runs_on_shards(
    outer_is_reference: bool,
    inner_is_reference: bool,
    kind: JoinKind,
) -> Option<bool> {
    use JoinKind::*;
    match (outer_is_reference, inner_is_reference) {
        (false, false) => None,
        (true, true) => Some(true),
        (false, true) => Some(matches!(kind, Inner | Left | Semi | Anti)),
        (true, false) => Some(matches!(kind, Inner | Right)),
    }
}

#[cfg(test)]
mod tests {
    use super::JoinKind::*;
    use super::*;

    const ALL: [JoinKind; 6] = [Inner, Left, Right, Full, Semi, Anti];

    #[test]
    fn sharded_with_sharded_is_decided_by_keys() {
        for kind in ALL {
            assert_eq!(join_runs_on_shards(false, false, kind), None);
        }
    }

    #[test]
    fn reference_with_reference_runs_on_one_copy() {
        for kind in ALL {
            assert_eq!(join_runs_on_shards(true, true, kind), Some(true));
        }
    }

    #[test]
    fn reference_side_never_preserved() {
        let pushed = |outer_ref, inner_ref| -> Vec<JoinKind> {
            ALL.into_iter()
                .filter(|k| join_runs_on_shards(outer_ref, inner_ref, *k) == Some(true))
                .collect()
        };
        assert_eq!(pushed(false, true), vec![Inner, Left, Semi, Anti]);
        assert_eq!(pushed(true, false), vec![Inner, Right]);
    }
}
