//! A small crash-safe checkpoint file in a `file_storage` extension's directory, for
//! receivers that remember how far they got (the `filelog` receiver's file offsets).
//!
//! The whole state is rewritten on each save: written to a temporary file, synced, renamed
//! over the previous one and the directory synced. A crash at any moment leaves either the
//! old checkpoint or the new one, never a torn mix, so a receiver can only replay (at least
//! once), never skip.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{FileStorage, StorageError, escape_component};

/// One component's checkpoint file, held locked for as long as the store lives.
pub struct CheckpointStore {
    directory: PathBuf,
    path: PathBuf,
    temporary: PathBuf,
    _lock: File,
}

impl CheckpointStore {
    /// The directory a component's checkpoints live in: `<directory>/<component>/checkpoints`,
    /// beside (never inside) the exporters' queue directories.
    pub fn directory(storage: &FileStorage, component: &str) -> PathBuf {
        storage
            .config
            .directory
            .join(escape_component(component))
            .join("checkpoints")
    }

    /// Opens (creating, per the extension's `create_directory`) `name` in the component's
    /// checkpoint directory. Blocking. Refused when another process holds it: two collectors
    /// tracking the same files would each move the other's offsets.
    pub fn open(
        storage: &FileStorage,
        component: &str,
        name: &str,
    ) -> Result<CheckpointStore, StorageError> {
        let directory = Self::directory(storage, component);
        if storage.config.create_directory {
            std::fs::create_dir_all(&directory)
                .map_err(|e| io_error("cannot create", &directory, e))?;
        } else if !storage.config.directory.is_dir() {
            return Err(StorageError::MissingDirectory(
                storage.config.directory.clone(),
            ));
        } else {
            std::fs::create_dir_all(&directory)
                .map_err(|e| io_error("cannot create", &directory, e))?;
        }
        let lock_path = directory.join(format!("{name}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("cannot open", &lock_path, e))?;
        if let Err(e) = lock.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => StorageError::Locked(directory.clone()),
                std::fs::TryLockError::Error(e) => io_error("cannot lock", &lock_path, e),
            });
        }
        Ok(CheckpointStore {
            path: directory.join(name),
            temporary: directory.join(format!("{name}.tmp")),
            directory,
            _lock: lock,
        })
    }

    /// Where the checkpoint is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last saved state, or `None` when nothing was ever saved.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StorageError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", &self.path, e)),
        }
    }

    /// Replaces the saved state with `bytes`, durably: once this returns, a crash or power
    /// loss leaves `bytes` (or, should it fail, the previous state) in place.
    pub fn save(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut file = File::create(&self.temporary)
            .map_err(|e| io_error("cannot create", &self.temporary, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("cannot write", &self.temporary, e))?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path)
            .map_err(|e| io_error("cannot replace", &self.path, e))?;
        // The rename itself is durable only once the directory entry is.
        File::open(&self.directory)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("cannot sync", &self.directory, e))
    }
}

fn io_error(what: &str, path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileStorageConfig;

    fn storage(dir: &Path) -> FileStorage {
        FileStorage {
            id: "file_storage".into(),
            config: FileStorageConfig {
                directory: dir.to_path_buf(),
                ..FileStorageConfig::default()
            },
        }
    }

    #[test]
    fn saves_replace_the_state_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path());
        {
            let store = CheckpointStore::open(&storage, "filelog/app", "offsets").unwrap();
            assert_eq!(store.load().unwrap(), None);
            store.save(b"first").unwrap();
            store.save(b"second").unwrap();
            assert!(store.path().starts_with(dir.path().join("filelog%2Fapp")));
        }
        let store = CheckpointStore::open(&storage, "filelog/app", "offsets").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some(&b"second"[..]));
        // No temporary left behind to be mistaken for state.
        let names: Vec<String> = std::fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_second_holder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path());
        let _first = CheckpointStore::open(&storage, "filelog", "offsets").unwrap();
        assert!(matches!(
            CheckpointStore::open(&storage, "filelog", "offsets"),
            Err(StorageError::Locked(_))
        ));
    }
}
