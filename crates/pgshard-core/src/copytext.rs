//! COPY text format: how a row's values, already in their text output form, are written so
//! that `COPY … FROM STDIN` on a worker reads back exactly the same values, and how one value
//! is read back out of a line that `COPY … TO STDOUT` wrote.

/// Appends one value, escaped for COPY's text format (tab delimiter, `\N` for NULL).
pub fn push_value(line: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(value) = value else {
        line.extend_from_slice(b"\\N");
        return;
    };
    let mut rest = value;
    // Runs without a byte to escape are copied whole: most values have none.
    while let Some(at) = rest
        .iter()
        .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        line.extend_from_slice(&rest[..at]);
        line.extend_from_slice(match rest[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        rest = &rest[at + 1..];
    }
    line.extend_from_slice(rest);
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

/// The line number in the error context a worker's COPY FROM gives (`COPY t_102, line 7,
/// column c: "x"`), counting from 1.
pub fn context_line(context: &str) -> Option<u64> {
    let first = context.lines().find(|l| l.starts_with("COPY "))?;
    let after = &first[first.find(", line ")? + ", line ".len()..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    after[..digits].parse().ok()
}

/// Field `index` of one line of COPY text output (without its newline): `None` when the line
/// has fewer fields, `Some(None)` for NULL, else the value with its escapes undone. A field
/// never holds a raw tab or newline (COPY escapes them), so splitting on them is exact.
pub fn field(line: &[u8], index: usize) -> Option<Option<Vec<u8>>> {
    let raw = line.split(|&b| b == b'\t').nth(index)?;
    if raw == b"\\N" {
        return Some(None);
    }
    let mut value = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            value.push(byte);
            continue;
        }
        let Some(escaped) = bytes.next() else {
            value.push(byte);
            break;
        };
        match escaped {
            b'b' => value.push(8),
            b'f' => value.push(12),
            b'n' => value.push(b'\n'),
            b'r' => value.push(b'\r'),
            b't' => value.push(b'\t'),
            b'v' => value.push(11),
            // Octal and hex escapes are never written by COPY TO, but COPY FROM reads them.
            b'0'..=b'7' => {
                let mut code = u32::from(escaped - b'0');
                for _ in 0..2 {
                    match bytes.peek() {
                        Some(&d @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(d - b'0');
                            bytes.next();
                        }
                        _ => break,
                    }
                }
                value.push(code as u8);
            }
            b'x' if bytes.peek().is_some_and(u8::is_ascii_hexdigit) => {
                let mut code = 0u8;
                for _ in 0..2 {
                    match bytes.peek().and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            code = code * 16 + d as u8;
                            bytes.next();
                        }
                        None => break,
                    }
                }
                value.push(code);
            }
            other => value.push(other),
        }
    }
    Some(Some(value))
}

/// Cuts a stream of COPY output chunks into whole lines: chunks need not end at a line's end.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Calls `each` with every line (newline included) that `chunk` completes.
    pub fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end + 1);
            if self.partial.is_empty() {
                each(line);
            } else {
                self.partial.extend_from_slice(line);
                each(&self.partial);
                self.partial.clear();
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
    }

    /// Whether a line was left unfinished (the stream ended in the middle of one).
    pub fn unfinished(&self) -> bool {
        !self.partial.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_back_what_push_row_wrote() {
        let values: [Option<&[u8]>; 5] = [
            Some(b"a\tb"),
            None,
            Some(b"back\\slash\nnew\rline"),
            Some(b"\\N"),
            Some(b""),
        ];
        let mut line = Vec::new();
        push_row(&mut line, values);
        let line = &line[..line.len() - 1];
        for (i, value) in values.iter().enumerate() {
            assert_eq!(field(line, i), Some(value.map(<[u8]>::to_vec)), "field {i}");
        }
        assert_eq!(field(line, 5), None);
    }

    #[test]
    fn field_undoes_every_escape_copy_knows() {
        assert_eq!(
            field(b"x\\b\\f\\v\\101\\x42\\7z\\q", 0),
            Some(Some(b"x\x08\x0c\x0bAB\x07zq".to_vec()))
        );
    }

    #[test]
    fn lines_joins_lines_cut_across_chunks() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        for chunk in [&b"1\tone\n2\t"[..], b"tw", b"o\n3\tthree\n", b""] {
            lines.feed(chunk, |line| seen.push(String::from_utf8(line.to_vec()).unwrap()));
        }
        assert_eq!(seen, ["1\tone\n", "2\ttwo\n", "3\tthree\n"]);
        assert!(!lines.unfinished());
        lines.feed(b"4", |_| {});
        assert!(lines.unfinished());
    }

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

    #[test]
    fn context_line_reads_the_line_of_a_worker_copy_error() {
        assert_eq!(
            context_line("COPY events_800001, line 7, column score: \"x\""),
            Some(7)
        );
        assert_eq!(context_line("COPY t_1, line 123456"), Some(123456));
        assert_eq!(
            context_line("SQL function \"f\"\nCOPY t_1, line 3: \"1\t2\""),
            Some(3)
        );
        assert_eq!(context_line("PL/pgSQL function f() line 3 at RAISE"), None);
        assert_eq!(context_line("COPY t_1"), None);
    }

    #[test]
    fn push_value_escapes_runs_and_single_bytes() {
        let mut line = Vec::new();
        push_value(&mut line, Some(b"a\\b\tc\nd\re"));
        assert_eq!(line, b"a\\\\b\\tc\\nd\\re");
        line.clear();
        push_value(&mut line, Some(b"\t"));
        push_value(&mut line, Some(b""));
        push_value(&mut line, None);
        assert_eq!(line, b"\\t\\N");
    }
}
