//! The encrypted-value envelope and the keys behind it, independent of PostgreSQL.
//!
//! An encrypted value is stored as one byte string:
//!
//! | bytes  | field                                                      |
//! | ------ | ---------------------------------------------------------- |
//! | 0      | format version (1)                                         |
//! | 1      | kind: which encrypted type the value belongs to            |
//! | 2..6   | data key id, big-endian                                    |
//! | 6..22  | blind-index tag: HMAC-SHA256 of the canonical plaintext    |
//! | 22..34 | AES-GCM nonce, random per value                            |
//! | 34..   | AES-256-GCM ciphertext followed by its 16-byte auth tag    |
//!
//! The first 22 bytes are the associated data of the encryption, so changing the version, the
//! kind, the key id or the tag of a value makes it fail authentication: a value cannot be passed
//! off as another type, key or plaintext. The tag sits at a fixed offset so that a worker, which
//! has no keys and no pgshard, can compare tags with `substring(value FROM 7 FOR 16)`.
//!
//! Keys: a 32-byte master key (from a file) derives, with HKDF-SHA256, a key that wraps the data
//! keys and the blind-index key. Data keys are random; rotating them does not change tags, so
//! equality keeps working across values written under different data keys.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use hmac::{Hmac, KeyInit as _, Mac};
use sha2::Sha256;

pub const VERSION: u8 = 1;
pub const KEY_ID_OFFSET: usize = 2;
pub const TAG_OFFSET: usize = 6;
pub const TAG_LEN: usize = 16;
pub const NONCE_OFFSET: usize = TAG_OFFSET + TAG_LEN;
const NONCE_LEN: usize = 12;
pub const HEADER_LEN: usize = NONCE_OFFSET + NONCE_LEN;
/// The associated data: everything before the nonce.
const AAD_LEN: usize = NONCE_OFFSET;
const GCM_TAG_LEN: usize = 16;
pub const MIN_LEN: usize = HEADER_LEN + GCM_TAG_LEN;

/// The SQL `substring` arguments that extract the tag from an envelope (1-based position).
pub const TAG_SQL_FROM: usize = TAG_OFFSET + 1;
/// The SQL `substring` arguments that extract the key id bytes from an envelope.
pub const KEY_ID_SQL_FROM: usize = KEY_ID_OFFSET + 1;

/// The encrypted types. The byte is stored in every envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Text = 1,
    Bytea = 2,
    Int8 = 3,
    Numeric = 4,
    TimestampTz = 5,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Text,
        Kind::Bytea,
        Kind::Int8,
        Kind::Numeric,
        Kind::TimestampTz,
    ];

    pub fn from_byte(byte: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// The SQL type's name in schema pgshard.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Text => "encrypted_text",
            Kind::Bytea => "encrypted_bytea",
            Kind::Int8 => "encrypted_int8",
            Kind::Numeric => "encrypted_numeric",
            Kind::TimestampTz => "encrypted_timestamptz",
        }
    }

    pub fn from_type_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_name() == name)
    }

    /// The plaintext's PostgreSQL type.
    pub fn base_type(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Bytea => "bytea",
            Kind::Int8 => "bigint",
            Kind::Numeric => "numeric",
            Kind::TimestampTz => "timestamp with time zone",
        }
    }
}

/// Why an envelope or a key could not be used. Messages name the cause; callers add the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    Truncated(usize),
    UnknownVersion(u8),
    UnknownKind(u8),
    WrongKind {
        found: Kind,
        expected: Kind,
    },
    /// Authentication failed: the value was altered, or its data key is not the one it names.
    Tampered,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::Truncated(len) => write!(
                f,
                "the stored value is {len} bytes long, shorter than any encrypted value ({MIN_LEN} bytes)"
            ),
            EnvelopeError::UnknownVersion(v) => {
                write!(f, "the stored value has unknown format version {v}")
            }
            EnvelopeError::UnknownKind(k) => write!(f, "the stored value has unknown type code {k}"),
            EnvelopeError::WrongKind { found, .. } => {
                write!(f, "the stored value belongs to type {}", found.type_name())
            }
            EnvelopeError::Tampered => f.write_str(
                "the stored value failed authentication: it was altered, or was not written under the data key it names",
            ),
        }
    }
}

/// The parsed first bytes of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub key_id: u32,
    pub tag: [u8; TAG_LEN],
}

/// Reads and checks an envelope's header (not its authenticity: see [`open`]).
pub fn header(envelope: &[u8]) -> Result<Header, EnvelopeError> {
    if envelope.len() < MIN_LEN {
        return Err(EnvelopeError::Truncated(envelope.len()));
    }
    if envelope[0] != VERSION {
        return Err(EnvelopeError::UnknownVersion(envelope[0]));
    }
    let kind = Kind::from_byte(envelope[1]).ok_or(EnvelopeError::UnknownKind(envelope[1]))?;
    let key_id = u32::from_be_bytes(
        envelope[KEY_ID_OFFSET..TAG_OFFSET]
            .try_into()
            .expect("4 bytes"),
    );
    let tag = envelope[TAG_OFFSET..NONCE_OFFSET]
        .try_into()
        .expect("16 bytes");
    Ok(Header { kind, key_id, tag })
}

thread_local! {
    /// Nonces come from a ChaCha20 generator seeded from the operating system on first use in
    /// this thread (a backend, never the postmaster): as unpredictable as reading the OS for
    /// every value, without a system call per value. 96-bit random nonces stay unique far
    /// beyond the number of values one key encrypts.
    static NONCES: std::cell::RefCell<rand_chacha::ChaCha20Rng> = std::cell::RefCell::new(
        <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_rng(OsRng)
            .expect("the operating system's random source")
    );
}

/// A data key: encrypts and decrypts values.
pub struct DataKey {
    raw: [u8; 32],
    cipher: Aes256Gcm,
}

impl DataKey {
    pub fn generate() -> DataKey {
        DataKey::from_raw(Aes256Gcm::generate_key(&mut OsRng).into())
    }

    fn from_raw(raw: [u8; 32]) -> DataKey {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&raw));
        DataKey { raw, cipher }
    }
}

/// The blind-index key: makes the deterministic tags. Holds the HMAC already keyed, so that
/// each tag costs only the hashing of its input.
pub struct BlindIndexKey(Hmac<Sha256>);

impl BlindIndexKey {
    /// The tag of a canonical plaintext of `kind`. The kind is part of the input, so equal
    /// bytes of different types do not have equal tags.
    pub fn tag(&self, kind: Kind, canonical: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.0.clone();
        mac.update(&[kind as u8]);
        mac.update(canonical);
        let full = mac.finalize().into_bytes();
        full[..TAG_LEN].try_into().expect("16 of 32 bytes")
    }
}

/// The master key, read from the key file.
pub struct MasterKey([u8; 32]);

/// Why a key file's contents are not a master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFileError {
    /// Group or others may read or write the file (the mode is given).
    TooOpen(u32),
    BadLength(usize),
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFileError::TooOpen(mode) => write!(
                f,
                "the key file is accessible to group or others (mode {:04o})",
                mode & 0o7777
            ),
            KeyFileError::BadLength(len) => write!(
                f,
                "the key file holds {len} bytes; it must hold 32 bytes, or 64 hexadecimal digits"
            ),
        }
    }
}

/// Refuses a key file that group or others may access (like PostgreSQL's own key files).
pub fn check_key_file_mode(mode: u32) -> Result<(), KeyFileError> {
    if mode & 0o077 != 0 {
        Err(KeyFileError::TooOpen(mode))
    } else {
        Ok(())
    }
}

fn hkdf_expand(master: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(b"pgshard master key"), master)
        .expand(info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

impl MasterKey {
    /// A master key from a key file's contents: 32 raw bytes, or 64 hexadecimal digits
    /// (surrounding whitespace ignored).
    pub fn from_file_contents(contents: &[u8]) -> Result<MasterKey, KeyFileError> {
        let trimmed = contents.trim_ascii();
        if trimmed.len() == 64 && trimmed.iter().all(u8::is_ascii_hexdigit) {
            let mut raw = [0u8; 32];
            for (i, pair) in trimmed.chunks(2).enumerate() {
                let text = std::str::from_utf8(pair).expect("hex digits are ASCII");
                raw[i] = u8::from_str_radix(text, 16).expect("hex digits");
            }
            return Ok(MasterKey(raw));
        }
        if contents.len() == 32 {
            return Ok(MasterKey(contents.try_into().expect("32 bytes")));
        }
        Err(KeyFileError::BadLength(contents.len()))
    }

    pub fn blind_index_key(&self) -> BlindIndexKey {
        let key = hkdf_expand(&self.0, b"pgshard blind index v1");
        BlindIndexKey(<Hmac<Sha256>>::new_from_slice(&key).expect("any key length"))
    }

    fn wrapping_cipher(&self) -> Aes256Gcm {
        let key = hkdf_expand(&self.0, b"pgshard data key wrapping v1");
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
    }

    fn wrapping_aad(key_id: u32) -> Vec<u8> {
        let mut aad = b"pgshard data key ".to_vec();
        aad.extend_from_slice(&key_id.to_be_bytes());
        aad
    }

    /// The data key encrypted under the master key, bound to its id: nonce then ciphertext.
    pub fn wrap(&self, key_id: u32, key: &DataKey) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = MasterKey::wrapping_aad(key_id);
        let sealed = self
            .wrapping_cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: &key.raw,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of 32 bytes cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The data key `key_id`, or `None` when this master key did not wrap it.
    pub fn unwrap(&self, key_id: u32, wrapped: &[u8]) -> Option<DataKey> {
        if wrapped.len() != NONCE_LEN + 32 + GCM_TAG_LEN {
            return None;
        }
        let aad = MasterKey::wrapping_aad(key_id);
        let raw = self
            .wrapping_cipher()
            .decrypt(
                Nonce::from_slice(&wrapped[..NONCE_LEN]),
                Payload {
                    msg: &wrapped[NONCE_LEN..],
                    aad: &aad,
                },
            )
            .ok()?;
        Some(DataKey::from_raw(raw.try_into().ok()?))
    }
}

/// Encrypts `plaintext` of `kind` under data key `key_id`, with its blind-index `tag`.
pub fn seal(
    kind: Kind,
    key_id: u32,
    key: &DataKey,
    tag: [u8; TAG_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    let nonce = NONCES.with(|rng| Aes256Gcm::generate_nonce(&mut *rng.borrow_mut()));
    let mut out = Vec::with_capacity(MIN_LEN + plaintext.len());
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&nonce);
    let sealed = key
        .cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &out[..AAD_LEN],
            },
        )
        .expect("AES-GCM encryption cannot fail for values PostgreSQL can hold");
    out.extend_from_slice(&sealed);
    out
}

/// Authenticates and decrypts an envelope of `expected` kind with its data key (the one its
/// header names).
pub fn open(envelope: &[u8], expected: Kind, key: &DataKey) -> Result<Vec<u8>, EnvelopeError> {
    let header = header(envelope)?;
    if header.kind != expected {
        return Err(EnvelopeError::WrongKind {
            found: header.kind,
            expected,
        });
    }
    key.cipher
        .decrypt(
            Nonce::from_slice(&envelope[NONCE_OFFSET..HEADER_LEN]),
            Payload {
                msg: &envelope[HEADER_LEN..],
                aad: &envelope[..AAD_LEN],
            },
        )
        .map_err(|_| EnvelopeError::Tampered)
}

/// The canonical text of a numeric for its tag: numerically equal values (1.5, 1.50) must have
/// equal tags. The same canonical form as shard-key hashing uses.
pub use crate::hashing::canonical_numeric;

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_file_contents(&[7u8; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_layout() {
        let key = DataKey::generate();
        let tag = master().blind_index_key().tag(Kind::Text, b"+1-555-0100");
        let envelope = seal(Kind::Text, 3, &key, tag, b"+1-555-0100");
        assert_eq!(envelope.len(), MIN_LEN + 11);
        assert_eq!(
            header(&envelope).unwrap(),
            Header {
                kind: Kind::Text,
                key_id: 3,
                tag
            }
        );
        assert_eq!(open(&envelope, Kind::Text, &key).unwrap(), b"+1-555-0100");
        // A fresh nonce per value: the same plaintext never gives the same bytes.
        assert_ne!(seal(Kind::Text, 3, &key, tag, b"+1-555-0100"), envelope);
        // Empty plaintexts are values too.
        let empty = seal(Kind::Bytea, 1, &key, tag, b"");
        assert_eq!(open(&empty, Kind::Bytea, &key).unwrap(), b"");
    }

    #[test]
    fn tampering_is_detected() {
        let key = DataKey::generate();
        let envelope = seal(Kind::Int8, 1, &key, [1; 16], &42i64.to_be_bytes());
        for position in [2, TAG_OFFSET, NONCE_OFFSET, HEADER_LEN, envelope.len() - 1] {
            let mut bad = envelope.clone();
            bad[position] ^= 1;
            assert_eq!(open(&bad, Kind::Int8, &key), Err(EnvelopeError::Tampered));
        }
        // Passing a value off as another type fails before decryption, and relabelling the
        // kind byte fails authentication.
        assert_eq!(
            open(&envelope, Kind::Numeric, &key),
            Err(EnvelopeError::WrongKind {
                found: Kind::Int8,
                expected: Kind::Numeric
            })
        );
        let mut relabelled = envelope.clone();
        relabelled[1] = Kind::TimestampTz as u8;
        assert_eq!(
            open(&relabelled, Kind::TimestampTz, &key),
            Err(EnvelopeError::Tampered)
        );
        assert_eq!(
            open(&envelope[..MIN_LEN - 1], Kind::Int8, &key),
            Err(EnvelopeError::Truncated(MIN_LEN - 1))
        );
        let mut versioned = envelope.clone();
        versioned[0] = 9;
        assert_eq!(header(&versioned), Err(EnvelopeError::UnknownVersion(9)));
        let other = DataKey::generate();
        assert_eq!(
            open(&envelope, Kind::Int8, &other),
            Err(EnvelopeError::Tampered)
        );
    }

    #[test]
    fn tags_are_deterministic_keyed_and_typed() {
        let index = master().blind_index_key();
        assert_eq!(index.tag(Kind::Text, b"ann"), index.tag(Kind::Text, b"ann"));
        assert_ne!(index.tag(Kind::Text, b"ann"), index.tag(Kind::Text, b"bob"));
        assert_ne!(
            index.tag(Kind::Text, b"ann"),
            index.tag(Kind::Bytea, b"ann")
        );
        let other = MasterKey::from_file_contents(&[8u8; 32]).unwrap();
        assert_ne!(
            other.blind_index_key().tag(Kind::Text, b"ann"),
            index.tag(Kind::Text, b"ann")
        );
    }

    /// The blind index is a stable format (shard tables store tags, and indexes on them):
    /// pinned by vectors computed independently (Python's hmac and hashlib, HKDF by hand).
    #[test]
    fn blind_index_test_vectors() {
        let key: Vec<u8> = (0u8..32).collect();
        let index = MasterKey::from_file_contents(&key)
            .unwrap()
            .blind_index_key();
        let hex = |tag: [u8; 16]| tag.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(index.tag(Kind::Text, b"+1-555-0100")),
            "803b41ae408d7b45738fb628861c616a"
        );
        assert_eq!(
            hex(index.tag(Kind::Int8, &42i64.to_be_bytes())),
            "2bcbbf40fda79b2beda19d26de0cbff6"
        );
    }

    #[test]
    fn data_keys_wrap_under_the_master_key_only() {
        let key = DataKey::generate();
        let wrapped = master().wrap(5, &key);
        let unwrapped = master().unwrap(5, &wrapped).expect("same master key");
        let envelope = seal(Kind::Text, 5, &key, [0; 16], b"x");
        assert_eq!(open(&envelope, Kind::Text, &unwrapped).unwrap(), b"x");
        // Another master key, or the wrapped key presented as another id, does not unwrap.
        let other = MasterKey::from_file_contents(&[8u8; 32]).unwrap();
        assert!(other.unwrap(5, &wrapped).is_none());
        assert!(master().unwrap(6, &wrapped).is_none());
        assert!(master().unwrap(5, &wrapped[1..]).is_none());
    }

    #[test]
    fn key_files() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let from_hex = MasterKey::from_file_contents(hex.as_bytes()).unwrap();
        assert_eq!(from_hex.0[1], 0x11);
        assert_eq!(from_hex.0[31], 0xff);
        assert!(MasterKey::from_file_contents(&[1u8; 32]).is_ok());
        assert_eq!(
            MasterKey::from_file_contents(b"short").err(),
            Some(KeyFileError::BadLength(5))
        );
        assert!(check_key_file_mode(0o100600).is_ok());
        assert!(check_key_file_mode(0o100400).is_ok());
        assert_eq!(
            check_key_file_mode(0o100640),
            Err(KeyFileError::TooOpen(0o100640))
        );
        assert!(check_key_file_mode(0o100604).is_err());
    }

    #[test]
    fn numeric_canonical_text() {
        assert_eq!(canonical_numeric("1.50"), "1.5");
        assert_eq!(canonical_numeric("1.00"), "1");
        assert_eq!(canonical_numeric("100"), "100");
        assert_eq!(canonical_numeric("-0.000"), "0");
        assert_eq!(canonical_numeric("0.0"), "0");
        assert_eq!(canonical_numeric("NaN"), "NaN");
        assert_eq!(canonical_numeric("-12.3400"), "-12.34");
    }
}
