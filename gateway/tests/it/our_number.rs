//! The one "our number" rule: on an inbound call the tenant's number is `To`; on every call
//! Twilio placed for the platform (`outbound-api`, `outbound-dial`) it is `From`, the caller id.
//! The voice webhook and the status callback resolve the same side for every direction (they
//! used to disagree on `outbound-dial` and on directions Twilio may add; an unknown direction is
//! inbound, as `RegisterCall` records it).

use crate::common::{Gateway, call_params, call_sid};

const THEIRS: &str = "+15551111111";
const OURS: &str = "+14155550101";

#[tokio::test]
async fn voice_and_status_resolve_the_same_number_for_every_direction() {
    let gateway = Gateway::start(&[]).await;
    let cases = [
        ("inbound", THEIRS, OURS),
        ("outbound-api", OURS, THEIRS),
        ("outbound-dial", OURS, THEIRS),
        ("trunking-originating", THEIRS, OURS),
    ];
    for (n, (direction, from, to)) in cases.iter().enumerate() {
        let sid = call_sid(n as u32);
        let params = call_params(&sid, from, to, direction);
        for path in ["/twilio/voice", "/twilio/status"] {
            let r = gateway.twilio_post(path, &params, true).await;
            assert_eq!(r.status(), 200, "{path} {direction}");
            let resolved = gateway.seen.of("ResolveNumber");
            assert_eq!(
                resolved.last().map(String::as_str),
                Some(OURS),
                "{path} with Direction={direction} resolved the wrong party"
            );
        }
    }
    assert_eq!(gateway.seen.of("ResolveNumber").len(), 2 * cases.len());
    assert_eq!(gateway.seen.of("UpdateCallStatus").len(), cases.len());
}
