//! Shard-key hashing and hash ranges: a stable on-disk format.
//!
//! A shard key value is turned into a canonical byte string (a one-byte family tag, then the
//! value's bytes), hashed with SipHash-2-4 under the fixed key [`HASH_KEY`], and the 64-bit
//! result is read as a signed `bigint` (two's complement). Each shard owns a contiguous,
//! inclusive range of that signed space. Everything here is part of the stored format: rows are
//! placed by it, so changing any of it would strand rows on the wrong shard. The test vectors
//! at the bottom pin it and are published in `docs/routing.md`.

use siphasher::sip::SipHasher24;
use std::fmt;

/// SipHash-2-4 key: the 16 ASCII bytes `pgshard:hash:v1` followed by one zero byte.
pub const HASH_KEY: [u8; 16] = *b"pgshard:hash:v1\0";

/// Families of key types. Types of one family hash alike (so `int4` and `int8` keys co-locate);
/// values of different families never share an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    Integer,
    Text,
    Uuid,
    Numeric,
    Date,
    Timestamp,
    TimestampTz,
    Bool,
    Bytea,
    /// pgshard's encrypted types: their blind-index tag is hashed, so equal plaintexts land
    /// together while the coordinator never needs to decrypt to route.
    Encrypted,
}

impl KeyFamily {
    /// The family of a built-in PostgreSQL type, by its (fixed) type OID; `None` when the type
    /// cannot be a shard key.
    pub fn of_type_oid(oid: u32) -> Option<KeyFamily> {
        Some(match oid {
            21 | 23 | 20 => KeyFamily::Integer, // int2, int4, int8
            25 | 1043 => KeyFamily::Text,       // text, varchar
            2950 => KeyFamily::Uuid,
            1700 => KeyFamily::Numeric,
            1082 => KeyFamily::Date,
            1114 => KeyFamily::Timestamp,
            1184 => KeyFamily::TimestampTz,
            16 => KeyFamily::Bool,
            17 => KeyFamily::Bytea,
            _ => return None,
        })
    }

    /// The family's name as stored in `pgshard.colocation.key_family`.
    pub fn name(self) -> &'static str {
        match self {
            KeyFamily::Integer => "integer",
            KeyFamily::Text => "text",
            KeyFamily::Uuid => "uuid",
            KeyFamily::Numeric => "numeric",
            KeyFamily::Date => "date",
            KeyFamily::Timestamp => "timestamp",
            KeyFamily::TimestampTz => "timestamptz",
            KeyFamily::Bool => "bool",
            KeyFamily::Bytea => "bytea",
            KeyFamily::Encrypted => "encrypted",
        }
    }

    /// The first byte of every encoded value of the family.
    pub fn tag(self) -> u8 {
        match self {
            KeyFamily::Integer => 0x01,
            KeyFamily::Text => 0x02,
            KeyFamily::Uuid => 0x03,
            KeyFamily::Numeric => 0x04,
            KeyFamily::Date => 0x05,
            KeyFamily::Timestamp => 0x06,
            KeyFamily::TimestampTz => 0x07,
            KeyFamily::Bool => 0x08,
            KeyFamily::Bytea => 0x09,
            KeyFamily::Encrypted => 0x0a,
        }
    }
}

/// A shard key value, in the form its canonical encoding is made from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue<'a> {
    /// Any integer type, widened.
    Integer(i64),
    Text(&'a str),
    Uuid([u8; 16]),
    /// numeric's text output (as `numeric_out` prints it); canonicalised before hashing so that
    /// equal values (`1.5`, `1.50`) hash alike.
    Numeric(&'a str),
    /// Days since 2000-01-01, PostgreSQL's internal `date`.
    Date(i32),
    /// Microseconds since 2000-01-01 00:00, PostgreSQL's internal `timestamp`.
    Timestamp(i64),
    /// Microseconds since 2000-01-01 00:00 UTC, PostgreSQL's internal `timestamptz`.
    TimestampTz(i64),
    Bool(bool),
    Bytea(&'a [u8]),
    /// The 16-byte blind-index tag of an encrypted value.
    EncryptedTag(&'a [u8]),
}

impl KeyValue<'_> {
    pub fn family(&self) -> KeyFamily {
        match self {
            KeyValue::Integer(_) => KeyFamily::Integer,
            KeyValue::Text(_) => KeyFamily::Text,
            KeyValue::Uuid(_) => KeyFamily::Uuid,
            KeyValue::Numeric(_) => KeyFamily::Numeric,
            KeyValue::Date(_) => KeyFamily::Date,
            KeyValue::Timestamp(_) => KeyFamily::Timestamp,
            KeyValue::TimestampTz(_) => KeyFamily::TimestampTz,
            KeyValue::Bool(_) => KeyFamily::Bool,
            KeyValue::Bytea(_) => KeyFamily::Bytea,
            KeyValue::EncryptedTag(_) => KeyFamily::Encrypted,
        }
    }

    /// The canonical encoding: family tag, then the value (integers big-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.family().tag()];
        match self {
            KeyValue::Integer(v) | KeyValue::Timestamp(v) | KeyValue::TimestampTz(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            KeyValue::Text(s) => out.extend_from_slice(s.as_bytes()),
            KeyValue::Uuid(bytes) => out.extend_from_slice(bytes),
            KeyValue::Numeric(text) => out.extend_from_slice(canonical_numeric(text).as_bytes()),
            KeyValue::Date(days) => out.extend_from_slice(&days.to_be_bytes()),
            KeyValue::Bool(b) => out.push(u8::from(*b)),
            KeyValue::Bytea(bytes) | KeyValue::EncryptedTag(bytes) => out.extend_from_slice(bytes),
        }
        out
    }

    /// The value's hash: SipHash-2-4 of the canonical encoding, as a signed bigint.
    pub fn hash(&self) -> i64 {
        SipHasher24::new_with_key(&HASH_KEY).hash(&self.encode()) as i64
    }
}

/// Canonical form of numeric's text output: no trailing fractional zeros, no `-0`. PostgreSQL
/// prints numerics without exponent and without leading zeros, so equal values then have equal
/// text. `NaN` and the infinities pass through.
pub fn canonical_numeric(text: &str) -> String {
    let mut s = text.trim().to_string();
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// An inclusive range of the signed 64-bit hash space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRange {
    pub min: i64,
    pub max: i64,
}

impl HashRange {
    pub fn contains(&self, hash: i64) -> bool {
        self.min <= hash && hash <= self.max
    }
}

impl fmt::Display for HashRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.min, self.max)
    }
}

/// Cuts the whole hash space into `count` contiguous ranges of (nearly) equal size, in order.
/// Range `i` starts at `i64::MIN + ceil(i * 2^64 / count)`.
pub fn uniform_ranges(count: u32) -> Vec<HashRange> {
    assert!(count > 0, "at least one shard");
    let start = |i: u32| -> i128 {
        let offset = ((i as u128) << 64).div_ceil(count as u128);
        i64::MIN as i128 + offset as i128
    };
    (0..count)
        .map(|i| HashRange {
            min: start(i) as i64,
            max: (start(i + 1) - 1) as i64,
        })
        .collect()
}

/// Why a hash range cannot be split where asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// The range holds a single hash value.
    TooSmall,
    /// The split point leaves one half empty: it must be at least `min` and below `max`.
    OutOfRange,
}

/// Cuts `range` in two: `[min, at]` and `[at + 1, max]`; `at` defaults to the midpoint, so
/// that each half holds (nearly) as many hash values.
pub fn split_range(range: HashRange, at: Option<i64>) -> Result<(HashRange, HashRange), SplitError> {
    if range.min == range.max {
        return Err(SplitError::TooSmall);
    }
    let at = at.unwrap_or_else(|| {
        let width = range.max as i128 - range.min as i128 + 1;
        (range.min as i128 + width / 2 - 1) as i64
    });
    if at < range.min || at >= range.max {
        return Err(SplitError::OutOfRange);
    }
    Ok((
        HashRange { min: range.min, max: at },
        HashRange { min: at + 1, max: range.max },
    ))
}

/// The index of the range holding `hash`, given ranges sorted by `min` that cover the space.
pub fn range_index(ranges: &[HashRange], hash: i64) -> Option<usize> {
    range_index_by(ranges, |r| *r, hash)
}

/// [`range_index`] over items that each own a range (shards), without copying the ranges out.
pub fn range_index_by<T>(
    items: &[T],
    range_of: impl Fn(&T) -> HashRange,
    hash: i64,
) -> Option<usize> {
    let i = items.partition_point(|item| range_of(item).max < hash);
    (i < items.len() && range_of(&items[i]).contains(hash)).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_is_the_reference_siphash_2_4() {
        // Reference vector from the SipHash paper: key 00..0f, empty message.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            SipHasher24::new_with_key(&key).hash(b""),
            0x726fdb47dd0e0e31
        );
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(
            SipHasher24::new_with_key(&key).hash(&msg),
            0xa129ca6149be45e5
        );
    }

    #[test]
    fn integer_widths_hash_alike() {
        assert_eq!(
            KeyValue::Integer(i16::MAX as i64).hash(),
            KeyValue::Integer(32767).hash()
        );
        assert_eq!(KeyValue::Integer(1).encode(), [1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_ne!(KeyValue::Integer(1).hash(), KeyValue::Text("1").hash());
    }

    #[test]
    fn numerics_equal_in_value_hash_alike() {
        for (a, b) in [
            ("1.50", "1.5"),
            ("2.000", "2"),
            ("-0.00", "0"),
            ("100", "100.0"),
        ] {
            assert_eq!(
                KeyValue::Numeric(a).hash(),
                KeyValue::Numeric(b).hash(),
                "{a} vs {b}"
            );
        }
        assert_eq!(canonical_numeric("100"), "100", "integral zeros stay");
        assert_eq!(canonical_numeric("NaN"), "NaN");
        assert_ne!(
            KeyValue::Numeric("10").hash(),
            KeyValue::Numeric("1").hash()
        );
    }

    #[test]
    fn split_range_halves_at_the_midpoint_or_where_asked() {
        let whole = uniform_ranges(1)[0];
        let (low, high) = split_range(whole, None).unwrap();
        assert_eq!([low, high], uniform_ranges(2)[..]);
        let quarter = uniform_ranges(4)[1];
        let (low, high) = split_range(quarter, None).unwrap();
        assert_eq!([low, high], uniform_ranges(8)[2..4]);
        let small = HashRange { min: 10, max: 11 };
        assert_eq!(
            split_range(small, None),
            Ok((HashRange { min: 10, max: 10 }, HashRange { min: 11, max: 11 }))
        );
        assert_eq!(
            split_range(small, Some(10)),
            Ok((HashRange { min: 10, max: 10 }, HashRange { min: 11, max: 11 }))
        );
        assert_eq!(split_range(small, Some(11)), Err(SplitError::OutOfRange));
        assert_eq!(split_range(small, Some(9)), Err(SplitError::OutOfRange));
        assert_eq!(
            split_range(HashRange { min: 5, max: 5 }, None),
            Err(SplitError::TooSmall)
        );
    }

    #[test]
    fn uniform_ranges_cover_the_space_without_gaps() {
        for count in [1u32, 2, 3, 4, 7, 8, 32, 1000] {
            let ranges = uniform_ranges(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].min, i64::MIN);
            assert_eq!(ranges.last().unwrap().max, i64::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].max.wrapping_add(1), pair[1].min);
                assert!(pair[0].min <= pair[0].max);
            }
        }
        assert_eq!(
            uniform_ranges(4),
            vec![
                HashRange {
                    min: i64::MIN,
                    max: -4611686018427387905
                },
                HashRange {
                    min: -4611686018427387904,
                    max: -1
                },
                HashRange {
                    min: 0,
                    max: 4611686018427387903
                },
                HashRange {
                    min: 4611686018427387904,
                    max: i64::MAX
                },
            ]
        );
    }

    #[test]
    fn range_index_finds_the_owning_range() {
        let ranges = uniform_ranges(8);
        for (i, r) in ranges.iter().enumerate() {
            assert_eq!(range_index(&ranges, r.min), Some(i));
            assert_eq!(range_index(&ranges, r.max), Some(i));
        }
        assert_eq!(
            range_index(&ranges[1..], i64::MIN),
            None,
            "a gap is reported, not guessed"
        );
    }

    /// The published test vectors (docs/routing.md): key, hash, shard index with 4 and with 8
    /// uniform shards. A change here is a change of the on-disk format.
    #[test]
    fn published_test_vectors() {
        let uuid = [
            0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44,
            0x00, 0x00,
        ];
        let cases: [(&str, KeyValue, i64, usize, usize); 10] = [
            (
                "integer 1",
                KeyValue::Integer(1),
                -2690727956591842419,
                1,
                2,
            ),
            ("integer 2", KeyValue::Integer(2), -978692491503494449, 1, 3),
            (
                "integer 42",
                KeyValue::Integer(42),
                8861605331239858389,
                3,
                7,
            ),
            (
                "integer -1",
                KeyValue::Integer(-1),
                2435414246721265621,
                2,
                5,
            ),
            (
                "text 'ann'",
                KeyValue::Text("ann"),
                4234949803200591505,
                2,
                5,
            ),
            (
                "text 'Zoë'",
                KeyValue::Text("Zoë"),
                6238490907038577245,
                3,
                6,
            ),
            (
                "uuid 550e8400-…",
                KeyValue::Uuid(uuid),
                -797208750810139173,
                1,
                3,
            ),
            (
                "numeric 12.50",
                KeyValue::Numeric("12.50"),
                -3396154731792323895,
                1,
                2,
            ),
            (
                "date 2024-01-01",
                KeyValue::Date(8766),
                -8927538390241936042,
                0,
                0,
            ),
            (
                "bool true",
                KeyValue::Bool(true),
                -1141850461248685190,
                1,
                3,
            ),
        ];
        let four = uniform_ranges(4);
        let eight = uniform_ranges(8);
        for (label, value, hash, of_four, of_eight) in cases {
            assert_eq!(value.hash(), hash, "{label}");
            assert_eq!(range_index(&four, hash), Some(of_four), "{label} of 4");
            assert_eq!(range_index(&eight, hash), Some(of_eight), "{label} of 8");
        }
    }
}
