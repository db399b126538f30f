//! The catalog: metadata tables in schema `pgshard` (SQL in `sql/catalog.sql`).

use pgrx::prelude::*;

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
