//! PostgreSQL: logical dumps today; physical base backups and WAL archiving join here later.

pub mod conn;
pub mod logical;
pub mod tools;

pub use conn::ConnInfo;
pub use logical::{LogicalDatabase, LogicalMeta};
