//! What one realtime response cost: the token counts of `response.done`'s `usage`, read by the
//! OpenAI backend ([`super::openai::server_event`]) and summed per call for billing.

use serde_json::Value;

use super::ModelUsage;

/// The usage of one `response.done` (`response.usage`; the GA and beta shapes agree:
/// `input_token_details.{text_tokens, audio_tokens, cached_tokens, cached_tokens_details.{text_tokens,
/// audio_tokens}}`, `output_token_details.{text_tokens, audio_tokens}`). A missing count is zero;
/// an older beta answer without `cached_tokens_details` has its `cached_tokens` counted as text
/// first (up to the input text), the rest as audio. Image tokens are not counted (no call sends
/// an image). `None` when `usage` is not an object (e.g. `null` for a cancelled response).
pub fn response_usage(usage: &Value) -> Option<ModelUsage> {
    usage.as_object()?;
    let n = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_u64);
    let input = usage.get("input_token_details");
    let output = usage.get("output_token_details");
    let input_text = n(input, "text_tokens").unwrap_or(0);
    let input_audio = n(input, "audio_tokens").unwrap_or(0);
    let details = input.and_then(|i| i.get("cached_tokens_details"));
    let (cached_text, cached_audio) = match details {
        Some(d) if d.is_object() => (
            n(Some(d), "text_tokens").unwrap_or(0),
            n(Some(d), "audio_tokens").unwrap_or(0),
        ),
        _ => {
            let cached = n(input, "cached_tokens").unwrap_or(0);
            let text = cached.min(input_text);
            (text, cached - text)
        }
    };
    Some(ModelUsage {
        input_text,
        input_audio,
        cached_text: cached_text.min(input_text),
        cached_audio: cached_audio.min(input_audio),
        output_text: n(output, "text_tokens").unwrap_or(0),
        output_audio: n(output, "audio_tokens").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::openai::server_event;
    use super::super::{FromBackend, ModelUsage};

    #[test]
    fn response_done_usage_in_both_shapes() {
        let ga = json!({"type": "response.done", "response": {"usage": {
            "total_tokens": 1360, "input_tokens": 1200, "output_tokens": 160,
            "input_token_details": {"text_tokens": 900, "audio_tokens": 300, "image_tokens": 0,
                "cached_tokens": 700, "cached_tokens_details": {"text_tokens": 600, "audio_tokens": 100, "image_tokens": 0}},
            "output_token_details": {"text_tokens": 40, "audio_tokens": 120}}}});
        let want = ModelUsage {
            input_text: 900,
            input_audio: 300,
            cached_text: 600,
            cached_audio: 100,
            output_text: 40,
            output_audio: 120,
        };
        assert_eq!(server_event(&ga), Some(FromBackend::Usage(want)));
        assert_eq!(want.uncached_text(), 300);
        assert_eq!(want.uncached_audio(), 200);
        // An older beta answer: no cached_tokens_details; cached counted as text first.
        let beta = json!({"type": "response.done", "response": {"usage": {
            "input_token_details": {"text_tokens": 50, "audio_tokens": 300, "cached_tokens": 80},
            "output_token_details": {"audio_tokens": 10}}}});
        assert_eq!(
            server_event(&beta),
            Some(FromBackend::Usage(ModelUsage {
                input_text: 50,
                input_audio: 300,
                cached_text: 50,
                cached_audio: 30,
                output_text: 0,
                output_audio: 10,
            }))
        );
        // No usage (or null): nothing; an empty object: zeros; nonsense counts: zero, capped.
        assert_eq!(
            server_event(&json!({"type": "response.done", "response": {}})),
            None
        );
        assert_eq!(
            server_event(&json!({"type": "response.done", "response": {"usage": null}})),
            None
        );
        assert_eq!(
            server_event(&json!({"type": "response.done", "response": {"usage": {}}})),
            Some(FromBackend::Usage(ModelUsage::default()))
        );
        let odd = json!({"type": "response.done", "response": {"usage": {"input_token_details": {
            "text_tokens": -5, "audio_tokens": "7", "cached_tokens_details": {"text_tokens": 9}}}}});
        assert_eq!(
            server_event(&odd),
            Some(FromBackend::Usage(ModelUsage::default()))
        );
        let mut sum = want;
        sum.add(&want);
        assert_eq!(sum.output_audio, 240);
        let mut big = ModelUsage {
            output_text: u64::MAX,
            ..ModelUsage::default()
        };
        big.add(&want);
        assert_eq!(big.output_text, u64::MAX, "saturates");
    }
}
