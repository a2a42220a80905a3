//! Redaction at ingest: masked values never reach the store, the stream or the UI.

use std::collections::BTreeMap;

use base64::Engine as _;
use flowscope_model::Body;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What replaces a redacted value.
pub const MASK: &str = "[redacted]";
/// Bytes of a body kept unless configured: enough to read a JSON event.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4096;

/// What to capture of message bodies and what to mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Capture bodies at all (off: only their size is kept).
    pub capture_body: bool,
    /// Bytes of a body kept; the rest is cut (after redaction).
    pub max_body_bytes: usize,
    /// Header names whose values are masked (case-insensitive), e.g. `authorization`.
    pub headers: Vec<String>,
    /// JSON pointers into JSON bodies whose values are masked, e.g. `/data/card_number`.
    pub json_pointers: Vec<String>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            capture_body: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            headers: Vec::new(),
            json_pointers: Vec::new(),
        }
    }
}

impl RedactConfig {
    /// Checks the pointers are JSON pointers, so a typo is an error at start, not a leak.
    pub fn validate(&self) -> Result<(), String> {
        match self.json_pointers.iter().find(|p| !p.starts_with('/')) {
            Some(bad) => Err(format!(
                "redact.json_pointers: {bad:?} is not a JSON pointer (it must start with '/', e.g. \"/customer/email\")"
            )),
            None => Ok(()),
        }
    }

    /// Masks configured headers in place.
    pub fn redact_headers(&self, headers: &mut BTreeMap<String, Value>) {
        for (name, value) in headers.iter_mut() {
            if self.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                *value = Value::String(MASK.into());
            }
        }
    }

    /// The body as flowscope keeps it: masked, then cut; `None` when capture is off.
    pub fn capture(&self, body: &[u8]) -> Option<Body> {
        if !self.capture_body {
            return None;
        }
        let mut redacted = false;
        let masked;
        let bytes = match self.mask_json(body) {
            Some(json) => {
                redacted = true;
                masked = json;
                masked.as_slice()
            }
            None => body,
        };
        let truncated = bytes.len() > self.max_body_bytes;
        let kept = &bytes[..bytes.len().min(self.max_body_bytes)];
        Some(match std::str::from_utf8(kept) {
            Ok(text) => Body {
                content: text.to_owned(),
                encoding: "utf8".into(),
                truncated,
                redacted,
            },
            // Cut inside a multi-byte character: keep the valid prefix as text.
            Err(err) if err.error_len().is_none() => Body {
                content: String::from_utf8_lossy(&kept[..err.valid_up_to()]).into_owned(),
                encoding: "utf8".into(),
                truncated: true,
                redacted,
            },
            Err(_) => Body {
                content: base64::engine::general_purpose::STANDARD.encode(kept),
                encoding: "base64".into(),
                truncated,
                redacted,
            },
        })
    }

    /// The JSON body with configured pointers masked, if any pointer matched.
    fn mask_json(&self, body: &[u8]) -> Option<Vec<u8>> {
        if self.json_pointers.is_empty() {
            return None;
        }
        let mut json: Value = serde_json::from_slice(body).ok()?;
        let mut hit = false;
        for pointer in &self.json_pointers {
            if let Some(value) = json.pointer_mut(pointer) {
                *value = Value::String(MASK.into());
                hit = true;
            }
        }
        hit.then(|| serde_json::to_vec(&json).expect("JSON re-serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_pointers_and_headers_before_cutting() {
        let config = RedactConfig {
            max_body_bytes: 40,
            headers: vec!["Authorization".into()],
            json_pointers: vec!["/data/card".into(), "/missing".into()],
            ..Default::default()
        };
        let body = json!({"data": {"card": "4111 1111 1111 1111", "note": "x".repeat(50)}});
        let captured = config.capture(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert!(captured.redacted && captured.truncated);
        assert!(!captured.content.contains("4111"), "{}", captured.content);
        assert!(captured.content.contains(MASK));
        assert_eq!(captured.content.len(), 40);

        let mut headers = BTreeMap::from([
            ("authorization".to_string(), json!("Bearer s3cret")),
            ("traceparent".to_string(), json!("00-…")),
        ]);
        config.redact_headers(&mut headers);
        assert_eq!(headers["authorization"], MASK);
        assert_eq!(headers["traceparent"], "00-…");
    }

    #[test]
    fn binary_bodies_are_base64_and_capture_can_be_off() {
        let config = RedactConfig::default();
        let body = config.capture(&[0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(
            (body.encoding.as_str(), body.content.as_str()),
            ("base64", "//4A")
        );
        let off = RedactConfig {
            capture_body: false,
            ..Default::default()
        };
        assert_eq!(off.capture(b"{}"), None);
        let bad = RedactConfig {
            json_pointers: vec!["data.card".into()],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("JSON pointer"));
    }
}
