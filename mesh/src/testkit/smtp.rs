//! A real SMTP server for tests: Python's aiosmtpd writing what it receives into a maildir
//! (`scripts/test.sh` installs it). Shared by the portal's reset-mail tests and the owners'
//! mail tests of tenant-svc and media-svc.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// aiosmtpd listening on a loopback port until dropped.
pub struct SmtpServer {
    child: tokio::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    maildir: tempfile::TempDir,
}

/// A free port on 127.0.0.1 (for a server started later on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Whether aiosmtpd can run here. Under CI (`CI=true`) its absence fails the test instead of
/// skipping it.
pub fn available() -> bool {
    let installed = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "aiosmtpd is missing"
        );
        eprintln!("skipped: python3 -m pip install aiosmtpd");
    }
    installed
}

impl SmtpServer {
    /// A server on a free port; `None` (the test skips) when aiosmtpd is missing, except under
    /// CI.
    pub async fn start() -> Option<SmtpServer> {
        Self::start_on(free_port()).await
    }

    /// A server on `port` (one a test kept free, to start the server late).
    pub async fn start_on(port: u16) -> Option<SmtpServer> {
        if !available() {
            return None;
        }
        let maildir = tempfile::tempdir().expect("maildir");
        let child = tokio::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            // A folder that does not exist yet: Python's Maildir makes it with cur/new/tmp.
            .arg(maildir.path().join("mail"))
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(SmtpServer {
            child,
            port,
            maildir,
        })
    }

    /// The `smtp://` URL of this server.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages received so far (raw).
    pub fn messages(&self) -> Vec<String> {
        read_mails(self.maildir.path().join("mail").join("new"))
    }

    /// Waits (up to 10 s) for the `n`th message; returns all received.
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(Instant::now() < deadline, "no mail arrived");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Every file of `dir` as text (an outbox folder's `.eml` files, a maildir's `new`); empty when
/// the folder does not exist yet.
pub fn read_mails(dir: impl Into<PathBuf>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.into()) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect()
}
