//! A real S3-compatible server for the recording tests: `moto_server` (PyPI `moto[server]`,
//! installed by scripts/test.sh) on a free loopback port, with a bucket, stopped on drop. Tests
//! skip when it is missing, except under CI=true, where they fail.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

/// Whether `moto_server` is on the PATH; under CI=true its absence fails the test.
pub fn available() -> bool {
    let found = std::process::Command::new("moto_server")
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "moto_server is missing (scripts/test.sh installs `moto[server]` with pip)"
        );
        eprintln!("skipping: moto_server is not installed");
    }
    found
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts moto on `port` and creates `bucket`.
    pub async fn start(port: u16, bucket: &str) -> Moto {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/{bucket}");
        for _ in 0..200 {
            // moto accepts unsigned requests: a PUT on the bucket creates it.
            if let Ok(r) = http.put(&url).send().await
                && r.status().is_success()
            {
                return Moto { addr, child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not come up on {addr}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server (its buckets and objects are gone with it).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}
