//! The call page's player in headless Chromium (issue 20): a simulated call, recorded
//! through media-svc's real writer, is played from the portal's recording endpoint (the media
//! element's own range requests, with the session cookie): the duration is known from the WAV
//! header and matches the recording, `play()` makes `currentTime` advance, and a transcript
//! turn's "Play from" link seeks the player in place; axe-core finds no serious violation on the
//! page with its player. Tenant B's browser gets a 404 for it.

use serde_json::Value;

use crate::kit::suite;
use mesh::api::tenant::UserRole;

/// Seconds recorded.
const SECONDS: u32 = 4;

/// The player's `duration` once its metadata loaded (-1 on a media error).
const DURATION: &str = r"
const a = document.getElementById('recording');
return new Promise((resolve) => {
  const done = () => resolve(a.error ? -1 : a.duration);
  if (a.readyState >= 1 || a.error) { done(); return; }
  a.addEventListener('loadedmetadata', done, { once: true });
  a.addEventListener('error', done, { once: true });
  setTimeout(() => resolve(-2), 15000);
});";

/// `play()`; answers "playing" or the refusal.
const PLAY: &str = r"
const a = document.getElementById('recording');
return a.play().then(() => 'playing', (e) => String(e));";

/// The player's state: [currentTime, paused].
const STATE: &str = r"
const a = document.getElementById('recording');
return [a.currentTime, a.paused];";

async fn state(b: &e2e::browser::Browser) -> (f64, bool) {
    let v = b.execute(STATE, vec![]).await.expect("state");
    (
        v[0].as_f64().expect("currentTime"),
        v[1].as_bool().expect("paused"),
    )
}

#[test]
fn the_recording_plays_in_chromium_with_its_duration_known_and_seeks_from_a_turn() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Player Dental").await;
        ctx.user(&tenant, "owner", UserRole::Owner).await;
        let call_sid = ctx.call(&tenant, "+15550199201").await;
        ctx.mesh.record_call(tenant.id, &call_sid, SECONDS).await;
        let page = format!("/portal/calls/{call_sid}");
        b.goto(&ctx.url(&page)).await.expect("open the call");
        b.assert_accessible(&page).await;

        let duration = b.execute(DURATION, vec![]).await.expect("duration");
        let duration = duration.as_f64().expect("a number");
        assert!(
            (duration - f64::from(SECONDS)).abs() < 0.05,
            "the player's duration is {duration}, the recording {SECONDS} s"
        );

        let played = b.execute(PLAY, vec![]).await.expect("play");
        assert_eq!(played, Value::from("playing"), "play() was refused");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let (at, paused) = state(b).await;
        assert!(
            at > 0.5 && !paused,
            "playback did not advance: currentTime {at}, paused {paused}"
        );

        // A turn's "Play from" link seeks the page's player (the page stays).
        let links = b.find_all("a.seek[data-seek]").await.expect("links");
        assert!(!links.is_empty(), "no 'Play from' link on the turns");
        let pause = "document.getElementById('recording').pause(); return true;";
        b.execute(pause, vec![]).await.expect("pause");
        let first = &links[0];
        let seek: f64 = first
            .attr("data-seek")
            .await
            .expect("attr")
            .expect("data-seek")
            .parse()
            .expect("seconds");
        first.clone().click().await.expect("click 'Play from'");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            b.url().await.expect("url").ends_with(&page),
            "the link left the page"
        );
        let (at, paused) = state(b).await;
        assert!(
            !paused && at >= seek && at < seek + 1.5,
            "after 'Play from {seek}': currentTime {at}, paused {paused}"
        );

        // Another tenant's owner: the recording is the 404 page.
        ctx.sign_out().await;
        let other = ctx.tenant("Player Other").await;
        ctx.user(&other, "owner", UserRole::Owner).await;
        assert_eq!(
            b.status_of(&format!("{page}/recording"))
                .await
                .expect("status"),
            404
        );
    });
}

/// The `duration` of the audio element `id` once its metadata loaded (-1 on a media error).
fn duration_of(id: &str) -> String {
    DURATION.replace(
        "getElementById('recording')",
        &format!("getElementById('{id}')"),
    )
}

#[test]
fn a_message_plays_on_its_call_page_and_the_inbox_passes_axe_at_both_widths() {
    suite().run(async |ctx| {
        let b = ctx.browser;
        let tenant = ctx.tenant("Inbox Dental").await;
        ctx.user(&tenant, "owner", UserRole::Owner).await;
        // A call that switched to taking a message: its conversation, then the message, and the
        // callback task naming it.
        let call_sid = ctx.call(&tenant, "+15550199202").await;
        ctx.mesh.record_call(tenant.id, &call_sid, SECONDS).await;
        let message = ctx
            .mesh
            .record(
                tenant.id,
                &call_sid,
                2,
                media_svc::recording::RecordingKind::Message,
            )
            .await;
        ctx.mesh
            .db
            .admin_client()
            .await
            .execute(
                "INSERT INTO media.callback_tasks \
                   (customer_id, task_id, call_sid, caller, reason, recording_id, transcript) \
                 VALUES ($1, $2, $3, '+15550199202', 'backend_down', $4, \
                         'Please call me back about my appointment on Tuesday.')",
                &[&tenant.id, &uuid::Uuid::new_v4(), &call_sid, &message],
            )
            .await
            .expect("task");

        // The call page: two players, each playable in Chromium with its own length.
        let page = format!("/portal/calls/{call_sid}");
        b.goto(&ctx.url(&page)).await.expect("open the call");
        b.assert_accessible(&page).await;
        for (id, seconds) in [("recording", SECONDS), ("recording-1", 2)] {
            let got = b.execute(&duration_of(id), vec![]).await.expect("duration");
            let got = got.as_f64().expect("a number");
            assert!(
                (got - f64::from(seconds)).abs() < 0.05,
                "{id}: duration {got}, recorded {seconds} s"
            );
        }

        // The inbox, with the message and its player, at both widths; then marked done.
        for viewport in [e2e::browser::DESKTOP, e2e::browser::PHONE] {
            b.set_viewport(viewport).await.expect("resize");
            b.goto(&ctx.url("/portal/messages"))
                .await
                .expect("open the inbox");
            b.assert_accessible("/portal/messages with a message").await;
            assert!(
                !b.overflows_horizontally().await.expect("measure"),
                "/portal/messages is wider than the screen: {:?}",
                b.elements_past_the_right_edge().await.expect("measure")
            );
        }
        b.set_viewport(e2e::browser::DESKTOP).await.expect("resize");
        let button = b
            .find("form button[type=submit][aria-describedby]")
            .await
            .expect("Mark done");
        assert_eq!(button.text().await.expect("text"), "Mark done");
        button.click().await.expect("click");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            b.url()
                .await
                .expect("url")
                .ends_with("/portal/messages?show=open")
        );
        b.assert_accessible("/portal/messages, nothing open").await;
    });
}
