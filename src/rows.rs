//! Rows between the coordinator and the workers, in PostgreSQL's text format: values are
//! turned into text with their type's output function and read back with its input function,
//! the same way COPY and the simple query protocol carry them. Values of encrypted types are
//! the exception: they travel as bytea, the envelope the worker stores, in bytea's hex text,
//! which is encoded and decoded here (`pgshard_core::byteahex`) rather than by byteaout and
//! byteain.

use std::ffi::CStr;

use pgrx::prelude::*;

/// Output functions for the columns of a tuple descriptor (`None` for dropped columns).
pub struct TextEncoder {
    outputs: Vec<Option<Output>>,
}

/// How one column's datum becomes text.
enum Output {
    Function(pg_sys::FmgrInfo),
    /// An encrypted column: its envelope as bytea text, encoded here.
    Envelope,
}

impl TextEncoder {
    /// # Safety
    /// `desc` must be a valid tuple descriptor.
    pub unsafe fn new(desc: pg_sys::TupleDesc) -> Self {
        let outputs = (0..(*desc).natts as usize)
            .map(|i| {
                let attr = (*desc).attrs.as_ptr().add(i);
                if (*attr).attisdropped {
                    return None;
                }
                let mut func = pg_sys::InvalidOid;
                let mut varlena = false;
                // Encrypted columns travel as their envelope, never as plaintext.
                let wire = crate::encryption::wire_type((*attr).atttypid);
                if wire != (*attr).atttypid {
                    return Some(Output::Envelope);
                }
                pg_sys::getTypeOutputInfo(wire, &mut func, &mut varlena);
                let mut info = std::mem::zeroed::<pg_sys::FmgrInfo>();
                pg_sys::fmgr_info(func, &mut info);
                Some(Output::Function(info))
            })
            .collect();
        TextEncoder { outputs }
    }

    /// Whether column `index` (0-based) was dropped.
    pub fn is_dropped(&self, index: usize) -> bool {
        self.outputs[index].is_none()
    }

    /// The text of column `index` of a slot whose attributes are all deformed.
    ///
    /// # Safety
    /// `slot` must hold a tuple of the descriptor this encoder was built for, deformed.
    pub unsafe fn text(
        &mut self,
        slot: *mut pg_sys::TupleTableSlot,
        index: usize,
    ) -> Option<String> {
        if *(*slot).tts_isnull.add(index) {
            return None;
        }
        let datum = *(*slot).tts_values.add(index);
        let info = match self.outputs[index].as_mut()? {
            Output::Function(info) => info,
            Output::Envelope => {
                let envelope = crate::encryption::datum_bytes(datum);
                return Some(pgshard_core::byteahex::to_text(envelope));
            }
        };
        let text = pg_sys::OutputFunctionCall(info, datum);
        let owned = CStr::from_ptr(text).to_string_lossy().into_owned();
        pg_sys::pfree(text.cast());
        Some(owned)
    }
}

/// How one column's text becomes a datum.
struct Input {
    function: pg_sys::FmgrInfo,
    io_param: pg_sys::Oid,
    typmod: i32,
    /// An encrypted column: its text is the envelope as bytea text, decoded here.
    envelope: bool,
}

/// Input functions for a list of column types, to turn text from a worker into datums.
pub struct TextDecoder {
    inputs: Vec<Input>,
    /// The C string handed to an input function, reused from value to value.
    c_text: Vec<u8>,
}

impl TextDecoder {
    /// `columns` are (type oid, typmod) pairs.
    ///
    /// # Safety
    /// Catalog lookups; the types must exist.
    pub unsafe fn new(columns: impl IntoIterator<Item = (pg_sys::Oid, i32)>) -> Self {
        let inputs = columns
            .into_iter()
            .map(|(type_oid, typmod)| {
                let mut func = pg_sys::InvalidOid;
                let mut ioparam = pg_sys::InvalidOid;
                let wire = crate::encryption::wire_type(type_oid);
                pg_sys::getTypeInputInfo(wire, &mut func, &mut ioparam);
                let mut function = std::mem::zeroed::<pg_sys::FmgrInfo>();
                pg_sys::fmgr_info(func, &mut function);
                Input {
                    function,
                    io_param: ioparam,
                    typmod,
                    envelope: wire != type_oid,
                }
            })
            .collect();
        TextDecoder {
            inputs,
            c_text: Vec::new(),
        }
    }

    /// The datum of column `index` for `text` (`None` is SQL NULL), allocated in the current
    /// memory context.
    ///
    /// # Safety
    /// Calls the type's input function, which may raise an error.
    pub unsafe fn datum(&mut self, index: usize, text: Option<&str>) -> (pg_sys::Datum, bool) {
        let input = &mut self.inputs[index];
        let (function, io_param, typmod) = (&mut input.function, input.io_param, input.typmod);
        match text {
            None => {
                // Input functions must see NULLs too (domains check them); strict ones return 0.
                let datum =
                    pg_sys::InputFunctionCall(function, std::ptr::null_mut(), io_param, typmod);
                (datum, true)
            }
            Some(text) => {
                if input.envelope {
                    if let Some(datum) = envelope_datum(text.as_bytes()) {
                        return (datum, false);
                    }
                }
                let c_text = &mut self.c_text;
                c_text.clear();
                let bytes = text.as_bytes();
                if bytes.contains(&0) {
                    c_text.extend(bytes.iter().filter(|&&b| b != 0));
                } else {
                    c_text.extend_from_slice(bytes);
                }
                c_text.push(0);
                let datum = pg_sys::InputFunctionCall(
                    function,
                    c_text.as_mut_ptr().cast(),
                    io_param,
                    typmod,
                );
                (datum, false)
            }
        }
    }
}

/// The bytea datum of an envelope's hex text, decoded straight into a new varlena; `None` for
/// text in another form byteain accepts, which goes through byteain.
///
/// # Safety
/// Allocates in the current memory context.
unsafe fn envelope_datum(text: &[u8]) -> Option<pg_sys::Datum> {
    let header = pg_sys::VARHDRSZ;
    let mut varlena: *mut pg_sys::varlena = std::ptr::null_mut();
    pgshard_core::byteahex::decode(text, |len| {
        varlena = pg_sys::palloc(header + len).cast();
        pgrx::varlena::set_varsize_4b(varlena, (header + len) as i32);
        std::slice::from_raw_parts_mut(varlena.cast::<u8>().add(header), len)
    })?;
    Some(pg_sys::Datum::from(varlena))
}
