//! Numbers and times as the pages show them. Pure, tested natively.

use flowscope_model::{Body, FlowStatus};

/// A duration in µs, short: `850 µs`, `12 ms`, `1.4 s`, `3 min 05 s`, `2 h 04 min`.
pub fn duration_us(us: i64) -> String {
    let us = us.max(0);
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{} ms", us / 1_000)
    } else if us < 60_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else if us < 3_600_000_000 {
        let secs = us / 1_000_000;
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        let mins = us / 60_000_000;
        format!("{} h {:02} min", mins / 60, mins % 60)
    }
}

/// A duration in ms (as the topology sends latencies).
pub fn duration_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        duration_us((ms * 1000.0) as i64)
    }
}

/// How long ago `then` was at `now` (both µs): `4 s ago`.
pub fn age(now_unix_us: i64, then_unix_us: i64) -> String {
    let us = now_unix_us - then_unix_us;
    if us < 1_000_000 {
        "just now".into()
    } else if us < 60_000_000 {
        format!("{} s ago", us / 1_000_000)
    } else {
        format!("{} ago", duration_us(us))
    }
}

/// A time of day in UTC with milliseconds: `14:03:07.123`.
pub fn clock(unix_us: i64) -> String {
    let ms_of_day = (unix_us / 1000).rem_euclid(86_400_000);
    let (h, m) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (s, ms) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// A rate per second: `0`, `0.4/s`, `12/s`.
pub fn rate(per_sec: f64) -> String {
    if per_sec <= 0.0 {
        "0".into()
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// A share 0.0–1.0 as a percentage.
pub fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// The status as the UI names it.
pub fn status_label(status: FlowStatus) -> &'static str {
    match status {
        FlowStatus::InFlight => "in flight",
        FlowStatus::Completed => "completed",
        FlowStatus::Failed => "failed",
        FlowStatus::Compensated => "compensated",
        FlowStatus::Stuck => "stuck",
    }
}

/// Parses a status as in JSON (`in_flight`, …).
pub fn parse_status(text: &str) -> Option<FlowStatus> {
    crate::state::STATUSES
        .into_iter()
        .find(|s| s.as_str() == text)
}

/// A JSON value pretty-printed (as `serde_json::to_string_pretty` does,
/// through [`crate::json::pretty`], which keeps serde's pretty serializer
/// out of the wasm).
pub fn pretty_json(value: &serde_json::Value) -> String {
    crate::json::pretty(&value.to_string())
}

/// A captured body for display: JSON pretty-printed, other text as is,
/// binary said to be binary. Always shown as text, never as markup.
pub fn body_text(body: &Body) -> String {
    if body.encoding != "utf8" {
        return format!("({} body, base64)\n{}", body.encoding, body.content);
    }
    match crate::json::from_str::<serde_json::Value>(&body.content) {
        Ok(value) if !body.truncated => pretty_json(&value),
        _ => body.content.clone(),
    }
}

/// Percent-encodes one URL path segment (`/` becomes `%2F`).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (a route parameter may arrive encoded or not).
pub fn decode_segment(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The UI path of a queue's page.
pub fn queue_href(vhost: &str, name: &str) -> String {
    format!("/queues/{}/{}", path_segment(vhost), path_segment(name))
}

/// A flow id cut to its last 8 characters, for a link among others: ids
/// begin with the time first seen (alike for flows of the same minute) and
/// end with a hash (different).
pub fn short_flow_id(id: &str) -> String {
    let skip = id.chars().count().saturating_sub(8);
    id.chars().skip(skip).collect()
}

/// The UI path of a flow's page.
pub fn flow_href(id: &str) -> String {
    format!("/flows/{}", path_segment(id))
}

/// The placeholder of a trace link template (`[ui] trace_url_template`).
pub const TRACE_ID_PLACEHOLDER: &str = "{trace_id}";

/// A trace's page in the tracing UI: the template with the id, URL-encoded.
pub fn trace_href(template: &str, trace_id: &str) -> String {
    template.replace(TRACE_ID_PLACEHOLDER, &path_segment(trace_id))
}

/// The flow list narrowed to one process-map variant (its steps in order).
pub fn variant_href(steps: &[String]) -> String {
    format!("/flows?variant={}", path_segment(&steps.join(",")))
}

/// A `?variant=` value back into its steps; blank: none.
pub fn parse_variant(text: &str) -> Option<Vec<String>> {
    let steps: Vec<String> = decode_segment(text)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!steps.is_empty()).then_some(steps)
}

/// `1 message`, `3 messages`.
pub fn count_of(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_pluralised() {
        assert_eq!(count_of(1, "message", "messages"), "1 message");
        assert_eq!(count_of(0, "message", "messages"), "0 messages");
        assert_eq!(count_of(3, "message", "messages"), "3 messages");
    }

    #[test]
    fn short_flow_ids_keep_the_distinct_end() {
        assert_eq!(short_flow_id("f1kX9_aB3cD4eF5gH"), "cD4eF5gH");
        assert_eq!(short_flow_id("f12"), "f12");
    }

    #[test]
    fn trace_links_encode_the_id_into_the_template() {
        assert_eq!(
            trace_href(
                "http://localhost:16686/trace/{trace_id}",
                "4bf92f3577b34da6"
            ),
            "http://localhost:16686/trace/4bf92f3577b34da6"
        );
        assert_eq!(
            trace_href("https://t.example/x?id={trace_id}&a=1", "a b/&c"),
            "https://t.example/x?id=a%20b%2F%26c&a=1"
        );
    }

    #[test]
    fn variants_round_trip_through_the_url() {
        let steps = vec!["OrderPlaced".to_owned(), "Payment Failed".to_owned()];
        let href = variant_href(&steps);
        assert_eq!(href, "/flows?variant=OrderPlaced%2CPayment%20Failed");
        let value = href.trim_start_matches("/flows?variant=");
        assert_eq!(parse_variant(value), Some(steps.clone()));
        assert_eq!(parse_variant("OrderPlaced,Payment Failed"), Some(steps));
        assert_eq!(parse_variant(" , "), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_us(850), "850 µs");
        assert_eq!(duration_us(12_400), "12 ms");
        assert_eq!(duration_us(1_450_000), "1.4 s");
        assert_eq!(duration_us(185_000_000), "3 min 05 s");
        assert_eq!(duration_us(7_440_000_000), "2 h 04 min");
        assert_eq!(duration_us(-5), "0 µs");
        assert_eq!(duration_ms(0.25), "250 µs");
        assert_eq!(age(10_000_000, 9_500_000), "just now");
        assert_eq!(age(10_000_000, 5_900_000), "4 s ago");
        assert_eq!(age(200_000_000, 0), "3 min 20 s ago");
    }

    #[test]
    fn clock_and_rates() {
        assert_eq!(clock(1_700_000_000_123_456), "22:13:20.123");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(0.44), "0.4/s");
        assert_eq!(rate(12.6), "13/s");
        assert_eq!(percent(0.256), "26 %");
    }

    #[test]
    fn statuses_round_trip() {
        for status in crate::state::STATUSES {
            assert_eq!(parse_status(status.as_str()), Some(status));
        }
        assert_eq!(parse_status("nope"), None);
    }

    #[test]
    fn bodies_show_as_text() {
        let json = Body {
            content: r#"{"order_id":"o-1","note":"<script>alert(1)</script>"}"#.into(),
            encoding: "utf8".into(),
            ..Default::default()
        };
        let text = body_text(&json);
        assert!(
            text.contains("\n  \"note\": \"<script>alert(1)</script>\""),
            "{text}"
        );
        let plain = Body {
            content: "not json".into(),
            encoding: "utf8".into(),
            ..Default::default()
        };
        assert_eq!(body_text(&plain), "not json");
        let binary = Body {
            content: "AAE=".into(),
            encoding: "base64".into(),
            ..Default::default()
        };
        assert!(body_text(&binary).starts_with("(base64 body"));
    }

    #[test]
    fn path_segments_round_trip() {
        assert_eq!(path_segment("/"), "%2F");
        assert_eq!(path_segment("payment.orders"), "payment.orders");
        assert_eq!(decode_segment("%2F"), "/");
        assert_eq!(decode_segment("a%2"), "a%2");
        assert_eq!(decode_segment(&path_segment("a b/ü")), "a b/ü");
        assert_eq!(queue_href("/", "q.dlq"), "/queues/%2F/q.dlq");
    }
}
