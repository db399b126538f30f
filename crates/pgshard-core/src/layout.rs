//! How a sharded table is laid out on the workers: shard table names, which worker gets which
//! shard, and the rewriting of index definitions onto shard tables.

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENTIFIER: usize = 63;

/// The name of a shard table on its worker: the table's name, then `_` and the shard id. The
/// table name is cut (at a character boundary) when the result would exceed 63 bytes, the way
/// PostgreSQL would otherwise truncate it silently; the shard id always survives.
pub fn shard_relation_name(table: &str, shard_id: i64) -> String {
    let suffix = format!("_{shard_id}");
    let mut cut = MAX_IDENTIFIER.saturating_sub(suffix.len()).min(table.len());
    while !table.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &table[..cut])
}

/// Spreads `shard_count` shards over `worker_count` workers round-robin: shard `i` goes to
/// worker `i % worker_count`, so every worker gets the same number of shards, give or take one,
/// and neighbouring hash ranges sit on different workers.
pub fn spread(shard_count: usize, worker_count: usize) -> Vec<usize> {
    assert!(worker_count > 0, "at least one worker");
    (0..shard_count).map(|i| i % worker_count).collect()
}

/// Rewrites `pg_get_indexdef` output for a shard table: the index is named `shard_index`
/// (quoted; index names are unique per schema, so each shard's carries the shard id) and
/// points at `shard_table`. `index_name` and `table` must be quoted the way `pg_get_indexdef`
/// quotes them. `None` when the definition does not have the expected shape, so that a
/// surprise is an error rather than a wrong index.
pub fn rewrite_index_definition(
    definition: &str,
    index_name: &str,
    table: &str,
    shard_index: &str,
    shard_table: &str,
) -> Option<String> {
    let head = ["CREATE UNIQUE INDEX ", "CREATE INDEX "]
        .into_iter()
        .find(|head| definition.starts_with(head))?;
    let rest = definition[head.len()..].strip_prefix(index_name)?;
    let rest = rest.strip_prefix(" ON ")?.strip_prefix(table)?;
    let rest = rest.strip_prefix(" USING ")?;
    Some(format!("{head}{shard_index} ON {shard_table} USING {rest}"))
}

/// A string as an SQL literal (standard_conforming_strings on): quotes doubled, and written as
/// an `E''` literal when it holds backslashes, as PostgreSQL's `quote_literal` does.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_keep_the_id_within_63_bytes() {
        assert_eq!(shard_relation_name("t_user", 100001), "t_user_100001");
        let long = "x".repeat(70);
        let name = shard_relation_name(&long, 100001);
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("x_100001"));
        // Multi-byte characters are never split.
        let wide = "é".repeat(40);
        let name = shard_relation_name(&wide, 100001);
        assert!(name.len() <= 63 && name.ends_with("é_100001"));
    }

    #[test]
    fn shards_spread_round_robin() {
        assert_eq!(spread(4, 2), vec![0, 1, 0, 1]);
        assert_eq!(spread(5, 3), vec![0, 1, 2, 0, 1]);
        assert_eq!(spread(1, 3), vec![0]);
    }

    #[test]
    fn index_definitions_move_onto_the_shard() {
        assert_eq!(
            rewrite_index_definition(
                "CREATE INDEX t_user_name_idx ON public.t_user USING btree (name) WHERE (name <> ''::text)",
                "t_user_name_idx",
                "public.t_user",
                "t_user_name_idx_100001",
                "public.t_user_100001",
            )
            .as_deref(),
            Some("CREATE INDEX t_user_name_idx_100001 ON public.t_user_100001 USING btree (name) WHERE (name <> ''::text)")
        );
        assert_eq!(
            rewrite_index_definition(
                "CREATE UNIQUE INDEX \"Odd\" ON s.\"T\" USING btree (lower(x))",
                "\"Odd\"",
                "s.\"T\"",
                "\"Odd_7\"",
                "s.\"T_7\"",
            )
            .as_deref(),
            Some("CREATE UNIQUE INDEX \"Odd_7\" ON s.\"T_7\" USING btree (lower(x))")
        );
        assert_eq!(
            rewrite_index_definition("CREATE INDEX i ON ONLY p USING btree (a)", "i", "p", "i_1", "p_1"),
            None
        );
    }

    #[test]
    fn literals_are_quoted_like_quote_literal() {
        assert_eq!(quote_literal("ann"), "'ann'");
        assert_eq!(quote_literal("o'hara"), "'o''hara'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }
}
