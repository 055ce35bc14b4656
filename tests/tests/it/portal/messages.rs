//! The messages inbox `/portal/messages` over HTTP against the real mesh (issue 20):
//! real gateway, media-svc `ListCallbackTasks` / `SetCallbackTaskDone`, real PostgreSQL. It
//! lists only the tenant's callback tasks, newest first, open by default, done or all on
//! request; each with its reason in words, the caller masked, the note and transcript, a player
//! reading the message's recording and a link to the call. "Mark done" / "Mark not done" round
//! trip through a CSRF-checked POST and a redirect; tenant B cannot mark A's task, a POST
//! without or with a wrong token changes nothing (checked in SQL), signed out is sent to sign
//! in. The dashboard counts the open messages.

use media_svc::recording::RecordingKind;
use mesh::api::tenant::UserRole;
use mesh::domain::CallerNumber;
use reqwest::Method;
use uuid::Uuid;

use super::{Browser, PortalMesh, csrf_of};

/// Tenant A's caller.
const A_CALLER: &str = "+14155550123";
/// Tenant B's caller.
const B_CALLER: &str = "+447700900777";

fn sid(n: u32) -> String {
    format!("CA{:016x}{n:016x}", 0x21u64)
}

/// A callback task of `customer` for call `n` of `caller`, `minutes_ago` old, done or not.
#[derive(Clone, Copy)]
struct Seed<'a> {
    customer: i64,
    n: u32,
    caller: &'a str,
    reason: &'a str,
    minutes_ago: i32,
    done: bool,
    transcript: Option<&'a str>,
    note: &'a str,
    recording: Option<Uuid>,
}

/// A finished inbound call `n` of `caller` to `customer` (no-op when it exists).
async fn call_row(portal: &PortalMesh, customer: i64, n: u32, caller: &str) {
    portal
        .mesh
        .db
        .admin_client()
        .await
        .execute(
            "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, status) \
             VALUES ($1, $2, 'AC' || repeat('0', 32), $3, '+14158675309', 1, 5) \
             ON CONFLICT DO NOTHING",
            &[&customer, &sid(n), &caller],
        )
        .await
        .expect("call");
}

async fn seed(portal: &PortalMesh, s: Seed<'_>) -> Uuid {
    call_row(portal, s.customer, s.n, s.caller).await;
    let admin = portal.mesh.db.admin_client().await;
    let id = Uuid::new_v4();
    admin
        .execute(
            "INSERT INTO media.callback_tasks \
               (customer_id, task_id, call_sid, caller, reason, created_at, done_at, transcript, note, recording_id) \
             VALUES ($1, $2, $3, $4, $5, now() - make_interval(mins => $6), \
                     CASE WHEN $7 THEN now() END, $8, $9, $10)",
            &[
                &s.customer,
                &id,
                &sid(s.n),
                &s.caller,
                &s.reason,
                &s.minutes_ago,
                &s.done,
                &s.transcript,
                &s.note,
                &s.recording,
            ],
        )
        .await
        .expect("task");
    id
}

/// Whether task `id` is marked done, as stored.
async fn done_in_db(portal: &PortalMesh, id: Uuid) -> bool {
    portal
        .mesh
        .db
        .admin_client()
        .await
        .query_one(
            "SELECT done_at IS NOT NULL FROM media.callback_tasks WHERE task_id = $1",
            &[&id],
        )
        .await
        .expect("task row")
        .get(0)
}

/// The inbox's tasks (A's three, B's one), A's first one with a recorded message.
struct Inbox {
    /// A: backend down, 5 minutes ago, open, with a recorded message and its transcript.
    voicemail: Uuid,
    /// A: taken by the agent, 30 minutes ago, open, with a note.
    agent: Uuid,
    /// A: after hours, yesterday, done.
    done: Uuid,
    /// B: busy, open.
    b_task: Uuid,
    /// The recording of A's message.
    recording: Uuid,
}

async fn inbox(portal: &PortalMesh) -> Inbox {
    let (a, b) = portal.tenants;
    let base = Seed {
        customer: a,
        n: 1,
        caller: A_CALLER,
        reason: "backend_down",
        minutes_ago: 5,
        done: false,
        transcript: None,
        note: "",
        recording: None,
    };
    // The call first, then its message recording, then the task naming it.
    call_row(portal, a, 1, A_CALLER).await;
    let recording = portal
        .mesh
        .record(a, &sid(1), 2, RecordingKind::Message)
        .await;
    let voicemail = seed(
        portal,
        Seed {
            transcript: Some("Please call me back about the boat policy renewal."),
            recording: Some(recording),
            ..base
        },
    )
    .await;
    let agent = seed(
        portal,
        Seed {
            n: 2,
            reason: "agent",
            minutes_ago: 30,
            note: "Wants a quote for a second boat.",
            ..base
        },
    )
    .await;
    let done = seed(
        portal,
        Seed {
            n: 3,
            reason: "after_hours",
            minutes_ago: 24 * 60,
            done: true,
            transcript: Some("Calling after hours about my claim."),
            ..base
        },
    )
    .await;
    let b_task = seed(
        portal,
        Seed {
            customer: b,
            n: 4,
            caller: B_CALLER,
            reason: "busy",
            transcript: Some("Tenant B's secret message."),
            ..base
        },
    )
    .await;
    Inbox {
        voicemail,
        agent,
        done,
        b_task,
        recording,
    }
}

#[tokio::test]
async fn the_inbox_lists_the_tenants_messages_filters_them_and_marks_them_done_and_back() {
    let portal = PortalMesh::start().await;
    let (a, _) = portal.tenants;
    let t = inbox(&portal).await;
    let mut owner = portal
        .signed_in_user(a, "owner@inbox.example", UserRole::Owner)
        .await;

    let csrf = check_open_list(&mut owner, &t).await;
    check_filters(&mut owner, &t).await;

    // The dashboard counts the open ones and links to the inbox.
    let home = owner.get("/portal/").await;
    assert!(
        home.body.contains(
            r#"<a href="/portal/messages"><span class="value" id="messages-open">2</span>"#
        ),
        "{}",
        home.body
    );
    assert!(home.body.contains(r#"href="/portal/messages""#));

    // Done and back, each answered with a redirect to the list it came from.
    let path = format!("/portal/messages/{}", t.voicemail);
    let r = owner
        .post(&path, &[("csrf", &csrf), ("done", "1"), ("show", "open")])
        .await;
    assert_eq!(r.status(), 303, "{}", r.body);
    assert_eq!(r.header("location"), "/portal/messages?show=open");
    assert!(done_in_db(&portal, t.voicemail).await);
    let open = owner.get("/portal/messages").await;
    assert!(!open.body.contains(&t.voicemail.to_string()));
    let home = owner.get("/portal/").await;
    assert!(home.body.contains(r#"id="messages-open">1</span>"#));
    let r = owner
        .post(&path, &[("csrf", &csrf), ("done", "0"), ("show", "done")])
        .await;
    assert_eq!(
        (r.status(), r.header("location")),
        (303, "/portal/messages?show=done")
    );
    assert!(!done_in_db(&portal, t.voicemail).await);

    // Staff work through the inbox too.
    let mut staff = portal
        .signed_in_user(a, "desk@inbox.example", UserRole::Staff)
        .await;
    let page = staff.get("/portal/messages").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.body
            .contains(r#"href="/portal/messages" aria-current="page""#)
    );
    let csrf = csrf_of(&page.body);
    let r = staff
        .post(
            &format!("/portal/messages/{}", t.agent),
            &[("csrf", &csrf), ("done", "1"), ("show", "open")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(done_in_db(&portal, t.agent).await);
}

#[tokio::test]
async fn another_tenant_a_missing_or_wrong_csrf_token_and_the_signed_out_change_nothing() {
    let portal = PortalMesh::start().await;
    let (a, b) = portal.tenants;
    let t = inbox(&portal).await;
    let path = format!("/portal/messages/{}", t.voicemail);
    let states = async || {
        let mut out = Vec::new();
        for id in [t.voicemail, t.agent, t.done, t.b_task] {
            out.push(done_in_db(&portal, id).await);
        }
        out
    };
    let before = states().await;
    assert_eq!(before, [false, false, true, false]);

    // Tenant B's owner: A's task by id is the 404 of an unknown one, either way; B's list
    // shows nothing of A's.
    let mut other = portal
        .signed_in_user(b, "owner@inbox-b.example", UserRole::Owner)
        .await;
    let page = other.get("/portal/messages?show=all").await;
    assert!(page.body.contains(&t.b_task.to_string()));
    for id in [t.voicemail, t.agent, t.done] {
        assert!(!page.body.contains(&id.to_string()));
    }
    assert!(!page.body.contains("boat policy"));
    let csrf = csrf_of(&page.body);
    for (id, done) in [(t.voicemail, "1"), (t.done, "0"), (Uuid::new_v4(), "1")] {
        let r = other
            .post(
                &format!("/portal/messages/{id}"),
                &[("csrf", &csrf), ("done", done)],
            )
            .await;
        assert_eq!(r.status(), 404, "{id}");
    }
    let r = other
        .post(
            "/portal/messages/not-a-uuid",
            &[("csrf", &csrf), ("done", "1")],
        )
        .await;
    assert_eq!(r.status(), 404);
    // And B cannot play A's message through its own session.
    let audio = other
        .fetch(
            Method::GET,
            &format!("/portal/calls/{}/recordings/{}", sid(1), t.recording),
            &[],
        )
        .await;
    assert_eq!(audio.status, 404);
    assert_eq!(states().await, before, "B changed nothing of A's");

    // A's owner without the token, with a wrong one, with B's: refused, nothing changed.
    let mut owner: Browser = portal
        .signed_in_user(a, "owner@inbox.example", UserRole::Owner)
        .await;
    let own = owner.csrf("/portal/messages").await;
    for form in [
        vec![("done", "1")],
        vec![("csrf", "wrong"), ("done", "1")],
        vec![("csrf", csrf.as_str()), ("done", "1")],
    ] {
        let r = owner.post(&path, &form).await;
        assert_eq!(r.status(), 403, "{form:?}");
    }
    // A bad value names the field.
    let r = owner.post(&path, &[("csrf", &own), ("done", "yes")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.body.contains("done"));
    assert_eq!(states().await, before, "refused forms changed nothing");

    // Signed out: the inbox sends to sign-in; a POST changes nothing.
    let mut stranger = portal.browser();
    let r = stranger.get("/portal/messages").await;
    assert_eq!(r.status(), 303);
    assert!(
        r.header("location").starts_with("/portal/sign-in"),
        "{}",
        r.header("location")
    );
    let r = stranger.post(&path, &[("csrf", &own), ("done", "1")]).await;
    assert_ne!(r.status() / 100, 2);
    assert_eq!(states().await, before);
}

/// The inbox as first opened: open messages only, newest first; nothing of B's; the number only
/// masked; reasons in words, note, transcript, the player (which serves the message) and the
/// call link. Answers the page's CSRF token.
async fn check_open_list(owner: &mut Browser, t: &Inbox) -> String {
    let page = owner.get("/portal/messages").await;
    assert_eq!(page.status(), 200);
    let body = &page.body;
    let at = |id: Uuid| body.find(&format!("/portal/messages/{id}\""));
    let (voicemail, agent) = (
        at(t.voicemail).expect("A's message"),
        at(t.agent).expect("A's note"),
    );
    assert!(voicemail < agent, "newest first");
    assert_eq!(at(t.done), None, "a done message is not open");
    assert_eq!(at(t.b_task), None);
    assert!(!body.contains("Tenant B's secret") && !body.contains(B_CALLER));
    assert!(!body.contains(A_CALLER), "the number only masked");
    let masked = CallerNumber::parse(A_CALLER).unwrap().masked();
    assert!(body.contains(&masked), "{masked} missing");
    for text in [
        "The agent was unavailable (AI service down)",
        "Taken by the agent",
        "Please call me back about the boat policy renewal.",
        "Wants a quote for a second boat.",
        &format!(
            r#"src="/portal/calls/{}/recordings/{}""#,
            sid(1),
            t.recording
        ),
        &format!(r#"href="/portal/calls/{}""#, sid(2)),
    ] {
        assert!(body.contains(text), "{text} missing:\n{body}");
    }
    assert_eq!(page.matches_count(">Mark done</button>"), 2);
    // The player's address serves the message.
    let audio = owner
        .fetch(
            Method::GET,
            &format!("/portal/calls/{}/recordings/{}", sid(1), t.recording),
            &[],
        )
        .await;
    assert_eq!((audio.status, audio.body.len()), (200, 44 + 2 * 8000 * 4));

    csrf_of(&page.body)
}

/// The filters: done, all; anything else is a 400 naming the field.
async fn check_filters(owner: &mut Browser, t: &Inbox) {
    let done = owner.get("/portal/messages?show=done").await;
    assert!(
        done.body
            .contains(&format!("/portal/messages/{}\"", t.done))
    );
    assert!(
        done.body.contains("After opening hours") && done.body.contains(">Mark not done</button>")
    );
    assert!(!done.body.contains(&t.voicemail.to_string()));
    let all = owner.get("/portal/messages?show=all").await;
    for id in [t.voicemail, t.agent, t.done] {
        assert!(all.body.contains(&id.to_string()));
    }
    assert!(!all.body.contains(&t.b_task.to_string()));
    let bad = owner.get("/portal/messages?show=everything").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.body.contains("show"));
}

#[tokio::test]
async fn many_messages_come_twenty_a_page_newest_first_and_the_open_ones_are_counted() {
    let portal = PortalMesh::start().await;
    let (a, b) = portal.tenants;
    // 23 open and 2 done for A, one minute apart; 4 open for B.
    let admin = portal.mesh.db.admin_client().await;
    for (customer, from, to, done_from) in [(a, 100, 124, 123), (b, 200, 203, 999)] {
        admin
            .execute(
                "WITH c AS ( \
                   INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, status) \
                   SELECT $1, 'CA' || lpad(to_hex(n), 32, '0'), 'AC' || repeat('0', 32), $4, '+14158675309', 1, 5 \
                   FROM generate_series($2::int, $3::int) n RETURNING call_sid) \
                 INSERT INTO media.callback_tasks (customer_id, task_id, call_sid, caller, reason, created_at, done_at) \
                 SELECT $1, gen_random_uuid(), call_sid, $4, 'busy', \
                        now() - make_interval(mins => ('x' || right(call_sid, 8))::bit(32)::int), \
                        CASE WHEN ('x' || right(call_sid, 8))::bit(32)::int >= $5 THEN now() END \
                 FROM c",
                &[&customer, &from, &to, &A_CALLER, &done_from],
            )
            .await
            .expect("tasks");
    }
    let mut owner = portal
        .signed_in_user(a, "owner@many.example", UserRole::Owner)
        .await;
    let home = owner.get("/portal/").await;
    assert!(home.body.contains(r#"id="messages-open">23</span>"#));

    let first = owner.get("/portal/messages").await;
    assert!(first.body.contains("23 messages are open."));
    assert_eq!(first.matches_count(">Mark done</button>"), 20);
    let next = first
        .body
        .split(r#"<a href=""#)
        .find_map(|rest| {
            let (href, tail) = rest.split_once('"')?;
            tail.starts_with(r#" rel="next""#)
                .then(|| href.replace("&#38;", "&").replace("&amp;", "&"))
        })
        .expect("an Older messages link");
    assert!(
        next.starts_with("/portal/messages?show=open&page="),
        "{next}"
    );
    let second = owner.get(&next).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.matches_count(">Mark done</button>"), 3);
    assert!(!second.body.contains(r#"rel="next""#));
    // Together: A's 23 open calls, each once, newest (smallest n) first.
    let sids = |body: &str| -> Vec<String> {
        body.split(r#"href="/portal/calls/"#)
            .skip(1)
            .map(|rest| rest[..34].to_owned())
            .collect()
    };
    let mut all = sids(&first.body);
    all.extend(sids(&second.body));
    let expected: Vec<String> = (100..123).map(|n| format!("CA{n:032x}")).collect();
    assert_eq!(all, expected);

    let done = owner.get("/portal/messages?show=done").await;
    assert_eq!(done.matches_count(">Mark not done</button>"), 2);
    assert!(done.body.contains("23 messages are open."));
}
