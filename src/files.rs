//! Writing files that must never be seen half-written or readable by others: private keys,
//! certificates, manifests and secrets; and the lock processes sharing a directory take turns with.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `path` (failing if it exists) with `mode` from its first byte, and syncs it.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Replaces `path` atomically: a reader sees the old contents or the new, never a mix.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_new(tmp, contents, mode)?;
    fs::rename(tmp, path)
}

/// Opens `path` (created owner-only) and holds an exclusive lock on it until the returned file is
/// dropped: processes sharing a directory take turns changing it.
pub fn lock_exclusive(path: &Path) -> std::io::Result<fs::File> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(path)?;
    file.lock()?;
    Ok(file)
}

/// Creates `dir` and its parents; directories this creates are owner-only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaced_file_has_new_contents_and_requested_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_new(&path, b"old", 0o600).unwrap();
        assert!(write_new(&path, b"again", 0o600).is_err(), "write_new must not overwrite");
        replace(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
