//! Rows between the coordinator and the workers, in PostgreSQL's text format: values are
//! turned into text with their type's output function and read back with its input function,
//! the same way COPY and the simple query protocol carry them. Values of encrypted types are
//! the exception: they travel as bytea, the envelope the worker stores.

use std::ffi::CStr;

use pgrx::prelude::*;

/// Output functions for the columns of a tuple descriptor (`None` for dropped columns).
pub struct TextEncoder {
    outputs: Vec<Option<pg_sys::FmgrInfo>>,
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
                pg_sys::getTypeOutputInfo(wire, &mut func, &mut varlena);
                let mut info = std::mem::zeroed::<pg_sys::FmgrInfo>();
                pg_sys::fmgr_info(func, &mut info);
                Some(info)
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
        let info = self.outputs[index].as_mut()?;
        let datum = *(*slot).tts_values.add(index);
        let text = pg_sys::OutputFunctionCall(info, datum);
        let owned = CStr::from_ptr(text).to_string_lossy().into_owned();
        pg_sys::pfree(text.cast());
        Some(owned)
    }
}

/// Input functions for a list of column types, to turn text from a worker into datums.
pub struct TextDecoder {
    inputs: Vec<(pg_sys::FmgrInfo, pg_sys::Oid, i32)>,
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
                let mut info = std::mem::zeroed::<pg_sys::FmgrInfo>();
                pg_sys::fmgr_info(func, &mut info);
                (info, ioparam, typmod)
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
        let (info, ioparam, typmod) = &mut self.inputs[index];
        match text {
            None => {
                // Input functions must see NULLs too (domains check them); strict ones return 0.
                let datum =
                    pg_sys::InputFunctionCall(info, std::ptr::null_mut(), *ioparam, *typmod);
                (datum, true)
            }
            Some(text) => {
                let c_text = &mut self.c_text;
                c_text.clear();
                let bytes = text.as_bytes();
                if bytes.contains(&0) {
                    c_text.extend(bytes.iter().filter(|&&b| b != 0));
                } else {
                    c_text.extend_from_slice(bytes);
                }
                c_text.push(0);
                let datum =
                    pg_sys::InputFunctionCall(info, c_text.as_mut_ptr().cast(), *ioparam, *typmod);
                (datum, false)
            }
        }
    }
}
