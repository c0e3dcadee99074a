//! The Windows account's password: from a file only its owner can read, or
//! typed twice on the terminal with echo off. Never from the command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Secret, UnattendError, check_password};

/// The most a password file is read (the password is its first line).
const MAX_FILE: u64 = 4096;

/// The password in the first line of `path` (its line end removed). Refused
/// when the line is empty, or when the file's group or others may read or
/// write it (`chmod 600` it).
pub fn read_password_file(path: &Path) -> Result<Secret, UnattendError> {
    let io = |source| UnattendError::PasswordFile {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(UnattendError::PasswordFileMode {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut bytes).map_err(io)?;
    let secret = first_line(&bytes);
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&bytes);
    let secret = secret.map_err(io)?;
    if secret.is_empty() {
        return Err(UnattendError::PasswordFileEmpty(path.to_path_buf()));
    }
    check_password(&secret)?;
    Ok(secret)
}

/// The first line of a password file or of what was typed, without its
/// `\n` or `\r\n`.
fn first_line(bytes: &[u8]) -> Result<Secret, std::io::Error> {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(s) => Ok(Secret::new(s)),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the password is not UTF-8",
        )),
    }
}

/// Puts the terminal's echo back however the prompt ends.
struct EchoOff<'a> {
    tty: &'a std::fs::File,
    saved: rustix::termios::Termios,
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            self.tty,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Ask for the password on the terminal (`/dev/tty`), echo off, twice; the
/// two must match. Without a terminal: an error that says to give
/// `--password-file`.
pub fn prompt_password() -> Result<Secret, UnattendError> {
    use rustix::termios::{LocalModes, OptionalActions, isatty, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| UnattendError::NoTty)?;
    if !isatty(&tty) {
        return Err(UnattendError::NoTty);
    }
    let saved = tcgetattr(&tty).map_err(|e| UnattendError::Tty(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&tty, OptionalActions::Now, &quiet).map_err(|e| UnattendError::Tty(e.into()))?;
    let guard = EchoOff { tty: &tty, saved };
    let ask = |prompt: &str| -> Result<Secret, UnattendError> {
        (&tty)
            .write_all(prompt.as_bytes())
            .and_then(|()| (&tty).flush())
            .map_err(UnattendError::Tty)?;
        let mut line = Vec::new();
        let n = BufReader::new(&tty)
            .take(MAX_FILE)
            .read_until(b'\n', &mut line)
            .map_err(UnattendError::Tty)?;
        let s = first_line(&line).map_err(UnattendError::Tty);
        line.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&line);
        if n == 0 {
            return Err(UnattendError::EmptyPassword);
        }
        s
    };
    let first = ask("Password for the Windows account: ")?;
    check_password(&first)?;
    let again = ask("The same password again: ")?;
    drop(guard);
    if first != again {
        return Err(UnattendError::PasswordMismatch);
    }
    Ok(first)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, text: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join("pw");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn first_line_without_its_end() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), b"s3cret pass\nsecond line\n", 0o600);
        assert_eq!(read_password_file(&p).unwrap().expose(), "s3cret pass");
        let p = file(d.path(), b"crlf\r\n", 0o400);
        assert_eq!(read_password_file(&p).unwrap().expose(), "crlf");
        let p = file(d.path(), b"no newline", 0o600);
        assert_eq!(read_password_file(&p).unwrap().expose(), "no newline");
    }

    #[test]
    fn refuses_empty_and_readable_by_others() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), b"\nsecond\n", 0o600);
        let e = read_password_file(&p).unwrap_err().to_string();
        assert!(e.contains("first line is empty"), "{e}");
        let p = file(d.path(), b"", 0o600);
        assert!(matches!(
            read_password_file(&p),
            Err(UnattendError::PasswordFileEmpty(_))
        ));
        for mode in [0o644, 0o640, 0o604, 0o620] {
            let p = file(d.path(), b"secret\n", mode);
            let e = read_password_file(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(e.contains("warning"), "{e}");
            assert!(!e.contains("secret\n") && !e.contains(": secret"), "{e}");
        }
        let e = read_password_file(&d.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent"), "{e}");
    }

    #[test]
    fn refuses_control_characters() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), b"a\x07b\n", 0o600);
        assert!(matches!(
            read_password_file(&p),
            Err(UnattendError::PasswordControl)
        ));
    }

    /// Run in a new session (`setsid`), which has no controlling terminal:
    /// the prompt must refuse and name `--password-file`.
    #[test]
    fn prompt_without_terminal_says_password_file() {
        const CHILD: &str = "EXLIAR_TEST_NO_TTY_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let e = prompt_password().unwrap_err();
            assert!(matches!(e, UnattendError::NoTty), "{e}");
            assert!(e.to_string().contains("give --password-file"), "{e}");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("setsid")
            .arg("-w")
            .arg(exe)
            .args([
                "--exact",
                "vm::unattend::password::tests::prompt_without_terminal_says_password_file",
            ])
            .env(CHILD, "1")
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) => assert!(
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1 passed"),
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => println!("SKIPPED: setsid could not be run: {e}"),
        }
    }
}
