//! Making reads cold: the operating system's page cache is told to drop a
//! store's files (`posix_fadvise(DONTNEED)`), so the next read goes to disk,
//! without dropping the whole machine's caches.

use std::path::{Path, PathBuf};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use sqlx::Connection as _;

/// Drops a file's pages from the page cache (written back first); a missing file is fine.
pub fn evict(path: &Path) -> anyhow::Result<()> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    file.sync_all()?;
    posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)?;
    Ok(())
}

/// A SQLite database and its write-ahead log.
pub fn sqlite_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .collect()
}

/// The files of every relation of the database `url` names (segments
/// `<file>`, `<file>.1`, …), after a `CHECKPOINT` so they are clean. Empty
/// when the server's data directory cannot be read from here.
pub async fn postgres_files(url: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut db = sqlx::PgConnection::connect(url).await?;
    sqlx::query("CHECKPOINT").execute(&mut db).await?;
    let (data_dir,): (String,) = sqlx::query_as("SELECT current_setting('data_directory')")
        .fetch_one(&mut db)
        .await?;
    let relations: Vec<(String,)> = sqlx::query_as(
        "SELECT pg_relation_filepath(c.oid) FROM pg_class c \
         WHERE c.relkind IN ('r', 'i', 't') AND pg_relation_filepath(c.oid) IS NOT NULL",
    )
    .fetch_all(&mut db)
    .await?;
    db.close().await?;
    let mut files = Vec::new();
    for (relative,) in relations {
        let base = Path::new(&data_dir).join(relative);
        files.push(base.clone());
        for segment in 1..1024 {
            let next = PathBuf::from(format!("{}.{segment}", base.display()));
            if !next.exists() {
                break;
            }
            files.push(next);
        }
    }
    files.retain(|f| f.exists());
    Ok(files)
}
