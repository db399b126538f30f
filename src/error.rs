//! PostgreSQL errors with a proper SQLSTATE, detail and hint, raised from Rust.
//!
//! pgrx's `error!` reports SQLSTATE XX000/22000; every user-facing error of pgshard goes through
//! here instead so that clients can tell its errors apart.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

pub struct PgShardError {
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

impl PgShardError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        PgShardError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Raises the error: the current statement and transaction are aborted.
    pub fn raise(self) -> ! {
        self.into_report().report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }

    /// Reports it as a WARNING; the statement goes on.
    pub fn warn(self) {
        self.into_report().report(PgLogLevel::WARNING);
    }

    fn into_report(self) -> ErrorReport {
        let mut report = ErrorReport::new(self.code, self.message, "pgshard");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report
    }
}

/// Raises "permission denied" unless the current user is a superuser.
pub fn require_superuser(action: &str) {
    // SAFETY: superuser() only reads the current user's catalog entry.
    if !unsafe { pg_sys::superuser() } {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {action}"),
        )
        .hint("Only superusers can manage pgshard's workers, shards and keys.")
        .raise()
    }
}

/// Raises an internal error for a failed catalog query; these indicate a bug, not bad input.
pub fn spi_failed(context: &str, err: pgrx::spi::SpiError) -> ! {
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("{context}: {err}"),
    )
    .raise()
}
