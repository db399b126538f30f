//! Schema changes of distributed tables, from the utility hook: ALTER TABLE, CREATE and DROP
//! INDEX, renames and SET SCHEMA reach every shard (every copy of a reference table) in the
//! statement's distributed transaction, so they happen everywhere or nowhere.
//!
//! `prepare` runs before PostgreSQL's own statement: it refuses what the shards cannot follow,
//! before anything changed, and records the table's shape. `apply` runs after it: it reads the
//! new shape, checks what only the result shows (unique keys, foreign keys, defaults for
//! existing rows), renders every shard's statements, and only then sends them. An error at any
//! point aborts the coordinator's change with the rest. The decisions themselves are in
//! `pgshard_core::ddl`.

use std::collections::HashMap;
use std::ffi::c_char;
use std::rc::Rc;

use pgrx::prelude::*;
use pgshard_core::ddl::{self, Change, KeyTable, Shape, Subcommand, Support};
use pgshard_core::layout;

use crate::deparse::list_pointers;
use crate::error::{spi_failed, PgShardError};
use crate::execution::{statements_per_worker, workers_of};
use crate::metadata::{self, cstr, quote_ident, AsSuperuser, LatestSnapshot, Shard, ShardedTable};
use crate::remote;
use crate::tables::{self, ShardConstraint, TableInfo};

/// What the statement will need done on the shards once PostgreSQL has run it.
pub struct Pending(Work);

enum Work {
    /// The shards follow the difference of each table's shape.
    Reshape {
        tables: Vec<(pg_sys::Oid, Shape)>,
        /// CREATE / DROP INDEX CONCURRENTLY: the shards build or drop outside transactions.
        concurrently: bool,
        /// ALTER COLUMN … TYPE … USING expressions, by quoted column name.
        usings: HashMap<String, String>,
    },
    RenameTable {
        shards: Vec<Shard>,
        new_name: String,
    },
    SetSchema {
        shards: Vec<Shard>,
        schema: String,
    },
    RenameColumn {
        table: Rc<ShardedTable>,
        old: String,
        new: String,
    },
    /// An index, or the index of a key constraint: shard indexes carry the shard id.
    RenameIndex {
        table: Rc<ShardedTable>,
        schema: String,
        old: String,
        new: String,
    },
    /// A CHECK or FOREIGN KEY constraint: shards keep its name.
    RenameConstraint {
        table: Rc<ShardedTable>,
        old: String,
        new: String,
    },
}

/// Looks at a utility statement before PostgreSQL runs it; `Some` when shards must follow.
///
/// # Safety
/// `statement` must be NULL or a valid parse tree of a utility statement.
pub unsafe fn prepare(statement: *mut pg_sys::Node, query: *const c_char) -> Option<Pending> {
    if statement.is_null() || !metadata::any_sharded() {
        return None;
    }
    use pg_sys::NodeTag::*;
    match (*statement).type_ {
        T_AlterTableStmt => prepare_alter(statement.cast(), query),
        T_IndexStmt => {
            let index = statement as *mut pg_sys::IndexStmt;
            let concurrently = (*index).concurrent;
            let oid = owned_distributed((*index).relation, lock_for_index(concurrently, false))?;
            Some(reshape(vec![oid], concurrently, HashMap::new()))
        }
        T_DropStmt => {
            let drop = statement as *mut pg_sys::DropStmt;
            if (*drop).removeType != pg_sys::ObjectType::OBJECT_INDEX {
                return None;
            }
            let concurrently = (*drop).concurrent;
            let mut oids: Vec<pg_sys::Oid> = Vec::new();
            for names in list_pointers((*drop).objects) {
                let index = relation_oid(pg_sys::makeRangeVarFromNameList(names.cast()));
                let Some(index) = index else { continue };
                let table = pg_sys::IndexGetRelation(index, true);
                if is_distributed(table) && owns(table) && !oids.contains(&table) {
                    pg_sys::LockRelationOid(table, lock_for_index(concurrently, true));
                    oids.push(table);
                }
            }
            (!oids.is_empty()).then(|| reshape(oids, concurrently, HashMap::new()))
        }
        T_RenameStmt => prepare_rename(statement.cast()),
        T_AlterObjectSchemaStmt => {
            let stmt = statement as *mut pg_sys::AlterObjectSchemaStmt;
            if (*stmt).objectType != pg_sys::ObjectType::OBJECT_TABLE {
                return None;
            }
            let oid = owned_distributed((*stmt).relation, pg_sys::AccessExclusiveLock as i32)?;
            let table = metadata::sharded_table(oid)?;
            Some(Pending(Work::SetSchema {
                shards: table.shards.clone(),
                schema: cstr((*stmt).newschema),
            }))
        }
        T_CreateStmt => {
            let create = statement as *mut pg_sys::CreateStmt;
            for element in list_pointers((*create).tableElts) {
                let node = element as *mut pg_sys::Node;
                match (*node).type_ {
                    T_Constraint => refuse_key_to_distributed(node.cast()),
                    T_ColumnDef => {
                        for constraint in list_pointers((*(node as *mut pg_sys::ColumnDef)).constraints) {
                            refuse_key_to_distributed(constraint.cast());
                        }
                    }
                    _ => {}
                }
            }
            None
        }
        T_CreateTrigStmt => {
            let trigger = statement as *mut pg_sys::CreateTrigStmt;
            if let Some(oid) = relation_oid((*trigger).relation).filter(|o| is_distributed(*o)) {
                refuse(
                    format!(
                        "cannot create trigger \"{}\" on distributed table {}",
                        cstr((*trigger).trigname),
                        metadata::qualified_name(oid)
                    ),
                    "Triggers would not fire on rows that live on the workers; pgshard does not support them on distributed tables.",
                )
            }
            None
        }
        _ => None,
    }
}

/// Brings the shards in line with what PostgreSQL just did.
pub fn apply(pending: Pending) {
    // Catalog reads must see the statement's own changes (and CREATE INDEX CONCURRENTLY leaves
    // no active snapshot at all).
    let _latest = LatestSnapshot::push();
    match pending.0 {
        Work::Reshape {
            tables,
            concurrently,
            usings,
        } => {
            for (oid, before) in tables {
                reshape_shards(oid, &before, concurrently, &usings);
            }
        }
        Work::RenameTable { shards, new_name } => {
            tables::run_on_shard_workers(&shards, "rename shards on", |shard| {
                format!(
                    "ALTER TABLE {} RENAME TO {};",
                    shard.relation,
                    quote_ident(&layout::shard_relation_name(&new_name, shard.id))
                )
            })
        }
        Work::SetSchema { shards, schema } => {
            let schema = quote_ident(&schema);
            tables::run_on_shard_workers(&shards, "move shards on", |shard| {
                format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}; ALTER TABLE {} SET SCHEMA {schema};",
                    shard.relation
                )
            })
        }
        Work::RenameColumn { table, old, new } => {
            if !table.reference && table.key_name == old {
                let _superuser = AsSuperuser::enter();
                Spi::run_with_args(
                    "UPDATE pgshard.sharded_table SET shard_key = $2 WHERE table_oid = $1",
                    &[table.oid.into(), new.as_str().into()],
                )
                .unwrap_or_else(|e| spi_failed("could not record the shard key's new name", e));
            }
            tables::run_on_shard_workers(&table.shards, "rename a column on", |shard| {
                format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {};",
                    shard.relation,
                    quote_ident(&old),
                    quote_ident(&new)
                )
            })
        }
        Work::RenameIndex {
            table,
            schema,
            old,
            new,
        } => tables::run_on_shard_workers(&table.shards, "rename an index on", |shard| {
            format!(
                "ALTER INDEX IF EXISTS {}.{} RENAME TO {};",
                quote_ident(&schema),
                quote_ident(&layout::shard_relation_name(&old, shard.id)),
                quote_ident(&layout::shard_relation_name(&new, shard.id))
            )
        }),
        Work::RenameConstraint { table, old, new } => {
            tables::run_on_shard_workers(&table.shards, "rename a constraint on", |shard| {
                format!(
                    "ALTER TABLE {} RENAME CONSTRAINT {} TO {};",
                    shard.relation,
                    quote_ident(&old),
                    quote_ident(&new)
                )
            })
        }
    }
}

fn reshape(oids: Vec<pg_sys::Oid>, concurrently: bool, usings: HashMap<String, String>) -> Pending {
    let tables = oids
        .into_iter()
        .map(|oid| (oid, tables::describe(oid).shape()))
        .collect();
    Pending(Work::Reshape {
        tables,
        concurrently,
        usings,
    })
}

unsafe fn prepare_alter(stmt: *mut pg_sys::AlterTableStmt, query: *const c_char) -> Option<Pending> {
    if (*stmt).objtype != pg_sys::ObjectType::OBJECT_TABLE {
        return None;
    }
    let oid = relation_oid((*stmt).relation)?;
    let commands: Vec<*mut pg_sys::AlterTableCmd> = list_pointers((*stmt).cmds)
        .into_iter()
        .map(|c| c.cast())
        .collect();
    if !is_distributed(oid) {
        for &command in &commands {
            for constraint in new_constraints(command) {
                refuse_key_to_distributed(constraint);
            }
        }
        return None;
    }
    if !owns(oid) {
        return None;
    }
    pg_sys::LockRelationOid(oid, pg_sys::AccessExclusiveLock as i32);
    let table = metadata::sharded_table(oid)?;
    let qualified = metadata::qualified_name(oid);
    let mut usings = HashMap::new();
    for &command in &commands {
        // Refused here, before PostgreSQL validates the key with a query over the shards.
        for constraint in new_constraints(command) {
            if (*constraint).contype != pg_sys::ConstrType::CONSTR_FOREIGN {
                continue;
            }
            let Some(target) = relation_oid((*constraint).pktable) else {
                continue;
            };
            if let Err(refusal) =
                ddl::foreign_key_tables_compatible(key_table_of(Some(&table)), key_table(target))
            {
                refuse(
                    format!(
                        "cannot add a foreign key from {qualified} to {}: {}",
                        metadata::qualified_name(target),
                        refusal.reason
                    ),
                    refusal.hint,
                )
            }
        }
        let subcommand = subcommand((*command).subtype);
        if let Support::Refused { what, hint } = ddl::support(subcommand) {
            refuse(
                format!("{what} is not supported on distributed table {qualified}"),
                hint,
            )
        }
        let column = cstr((*command).name);
        match subcommand {
            Subcommand::AddColumn => {
                let definition = (*command).def as *mut pg_sys::ColumnDef;
                let generated = (*definition).generated != 0
                    || list_pointers((*definition).constraints).into_iter().any(|c| {
                        (*(c as *mut pg_sys::Constraint)).contype
                            == pg_sys::ConstrType::CONSTR_GENERATED
                    });
                if generated {
                    refuse(
                        format!("cannot add generated column \"{}\" to distributed table {qualified}", cstr((*definition).colname)),
                        "Compute the value in the application or a view instead.",
                    )
                }
            }
            Subcommand::DropColumn if !table.reference && column == table.key_name => refuse(
                format!("cannot drop shard key \"{column}\" of {qualified}"),
                "Every row's shard is chosen by this column; unshard the table first (pgshard.unshard_table).",
            ),
            Subcommand::AlterColumnType => {
                let definition = (*command).def as *mut pg_sys::ColumnDef;
                let new_type = pg_sys::typenameTypeId(std::ptr::null_mut(), (*definition).typeName);
                let name = std::ffi::CString::new(column.as_str()).expect("no NUL in a name");
                let attnum = pg_sys::get_attnum(oid, name.as_ptr());
                let old_type = pg_sys::get_atttype(oid, attnum);
                if crate::encryption::kind_of_type(old_type).is_some()
                    || crate::encryption::kind_of_type(new_type).is_some()
                {
                    refuse(
                        format!("cannot change the type of column \"{column}\" of {qualified} to or from an encrypted type"),
                        "Add a column of the new type, fill it with UPDATE, then drop the old column.",
                    )
                }
                if !table.reference
                    && column == table.key_name
                    && crate::hashing::key_family(new_type) != table.key_family
                {
                    refuse(
                        format!("cannot change the type of shard key \"{column}\" of {qualified}: its values would hash differently"),
                        "Types of one family (int2, int4, int8; or text and varchar) hash alike and can be changed to each other; otherwise unshard the table first.",
                    )
                }
                if !(*definition).raw_default.is_null() {
                    usings.insert(
                        quote_ident(&column),
                        using_sql(oid, (*definition).raw_default, query),
                    );
                }
            }
            _ => {}
        }
    }
    Some(reshape(vec![oid], false, usings))
}

unsafe fn prepare_rename(stmt: *mut pg_sys::RenameStmt) -> Option<Pending> {
    use pg_sys::ObjectType::*;
    let rename_type = (*stmt).renameType;
    if !matches!(
        rename_type,
        OBJECT_TABLE | OBJECT_INDEX | OBJECT_COLUMN | OBJECT_TABCONSTRAINT
    ) || (rename_type == OBJECT_COLUMN && (*stmt).relationType != OBJECT_TABLE)
    {
        return None;
    }
    let relation = relation_oid((*stmt).relation)?;
    let new = cstr((*stmt).newname);
    let is_index = pg_sys::get_rel_relkind(relation) as u8 == pg_sys::RELKIND_INDEX;
    if is_index {
        let oid = pg_sys::IndexGetRelation(relation, true);
        if !is_distributed(oid) || !owns(oid) {
            return None;
        }
        pg_sys::LockRelationOid(oid, pg_sys::AccessExclusiveLock as i32);
        let (schema, old) = metadata::schema_and_name(relation);
        return Some(Pending(Work::RenameIndex {
            table: metadata::sharded_table(oid)?,
            schema,
            old,
            new,
        }));
    }
    if !is_distributed(relation) || !owns(relation) {
        return None;
    }
    pg_sys::LockRelationOid(relation, pg_sys::AccessExclusiveLock as i32);
    let table = metadata::sharded_table(relation)?;
    let old = cstr((*stmt).subname);
    Some(Pending(match rename_type {
        OBJECT_COLUMN => Work::RenameColumn { table, old, new },
        OBJECT_TABCONSTRAINT => {
            let kind = Spi::get_one_with_args::<String>(
                "SELECT contype::text FROM pg_constraint WHERE conrelid = $1 AND conname = $2",
                &[relation.into(), old.as_str().into()],
            );
            match kind {
                Ok(Some(kind)) if kind == "p" || kind == "u" => Work::RenameIndex {
                    schema: metadata::schema_and_name(relation).0,
                    table,
                    old,
                    new,
                },
                // PostgreSQL reports a constraint that does not exist.
                _ => Work::RenameConstraint { table, old, new },
            }
        }
        _ => Work::RenameTable {
            shards: table.shards.clone(),
            new_name: new,
        },
    }))
}

/// The ALTER TABLE subcommand's group.
#[allow(non_upper_case_globals)]
fn subcommand(subtype: pg_sys::AlterTableType::Type) -> Subcommand {
    use pg_sys::AlterTableType::*;
    use Subcommand::*;
    match subtype {
        AT_AddColumn | AT_AddColumnRecurse => AddColumn,
        AT_DropColumn | AT_DropColumnRecurse => DropColumn,
        AT_AlterColumnType => AlterColumnType,
        AT_ColumnDefault | AT_CookedColumnDefault => ColumnDefault,
        AT_DropNotNull | AT_SetNotNull | AT_CheckNotNull => NotNull,
        AT_AddIndex | AT_AddConstraint | AT_AddConstraintRecurse | AT_AddIndexConstraint => {
            AddConstraint
        }
        AT_DropConstraint | AT_DropConstraintRecurse => DropConstraint,
        AT_AlterConstraint => AlterConstraint,
        AT_ValidateConstraint | AT_ValidateConstraintRecurse => ValidateConstraint,
        AT_AddIdentity | AT_SetIdentity | AT_DropIdentity => Identity,
        AT_SetStatistics | AT_SetOptions | AT_ResetOptions | AT_SetStorage | AT_SetCompression => {
            ColumnStatistics
        }
        AT_ChangeOwner => Owner,
        AT_ClusterOn | AT_DropCluster => Cluster,
        AT_SetTableSpace => Tablespace,
        AT_ReplicaIdentity => ReplicaIdentity,
        AT_SetLogged | AT_SetUnLogged => Persistence,
        AT_SetAccessMethod => AccessMethod,
        AT_SetRelOptions | AT_ResetRelOptions | AT_ReplaceRelOptions => StorageParameters,
        AT_EnableTrig | AT_EnableAlwaysTrig | AT_EnableReplicaTrig | AT_DisableTrig
        | AT_EnableTrigAll | AT_DisableTrigAll | AT_EnableTrigUser | AT_DisableTrigUser => {
            Triggers
        }
        AT_EnableRule | AT_EnableAlwaysRule | AT_EnableReplicaRule | AT_DisableRule => Rules,
        AT_AddInherit | AT_DropInherit => Inheritance,
        AT_AddOf | AT_DropOf => TypedTable,
        AT_AttachPartition | AT_DetachPartition | AT_DetachPartitionFinalize => Partitioning,
        AT_EnableRowSecurity | AT_ForceRowSecurity => EnableRowSecurity,
        AT_DisableRowSecurity | AT_NoForceRowSecurity => DisableRowSecurity,
        AT_DropExpression => GeneratedExpression,
        AT_AlterColumnGenericOptions | AT_GenericOptions => ForeignTableOptions,
        _ => Internal,
    }
}

/// The constraints an ALTER TABLE subcommand adds (table constraints, and those of a new
/// column).
unsafe fn new_constraints(command: *mut pg_sys::AlterTableCmd) -> Vec<*mut pg_sys::Constraint> {
    let def = (*command).def;
    if def.is_null() {
        return Vec::new();
    }
    match (*def).type_ {
        pg_sys::NodeTag::T_Constraint => vec![def.cast()],
        pg_sys::NodeTag::T_ColumnDef => list_pointers((*(def as *mut pg_sys::ColumnDef)).constraints)
            .into_iter()
            .map(|c| c.cast())
            .collect(),
        _ => Vec::new(),
    }
}

/// Refuses a foreign key of a local table (one being created or altered) that references a
/// distributed table: its rows are not on the coordinator to be checked against.
unsafe fn refuse_key_to_distributed(constraint: *mut pg_sys::Constraint) {
    if (*constraint).type_ != pg_sys::NodeTag::T_Constraint
        || (*constraint).contype != pg_sys::ConstrType::CONSTR_FOREIGN
    {
        return;
    }
    if let Some(target) = relation_oid((*constraint).pktable).filter(|o| is_distributed(*o)) {
        let refusal = ddl::foreign_key_enforceable(KeyTable::Local, key_table(target), &[])
            .expect_err("a local table never references a distributed one");
        refuse(
            format!(
                "cannot add a foreign key referencing {}: {}",
                metadata::qualified_name(target),
                refusal.reason
            ),
            refusal.hint,
        )
    }
}

/// The USING expression of ALTER COLUMN TYPE as SQL for the shards: transformed against the
/// table (so a bad expression gets PostgreSQL's error here) and printed back by ruleutils, which
/// spells out implicit casts and leaves column references unqualified.
unsafe fn using_sql(oid: pg_sys::Oid, raw: *mut pg_sys::Node, query: *const c_char) -> String {
    let state = pg_sys::make_parsestate(std::ptr::null_mut());
    (*state).p_sourcetext = query;
    let relation = pg_sys::relation_open(oid, pg_sys::NoLock as i32);
    let item = pg_sys::addRangeTableEntryForRelation(
        state,
        relation,
        pg_sys::AccessShareLock as i32,
        std::ptr::null_mut(),
        false,
        true,
    );
    pg_sys::addNSItemToQuery(state, item, false, true, true);
    let expression = pg_sys::transformExpr(
        state,
        raw,
        pg_sys::ParseExprKind::EXPR_KIND_ALTER_COL_TRANSFORM,
    );
    pg_sys::relation_close(relation, pg_sys::NoLock as i32);
    let context = pg_sys::deparse_context_for(pg_sys::get_rel_name(oid), oid);
    cstr(pg_sys::deparse_expression(expression, context, false, false))
}

/// Sends every shard the steps from `before` to the table's shape now.
fn reshape_shards(
    oid: pg_sys::Oid,
    before: &Shape,
    concurrently: bool,
    usings: &HashMap<String, String>,
) {
    let Some(sharded) = metadata::sharded_table(oid) else {
        return;
    };
    let table = tables::describe(oid);
    let after = table.shape();
    let steps = ddl::changes(before, &after);
    if steps.is_empty() {
        return;
    }
    check_keys(&table, &sharded, &steps);
    let fills = column_fills(&table, &steps);
    let foreign_keys: HashMap<String, ForeignKeyParts> = steps
        .iter()
        .filter_map(|step| match step {
            Change::AddConstraint(c) if c.kind == 'f' => {
                Some((c.name.clone(), ForeignKeyParts::read(&table, &sharded, &c.name)))
            }
            _ => None,
        })
        .collect();
    let tag_indexes = table.tag_indexes();
    let schema = quote_ident(&table.schema);
    // One statement (or a few, for one step) per step: CONCURRENTLY ones run alone.
    let render = |shard: &Shard| -> Vec<String> {
        let relation = &shard.relation;
        let shard_name = |name: &str| quote_ident(&layout::shard_relation_name(name, shard.id));
        let mut script = Vec::new();
        for step in &steps {
            let sql = match step {
                Change::DropConstraint(c) if c.kind == 'p' || c.kind == 'u' => format!(
                    "ALTER TABLE {relation} DROP CONSTRAINT IF EXISTS {0} CASCADE; \
                     DROP INDEX IF EXISTS {schema}.{0} CASCADE;\n",
                    shard_name(&c.name)
                ),
                Change::DropConstraint(c) => format!(
                    "ALTER TABLE {relation} DROP CONSTRAINT IF EXISTS {} CASCADE;\n",
                    quote_ident(&c.name)
                ),
                Change::DropIndex(index) => format!(
                    "DROP INDEX {}IF EXISTS {schema}.{};\n",
                    if concurrently { "CONCURRENTLY " } else { "" },
                    shard_name(&index.name)
                ),
                Change::DropColumn(c) => {
                    format!("ALTER TABLE {relation} DROP COLUMN {} CASCADE;\n", c.name)
                }
                Change::AddColumn(c) => {
                    let fill = fills.get(&c.attnum);
                    let mut sql = format!("ALTER TABLE {relation} ADD COLUMN {} {}", c.name, c.shard_type);
                    if let Some(value) = fill {
                        sql.push_str(&format!(" DEFAULT {}", layout::quote_literal(value)));
                    }
                    if c.not_null {
                        sql.push_str(" NOT NULL");
                    }
                    sql.push_str(";\n");
                    if fill.is_some() {
                        // Defaults live on the coordinator; the shard's was only for the rows
                        // that were already there.
                        sql.push_str(&format!(
                            "ALTER TABLE {relation} ALTER COLUMN {} DROP DEFAULT;\n",
                            c.name
                        ));
                    }
                    sql
                }
                Change::SetType(c) => format!(
                    "ALTER TABLE {relation} ALTER COLUMN {} TYPE {}{};\n",
                    c.name,
                    c.shard_type,
                    usings
                        .get(&c.name)
                        .map(|u| format!(" USING {u}"))
                        .unwrap_or_default()
                ),
                Change::SetNotNull(c) => format!(
                    "ALTER TABLE {relation} ALTER COLUMN {} {} NOT NULL;\n",
                    c.name,
                    if c.not_null { "SET" } else { "DROP" }
                ),
                Change::AddConstraint(c) if c.kind == 'f' => format!(
                    "ALTER TABLE {relation} ADD CONSTRAINT {} {};\n",
                    quote_ident(&c.name),
                    foreign_keys[&c.name].definition_on(shard)
                ),
                Change::AddConstraint(c) => match table.shard_constraint(c, shard, &tag_indexes) {
                    ShardConstraint::Element(element) => {
                        format!("ALTER TABLE {relation} ADD {element};\n")
                    }
                    ShardConstraint::Index(ddl) => ddl,
                },
                Change::AddIndex(index) => {
                    table.shard_index(&index.name, shard, concurrently, &tag_indexes)
                }
            };
            script.push(sql);
        }
        script
    };
    if concurrently {
        run_concurrently_on_shards(&sharded, &steps, &schema, render);
    } else {
        tables::run_on_shard_workers(&sharded.shards, "change shards on", |shard| {
            render(shard).concat()
        });
    }
}

/// Unique keys of a sharded table must include its shard key (uniqueness is only enforced
/// within a shard), and foreign keys must be enforceable on one worker.
fn check_keys(table: &TableInfo, sharded: &ShardedTable, steps: &[Change]) {
    let adds_unique = steps
        .iter()
        .any(|s| matches!(s, Change::AddConstraint(_) | Change::AddIndex(_)));
    if adds_unique && !sharded.reference {
        if let Some(offender) = table.unique_without_key(sharded.key_attnum) {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "{offender} of sharded table {} does not include the shard key \"{}\"",
                    table.qualified, sharded.key_name
                ),
            )
            .detail("Uniqueness can only be enforced within a shard, so a unique constraint must include the shard key.")
            .hint("Add the shard key to the constraint's columns.")
            .raise()
        }
    }
}

/// For each added column with a default, the value the rows already in the shards get (as
/// text). PostgreSQL evaluates a non-volatile default once for existing rows; so does this, on
/// the coordinator. A volatile default (a sequence, random()) or an identity column would need
/// a value per row, and an encrypted default would repeat one ciphertext in every row: both are
/// refused unless the table has no rows.
fn column_fills(table: &TableInfo, steps: &[Change]) -> HashMap<i16, String> {
    let mut fills = HashMap::new();
    for step in steps {
        let Change::AddColumn(column) = step else {
            continue;
        };
        let default = Spi::get_three_with_args::<bool, String, bool>(
            "SELECT a.atthasmissing, pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '' \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum = $2",
            &[table.oid.into(), column.attnum.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not read the new column", e));
        let (missing, expression, identity) = default;
        // SAFETY: a catalog lookup of a column that exists.
        let type_oid = unsafe { pg_sys::get_atttype(table.oid, column.attnum) };
        let encrypted = crate::encryption::kind_of_type(type_oid).is_some();
        if expression.is_none() && crate::deparse::is_domain(type_oid) && table_has_rows(table) {
            // The rows on the shards get NULL: the domain must take it (NOT NULL, a CHECK), as
            // PostgreSQL checks when it adds such a column to a table that has rows.
            // SAFETY: the domain's input function, given NULL as PostgreSQL itself does.
            unsafe {
                let (mut input, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
                pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
                pg_sys::OidInputFunctionCall(input, std::ptr::null_mut(), io_param, -1);
            }
        }
        let per_row = identity == Some(true)
            || (expression.is_some() && (missing != Some(true) || encrypted));
        if per_row {
            if table_has_rows(table) {
                refuse(
                    format!(
                        "cannot add column {} to {} with {}: its rows are already on the shards",
                        column.name,
                        table.qualified,
                        if identity == Some(true) {
                            "an identity"
                        } else if encrypted {
                            "an encrypted default"
                        } else if crate::deparse::is_domain(type_oid) {
                            "a default of a domain type"
                        } else {
                            "a volatile default"
                        }
                    ),
                    "Add the column without a default, set the default, then fill the existing rows with UPDATE.",
                )
            }
            continue;
        }
        if let (Some(true), Some(expression)) = (missing, expression) {
            let value = Spi::get_one::<String>(&format!("SELECT ({expression})::text"))
                .unwrap_or_else(|e| spi_failed("could not evaluate the new column's default", e));
            if let Some(value) = value {
                fills.insert(column.attnum, value);
            }
        }
    }
    fills
}

/// Whether the distributed table holds any row (asked of the shards, through routing).
fn table_has_rows(table: &TableInfo) -> bool {
    Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT FROM {})", table.qualified))
        .unwrap_or_else(|e| spi_failed("could not look for rows", e))
        .unwrap_or(false)
}

/// A foreign key as `pg_constraint` has it, with the table it references.
struct ForeignKeyParts {
    key: ddl::ForeignKey,
    target: Option<Rc<ShardedTable>>,
}

impl ForeignKeyParts {
    fn read(table: &TableInfo, sharded: &ShardedTable, name: &str) -> Self {
        type Row = (pg_sys::Oid, Vec<i16>, Vec<i16>, String, Vec<i16>, (bool, bool, bool));
        let row: Row = Spi::connect(|client| {
            let rows = client.select(
                "SELECT confrelid, conkey, confkey, \
                   confmatchtype::text || confupdtype::text || confdeltype::text, \
                   coalesce(confdelsetcols, '{}'), condeferrable, condeferred, convalidated \
                 FROM pg_constraint WHERE conrelid = $1 AND conname = $2 AND contype = 'f'",
                None,
                &[table.oid.into(), name.into()],
            )?;
            let row = rows.first();
            Ok::<_, pgrx::spi::SpiError>((
                row.get::<pg_sys::Oid>(1)?.expect("confrelid"),
                row.get::<Vec<i16>>(2)?.unwrap_or_default(),
                row.get::<Vec<i16>>(3)?.unwrap_or_default(),
                row.get::<String>(4)?.unwrap_or_default(),
                row.get::<Vec<i16>>(5)?.unwrap_or_default(),
                (
                    row.get::<bool>(6)?.unwrap_or(false),
                    row.get::<bool>(7)?.unwrap_or(false),
                    row.get::<bool>(8)?.unwrap_or(true),
                ),
            ))
        })
        .unwrap_or_else(|e| spi_failed("could not read the foreign key", e));
        let (target_oid, columns, target_columns, codes, set_columns, flags) = row;
        let pairs: Vec<(i16, i16)> = columns
            .iter()
            .copied()
            .zip(target_columns.iter().copied())
            .collect();
        let from = key_table_of(Some(sharded));
        let target = metadata::sharded_table(target_oid);
        if let Err(refusal) = ddl::foreign_key_enforceable(from, key_table_of(target.as_deref()), &pairs) {
            refuse(
                format!(
                    "cannot add foreign key \"{name}\" from {} to {}: {}",
                    table.qualified,
                    metadata::qualified_name(target_oid),
                    refusal.reason
                ),
                refusal.hint,
            )
        }
        let names = |relation: pg_sys::Oid, attnums: &[i16]| -> Vec<String> {
            attnums
                .iter()
                // SAFETY: catalog lookups of columns a constraint names.
                .map(|a| quote_ident(&cstr(unsafe { pg_sys::get_attname(relation, *a, false) })))
                .collect()
        };
        let mut codes = codes.chars();
        let mut code = || codes.next().unwrap_or('?');
        let key = ddl::ForeignKey {
            columns: names(table.oid, &columns),
            target: String::new(),
            target_columns: names(target_oid, &target_columns),
            match_type: code(),
            on_update: code(),
            on_delete: code(),
            delete_set_columns: names(table.oid, &set_columns),
            deferrable: flags.0,
            deferred: flags.1,
            validated: flags.2,
        };
        if let Err(refusal) = key.definition() {
            refuse(
                format!("cannot add foreign key \"{name}\" to {}: {}", table.qualified, refusal.reason),
                refusal.hint,
            )
        }
        ForeignKeyParts { key, target }
    }

    /// The key on `shard`: it references the co-located shard, or the reference table's copy,
    /// on the same worker.
    fn definition_on(&self, shard: &Shard) -> String {
        self.definition_referencing(shard, &|target| {
            target
                .shards
                .iter()
                .find(|t| t.range == shard.range)
                .expect("co-located tables share their ranges")
                .relation
                .clone()
        })
    }

    /// The key on `shard`, referencing the shard table `colocated` names for a co-located
    /// table, or the reference table's copy on the shard's worker.
    fn definition_referencing(
        &self,
        shard: &Shard,
        colocated: &dyn Fn(&ShardedTable) -> String,
    ) -> String {
        let target = self.target.as_ref().expect("checked: the target is distributed");
        let relation = if target.reference {
            target
                .copy_on(shard.worker.id)
                .expect("a reference copy is on every worker")
                .relation
                .clone()
        } else {
            colocated(target)
        };
        let key = ddl::ForeignKey {
            target: relation,
            ..self.key.clone()
        };
        key.definition().expect("checked when read")
    }
}

/// The names of the table's foreign keys (those it holds, not those referencing it).
pub(crate) fn foreign_key_names(table: &TableInfo) -> Vec<String> {
    let shape = table.shape();
    shape
        .constraints
        .iter()
        .filter(|c| c.kind == 'f')
        .map(|c| c.name.clone())
        .collect()
}

/// Which of a table's foreign keys a new shard gets, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShardKeys {
    /// The keys to co-located tables: a move or split adds them when it creates the new
    /// shards, which only its own copy writes until the switch.
    Colocated,
    /// The keys to reference tables, `NOT VALID`: a move or split adds them at its switch,
    /// with reference writes held back. Earlier, a write to the reference table would fire the
    /// key's actions on shards that are not caught up yet; validating them then would hold the
    /// pause, and the rows were checked when they were written.
    ReferenceUnchecked,
    /// Every key as the coordinator has it: a new worker's reference copies, once all are
    /// filled.
    All,
}

/// `ALTER TABLE … ADD CONSTRAINT` statements that give `shard`, a new shard of the table, the
/// table's foreign keys of kind `keys`. A key to a co-located table references the shard table
/// `colocated` names (the new one of the same range on the same worker); a key to a reference
/// table, its copy on the shard's worker.
pub(crate) fn shard_foreign_keys(
    table: &TableInfo,
    sharded: &ShardedTable,
    shard: &Shard,
    keys: ShardKeys,
    colocated: &dyn Fn(&ShardedTable) -> String,
) -> String {
    foreign_key_names(table)
        .iter()
        .filter_map(|name| {
            let mut key = ForeignKeyParts::read(table, sharded, name);
            let to_reference = key.target.as_ref().is_some_and(|t| t.reference);
            match keys {
                ShardKeys::Colocated if to_reference => return None,
                ShardKeys::ReferenceUnchecked if !to_reference => return None,
                ShardKeys::ReferenceUnchecked => key.key.validated = false,
                _ => {}
            }
            Some(format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {};\n",
                shard.relation,
                quote_ident(name),
                key.definition_referencing(shard, colocated)
            ))
        })
        .collect()
}

/// The reference tables the table's foreign keys reference.
pub(crate) fn referenced_reference_tables(
    table: &TableInfo,
    sharded: &ShardedTable,
) -> Vec<pg_sys::Oid> {
    foreign_key_names(table)
        .iter()
        .filter_map(|name| ForeignKeyParts::read(table, sharded, name).target)
        .filter(|target| target.reference)
        .map(|target| target.oid)
        .collect()
}

/// A statement that drops the foreign keys `names` from a shard table (none when there are
/// none).
pub(crate) fn drop_foreign_keys(relation: &str, names: &[String]) -> Option<String> {
    let quoted: Vec<String> = names.iter().map(|name| quote_ident(name)).collect();
    ddl::drop_constraints(relation, &quoted)
}

/// A table at one end of a foreign key.
fn key_table_of(table: Option<&ShardedTable>) -> KeyTable {
    match table {
        None => KeyTable::Local,
        Some(t) if t.reference => KeyTable::Reference,
        Some(t) => KeyTable::Hash {
            colocation_id: t.colocation_id,
            key_attnum: t.key_attnum,
        },
    }
}

fn key_table(oid: pg_sys::Oid) -> KeyTable {
    key_table_of(metadata::sharded_table(oid).as_deref())
}

/// CREATE / DROP INDEX CONCURRENTLY on the shards: like PostgreSQL's, outside any transaction,
/// so writes go on while each shard builds; the workers work in parallel, a worker's shards one
/// after another. When a shard fails, the shard indexes built so far are dropped again and the
/// error raised, which leaves the coordinator's index invalid, as a failed CREATE INDEX
/// CONCURRENTLY does in PostgreSQL.
fn run_concurrently_on_shards(
    sharded: &ShardedTable,
    steps: &[Change],
    schema: &str,
    render: impl Fn(&Shard) -> Vec<String>,
) {
    let workers = workers_of(&sharded.shards);
    let scripts = statements_per_worker(&sharded.shards, &workers, &render);
    let Err((worker, error)) = remote::run_outside_transactions(&workers, &scripts) else {
        return;
    };
    let cleanup = statements_per_worker(&sharded.shards, &workers, |shard: &Shard| {
        steps
            .iter()
            .filter_map(|step| match step {
                Change::AddIndex(index) => Some(format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {schema}.{}",
                    quote_ident(&layout::shard_relation_name(&index.name, shard.id))
                )),
                _ => None,
            })
            .collect()
    });
    let _ = remote::run_outside_transactions(&workers, &cleanup);
    error.raise_for(&worker, "build an index concurrently on")
}

/// Resolves a relation without locking it; `None` when it is NULL or does not exist
/// (PostgreSQL's own statement then reports that, or honours IF EXISTS).
///
/// # Safety
/// `relation` must be NULL or a valid RangeVar.
pub unsafe fn relation_oid(relation: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    if relation.is_null() {
        return None;
    }
    let oid = pg_sys::RangeVarGetRelidExtended(
        relation,
        pg_sys::NoLock as i32,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    (oid != pg_sys::InvalidOid).then_some(oid)
}

fn is_distributed(oid: pg_sys::Oid) -> bool {
    metadata::first_sharded([oid]).is_some()
}

/// Whether the current user owns the table. A statement by anyone else is left to PostgreSQL,
/// which refuses it before anything changes (and this module takes no lock for it).
fn owns(oid: pg_sys::Oid) -> bool {
    // SAFETY: an ownership check of the current user.
    unsafe { pg_sys::pg_class_ownercheck(oid, pg_sys::GetUserId()) }
}

/// A distributed table the current user owns, locked with `lock`.
unsafe fn owned_distributed(relation: *mut pg_sys::RangeVar, lock: i32) -> Option<pg_sys::Oid> {
    let oid = relation_oid(relation).filter(|o| is_distributed(*o) && owns(*o))?;
    pg_sys::LockRelationOid(oid, lock);
    Some(oid)
}

/// The lock CREATE / DROP INDEX takes on the table: the shape is read under it.
fn lock_for_index(concurrently: bool, drop: bool) -> i32 {
    (match (concurrently, drop) {
        (true, _) => pg_sys::ShareUpdateExclusiveLock,
        (false, false) => pg_sys::ShareLock,
        (false, true) => pg_sys::AccessExclusiveLock,
    }) as i32
}

fn refuse(message: String, hint: &str) -> ! {
    PgShardError::new(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, message)
        .hint(hint)
        .raise()
}
