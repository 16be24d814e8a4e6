//! The migrations, embedded in the binary. `sqlx::migrate!` would do this at compile time but
//! needs sqlx's `macros` feature, which compiles sqlx-core and both drivers a second time for
//! the host; the list below is checked against the `migrations/` folders by a test instead.
//! Version, checksum (SHA-384 of the SQL) and `-- no-transaction` are read exactly as
//! sqlx's own file source reads them, so databases migrated by either agree.
use std::borrow::Cow;
use std::sync::LazyLock;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

macro_rules! embedded {
    ($dir:literal: $($file:literal),+ $(,)?) => {
        &[$(($file, include_str!(concat!("../../migrations/", $dir, "/", $file)))),+]
    };
}

/// `(file name, SQL)` of each backend, in version order.
pub(super) const SQLITE: &[(&str, &str)] = embedded!("sqlite":
    "20261101000000_init.sql",
    "20261201000000_dossier.sql",
    "20261202000000_senders.sql",
    "20261203000000_outbox_created.sql",
);
pub(super) const POSTGRES: &[(&str, &str)] = embedded!("postgres":
    "20261101000000_init.sql",
    "20261201000000_dossier.sql",
    "20261202000000_senders.sql",
    "20261203000000_outbox_created.sql",
);

pub(super) static SQLITE_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| migrator(SQLITE));
pub(super) static POSTGRES_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| migrator(POSTGRES));

fn migrator(files: &'static [(&'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(files.iter().map(|&(file, sql)| migration(file, sql)).collect())
}

/// `VERSION_description.sql` → the migration sqlx's folder source would make of it.
fn migration(file: &'static str, sql: &'static str) -> Migration {
    let stem = file.strip_suffix(".sql").expect("migration files end in .sql");
    let (version, description) = stem.split_once('_').expect("migration file names are VERSION_description.sql");
    let version: i64 = version.parse().expect("migration version is a number");
    let no_tx = sql.starts_with("-- no-transaction");
    Migration::new(version, Cow::Owned(description.replace('_', " ")), MigrationType::Simple, sql.into_sql_str(), no_tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.sql` file of a folder is in its list, in order: a migration added to the folder
    /// but not here would silently never run.
    #[test]
    fn the_lists_are_the_folders() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&folder)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            let listed: Vec<&str> = list.iter().map(|(f, _)| *f).collect();
            assert_eq!(files, listed, "migrations/{dir} and store::migrations disagree");
        }
        let dossier = migration(SQLITE[1].0, SQLITE[1].1);
        assert!(dossier.no_tx && dossier.version == 20261201000000 && dossier.description == "dossier");
        assert!(!migration(POSTGRES[1].0, POSTGRES[1].1).no_tx);
    }
}
