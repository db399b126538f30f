//! Schema changes of distributed tables: which ALTER TABLE subcommands reach the shards, which
//! foreign keys can be enforced on the workers, and what each shard must run to look like the
//! coordinator's table after a change.
//!
//! The coordinator applies a statement first (with all of PostgreSQL's checks); the shards then
//! follow the difference between the table's shape before and after, in the same distributed
//! transaction. Working from the resulting catalog rather than from the statement's text means
//! generated names, inline constraints and multi-command statements come out exactly as
//! PostgreSQL made them.

/// What becomes of an ALTER TABLE subcommand on a distributed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Every shard follows (through the shape difference).
    Shards,
    /// Only the coordinator's table changes: the setting means nothing on the shards (defaults
    /// and identity are evaluated on the coordinator, ownership and statistics are its own).
    CoordinatorOnly,
    /// Refused before anything changes.
    Refused {
        what: &'static str,
        hint: &'static str,
    },
}

/// ALTER TABLE subcommands, grouped by what they mean for a distributed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand {
    AddColumn,
    DropColumn,
    AlterColumnType,
    ColumnDefault,
    NotNull,
    AddConstraint,
    DropConstraint,
    AlterConstraint,
    ValidateConstraint,
    Identity,
    ColumnStatistics,
    Owner,
    Cluster,
    Tablespace,
    ReplicaIdentity,
    Persistence,
    AccessMethod,
    StorageParameters,
    Triggers,
    Rules,
    Inheritance,
    TypedTable,
    Partitioning,
    EnableRowSecurity,
    DisableRowSecurity,
    GeneratedExpression,
    ForeignTableOptions,
    /// Subcommands PostgreSQL queues for itself (re-adding indexes after a type change, …).
    Internal,
}

/// Whether and how a subcommand applies to a distributed table.
pub fn support(subcommand: Subcommand) -> Support {
    use Subcommand::*;
    let refused = |what, hint| Support::Refused { what, hint };
    match subcommand {
        AddColumn | DropColumn | AlterColumnType | NotNull | AddConstraint | DropConstraint
        | AlterConstraint | ValidateConstraint | Internal => Support::Shards,
        ColumnDefault | Identity | ColumnStatistics | Owner | Cluster | Tablespace
        | ReplicaIdentity | DisableRowSecurity => Support::CoordinatorOnly,
        Persistence => refused(
            "SET LOGGED / SET UNLOGGED",
            "Shard tables keep the persistence they were created with.",
        ),
        AccessMethod => refused(
            "SET ACCESS METHOD",
            "The coordinator's table of a sharded table must keep pgshard's access method; unshard the table first.",
        ),
        StorageParameters => refused(
            "storage parameters (SET / RESET (...))",
            "Set them on the shard tables on each worker (pgshard.shards lists them).",
        ),
        Triggers => refused(
            "enabling or disabling triggers",
            "Triggers do not fire on sharded rows; pgshard does not support them on sharded tables.",
        ),
        Rules => refused(
            "enabling or disabling rules",
            "Rules are not supported on sharded tables.",
        ),
        Inheritance | TypedTable => refused(
            "inheritance and typed tables",
            "Only stand-alone tables can be sharded.",
        ),
        Partitioning => refused(
            "attaching or detaching partitions",
            "pgshard's shards take the place of partitions.",
        ),
        EnableRowSecurity => refused(
            "row level security",
            "Row level security is not supported on sharded tables.",
        ),
        GeneratedExpression => refused(
            "generated columns",
            "Compute the value in the application or a view instead.",
        ),
        ForeignTableOptions => refused(
            "foreign table options",
            "A sharded table is not a foreign table.",
        ),
    }
}

/// A column as its shards have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub attnum: i16,
    /// Quoted.
    pub name: String,
    /// The shard's type, with COLLATE when not the type's default.
    pub shard_type: String,
    pub not_null: bool,
}

/// A table constraint (CHECK, PRIMARY KEY, UNIQUE, FOREIGN KEY) of the coordinator's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Unquoted.
    pub name: String,
    /// `pg_constraint.contype`: 'c', 'p', 'u' or 'f'.
    pub kind: char,
    /// As `pg_get_constraintdef` prints it (with NOT VALID when not validated).
    pub definition: String,
}

/// An index of the coordinator's table that backs no constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Unquoted.
    pub name: String,
    /// As `pg_get_indexdef` prints it.
    pub definition: String,
}

/// What the shards must match of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
}

/// One step that brings a shard from the old shape to the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    DropConstraint(&'a Constraint),
    DropIndex(&'a Index),
    DropColumn(&'a Column),
    AddColumn(&'a Column),
    SetType(&'a Column),
    /// The column's `not_null` says which way.
    SetNotNull(&'a Column),
    AddConstraint(&'a Constraint),
    AddIndex(&'a Index),
}

/// The steps from `before` to `after`, in an order every shard can run them: constraints and
/// indexes that go away first (they may use columns that go away), then columns, then new
/// constraints and indexes (they may use new columns). A constraint or index whose definition
/// changed is dropped and added again.
pub fn changes<'a>(before: &'a Shape, after: &'a Shape) -> Vec<Change<'a>> {
    let mut steps = Vec::new();
    let constraint_kept = |c: &Constraint, other: &[Constraint]| other.iter().any(|o| o == c);
    let index_kept = |i: &Index, other: &[Index]| other.iter().any(|o| o == i);
    for constraint in &before.constraints {
        if !constraint_kept(constraint, &after.constraints) {
            steps.push(Change::DropConstraint(constraint));
        }
    }
    for index in &before.indexes {
        if !index_kept(index, &after.indexes) {
            steps.push(Change::DropIndex(index));
        }
    }
    for old in &before.columns {
        if !after.columns.iter().any(|new| new.attnum == old.attnum) {
            steps.push(Change::DropColumn(old));
        }
    }
    for new in &after.columns {
        match before.columns.iter().find(|old| old.attnum == new.attnum) {
            None => steps.push(Change::AddColumn(new)),
            Some(old) => {
                if old.shard_type != new.shard_type {
                    steps.push(Change::SetType(new));
                }
                if old.not_null != new.not_null {
                    steps.push(Change::SetNotNull(new));
                }
            }
        }
    }
    for constraint in &after.constraints {
        if !constraint_kept(constraint, &before.constraints) {
            steps.push(Change::AddConstraint(constraint));
        }
    }
    for index in &after.indexes {
        if !index_kept(index, &before.indexes) {
            steps.push(Change::AddIndex(index));
        }
    }
    steps
}

/// A table at either end of a foreign key, as far as the key's enforcement is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTable {
    Local,
    Reference,
    Hash { colocation_id: i32, key_attnum: i16 },
}

/// Why a foreign key cannot be enforced on the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub hint: &'static str,
}

/// Whether a foreign key from `from` to `to` can be enforced shard by shard. `pairs` are the
/// key's (referencing attnum, referenced attnum) pairs.
///
/// A shard checks its rows against the table on its own worker, so the referenced rows must
/// be there: in the co-located shard when the key pairs the two shard keys (equal keys hash
/// alike), or in the worker's copy of a reference table.
pub fn foreign_key_enforceable(
    from: KeyTable,
    to: KeyTable,
    pairs: &[(i16, i16)],
) -> Result<(), Refusal> {
    foreign_key_tables_compatible(from, to)?;
    match (from, to) {
        (
            KeyTable::Hash {
                key_attnum: from_key,
                ..
            },
            KeyTable::Hash {
                key_attnum: to_key, ..
            },
        ) if !pairs.contains(&(from_key, to_key)) => Err(Refusal {
            reason: "the foreign key does not pair the two shard keys",
            hint: "Include the shard key in the foreign key, referencing the other table's shard key, so that a row and the row it references share a shard.",
        }),
        _ => Ok(()),
    }
}

/// The part of [`foreign_key_enforceable`] that depends on the tables alone (known before the
/// key's columns are resolved).
pub fn foreign_key_tables_compatible(from: KeyTable, to: KeyTable) -> Result<(), Refusal> {
    use KeyTable::*;
    match (from, to) {
        (Local, Local) => Ok(()),
        (Local, _) => Err(Refusal {
            reason: "a local table cannot reference a distributed table",
            hint: "The referenced rows live on the workers, where the coordinator cannot check them; make the referencing table a sharded or reference table first.",
        }),
        (_, Local) => Err(Refusal {
            reason: "a distributed table cannot reference a local table",
            hint: "Make the referenced table a reference table (pgshard.reference_table) so that every worker holds it.",
        }),
        (Reference, Hash { .. }) => Err(Refusal {
            reason: "a reference table cannot reference a sharded table",
            hint: "Each copy would need every shard's rows on its worker; reverse the key or make both tables reference tables.",
        }),
        (Reference, Reference) | (Hash { .. }, Reference) => Ok(()),
        (
            Hash {
                colocation_id: from_group,
                ..
            },
            Hash {
                colocation_id: to_group,
                ..
            },
        ) if from_group != to_group => Err(Refusal {
            reason: "the two sharded tables are not co-located",
            hint: "Shard the referencing table with colocate_with => the referenced table, so that matching rows share a shard.",
        }),
        (Hash { .. }, Hash { .. }) => Ok(()),
    }
}

/// The parts of a foreign key's definition, as `pg_constraint` has them (actions and match
/// types as their one-letter codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// Quoted column names.
    pub columns: Vec<String>,
    /// The referenced table on the shard's worker, qualified and quoted.
    pub target: String,
    pub target_columns: Vec<String>,
    pub match_type: char,
    pub on_update: char,
    pub on_delete: char,
    /// Quoted; `ON DELETE SET NULL (cols)`.
    pub delete_set_columns: Vec<String>,
    pub deferrable: bool,
    pub deferred: bool,
    pub validated: bool,
}

fn action_sql(code: char) -> Result<&'static str, Refusal> {
    match code {
        'a' => Ok("NO ACTION"),
        'r' => Ok("RESTRICT"),
        'c' => Ok("CASCADE"),
        'n' => Ok("SET NULL"),
        'd' => Err(Refusal {
            reason: "ON UPDATE / ON DELETE SET DEFAULT is not supported on distributed tables",
            hint: "Defaults are evaluated on the coordinator, not on the workers that run the action; use SET NULL, CASCADE or NO ACTION.",
        }),
        _ => Err(Refusal {
            reason: "the foreign key has an action pgshard does not know",
            hint: "Use NO ACTION, RESTRICT, CASCADE or SET NULL.",
        }),
    }
}

impl ForeignKey {
    /// The key as a table constraint definition on a shard.
    pub fn definition(&self) -> Result<String, Refusal> {
        let mut sql = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({})",
            self.columns.join(", "),
            self.target,
            self.target_columns.join(", ")
        );
        match self.match_type {
            'f' => sql.push_str(" MATCH FULL"),
            's' => {}
            _ => {
                return Err(Refusal {
                    reason: "MATCH PARTIAL is not implemented",
                    hint: "Use MATCH SIMPLE or MATCH FULL.",
                })
            }
        }
        sql.push_str(" ON UPDATE ");
        sql.push_str(action_sql(self.on_update)?);
        sql.push_str(" ON DELETE ");
        sql.push_str(action_sql(self.on_delete)?);
        if !self.delete_set_columns.is_empty() {
            sql.push_str(&format!(" ({})", self.delete_set_columns.join(", ")));
        }
        if self.deferrable {
            sql.push_str(" DEFERRABLE");
            if self.deferred {
                sql.push_str(" INITIALLY DEFERRED");
            }
        }
        if !self.validated {
            sql.push_str(" NOT VALID");
        }
        Ok(sql)
    }
}

/// One `ALTER TABLE` that drops the constraints `names` (quoted) from `relation` where they
/// exist; `None` when there are none to drop.
pub fn drop_constraints(relation: &str, names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| {
        let drops: Vec<String> = names
            .iter()
            .map(|name| format!("DROP CONSTRAINT IF EXISTS {name}"))
            .collect();
        format!("ALTER TABLE {relation} {}", drops.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_constraints_in_one_statement() {
        assert_eq!(drop_constraints("public.t_7", &[]), None);
        assert_eq!(
            drop_constraints("public.t_7", &["a".into(), "\"B c\"".into()]).as_deref(),
            Some("ALTER TABLE public.t_7 DROP CONSTRAINT IF EXISTS a, DROP CONSTRAINT IF EXISTS \"B c\"")
        );
    }

    fn column(attnum: i16, name: &str, shard_type: &str, not_null: bool) -> Column {
        Column {
            attnum,
            name: name.into(),
            shard_type: shard_type.into(),
            not_null,
        }
    }

    fn constraint(name: &str, kind: char, definition: &str) -> Constraint {
        Constraint {
            name: name.into(),
            kind,
            definition: definition.into(),
        }
    }

    fn index(name: &str, definition: &str) -> Index {
        Index {
            name: name.into(),
            definition: definition.into(),
        }
    }

    #[test]
    fn drops_come_before_columns_and_additions_after() {
        let before = Shape {
            columns: vec![
                column(1, "id", "bigint", true),
                column(2, "old", "text", false),
                column(3, "n", "integer", false),
            ],
            constraints: vec![constraint("old_check", 'c', "CHECK ((old <> ''::text))")],
            indexes: vec![index("old_idx", "CREATE INDEX old_idx ON public.t USING btree (old)")],
        };
        let after = Shape {
            columns: vec![
                column(1, "id", "bigint", true),
                column(3, "n", "bigint", true),
                column(4, "fresh", "text", false),
            ],
            constraints: vec![constraint("fresh_check", 'c', "CHECK ((fresh <> ''::text))")],
            indexes: vec![index("fresh_idx", "CREATE INDEX fresh_idx ON public.t USING btree (fresh)")],
        };
        assert_eq!(
            changes(&before, &after),
            vec![
                Change::DropConstraint(&before.constraints[0]),
                Change::DropIndex(&before.indexes[0]),
                Change::DropColumn(&before.columns[1]),
                Change::SetType(&after.columns[1]),
                Change::SetNotNull(&after.columns[1]),
                Change::AddColumn(&after.columns[2]),
                Change::AddConstraint(&after.constraints[0]),
                Change::AddIndex(&after.indexes[0]),
            ]
        );
    }

    #[test]
    fn an_unchanged_shape_needs_nothing_and_a_changed_definition_is_rebuilt() {
        let shape = Shape {
            columns: vec![column(1, "id", "bigint", true)],
            constraints: vec![constraint("t_pkey", 'p', "PRIMARY KEY (id)")],
            indexes: vec![],
        };
        assert!(changes(&shape, &shape.clone()).is_empty());
        let mut validated = shape.clone();
        validated.constraints = vec![constraint("c", 'c', "CHECK ((id > 0))")];
        let mut not_valid = shape.clone();
        not_valid.constraints = vec![constraint("c", 'c', "CHECK ((id > 0)) NOT VALID")];
        assert_eq!(
            changes(&not_valid, &validated),
            vec![
                Change::DropConstraint(&not_valid.constraints[0]),
                Change::AddConstraint(&validated.constraints[0]),
            ]
        );
    }

    #[test]
    fn foreign_keys_must_stay_on_one_worker() {
        let hash = |group, key| KeyTable::Hash {
            colocation_id: group,
            key_attnum: key,
        };
        assert!(foreign_key_enforceable(hash(1, 1), hash(1, 2), &[(1, 2)]).is_ok());
        assert!(foreign_key_enforceable(hash(1, 1), hash(1, 2), &[(3, 1), (1, 2)]).is_ok());
        assert_eq!(
            foreign_key_enforceable(hash(1, 1), hash(1, 2), &[(3, 2)])
                .unwrap_err()
                .reason,
            "the foreign key does not pair the two shard keys"
        );
        assert!(foreign_key_enforceable(hash(1, 1), hash(2, 1), &[(1, 1)]).is_err());
        assert!(foreign_key_enforceable(hash(1, 1), KeyTable::Reference, &[(4, 1)]).is_ok());
        assert!(foreign_key_enforceable(KeyTable::Reference, KeyTable::Reference, &[]).is_ok());
        assert!(foreign_key_enforceable(KeyTable::Reference, hash(1, 1), &[(1, 1)]).is_err());
        assert!(foreign_key_enforceable(KeyTable::Local, KeyTable::Reference, &[]).is_err());
        assert!(foreign_key_enforceable(hash(1, 1), KeyTable::Local, &[]).is_err());
        assert!(foreign_key_enforceable(KeyTable::Local, KeyTable::Local, &[]).is_ok());
    }

    #[test]
    fn foreign_key_definitions_name_the_shard_on_the_same_worker() {
        let mut key = ForeignKey {
            columns: vec!["customer_id".into()],
            target: "public.customers_102008".into(),
            target_columns: vec!["id".into()],
            match_type: 's',
            on_update: 'a',
            on_delete: 'c',
            delete_set_columns: vec![],
            deferrable: false,
            deferred: false,
            validated: true,
        };
        assert_eq!(
            key.definition().unwrap(),
            "FOREIGN KEY (customer_id) REFERENCES public.customers_102008 (id) ON UPDATE NO ACTION ON DELETE CASCADE"
        );
        key.match_type = 'f';
        key.on_delete = 'n';
        key.delete_set_columns = vec!["note".into()];
        key.deferrable = true;
        key.deferred = true;
        key.validated = false;
        assert_eq!(
            key.definition().unwrap(),
            "FOREIGN KEY (customer_id) REFERENCES public.customers_102008 (id) MATCH FULL ON UPDATE NO ACTION ON DELETE SET NULL (note) DEFERRABLE INITIALLY DEFERRED NOT VALID"
        );
        key.on_update = 'd';
        assert!(key.definition().is_err());
    }

    #[test]
    fn settings_of_the_coordinator_stay_there_and_the_rest_is_refused() {
        assert_eq!(support(Subcommand::AddColumn), Support::Shards);
        assert_eq!(support(Subcommand::ColumnDefault), Support::CoordinatorOnly);
        assert_eq!(support(Subcommand::Identity), Support::CoordinatorOnly);
        assert!(matches!(
            support(Subcommand::AccessMethod),
            Support::Refused { .. }
        ));
    }
}
