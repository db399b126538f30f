//! Transparent column encryption: the encrypted types, their keys, and what the rest of pgshard
//! needs to know about them.
//!
//! On the coordinator a column has type `pgshard.encrypted_text` (and siblings), whose stored
//! value is an envelope (see `pgshard_core::envelope`). On the workers the same column is
//! `bytea` holding the same envelope: workers have no keys and no pgshard. Values cross to the
//! workers as bytea (never through the type's output function, which decrypts), and equality
//! on an encrypted column is sent as a comparison of the envelopes' blind-index tags.

pub mod keys;
pub mod reencrypt;
pub mod types;
pub mod usage;

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::prelude::*;
use pgshard_core::envelope::{self, Kind};

use crate::error::PgShardError;

extension_sql_file!(
    "../../sql/encryption.sql",
    name = "encryption",
    requires = ["catalog"]
);

thread_local! {
    static KINDS: RefCell<HashMap<pg_sys::Oid, Option<Kind>>> = RefCell::new(HashMap::new());
}

/// Registers what encryption needs at library load.
pub fn register() {
    keys::register();
}

/// The encrypted type `type_oid` is, if any. A type is recognised by its input function being
/// one of this library's, which holds however the extension was installed.
pub fn kind_of_type(type_oid: pg_sys::Oid) -> Option<Kind> {
    if type_oid.to_u32() < pg_sys::FirstNormalObjectId {
        return None;
    }
    if let Some(known) = KINDS.with(|k| k.borrow().get(&type_oid).copied()) {
        return known;
    }
    // SAFETY: catalog lookups of a type that exists (it is the type of some expression).
    let kind = unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::TYPEOID as i32,
            pg_sys::Datum::from(type_oid),
        );
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::GETSTRUCT(tuple) as pg_sys::Form_pg_type;
        let (input, defined) = ((*form).typinput, (*form).typisdefined);
        pg_sys::ReleaseSysCache(tuple);
        if !defined || input == pg_sys::InvalidOid {
            None
        } else {
            let mut info = std::mem::zeroed::<pg_sys::FmgrInfo>();
            pg_sys::fmgr_info(input, &mut info);
            let address = info.fn_addr.map_or(0, |f| f as usize);
            types::input_functions()
                .into_iter()
                .find(|(_, f)| *f == address)
                .map(|(kind, _)| kind)
        }
    };
    KINDS.with(|k| k.borrow_mut().insert(type_oid, kind));
    kind
}

/// The type a column of `type_oid` has on the workers, and in the text that crosses to them:
/// encrypted types travel as bytea (their envelope).
pub fn wire_type(type_oid: pg_sys::Oid) -> pg_sys::Oid {
    if kind_of_type(type_oid).is_some() {
        pg_sys::BYTEAOID
    } else {
        type_oid
    }
}

/// Whether a type contains an encrypted type in a way that cannot be stored on a worker
/// (an array or domain of one).
fn wraps_encrypted_type(type_oid: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups by oid.
    unsafe {
        let element = pg_sys::get_element_type(type_oid);
        let base = pg_sys::getBaseType(type_oid);
        (element != pg_sys::InvalidOid && kind_of_type(element).is_some())
            || (base != type_oid && kind_of_type(base).is_some())
    }
}

/// The SQL type of a shard table's column for a coordinator column of `type_oid`.
#[pg_extern(stable, parallel_safe)]
fn shard_column_type(type_oid: pg_sys::Oid, typmod: i32) -> String {
    if kind_of_type(type_oid).is_some() {
        return "bytea".into();
    }
    let refuse = |why: &str, hint: &str| -> ! {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "a column of type {} cannot be sharded{why}",
                crate::deparse::type_sql(type_oid, typmod)
            ),
        )
        .hint(hint)
        .raise()
    };
    if wraps_encrypted_type(type_oid) {
        refuse(
            "",
            "Arrays and domains of encrypted types can be stored only in local tables.",
        )
    }
    let (stored, stored_typmod) = crate::deparse::worker_type(type_oid, typmod);
    // Workers have the built-in types and those of extensions installed there too, but not the
    // enums, composite and range types created on the coordinator.
    // SAFETY: catalog lookups by oid.
    let local_kind = unsafe {
        let element = pg_sys::get_element_type(stored);
        let kind_of = |t: pg_sys::Oid| pg_sys::get_typtype(t) as u8;
        [stored, element]
            .into_iter()
            .filter(|&t| t != pg_sys::InvalidOid && t.to_u32() >= pg_sys::FirstNormalObjectId)
            .find_map(|t| match kind_of(t) {
                b'e' => Some("an enum"),
                b'c' => Some("a composite type"),
                b'r' | b'm' => Some("a range type"),
                _ => None,
            })
    };
    if let Some(kind) = local_kind {
        refuse(
            &format!(": it is {kind}, which the workers do not have"),
            "Use a built-in type (an enum can be text with a CHECK constraint), or keep the table local.",
        )
    }
    crate::deparse::type_sql(stored, stored_typmod)
}

/// A bytea literal.
pub fn bytea_literal(bytes: &[u8]) -> String {
    format!("'{}'::bytea", pgshard_core::byteahex::to_text(bytes))
}

/// Whether `function` (an operator's implementation) is the encrypted `=` (`Some(true)`) or
/// `<>` (`Some(false)`).
pub fn tag_comparison(function: pg_sys::Oid) -> Option<bool> {
    if function.to_u32() < pg_sys::FirstNormalObjectId {
        return None;
    }
    // SAFETY: looks up a function that exists (an operator of the expression uses it).
    let address = unsafe {
        let mut info = std::mem::zeroed::<pg_sys::FmgrInfo>();
        pg_sys::fmgr_info(function, &mut info);
        info.fn_addr.map_or(0, |f| f as usize)
    };
    types::tag_comparison(address)
}

/// The tag of an envelope datum (a non-null value of an encrypted type).
///
/// # Safety
/// `datum` must be a non-null varlena.
pub unsafe fn datum_tag(datum: pg_sys::Datum) -> [u8; envelope::TAG_LEN] {
    types::tag_of(datum_bytes(datum))
}

/// The bytes of a varlena datum (an envelope, or a text or bytea plaintext), detoasted.
///
/// # Safety
/// `datum` must be a non-null varlena.
pub unsafe fn datum_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    let detoasted = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    pgrx::varlena::varlena_to_byte_slice(detoasted)
}
