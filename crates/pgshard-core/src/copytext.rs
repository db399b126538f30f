//! COPY text format: how a row's values, already in their text output form, are written so
//! that `COPY … FROM STDIN` on a worker reads back exactly the same values.

/// Appends one value, escaped for COPY's text format (tab delimiter, `\N` for NULL).
pub fn push_value(line: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(value) = value else {
        line.extend_from_slice(b"\\N");
        return;
    };
    for &byte in value {
        match byte {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\t' => line.extend_from_slice(b"\\t"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            _ => line.push(byte),
        }
    }
}

/// Appends a whole row: values separated by tabs, ended by a newline.
pub fn push_row<'a>(line: &mut Vec<u8>, values: impl IntoIterator<Item = Option<&'a [u8]>>) {
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            line.push(b'\t');
        }
        push_value(line, value);
    }
    line.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_copy_text_format_treats_specially() {
        let mut line = Vec::new();
        push_row(
            &mut line,
            [
                Some(&b"a\tb"[..]),
                None,
                Some(&b"back\\slash\nnew\rline"[..]),
                Some(&b"\\N"[..]),
                Some(&b""[..]),
            ],
        );
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "a\\tb\t\\N\tback\\\\slash\\nnew\\rline\t\\\\N\t\n"
        );
    }
}
