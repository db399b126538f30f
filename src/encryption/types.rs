//! The C-level functions of the encrypted types (declared in `sql/encryption.sql`): input and
//! output, binary send and receive, casts to and from the plaintext type, and comparisons.
//!
//! Plaintexts are parsed and printed by the plaintext type's own functions, so bad input gets
//! that type's error and output follows the session's settings (DateStyle, bytea_output).

use std::ffi::{c_char, CStr};

use pgrx::fcinfo::pg_getarg_datum_raw;
use pgrx::prelude::*;
use pgshard_core::envelope::{self, EnvelopeError, Kind};

use super::keys::{value_error, with_keyring};
use crate::error::PgShardError;
use crate::guc;

fn base_type_oid(kind: Kind) -> pg_sys::Oid {
    match kind {
        Kind::Text => pg_sys::TEXTOID,
        Kind::Bytea => pg_sys::BYTEAOID,
        Kind::Int8 => pg_sys::INT8OID,
        Kind::Numeric => pg_sys::NUMERICOID,
        Kind::TimestampTz => pg_sys::TIMESTAMPTZOID,
    }
}

/// The bytes of a varlena argument, detoasted.
///
/// # Safety
/// Argument `n` must be a non-null varlena.
unsafe fn arg_bytes<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> &'a [u8] {
    super::datum_bytes(pg_getarg_datum_raw(fcinfo, n))
}

fn bytes_datum(bytes: &[u8]) -> pg_sys::Datum {
    pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(bytes).into_pg())
}

/// The plaintext bytes of a plaintext-type datum, and its canonical form for the blind index
/// when that differs (numerics: 1.50 and 1.5 are equal).
///
/// # Safety
/// `datum` must be a non-null value of the kind's plaintext type.
unsafe fn plaintext_of(kind: Kind, datum: pg_sys::Datum) -> (Vec<u8>, Option<Vec<u8>>) {
    match kind {
        Kind::Text | Kind::Bytea => (super::datum_bytes(datum).to_vec(), None),
        Kind::Int8 | Kind::TimestampTz => ((datum.value() as i64).to_be_bytes().to_vec(), None),
        Kind::Numeric => {
            let mut output = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeOutputInfo(pg_sys::NUMERICOID, &mut output, &mut varlena);
            let text = CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, datum))
                .to_string_lossy()
                .into_owned();
            let canonical = envelope::canonical_numeric(&text);
            (text.into_bytes(), Some(canonical.into_bytes()))
        }
    }
}

/// The plaintext-type datum of decrypted bytes.
///
/// # Safety
/// `plain` must come from [`plaintext_of`] for the same kind (authenticated decryption).
unsafe fn datum_of(kind: Kind, plain: &[u8]) -> pg_sys::Datum {
    match kind {
        Kind::Text | Kind::Bytea => bytes_datum(plain),
        Kind::Int8 | Kind::TimestampTz => {
            let value = i64::from_be_bytes(
                plain
                    .try_into()
                    .unwrap_or_else(|_| value_error(Some(kind), &EnvelopeError::Tampered).raise()),
            );
            pg_sys::Datum::from(value)
        }
        Kind::Numeric => {
            let text = std::ffi::CString::new(plain)
                .unwrap_or_else(|_| value_error(Some(kind), &EnvelopeError::Tampered).raise());
            let mut input = pg_sys::InvalidOid;
            let mut ioparam = pg_sys::InvalidOid;
            pg_sys::getTypeInputInfo(pg_sys::NUMERICOID, &mut input, &mut ioparam);
            pg_sys::OidInputFunctionCall(input, text.as_ptr().cast_mut(), ioparam, -1)
        }
    }
}

/// Encrypts a plaintext-type datum into an envelope under the current data key.
///
/// # Safety
/// `datum` must be a non-null value of the kind's plaintext type.
pub unsafe fn encrypt_datum(kind: Kind, datum: pg_sys::Datum) -> pg_sys::Datum {
    let (plain, canonical) = plaintext_of(kind, datum);
    bytes_datum(&seal_plaintext(kind, &plain, canonical.as_deref()))
}

/// The envelope of a plaintext under the current data key (its tag from `canonical` when the
/// canonical form differs).
fn seal_plaintext(kind: Kind, plain: &[u8], canonical: Option<&[u8]>) -> Vec<u8> {
    with_keyring(|ring| {
        let tag = ring.tag(kind, canonical.unwrap_or(plain));
        let (key_id, key) = ring.current(kind);
        envelope::seal(kind, key_id, key, tag, plain)
    })
}

/// The plaintext of an envelope of `kind`, authenticated.
pub fn decrypt(kind: Kind, sealed: &[u8]) -> Vec<u8> {
    let header = envelope::header(sealed).unwrap_or_else(|e| value_error(Some(kind), &e).raise());
    with_keyring(|ring| {
        let key = ring.key(header.key_id, kind);
        envelope::open(sealed, kind, key).unwrap_or_else(|e| value_error(Some(kind), &e).raise())
    })
}

/// The envelope rewritten under the current data key (the same one when it already is).
pub fn reencrypt(sealed: &[u8]) -> Option<Vec<u8>> {
    let header = envelope::header(sealed).unwrap_or_else(|e| value_error(None, &e).raise());
    let current = with_keyring(|ring| ring.current(header.kind).0);
    if header.key_id == current {
        return None;
    }
    let plain = decrypt(header.kind, sealed);
    Some(with_keyring(|ring| {
        let (key_id, key) = ring.current(header.kind);
        envelope::seal(header.kind, key_id, key, header.tag, &plain)
    }))
}

/// An envelope given as input under `pgshard.envelope_io`: hex, authenticated before it is
/// accepted, so that only values this database's keys wrote can be restored.
fn envelope_from_text(kind: Kind, text: &str) -> Vec<u8> {
    let sealed = pgshard_core::byteahex::from_text(text).unwrap_or_else(|| {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                format!(
                    "invalid input for type pgshard.{} under pgshard.envelope_io: expected \\x followed by hexadecimal digits",
                    kind.type_name()
                ),
            )
            .hint("Turn pgshard.envelope_io off to enter plaintext.")
            .raise()
        });
    authenticate(kind, &sealed);
    sealed
}

fn authenticate(kind: Kind, sealed: &[u8]) {
    decrypt(kind, sealed);
}

/// The blind-index tag of an envelope, whose header is checked.
pub fn tag_of(sealed: &[u8]) -> [u8; envelope::TAG_LEN] {
    envelope::header(sealed)
        .unwrap_or_else(|e| value_error(None, &e).raise())
        .tag
}

unsafe fn type_in(kind: Kind, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let input: *mut c_char = pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr();
    if guc::envelope_io() {
        let text = CStr::from_ptr(input).to_string_lossy();
        return bytes_datum(&envelope_from_text(kind, &text));
    }
    if kind == Kind::Text {
        // text's input function copies the string as it is.
        let plain = CStr::from_ptr(input).to_bytes();
        return bytes_datum(&seal_plaintext(kind, plain, None));
    }
    let mut func = pg_sys::InvalidOid;
    let mut ioparam = pg_sys::InvalidOid;
    pg_sys::getTypeInputInfo(base_type_oid(kind), &mut func, &mut ioparam);
    let base = pg_sys::OidInputFunctionCall(func, input, ioparam, -1);
    encrypt_datum(kind, base)
}

unsafe fn type_out(kind: Kind, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let sealed = arg_bytes(fcinfo, 0);
    if guc::envelope_io() {
        envelope::header(sealed).unwrap_or_else(|e| value_error(Some(kind), &e).raise());
        let text = std::ffi::CString::new(pgshard_core::byteahex::to_text(sealed))
            .expect("hex has no NUL");
        return pg_sys::Datum::from(pg_sys::pstrdup(text.as_ptr()));
    }
    let plain = decrypt(kind, sealed);
    if kind == Kind::Text {
        // text's output function copies the string as it is: straight into the C string.
        if plain.contains(&0) {
            value_error(Some(kind), &EnvelopeError::Tampered).raise()
        }
        return pg_sys::Datum::from(pg_sys::pnstrdup(plain.as_ptr().cast(), plain.len()));
    }
    let mut func = pg_sys::InvalidOid;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(base_type_oid(kind), &mut func, &mut varlena);
    pg_sys::Datum::from(pg_sys::OidOutputFunctionCall(func, datum_of(kind, &plain)))
}

unsafe fn type_recv(kind: Kind, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let buf: *mut pg_sys::StringInfoData = pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr();
    if guc::envelope_io() {
        let remaining = ((*buf).len - (*buf).cursor) as usize;
        let bytes = std::slice::from_raw_parts(
            (*buf).data.add((*buf).cursor as usize).cast::<u8>(),
            remaining,
        )
        .to_vec();
        (*buf).cursor = (*buf).len;
        authenticate(kind, &bytes);
        return bytes_datum(&bytes);
    }
    let mut func = pg_sys::InvalidOid;
    let mut ioparam = pg_sys::InvalidOid;
    pg_sys::getTypeBinaryInputInfo(base_type_oid(kind), &mut func, &mut ioparam);
    let base = pg_sys::OidReceiveFunctionCall(func, buf, ioparam, -1);
    encrypt_datum(kind, base)
}

unsafe fn type_send(kind: Kind, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let sealed = arg_bytes(fcinfo, 0);
    if guc::envelope_io() {
        envelope::header(sealed).unwrap_or_else(|e| value_error(Some(kind), &e).raise());
        return bytes_datum(sealed);
    }
    let plain = decrypt(kind, sealed);
    let mut func = pg_sys::InvalidOid;
    let mut varlena = false;
    pg_sys::getTypeBinaryOutputInfo(base_type_oid(kind), &mut func, &mut varlena);
    pg_sys::Datum::from(pg_sys::OidSendFunctionCall(func, datum_of(kind, &plain)))
}

unsafe fn cast_in(kind: Kind, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    encrypt_datum(kind, pg_getarg_datum_raw(fcinfo, 0))
}

unsafe fn cast_out(kind: Kind, fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    datum_of(kind, &decrypt(kind, arg_bytes(fcinfo, 0)))
}

/// The order of two envelopes' plaintexts, as the plaintext type orders them (text by the
/// database's default collation). Equal tags mean equal plaintexts: no decryption then.
unsafe fn compare(fcinfo: pg_sys::FunctionCallInfo) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (arg_bytes(fcinfo, 0), arg_bytes(fcinfo, 1));
    let (ha, hb) = (
        envelope::header(a).unwrap_or_else(|e| value_error(None, &e).raise()),
        envelope::header(b).unwrap_or_else(|e| value_error(None, &e).raise()),
    );
    if ha.tag == hb.tag {
        return Ordering::Equal;
    }
    let kind = ha.kind;
    let (pa, pb) = (decrypt(kind, a), decrypt(kind, b));
    match kind {
        Kind::Bytea => pa.cmp(&pb),
        Kind::Int8 | Kind::TimestampTz => {
            let read = |p: &[u8]| i64::from_be_bytes(p.try_into().expect("authenticated 8 bytes"));
            read(&pa).cmp(&read(&pb))
        }
        Kind::Text => pg_sys::varstr_cmp(
            pa.as_ptr().cast(),
            pa.len() as i32,
            pb.as_ptr().cast(),
            pb.len() as i32,
            pg_sys::DEFAULT_COLLATION_OID,
        )
        .cmp(&0),
        Kind::Numeric => {
            let numeric = |p: &[u8]| -> AnyNumeric {
                AnyNumeric::from_datum(datum_of(kind, p), false).expect("non-null numeric")
            };
            numeric(&pa).cmp(&numeric(&pb))
        }
    }
}

fn bool_datum(value: bool) -> pg_sys::Datum {
    pg_sys::Datum::from(value)
}

/// Declares a C function `$name` (with its `pg_finfo_` record) whose body is `$body(fcinfo)`.
macro_rules! c_function {
    ($finfo:ident, $name:ident, $body:expr) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        /// # Safety
        /// Called by PostgreSQL's function manager with the arguments its SQL declares.
        #[no_mangle]
        #[pg_guard]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            #[allow(clippy::redundant_closure_call)]
            ($body)(fcinfo)
        }
    };
}

/// The six functions of one encrypted type.
macro_rules! encrypted_type {
    ($kind:expr, $in:ident $fin:ident, $out:ident $fout:ident, $recv:ident $frecv:ident,
     $send:ident $fsend:ident, $enc:ident $fenc:ident, $dec:ident $fdec:ident) => {
        c_function!($fin, $in, |f| type_in($kind, f));
        c_function!($fout, $out, |f| type_out($kind, f));
        c_function!($frecv, $recv, |f| type_recv($kind, f));
        c_function!($fsend, $send, |f| type_send($kind, f));
        c_function!($fenc, $enc, |f| cast_in($kind, f));
        c_function!($fdec, $dec, |f| cast_out($kind, f));
    };
}

encrypted_type!(Kind::Text,
    pgshard_encrypted_text_in pg_finfo_pgshard_encrypted_text_in,
    pgshard_encrypted_text_out pg_finfo_pgshard_encrypted_text_out,
    pgshard_encrypted_text_recv pg_finfo_pgshard_encrypted_text_recv,
    pgshard_encrypted_text_send pg_finfo_pgshard_encrypted_text_send,
    pgshard_encrypted_text_encrypt pg_finfo_pgshard_encrypted_text_encrypt,
    pgshard_encrypted_text_decrypt pg_finfo_pgshard_encrypted_text_decrypt);
encrypted_type!(Kind::Bytea,
    pgshard_encrypted_bytea_in pg_finfo_pgshard_encrypted_bytea_in,
    pgshard_encrypted_bytea_out pg_finfo_pgshard_encrypted_bytea_out,
    pgshard_encrypted_bytea_recv pg_finfo_pgshard_encrypted_bytea_recv,
    pgshard_encrypted_bytea_send pg_finfo_pgshard_encrypted_bytea_send,
    pgshard_encrypted_bytea_encrypt pg_finfo_pgshard_encrypted_bytea_encrypt,
    pgshard_encrypted_bytea_decrypt pg_finfo_pgshard_encrypted_bytea_decrypt);
encrypted_type!(Kind::Int8,
    pgshard_encrypted_int8_in pg_finfo_pgshard_encrypted_int8_in,
    pgshard_encrypted_int8_out pg_finfo_pgshard_encrypted_int8_out,
    pgshard_encrypted_int8_recv pg_finfo_pgshard_encrypted_int8_recv,
    pgshard_encrypted_int8_send pg_finfo_pgshard_encrypted_int8_send,
    pgshard_encrypted_int8_encrypt pg_finfo_pgshard_encrypted_int8_encrypt,
    pgshard_encrypted_int8_decrypt pg_finfo_pgshard_encrypted_int8_decrypt);
encrypted_type!(Kind::Numeric,
    pgshard_encrypted_numeric_in pg_finfo_pgshard_encrypted_numeric_in,
    pgshard_encrypted_numeric_out pg_finfo_pgshard_encrypted_numeric_out,
    pgshard_encrypted_numeric_recv pg_finfo_pgshard_encrypted_numeric_recv,
    pgshard_encrypted_numeric_send pg_finfo_pgshard_encrypted_numeric_send,
    pgshard_encrypted_numeric_encrypt pg_finfo_pgshard_encrypted_numeric_encrypt,
    pgshard_encrypted_numeric_decrypt pg_finfo_pgshard_encrypted_numeric_decrypt);
encrypted_type!(Kind::TimestampTz,
    pgshard_encrypted_timestamptz_in pg_finfo_pgshard_encrypted_timestamptz_in,
    pgshard_encrypted_timestamptz_out pg_finfo_pgshard_encrypted_timestamptz_out,
    pgshard_encrypted_timestamptz_recv pg_finfo_pgshard_encrypted_timestamptz_recv,
    pgshard_encrypted_timestamptz_send pg_finfo_pgshard_encrypted_timestamptz_send,
    pgshard_encrypted_timestamptz_encrypt pg_finfo_pgshard_encrypted_timestamptz_encrypt,
    pgshard_encrypted_timestamptz_decrypt pg_finfo_pgshard_encrypted_timestamptz_decrypt);

// Functions shared by all encrypted types: the type is read from the envelope.
c_function!(pg_finfo_pgshard_encrypted_eq, pgshard_encrypted_eq, |f| {
    bool_datum(tag_of(arg_bytes(f, 0)) == tag_of(arg_bytes(f, 1)))
});
c_function!(pg_finfo_pgshard_encrypted_ne, pgshard_encrypted_ne, |f| {
    bool_datum(tag_of(arg_bytes(f, 0)) != tag_of(arg_bytes(f, 1)))
});
c_function!(
    pg_finfo_pgshard_encrypted_hash,
    pgshard_encrypted_hash,
    |f| {
        // The tag is an HMAC: its first bytes are already uniformly distributed.
        let tag = tag_of(arg_bytes(f, 0));
        pg_sys::Datum::from(i32::from_be_bytes(tag[..4].try_into().expect("4 bytes")))
    }
);
c_function!(pg_finfo_pgshard_encrypted_cmp, pgshard_encrypted_cmp, |f| {
    pg_sys::Datum::from(compare(f) as i32)
});
c_function!(pg_finfo_pgshard_encrypted_lt, pgshard_encrypted_lt, |f| {
    bool_datum(compare(f).is_lt())
});
c_function!(pg_finfo_pgshard_encrypted_le, pgshard_encrypted_le, |f| {
    bool_datum(compare(f).is_le())
});
c_function!(pg_finfo_pgshard_encrypted_gt, pgshard_encrypted_gt, |f| {
    bool_datum(compare(f).is_gt())
});
c_function!(pg_finfo_pgshard_encrypted_ge, pgshard_encrypted_ge, |f| {
    bool_datum(compare(f).is_ge())
});
c_function!(
    pg_finfo_pgshard_encrypted_key_id,
    pgshard_encrypted_key_id,
    |f| {
        let header =
            envelope::header(arg_bytes(f, 0)).unwrap_or_else(|e| value_error(None, &e).raise());
        pg_sys::Datum::from(header.key_id as i32)
    }
);
c_function!(
    pg_finfo_pgshard_encrypted_blind_index,
    pgshard_encrypted_blind_index,
    |f| { bytes_datum(&tag_of(arg_bytes(f, 0))) }
);
c_function!(
    pg_finfo_pgshard_encrypted_envelope,
    pgshard_encrypted_envelope,
    |f| {
        let sealed = arg_bytes(f, 0);
        tag_of(sealed);
        bytes_datum(sealed)
    }
);
c_function!(
    pg_finfo_pgshard_encrypted_reencrypt_value,
    pgshard_encrypted_reencrypt_value,
    |f| {
        match reencrypt(arg_bytes(f, 0)) {
            Some(sealed) => bytes_datum(&sealed),
            None => pg_getarg_datum_raw(f, 0),
        }
    }
);

/// The input function of each encrypted type, to recognise the types by what they run.
pub fn input_functions() -> [(Kind, usize); 5] {
    [
        (Kind::Text, pgshard_encrypted_text_in as *const () as usize),
        (
            Kind::Bytea,
            pgshard_encrypted_bytea_in as *const () as usize,
        ),
        (Kind::Int8, pgshard_encrypted_int8_in as *const () as usize),
        (
            Kind::Numeric,
            pgshard_encrypted_numeric_in as *const () as usize,
        ),
        (
            Kind::TimestampTz,
            pgshard_encrypted_timestamptz_in as *const () as usize,
        ),
    ]
}

/// Whether a function is the tag equality (`=`, true) or inequality (`<>`, false) of the
/// encrypted types.
pub fn tag_comparison(function_address: usize) -> Option<bool> {
    if function_address == pgshard_encrypted_eq as *const () as usize {
        Some(true)
    } else if function_address == pgshard_encrypted_ne as *const () as usize {
        Some(false)
    } else {
        None
    }
}
