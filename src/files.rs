//! Files herald writes that hold alert data or lock state: created readable
//! by herald's user alone (0600, directories 0700), whatever the umask.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Tightens the process umask so that every file herald creates from now on,
/// including the ones libraries create for it (redb's), is private.
pub fn private_umask() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` (and its parents) as 0700 when missing; an existing
/// directory keeps its mode (an operator may have chosen it).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn private(mut o: OpenOptions, path: &Path) -> io::Result<File> {
    let f = o.mode(0o600).open(path)?;
    // An existing file keeps its mode with `mode()`; narrow it as well.
    let mode = f.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(f)
}

/// Opens `path` for appending, created 0600.
pub fn private_append(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    private(o, path)
}

/// Opens `path` for writing without truncating, created 0600.
pub fn private_write(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).truncate(false).write(true);
    private(o, path)
}

/// Replaces `path` with `bytes` at once, 0600: written to a fresh temporary
/// file beside it, synced, then renamed over it. Readers see the old file or
/// the new one, never a mix, whatever crashed or ran at the same time.
/// Blocking: call it off the async workers.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut o = OpenOptions::new();
    o.create_new(true).write(true);
    let written = private(o, &tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_writes_whole_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        replace(&p, b"a much longer first content").unwrap();
        replace(&p, b"short").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"short");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn files_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let old = unsafe { libc::umask(0) };
        let a = dir.path().join("a.jsonl");
        private_append(&a).unwrap();
        let sub = dir.path().join("state/x");
        private_dir(&sub).unwrap();
        // An existing group-readable file is narrowed.
        let b = dir.path().join("b.lock");
        std::fs::write(&b, "").unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_write(&b).unwrap();
        unsafe { libc::umask(old) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a), 0o600);
        assert_eq!(mode(&b), 0o600);
        assert_eq!(mode(&sub), 0o700);
    }
}
