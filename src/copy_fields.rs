//! COPY FROM input passed on as the fields PostgreSQL's COPY reader splits.
//!
//! Converting every value to a datum and back to text on the coordinator is most of what a
//! COPY into a sharded table costs there, and the worker's own COPY converts it again. When the
//! coordinator has nothing to evaluate on the values (every column given, no WHERE, no CHECK
//! or generated column, text or CSV without FORCE_NULL or FORCE_NOT_NULL), a row's fields go to
//! the shard as they came. Only these go through their input function on the coordinator: the
//! shard key, to hash it; encrypted columns, which are encrypted here and travel as envelopes;
//! and domains, whose constraints the shards' base types would not check. A bad value in any
//! other column is rejected by the worker's COPY, and the error names the input line.

use std::ffi::{c_char, c_int, CStr};
use std::ops::Range;

use pgrx::prelude::*;

use crate::deparse::list_pointers;
use crate::error::PgShardError;
use crate::metadata::{cstr, ShardedTable};

/// Whether the input options allow passing raw fields on: text or CSV, without FORCE_NULL or
/// FORCE_NOT_NULL (which NextCopyFrom applies after splitting).
///
/// # Safety
/// `options` must be COPY's option list (DefElems).
pub unsafe fn raw_options(options: *mut pg_sys::List) -> bool {
    options_of(options).all(|option| match cstr((*option).defname).as_str() {
        "force_null" | "force_not_null" => false,
        "format" => cstr(pg_sys::defGetString(option)) != "binary",
        _ => true,
    })
}

unsafe fn options_of(options: *mut pg_sys::List) -> impl Iterator<Item = *mut pg_sys::DefElem> {
    list_pointers(options)
        .into_iter()
        .map(|option| option as *mut pg_sys::DefElem)
}

unsafe fn option(options: *mut pg_sys::List, name: &str) -> Option<*mut pg_sys::DefElem> {
    options_of(options).find(|&option| cstr((*option).defname) == name)
}

/// How one input field becomes the value sent to the shard.
struct Field {
    attnum: i16,
    name: String,
    not_null: bool,
    /// The column type's input function, I/O parameter and typmod, for the fields read on the
    /// coordinator (the key, encrypted columns, domains).
    input: Option<(Box<pg_sys::FmgrInfo>, pg_sys::Oid, i32)>,
    /// For encrypted columns: the envelope as bytea text, the value sent (reused row to row).
    envelope_text: Option<Vec<u8>>,
    /// A domain (or an array of one): its input function must see NULLs too, to refuse them
    /// when the domain is NOT NULL.
    domain: bool,
}

/// A row read: the shards it goes to and its first line in the input.
pub struct RawRow {
    pub targets: Range<usize>,
    pub line: u64,
}

/// Reads rows as raw fields and decides their shards; see the module comment.
pub struct RawFields<'t> {
    table: &'t ShardedTable,
    fields: Vec<Field>,
    /// The field of the shard key (none for a reference table).
    key_field: Option<usize>,
    /// The current row's values (start and length; `None` for NULL), measured once per row:
    /// each is read again for every shard it goes to.
    values: Vec<Option<(*const u8, usize)>>,
    /// Input lines read so far.
    line: u64,
    /// CSV: a quoted value may span lines.
    csv: bool,
}

impl<'t> RawFields<'t> {
    /// For input giving the columns `attnums` of `rel` (in input order).
    ///
    /// # Safety
    /// `rel` must be the open relation of `table`; `options` COPY's option list.
    pub unsafe fn new(
        table: &'t ShardedTable,
        rel: pg_sys::Relation,
        attnums: &[i16],
        options: *mut pg_sys::List,
    ) -> Self {
        let desc = (*rel).rd_att;
        let fields: Vec<Field> = attnums
            .iter()
            .map(|&attnum| {
                let attr = (*desc).attrs.as_ptr().add(attnum as usize - 1);
                let type_oid = (*attr).atttypid;
                let encrypted = crate::encryption::wire_type(type_oid) != type_oid;
                let domain = crate::deparse::holds_domain(type_oid);
                let is_key = !table.reference && attnum == table.key_attnum;
                let input = (is_key || encrypted || domain).then(|| {
                    let (mut function, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
                    pg_sys::getTypeInputInfo(type_oid, &mut function, &mut io_param);
                    (function_info(function), io_param, (*attr).atttypmod)
                });
                Field {
                    attnum,
                    name: cstr((*attr).attname.data.as_ptr()),
                    not_null: (*attr).attnotnull,
                    input,
                    envelope_text: encrypted.then(Vec::new),
                    domain,
                }
            })
            .collect();
        let key_field = (!table.reference)
            .then(|| fields.iter().position(|f| f.attnum == table.key_attnum))
            .flatten();
        let header = option(options, "header").map_or(0, |header| {
            if (*header).arg.is_null() {
                return 1;
            }
            // HEADER MATCH is not a boolean, and means a header line too.
            let mut on = true;
            pg_sys::parse_bool(pg_sys::defGetString(header), &mut on);
            u64::from(on)
        });
        let csv = option(options, "format")
            .is_some_and(|format| cstr(pg_sys::defGetString(format)) == "csv");
        RawFields {
            table,
            values: vec![None; fields.len()],
            fields,
            key_field,
            line: header,
            csv,
        }
    }

    /// Reads the next row; `None` at the end of the input. Values are allocated in the current
    /// memory context and live until the next call. A row the coordinator must refuse (NULL in
    /// a NOT NULL column or the shard key) raises the error a row-by-row COPY would.
    ///
    /// # Safety
    /// `cstate` must be the reader begun for this relation and column list; `slot`,
    /// `constraints` and `estate` are used to raise the NOT NULL error.
    pub unsafe fn next(
        &mut self,
        cstate: pg_sys::CopyFromState,
        slot: *mut pg_sys::TupleTableSlot,
        constraints: *mut pg_sys::ResultRelInfo,
        estate: *mut pg_sys::EState,
    ) -> Option<RawRow> {
        let mut raw: *mut *mut c_char = std::ptr::null_mut();
        let mut count: c_int = 0;
        if !pg_sys::NextCopyFromRawFields(cstate, &mut raw, &mut count) {
            return None;
        }
        let count = count as usize;
        // The same checks, in the same words, as NextCopyFrom's.
        if count > self.fields.len() {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_BAD_COPY_FILE_FORMAT,
                "extra data after last expected column",
            )
            .raise()
        }
        if count < self.fields.len() {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_BAD_COPY_FILE_FORMAT,
                format!("missing data for column \"{}\"", self.fields[count].name),
            )
            .raise()
        }
        let line = self.line + 1;
        self.line = line;
        let mut hash = 0;
        let mut refused = false;
        for (index, field) in self.fields.iter_mut().enumerate() {
            let text = *raw.add(index);
            if text.is_null() {
                refused |= field.not_null || self.key_field == Some(index);
                self.values[index] = None;
                if let (true, Some((input, io_param, typmod))) =
                    (field.domain, field.input.as_mut())
                {
                    pg_sys::InputFunctionCall(&mut **input, text, *io_param, *typmod);
                }
                continue;
            }
            let bytes = CStr::from_ptr(text).to_bytes();
            if self.csv {
                self.line += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            }
            self.values[index] = Some((bytes.as_ptr(), bytes.len()));
            if let Some((input, io_param, typmod)) = field.input.as_mut() {
                let datum = pg_sys::InputFunctionCall(&mut **input, text, *io_param, *typmod);
                if self.key_field == Some(index) {
                    hash = crate::hashing::hash_datum(datum, self.table.key_type);
                }
                if let Some(text) = field.envelope_text.as_mut() {
                    let envelope = crate::encryption::datum_bytes(datum);
                    pgshard_core::byteahex::encode(text, envelope);
                    self.values[index] = Some((text.as_ptr(), text.len()));
                }
            }
        }
        if refused {
            self.refuse(raw, slot, constraints, estate);
        }
        let targets = if self.table.reference {
            0..self.table.shards.len()
        } else {
            let index = self.table.shard_index_for_hash(hash);
            index..index + 1
        };
        Some(RawRow { targets, line })
    }

    /// The current row's values, in input order.
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> + Clone + '_ {
        self.values.iter().map(|value| {
            // SAFETY: each value was measured in memory that lives until the next row.
            value.map(|(start, len)| unsafe { std::slice::from_raw_parts(start, len) })
        })
    }

    /// Raises the error for a row with a NULL where the coordinator refuses one, exactly as a
    /// row-by-row COPY does: the row is converted whole, then checked.
    unsafe fn refuse(
        &self,
        raw: *mut *mut c_char,
        slot: *mut pg_sys::TupleTableSlot,
        constraints: *mut pg_sys::ResultRelInfo,
        estate: *mut pg_sys::EState,
    ) -> ! {
        pg_sys::ExecClearTuple(slot);
        let desc = (*slot).tts_tupleDescriptor;
        for i in 0..(*desc).natts as usize {
            *(*slot).tts_isnull.add(i) = true;
        }
        for (index, field) in self.fields.iter().enumerate() {
            let text = *raw.add(index);
            if text.is_null() {
                continue;
            }
            let attr = (*desc).attrs.as_ptr().add(field.attnum as usize - 1);
            let (mut function, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
            pg_sys::getTypeInputInfo((*attr).atttypid, &mut function, &mut io_param);
            let column = field.attnum as usize - 1;
            *(*slot).tts_values.add(column) =
                pg_sys::OidInputFunctionCall(function, text, io_param, (*attr).atttypmod);
            *(*slot).tts_isnull.add(column) = false;
        }
        pg_sys::ExecStoreVirtualTuple(slot);
        if !constraints.is_null() {
            pg_sys::ExecConstraints(constraints, slot, estate);
        }
        crate::hashing::row_shards(self.table, slot);
        unreachable!("a row refused by the COPY reader passed the checks")
    }
}

unsafe fn function_info(function: pg_sys::Oid) -> Box<pg_sys::FmgrInfo> {
    let mut info: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
    pg_sys::fmgr_info(function, &mut *info);
    info
}
