//! The utility hook: COPY with a sharded or reference table is routed (`copy.rs`); TRUNCATE and
//! DROP TABLE of one act on its shards too; other schema changes follow on the shards
//! (`ddl.rs`); VACUUM and ANALYZE run on the shards after the coordinator (`maintenance.rs`).

use std::ffi::c_char;

use pgrx::prelude::*;

use crate::metadata;

static mut PREVIOUS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hook; called from `_PG_init` in the postmaster.
pub fn install() {
    // SAFETY: hooks are installed once, single-threaded, while the library loads.
    unsafe {
        PREVIOUS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(pgshard_utility);
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn pgshard_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let mut pstmt = pstmt;
    let mut read_only_tree = read_only_tree;
    let statement = (*pstmt).utilityStmt;
    if !statement.is_null() && (*statement).type_ == pg_sys::NodeTag::T_CopyStmt {
        let copy = statement as *mut pg_sys::CopyStmt;
        if let Some(relid) = crate::copy::distributed_target(copy) {
            if (*copy).is_from {
                let processed = crate::copy::copy_from(copy, query_string);
                if !qc.is_null() {
                    (*qc).commandTag = pg_sys::CommandTag::CMDTAG_COPY;
                    (*qc).nprocessed = processed;
                }
                return;
            }
            // COPY … TO runs as COPY (SELECT …) TO, on a copy of the statement.
            pstmt = pg_sys::copyObjectImpl(pstmt.cast()).cast();
            (*pstmt).utilityStmt = crate::copy::as_query_copy(copy, relid).cast();
            read_only_tree = false;
        }
    }
    refuse_domain_changes((*pstmt).utilityStmt);
    distribute_truncate_and_drop((*pstmt).utilityStmt);
    let schema_change = crate::ddl::prepare((*pstmt).utilityStmt, query_string);
    let top_level = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
    let maintenance = crate::maintenance::prepare((*pstmt).utilityStmt, top_level);
    // Two calls rather than one function pointer: pgrx exposes standard_ProcessUtility as a
    // guarded Rust function, not as a value of the hook's C-ABI type.
    match PREVIOUS_UTILITY {
        Some(previous) => previous(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
        None => pg_sys::standard_ProcessUtility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    }
    if let Some(change) = schema_change {
        crate::ddl::apply(change);
    }
    if let Some(pending) = maintenance {
        crate::maintenance::apply(pending);
    }
}

/// TRUNCATE and DROP TABLE of sharded and reference tables: their shards are truncated or
/// dropped first, in the statement's remote transactions, then PostgreSQL's own statement runs
/// on the coordinator's tables (its checks, locks, RESTART IDENTITY, CASCADE); an error anywhere
/// aborts both.
unsafe fn distribute_truncate_and_drop(statement: *mut pg_sys::Node) {
    if statement.is_null() {
        return;
    }
    let (truncate, cascade, relations): (bool, bool, Vec<*mut pg_sys::RangeVar>) = match (*statement).type_ {
        pg_sys::NodeTag::T_TruncateStmt => {
            let truncate = statement as *mut pg_sys::TruncateStmt;
            let list = (*truncate).relations;
            let relations = if list.is_null() {
                Vec::new()
            } else {
                (0..(*list).length as usize)
                    .map(|i| (*(*list).elements.add(i)).ptr_value as *mut pg_sys::RangeVar)
                    .collect()
            };
            let cascade = (*truncate).behavior == pg_sys::DropBehavior::DROP_CASCADE;
            (true, cascade, relations)
        }
        pg_sys::NodeTag::T_DropStmt
            if (*(statement as *mut pg_sys::DropStmt)).removeType
                == pg_sys::ObjectType::OBJECT_SCHEMA =>
        {
            drop_shards_in_schemas(statement as *mut pg_sys::DropStmt);
            return;
        }
        pg_sys::NodeTag::T_DropOwnedStmt => {
            drop_shards_owned(statement as *mut pg_sys::DropOwnedStmt);
            return;
        }
        pg_sys::NodeTag::T_DropStmt => {
            let drop = statement as *mut pg_sys::DropStmt;
            if (*drop).removeType != pg_sys::ObjectType::OBJECT_TABLE {
                return;
            }
            // Each object is a List of String names (schema-qualified or not).
            let relations = crate::deparse::list_pointers((*drop).objects)
                .into_iter()
                .map(|names| pg_sys::makeRangeVarFromNameList(names as *mut pg_sys::List))
                .collect();
            (false, true, relations)
        }
        _ => return,
    };
    let oids = relations
        .into_iter()
        .filter_map(|relation| crate::ddl::relation_oid(relation))
        .filter(|oid| metadata::first_sharded([*oid]).is_some())
        .collect::<Vec<_>>();
    if truncate {
        crate::tables::truncate_shards(&oids, cascade);
    } else {
        for oid in oids {
            crate::tables::drop_shards(oid);
        }
    }
}

/// DROP SCHEMA … CASCADE drops the sharded and reference tables in the schemas: their shards
/// are dropped first, in the statement's remote transactions, as DROP TABLE does. Only for the
/// schemas' owner (PostgreSQL refuses anyone else, before a shard would be touched); without
/// CASCADE, PostgreSQL refuses a schema that holds tables. Refused when a domain in the schemas
/// is used by a distributed table outside them (see [`refuse_domain_changes`]).
unsafe fn drop_shards_in_schemas(drop: *mut pg_sys::DropStmt) {
    if (*drop).behavior != pg_sys::DropBehavior::DROP_CASCADE || !metadata::any_sharded() {
        return;
    }
    let schemas: Vec<pg_sys::Oid> = crate::deparse::list_pointers((*drop).objects)
        .into_iter()
        .map(|name| pg_sys::get_namespace_oid((*(name as *mut pg_sys::String)).sval, true))
        .filter(|&schema| schema != pg_sys::InvalidOid)
        .collect();
    if !schemas
        .iter()
        .all(|&schema| pg_sys::pg_namespace_ownercheck(schema, pg_sys::GetUserId()))
    {
        return;
    }
    // A type (a domain) in the schemas that a distributed table elsewhere uses: its column
    // would go on the coordinator only.
    if let Some((table, type_name)) = crate::tables::sharded_table_using_types_in(&schemas) {
        refuse_type_change(&format!("drop type {type_name} with its schema"), &table)
    }
    for oid in metadata::sharded_table_oids() {
        if schemas.contains(&pg_sys::get_rel_namespace(oid)) {
            crate::tables::drop_shards_of(oid);
        }
    }
}

/// DROP OWNED BY drops the tables the roles own, sharded and reference ones included, and with
/// CASCADE the tables in the schemas they own: their shards are dropped first, as DROP TABLE
/// does. Only when the current role may act for every role named (PostgreSQL refuses
/// otherwise, before a shard would be touched).
unsafe fn drop_shards_owned(drop: *mut pg_sys::DropOwnedStmt) {
    // Not in a database without the extension, or without distributed tables.
    if !metadata::any_sharded() {
        return;
    }
    let mut roles = Vec::new();
    for role in crate::deparse::list_pointers((*drop).roles) {
        let role = pg_sys::get_rolespec_oid(role.cast(), false);
        if !pg_sys::has_privs_of_role(pg_sys::GetUserId(), role) {
            return;
        }
        roles.push(role);
    }
    let cascade = (*drop).behavior == pg_sys::DropBehavior::DROP_CASCADE;
    for oid in crate::tables::dropped_with_owned(&roles, cascade) {
        crate::tables::drop_shards_of(oid);
    }
}

/// Shards store a domain column as the domain's base type (the coordinator checks values on
/// the way in). ALTER DOMAIN … ADD CONSTRAINT, SET NOT NULL or VALIDATE CONSTRAINT would check
/// the rows of the tables using the domain, and a sharded table's rows are on the workers; DROP
/// DOMAIN … CASCADE would drop its columns on the coordinator only. Both are refused while a
/// sharded or reference table has a column of the domain (or an array of it).
unsafe fn refuse_domain_changes(statement: *mut pg_sys::Node) {
    // Not in a database without the extension, or without distributed tables.
    if statement.is_null() || !metadata::any_sharded() {
        return;
    }
    let (domains, doing) = match (*statement).type_ {
        pg_sys::NodeTag::T_AlterDomainStmt => {
            let alter = statement as *mut pg_sys::AlterDomainStmt;
            if !matches!((*alter).subtype as u8, b'C' | b'O' | b'V') {
                return;
            }
            let name = pg_sys::makeTypeNameFromNameList((*alter).typeName);
            (
                vec![pg_sys::LookupTypeNameOid(std::ptr::null_mut(), name, true)],
                "change domain",
            )
        }
        pg_sys::NodeTag::T_DropStmt => {
            let drop = statement as *mut pg_sys::DropStmt;
            // DROP TYPE drops domains too.
            if !matches!(
                (*drop).removeType,
                pg_sys::ObjectType::OBJECT_DOMAIN | pg_sys::ObjectType::OBJECT_TYPE
            ) || (*drop).behavior != pg_sys::DropBehavior::DROP_CASCADE
            {
                return;
            }
            let domains = crate::deparse::list_pointers((*drop).objects)
                .into_iter()
                .map(|name| pg_sys::LookupTypeNameOid(std::ptr::null_mut(), name.cast(), true))
                .collect();
            let doing = if (*drop).removeType == pg_sys::ObjectType::OBJECT_DOMAIN {
                "drop domain"
            } else {
                "drop type"
            };
            (domains, doing)
        }
        _ => return,
    };
    // Only for the type's owner: anyone else gets PostgreSQL's own refusal.
    let owned = domains
        .into_iter()
        .filter(|&d| d != pg_sys::InvalidOid && pg_sys::pg_type_ownercheck(d, pg_sys::GetUserId()));
    for domain in owned {
        if let Some(table) = crate::tables::sharded_table_using_type(domain) {
            refuse_type_change(
                &format!("{doing} {}", crate::deparse::type_sql(domain, -1)),
                &table,
            )
        }
    }
}

fn refuse_type_change(what: &str, table: &str) -> ! {
    crate::error::PgShardError::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("cannot {what}: sharded table {table} has a column of it"),
    )
    .hint(
        "Shards store a domain's base type and the coordinator checks values on the way in, so \
         the rows already on the workers cannot be checked against a new constraint, and a \
         dropped type's columns would stay on them. Add a CHECK constraint to the table instead, \
         or change or drop the column first.",
    )
    .raise()
}
