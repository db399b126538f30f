//! Glue between PostgreSQL values and the shard-key hash of `pgshard_core::hashing`.

use pgrx::prelude::*;
use pgrx::{AnyElement, AnyNumeric, FromDatum};
use pgshard_core::hashing::{KeyFamily, KeyValue};

use crate::error::PgShardError;

/// The hash of a shard key value, as stored in hash ranges.
#[pg_extern(immutable, parallel_safe)]
fn shard_hash(value: AnyElement) -> i64 {
    hash_datum(value.datum(), value.oid())
}

/// Hashes a non-null datum of type `type_oid`; raises a clear error for a type that cannot be
/// a shard key.
pub fn hash_datum(datum: pg_sys::Datum, type_oid: pg_sys::Oid) -> i64 {
    let family = key_family(type_oid);
    // SAFETY: the datum is a non-null value of `type_oid`, whose family selects how to read it.
    // date, timestamp and timestamptz are pass-by-value integers in PostgreSQL's own encoding.
    unsafe {
        match family {
            KeyFamily::Integer => {
                let v = match type_oid {
                    pg_sys::INT2OID => i64::from(datum.value() as i16),
                    pg_sys::INT4OID => i64::from(datum.value() as i32),
                    _ => datum.value() as i64,
                };
                KeyValue::Integer(v).hash()
            }
            KeyFamily::Text => {
                let text = <&str>::from_datum(datum, false).expect("non-null text");
                KeyValue::Text(text).hash()
            }
            KeyFamily::Uuid => {
                let uuid = pgrx::Uuid::from_datum(datum, false).expect("non-null uuid");
                KeyValue::Uuid(*uuid).hash()
            }
            KeyFamily::Numeric => {
                let numeric = AnyNumeric::from_datum(datum, false).expect("non-null numeric");
                KeyValue::Numeric(&numeric.to_string()).hash()
            }
            KeyFamily::Date => KeyValue::Date(datum.value() as i32).hash(),
            KeyFamily::Timestamp => KeyValue::Timestamp(datum.value() as i64).hash(),
            KeyFamily::TimestampTz => KeyValue::TimestampTz(datum.value() as i64).hash(),
            KeyFamily::Bool => KeyValue::Bool(datum.value() != 0).hash(),
            KeyFamily::Bytea => {
                let bytes = <&[u8]>::from_datum(datum, false).expect("non-null bytea");
                KeyValue::Bytea(bytes).hash()
            }
            KeyFamily::Encrypted => {
                KeyValue::EncryptedTag(&crate::encryption::datum_tag(datum)).hash()
            }
        }
    }
}

/// The hash family of a type, if it can be a shard key.
pub fn family_of_type(type_oid: pg_sys::Oid) -> Option<KeyFamily> {
    KeyFamily::of_type_oid(type_oid.to_u32())
        .or_else(|| crate::encryption::kind_of_type(type_oid).map(|_| KeyFamily::Encrypted))
}

/// The hash family of a type, or a clear error naming the supported types.
pub fn key_family(type_oid: pg_sys::Oid) -> KeyFamily {
    family_of_type(type_oid).unwrap_or_else(|| {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("type {} cannot be used as a shard key", type_name(type_oid)),
        )
        .hint(
            "Shard keys may be int2, int4, int8, text, varchar, uuid, numeric, date, timestamp, \
             timestamptz, boolean, bytea or one of pgshard's encrypted types.",
        )
        .raise()
    })
}

fn type_name(type_oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd C string for any oid (or "???" for unknown).
    unsafe {
        let name = pg_sys::format_type_be(type_oid);
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// The shards (indexes into `table.shards`) a new row goes to: the one its key hashes to, or
/// every copy of a reference table.
///
/// # Safety
/// `slot` must hold a deformed row of `table`.
pub unsafe fn row_shards(
    table: &crate::metadata::ShardedTable,
    slot: *mut pg_sys::TupleTableSlot,
) -> std::ops::Range<usize> {
    if table.reference {
        return 0..table.shards.len();
    }
    let index = table.shard_index_for_hash(row_key_hash(table, slot));
    index..index + 1
}

/// The hash of a new row's shard key; a NULL key is an error.
///
/// # Safety
/// `slot` must hold a deformed row of `table`, a hash-sharded table.
unsafe fn row_key_hash(
    table: &crate::metadata::ShardedTable,
    slot: *mut pg_sys::TupleTableSlot,
) -> i64 {
    let index = (table.key_attnum - 1) as usize;
    if *(*slot).tts_isnull.add(index) {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            format!("null value in shard key column \"{}\"", table.key_name),
        )
        .detail("A row with a NULL shard key belongs to no shard.")
        .hint("Give every row a shard key value.")
        .raise()
    }
    hash_datum(*(*slot).tts_values.add(index), table.key_type)
}

/// Hashes shard keys given as text, the way a worker's COPY writes them: reads each with the
/// input function of the shard column's type, then hashes it as the coordinator would.
pub struct KeyTextHasher {
    input: Box<pg_sys::FmgrInfo>,
    io_param: pg_sys::Oid,
    key_type: pg_sys::Oid,
}

impl KeyTextHasher {
    /// For a key column of `key_type` on the coordinator (an encrypted key is an envelope,
    /// a bytea, on the shards).
    pub fn new(key_type: pg_sys::Oid) -> Self {
        let shard_type = if key_family(key_type) == KeyFamily::Encrypted {
            pg_sys::BYTEAOID
        } else {
            key_type
        };
        let mut function = pg_sys::InvalidOid;
        let mut io_param = pg_sys::InvalidOid;
        // SAFETY: a zeroed FmgrInfo is what fmgr_info fills in; the lookup raises for a type
        // without an input function, which a shard key type always has.
        let input = unsafe {
            pg_sys::getTypeInputInfo(shard_type, &mut function, &mut io_param);
            let mut input: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info(function, &mut *input);
            input
        };
        KeyTextHasher {
            input,
            io_param,
            key_type,
        }
    }

    /// The hash of the key written as `text` (allocates in the current memory context).
    pub fn hash(&mut self, text: &std::ffi::CStr) -> i64 {
        // SAFETY: the input function gets a NUL-terminated string and the type's I/O parameter.
        let datum = unsafe {
            pg_sys::InputFunctionCall(&mut *self.input, text.as_ptr().cast_mut(), self.io_param, -1)
        };
        hash_datum(datum, self.key_type)
    }
}
