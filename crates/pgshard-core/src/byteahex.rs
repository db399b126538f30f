//! bytea's hex text form, `\x` followed by two hexadecimal digits per byte: what PostgreSQL's
//! byteaout writes (bytea_output = hex) and byteain reads. Envelopes of encrypted columns cross
//! between the coordinator and the workers in this form (the workers store them as bytea), so
//! the coordinator encodes and decodes it itself, with SIMD, instead of through byteaout and
//! byteain one digit at a time: for an encrypted column that is most of the work of a value
//! besides the cryptography.

/// The bytes of `text` if it is exactly `\x` and an even number of hexadecimal digits, written
/// by `out` into a buffer of the length it is given. `None` for anything else byteain also
/// accepts (whitespace between digits, the escape form), which the caller leaves to byteain;
/// `out` is not called then.
pub fn decode<'b>(text: &[u8], out: impl FnOnce(usize) -> &'b mut [u8]) -> Option<&'b [u8]> {
    let digits = text.strip_prefix(b"\\x")?;
    if digits.len() % 2 != 0 || !faster_hex::hex_check(digits) {
        return None;
    }
    let bytes = out(digits.len() / 2);
    faster_hex::hex_decode_unchecked(digits, bytes);
    Some(bytes)
}

/// `bytes` in hex text form, as byteaout writes it, into `text` (replacing what it held).
pub fn encode(text: &mut Vec<u8>, bytes: &[u8]) {
    text.clear();
    text.extend_from_slice(b"\\x");
    text.resize(2 + 2 * bytes.len(), 0);
    faster_hex::hex_encode(bytes, &mut text[2..]).expect("room for two digits per byte");
}

/// `bytes` in hex text form, as a new string.
pub fn to_text(bytes: &[u8]) -> String {
    let mut text = Vec::new();
    encode(&mut text, bytes);
    String::from_utf8(text).expect("hex digits are ASCII")
}

/// The bytes of `text` if it is exactly `\x` and an even number of hexadecimal digits.
pub fn from_text(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    decode(text.as_bytes(), |len| {
        bytes.resize(len, 0);
        &mut bytes[..]
    })?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(text: &[u8]) -> Option<Vec<u8>> {
        let mut buffer = Vec::new();
        decode(text, |len| {
            buffer.resize(len, 0xAA);
            &mut buffer[..]
        })
        .map(<[u8]>::to_vec)
    }

    #[test]
    fn decodes_what_byteaout_writes() {
        assert_eq!(decoded(b"\\x"), Some(vec![]));
        assert_eq!(decoded(b"\\x00ff7F"), Some(vec![0, 0xff, 0x7f]));
        // Long enough for the vector path, with digits of every kind.
        let bytes: Vec<u8> = (0..=255).collect();
        let digits: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let text = format!("\\x{digits}");
        assert_eq!(decoded(text.as_bytes()), Some(bytes));
    }

    #[test]
    fn leaves_other_forms_to_byteain() {
        for text in [
            &b"00ff"[..],
            b"\\x0",
            b"\\x0g",
            b"\\x00 ff",
            b"\\000",
            b"",
            b"\\",
        ] {
            assert_eq!(decoded(text), None, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn strings_round_trip() {
        assert_eq!(to_text(&[1, 0xfe]), "\\x01fe");
        assert_eq!(from_text("\\x01FE"), Some(vec![1, 0xfe]));
        assert_eq!(from_text("01fe"), None);
        assert_eq!(from_text(&to_text(b"envelope")), Some(b"envelope".to_vec()));
    }

    #[test]
    fn encodes_as_byteaout_does() {
        let mut text = b"left over".to_vec();
        encode(&mut text, &[0, 0xab, 0x10]);
        assert_eq!(text, b"\\x00ab10");
        encode(&mut text, &[]);
        assert_eq!(text, b"\\x");
        let bytes: Vec<u8> = (0..=255).rev().collect();
        encode(&mut text, &bytes);
        assert_eq!(decoded(&text), Some(bytes));
    }
}
