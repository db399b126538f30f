//! SQLSTATE codes as PostgreSQL packs them into an `int` (`MAKE_SQLSTATE`), so that an error a
//! worker reports can be re-raised on the coordinator under the same code.

/// Packs a five-character SQLSTATE the way PostgreSQL's `MAKE_SQLSTATE` does: six bits per
/// character, first character in the lowest bits. `None` for anything that is not five
/// characters of `0-9A-Z`.
pub fn pack(sqlstate: &str) -> Option<i32> {
    let bytes = sqlstate.as_bytes();
    if bytes.len() != 5
        || !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return None;
    }
    Some(bytes.iter().enumerate().fold(0, |acc, (i, &b)| {
        acc | (((b as i32) - ('0' as i32)) & 0x3F) << (6 * i)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values of ERRCODE_* as compiled into PostgreSQL 15 (utils/errcodes.h via MAKE_SQLSTATE).
    #[test]
    fn packs_like_postgres() {
        assert_eq!(pack("00000"), Some(0));
        assert_eq!(pack("3D000"), Some(3 | (20 << 6))); // ERRCODE_INVALID_CATALOG_NAME
        assert_eq!(pack("57014"), Some(5 | (7 << 6) | (1 << 18) | (4 << 24))); // QUERY_CANCELED
        assert_eq!(pack("28P01"), Some(2 | (8 << 6) | (32 << 12) | (1 << 24)));
    }

    #[test]
    fn rejects_malformed_codes() {
        assert_eq!(pack("bad"), None);
        assert_eq!(pack("3d000"), None);
        assert_eq!(pack("3D0000"), None);
    }
}
