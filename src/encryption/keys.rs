//! Keys of column encryption: the master key from `pgshard.key_file`, and the data keys of
//! `pgshard.keys`, wrapped by it. Both are cached per backend; the data keys are reloaded when
//! the table changes (a relcache invalidation that rotate_key and retire_key send).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use pgrx::prelude::*;
use pgshard_core::envelope::{self, BlindIndexKey, DataKey, EnvelopeError, Kind, MasterKey};

use crate::error::{spi_failed, PgShardError};
use crate::guc;
use crate::metadata::AsSuperuser;

enum KeyState {
    Usable(DataKey),
    Retired,
    /// The wrapped key does not open with this master key.
    ForeignMaster,
}

struct DataKeys {
    current: Option<u32>,
    keys: HashMap<u32, KeyState>,
}

pub struct Keyring {
    path: String,
    /// The key file as it was read (device, inode, size, mtime): a changed file is read again.
    file_identity: (u64, u64, u64, i64),
    /// The local transaction in which the file was last checked.
    checked_in: u32,
    master: MasterKey,
    index: BlindIndexKey,
    data: Option<DataKeys>,
}

thread_local! {
    static KEYRING: RefCell<Option<Keyring>> = const { RefCell::new(None) };
    /// The oid of pgshard.keys, whose invalidation drops the cached data keys.
    static KEYS_TABLE: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// pgshard.keys changed: reload the data keys before the next use.
    static DATA_KEYS_STALE: Cell<bool> = const { Cell::new(false) };
}

/// Arbitrary advisory lock key that serialises the creation of data keys.
const KEY_CREATION_LOCK: i64 = 0x7067_7368_6172_646b;

/// Registers the relcache callback that drops cached data keys; called from `_PG_init`.
pub fn register() {
    crate::metadata::register_relcache_callback(on_relcache_invalidation);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let keys_table = KEYS_TABLE.with(Cell::get);
    if relid == pg_sys::InvalidOid || relid == keys_table {
        // The keyring may be in use right now (this runs inside SPI calls): only flag it.
        DATA_KEYS_STALE.with(|stale| stale.set(true));
    }
}

fn key_error(code: PgSqlErrorCode, message: String) -> PgShardError {
    PgShardError::new(code, message).hint(
        "Set pgshard.key_file (postgresql.conf, superusers only) to a file owned by the server's \
         user, mode 0600, holding the 32-byte master key or 64 hexadecimal digits.",
    )
}

/// The master key of the file at `path`, or an error that says what is wrong with the file
/// (never its contents).
fn read_master_key(path: &str) -> MasterKey {
    let unreadable = |e: std::io::Error| -> ! {
        key_error(
            PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
            format!("could not read the master key file \"{path}\" (pgshard.key_file): {e}"),
        )
        .raise()
    };
    let metadata = std::fs::metadata(path).unwrap_or_else(|e| unreadable(e));
    envelope::check_key_file_mode(metadata.permissions().mode()).unwrap_or_else(|e| {
        key_error(
            PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
            format!("refusing the master key file \"{path}\" (pgshard.key_file): {e}"),
        )
        .raise()
    });
    let contents = std::fs::read(path).unwrap_or_else(|e| unreadable(e));
    MasterKey::from_file_contents(&contents).unwrap_or_else(|e| {
        key_error(
            PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
            format!("invalid master key file \"{path}\" (pgshard.key_file): {e}"),
        )
        .raise()
    })
}

/// Runs `f` with the keyring, loading the master key when needed (or when the setting changed).
pub fn with_keyring<R>(f: impl FnOnce(&mut Keyring) -> R) -> R {
    // SAFETY: MyProc is this backend's own PGPROC, set for the life of a regular backend.
    let transaction = unsafe { (*pg_sys::MyProc).lxid };
    // What every value after a transaction's first finds: nothing to check or load. This runs
    // for every value encrypted or decrypted, so it copies nothing.
    let ready = !DATA_KEYS_STALE.with(|stale| stale.get())
        && KEYRING.with(|ring| {
            ring.borrow().as_ref().is_some_and(|ring| {
                ring.checked_in == transaction
                    && ring.data.is_some()
                    && guc::key_file_is(&ring.path)
            })
        });
    if !ready {
        load_keyring(transaction);
    }
    KEYRING.with(|ring| f(ring.borrow_mut().as_mut().expect("loaded")))
}

/// Loads what the keyring lacks for `transaction`: the master key (again, if the setting or
/// the file changed; the file is looked at once per transaction) and the data keys.
fn load_keyring(transaction: pg_sys::LocalTransactionId) {
    let path = guc::key_file().unwrap_or_else(|| {
        key_error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "encrypted columns need a master key, and pgshard.key_file is not set".into(),
        )
        .raise()
    });
    // The file is checked once per transaction (one stat), not for every value.
    let checked = KEYRING.with(|ring| {
        ring.borrow()
            .as_ref()
            .is_some_and(|ring| ring.path == path && ring.checked_in == transaction)
    });
    if !checked {
        let identity = key_file_identity(&path);
        let unchanged = KEYRING.with(|ring| {
            let mut ring = ring.borrow_mut();
            match ring.as_mut() {
                Some(ring) if ring.path == path && ring.file_identity == identity => {
                    ring.checked_in = transaction;
                    true
                }
                _ => false,
            }
        });
        if !unchanged {
            let master = read_master_key(&path);
            let index = master.blind_index_key();
            KEYRING.with(|ring| {
                *ring.borrow_mut() = Some(Keyring {
                    path,
                    file_identity: identity,
                    checked_in: transaction,
                    master,
                    index,
                    data: None,
                })
            });
        }
    }
    // Loading data keys runs SPI, which must not happen while the keyring is borrowed.
    let stale = DATA_KEYS_STALE.with(|stale| stale.replace(false));
    let loaded =
        !stale && KEYRING.with(|ring| ring.borrow().as_ref().is_some_and(|r| r.data.is_some()));
    if !loaded {
        let data = KEYRING.with(|ring| {
            let ring = ring.borrow();
            load_data_keys(&ring.as_ref().expect("just loaded").master)
        });
        KEYRING.with(|ring| ring.borrow_mut().as_mut().expect("loaded").data = Some(data));
    }
}

fn key_file_identity(path: &str) -> (u64, u64, u64, i64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or((0, 0, 0, 0), |m| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime_nsec() + m.mtime() * 1_000_000_000,
        )
    })
}

fn keys_table_oid() -> pg_sys::Oid {
    // SAFETY: name lookups; InvalidOid when the schema or table is missing.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"pgshard".as_ptr(), true);
        pg_sys::get_relname_relid(c"keys".as_ptr(), schema)
    }
}

fn load_data_keys(master: &MasterKey) -> DataKeys {
    KEYS_TABLE.with(|t| t.set(keys_table_oid()));
    let _superuser = AsSuperuser::enter();
    let rows: Vec<(i32, String, Option<Vec<u8>>)> = Spi::connect(|client| {
        client
            .select("SELECT key_id, state, wrapped FROM pgshard.keys", None, &[])?
            .into_iter()
            .map(|row| {
                Ok((
                    row.get::<i32>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<Vec<u8>>(3)?,
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .unwrap_or_else(|e| spi_failed("could not read pgshard.keys", e));
    let mut data = DataKeys {
        current: None,
        keys: HashMap::new(),
    };
    for (id, state, wrapped) in rows {
        let id = id as u32;
        if state == "current" {
            data.current = Some(id);
        }
        let key = match wrapped {
            None => KeyState::Retired,
            Some(wrapped) => master
                .unwrap(id, &wrapped)
                .map_or(KeyState::ForeignMaster, KeyState::Usable),
        };
        data.keys.insert(id, key);
    }
    data
}

/// The error for a value of `kind` that cannot be decrypted or read.
pub fn value_error(kind: Option<Kind>, cause: &EnvelopeError) -> PgShardError {
    let type_name = kind.map_or("an encrypted type", Kind::type_name);
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!("cannot decrypt a value of type pgshard.{type_name}: {cause}"),
    )
    .hint(
        "The stored value was changed or truncated outside pgshard (on a worker, or in a \
         restored dump), or it was written by a database with other keys.",
    )
}

impl Keyring {
    fn data(&mut self) -> &mut DataKeys {
        self.data
            .as_mut()
            .expect("with_keyring loads the data keys")
    }

    pub fn tag(&self, kind: Kind, canonical: &[u8]) -> [u8; envelope::TAG_LEN] {
        self.index.tag(kind, canonical)
    }

    /// The data key `key_id`, for a value of `kind`.
    pub fn key(&mut self, key_id: u32, kind: Kind) -> &DataKey {
        let path = self.path.clone();
        match self.data().keys.get(&key_id) {
            Some(KeyState::Usable(key)) => key,
            Some(KeyState::Retired) => PgShardError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "cannot decrypt a value of type pgshard.{}: its data key {key_id} is retired",
                    kind.type_name()
                ),
            )
            .hint("A key is retired only when no value uses it: the value was restored from an older backup.")
            .raise(),
            Some(KeyState::ForeignMaster) => PgShardError::new(
                PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
                format!(
                    "cannot decrypt a value of type pgshard.{}: the master key in \"{path}\" \
                     does not unwrap data key {key_id}",
                    kind.type_name()
                ),
            )
            .hint("pgshard.key_file must name the master key the data keys were created under.")
            .raise(),
            None => PgShardError::new(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!(
                    "cannot decrypt a value of type pgshard.{}: data key {key_id} does not exist",
                    kind.type_name()
                ),
            )
            .hint("The value was written by a database with other keys; restore its pgshard.keys.")
            .raise(),
        }
    }

    /// The current data key, creating the first one when there is none.
    pub fn current(&mut self, kind: Kind) -> (u32, &DataKey) {
        if self.data().current.is_none() {
            add_data_key(&self.master, KeyCreation::FirstOnly);
            self.data = Some(load_data_keys(&self.master));
            DATA_KEYS_STALE.with(|stale| stale.set(false));
        }
        let id = self.data().current.unwrap_or_else(|| {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                "another session created the first data key at the same time",
            )
            .hint("Retry the statement.")
            .raise()
        });
        (id, self.key(id, kind))
    }
}

#[derive(PartialEq, Eq)]
enum KeyCreation {
    /// Create a key only if there is no current one (first use).
    FirstOnly,
    /// Make a new key current (rotation).
    Rotate,
}

/// Adds a new current data key (the previous current one stays usable); returns its id.
fn add_data_key(master: &MasterKey, creation: KeyCreation) -> Option<u32> {
    let _superuser = AsSuperuser::enter();
    let id = Spi::connect_mut(|client| {
        client.update(
            "SELECT pg_advisory_xact_lock($1)",
            None,
            &[KEY_CREATION_LOCK.into()],
        )?;
        if creation == KeyCreation::FirstOnly {
            let exists = client
                .update(
                    "SELECT 1 FROM pgshard.keys WHERE state = 'current'",
                    None,
                    &[],
                )?
                .len()
                > 0;
            if exists {
                return Ok(None);
            }
        }
        let next: i32 = client
            .update(
                "SELECT coalesce(max(key_id), 0) + 1 FROM pgshard.keys",
                None,
                &[],
            )?
            .first()
            .get_one::<i32>()?
            .expect("max() + 1 is never NULL after coalesce");
        let wrapped = master.wrap(next as u32, &DataKey::generate());
        client.update(
            "UPDATE pgshard.keys SET state = 'active' WHERE state = 'current'",
            None,
            &[],
        )?;
        client.update(
            "INSERT INTO pgshard.keys (key_id, state, wrapped) VALUES ($1, 'current', $2)",
            None,
            &[next.into(), wrapped.into()],
        )?;
        Ok(Some(next as u32))
    })
    .unwrap_or_else(|e: pgrx::spi::SpiError| spi_failed("could not create a data key", e));
    invalidate_keys();
    id
}

/// Tells every backend, this one included, that pgshard.keys changed.
fn invalidate_keys() {
    let oid = keys_table_oid();
    if oid != pg_sys::InvalidOid {
        // SAFETY: queues an invalidation of an existing relation, delivered at commit.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
    }
    DATA_KEYS_STALE.with(|stale| stale.set(true));
}

fn require_key_admin(action: &str) {
    // SAFETY: superuser() only reads the current user's catalog entry.
    if !unsafe { pg_sys::superuser() } {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {action}"),
        )
        .hint("Only superusers can manage pgshard's encryption keys.")
        .raise()
    }
}

/// Makes a new data key current: new values are encrypted under it, older values stay
/// readable under their own key until `pgshard.reencrypt` rewrites them.
#[pg_extern(volatile)]
fn rotate_key() -> i32 {
    require_key_admin("rotate data keys");
    let id = with_keyring(|ring| add_data_key(&ring.master, KeyCreation::Rotate));
    id.expect("rotation always creates a key") as i32
}

/// Retires a data key that no value uses any more: its material is erased.
#[pg_extern(volatile)]
fn retire_key(key_id: i32) {
    require_key_admin("retire data keys");
    let state = {
        let _superuser = AsSuperuser::enter();
        Spi::get_one_with_args::<String>(
            "SELECT state FROM pgshard.keys WHERE key_id = $1 FOR UPDATE",
            &[key_id.into()],
        )
    };
    match state {
        Ok(Some(state)) if state == "current" => PgShardError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("cannot retire data key {key_id}: it is the current key"),
        )
        .hint("Rotate first (SELECT pgshard.rotate_key()), re-encrypt, then retire it.")
        .raise(),
        Ok(Some(state)) if state == "retired" => return,
        Ok(Some(_)) => {}
        Ok(None) | Err(pgrx::spi::SpiError::InvalidPosition) => PgShardError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("data key {key_id} does not exist"),
        )
        .hint("See pgshard.data_keys.")
        .raise(),
        Err(e) => spi_failed("could not read pgshard.keys", e),
    }
    let used: Vec<(String, i64)> = super::usage::usage_of_key(key_id);
    if !used.is_empty() {
        let list: Vec<String> = used.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("cannot retire data key {key_id}: values still use it"),
        )
        .detail(format!("Values under the key: {}.", list.join(", ")))
        .hint("Run CALL pgshard.reencrypt('table') for each table, then retire the key.")
        .raise()
    }
    let _superuser = AsSuperuser::enter();
    Spi::run_with_args(
        "UPDATE pgshard.keys SET state = 'retired', wrapped = NULL, retired_at = now() \
         WHERE key_id = $1",
        &[key_id.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not retire the key", e));
    invalidate_keys();
}

/// The id of the current data key (creating the first one when there is none).
#[pg_extern(volatile)]
fn current_key_id() -> i32 {
    with_keyring(|ring| ring.current(Kind::Text).0 as i32)
}
