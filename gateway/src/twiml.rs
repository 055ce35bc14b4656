//! TwiML answers. Every text node and attribute value is XML-escaped, so tenant-controlled text
//! (a greeting like `Smith & Sons <Ltd>`) can never break or inject into the document.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use quick_xml::escape::escape;

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Escapes `s` for XML, dropping characters XML 1.0 does not allow (C0 controls other than tab,
/// newline and carriage return), which no tenant text should contain anyway.
fn xml(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .filter(|c| !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        .collect();
    escape(&clean).into_owned()
}

/// `<Connect><Stream>` to `ws_url` with `<Parameter>`s, then an apology `<Say>` and `<Hangup/>`
/// that Twilio plays only if the stream ends abnormally (it runs no later verb while the stream
/// is open, and the edge closes the stream cleanly on a normal hang-up).
pub fn connect_stream(ws_url: &str, parameters: &[(&str, &str)], apology: &str) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(PROLOG);
    out.push_str("<Response><Connect><Stream url=\"");
    out.push_str(&xml(ws_url));
    out.push_str("\">");
    for (name, value) in parameters {
        out.push_str("<Parameter name=\"");
        out.push_str(&xml(name));
        out.push_str("\" value=\"");
        out.push_str(&xml(value));
        out.push_str("\" />");
    }
    out.push_str("</Stream></Connect><Say>");
    out.push_str(&xml(apology));
    out.push_str("</Say><Hangup/></Response>");
    out
}

/// `<Say>` then `<Hangup/>`.
pub fn say_hangup(text: &str) -> String {
    format!(
        "{PROLOG}<Response><Say>{}</Say><Hangup/></Response>",
        xml(text)
    )
}

/// `<Hangup/>` alone (a call that already ended).
pub fn hangup() -> String {
    format!("{PROLOG}<Response><Hangup/></Response>")
}

/// `doc` as an HTTP answer (`text/xml`).
pub fn response(doc: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], doc).into_response()
}

/// An empty `<Response/>` (status callbacks).
pub fn empty() -> String {
    format!("{PROLOG}<Response/>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quick_xml::Reader;
    use quick_xml::events::Event;

    /// Parses the document and returns (element names, all text unescaped as one string per
    /// document, attribute values).
    fn parse(doc: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut r = Reader::from_str(doc);
        let (mut names, mut raw_text, mut attrs) = (vec![], String::new(), vec![]);
        loop {
            match r.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    names.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                    for a in e.attributes() {
                        let a = a.unwrap();
                        attrs.push(a.unescape_value().unwrap().into_owned());
                    }
                }
                Event::Text(t) => raw_text.push_str(std::str::from_utf8(&t).unwrap()),
                Event::GeneralRef(r) => {
                    raw_text.push('&');
                    raw_text.push_str(std::str::from_utf8(&r).unwrap());
                    raw_text.push(';');
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let text = quick_xml::escape::unescape(&raw_text).unwrap().into_owned();
        let texts = if text.is_empty() { vec![] } else { vec![text] };
        (names, texts, attrs)
    }

    #[test]
    fn hostile_text_is_escaped() {
        let doc = connect_stream(
            "wss://edge.example/twilio/media",
            &[("stream_ticket", "a\"b<c>&d'e")],
            "Smith & Sons <Ltd> \"sorry\"",
        );
        let (names, texts, attrs) = parse(&doc);
        assert_eq!(
            names,
            [
                "Response",
                "Connect",
                "Stream",
                "Parameter",
                "Say",
                "Hangup"
            ]
        );
        assert_eq!(texts, ["Smith & Sons <Ltd> \"sorry\""]);
        assert!(attrs.contains(&"a\"b<c>&d'e".to_owned()));
        let (_, texts, _) = parse(&say_hangup("</Say><Dial>+15550100</Dial>"));
        assert_eq!(texts, ["</Say><Dial>+15550100</Dial>"]);
        assert!(!say_hangup("<Dial>").contains("<Dial>"));
    }

    proptest! {
        #[test]
        fn any_text_round_trips_through_the_document(text in "\\PC{0,200}", value in "\\PC{0,60}") {
            let doc = connect_stream("wss://x.example/twilio/media", &[("p", &value)], &text);
            let (names, texts, attrs) = parse(&doc);
            prop_assert_eq!(names.len(), 6);
            // Leading/trailing whitespace-only text nodes are still one node.
            prop_assert_eq!(texts.concat(), text);
            prop_assert_eq!(&attrs[1], &"p".to_owned());
            prop_assert_eq!(&attrs[2], &value);
        }
    }
}
