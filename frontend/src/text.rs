//! Lower-casing text for case-insensitive search with less wasm.
//!
//! `str::to_lowercase` brings the standard library's Unicode case tables
//! (about 12 KB of wasm). Names and ids are nearly always ASCII; the rare
//! other text is lower-cased by the browser (`String.prototype.toLowerCase`,
//! the same Unicode mapping), natively (in tests) by the standard library.

/// `text` in lower case, as `str::to_lowercase` gives it.
pub fn lowercase(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        unicode_lowercase(text)
    }
}

#[cfg(target_arch = "wasm32")]
fn unicode_lowercase(text: &str) -> String {
    js_sys::JsString::from(text).to_lower_case().into()
}

#[cfg(not(target_arch = "wasm32"))]
fn unicode_lowercase(text: &str) -> String {
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_like_the_standard_library() {
        for text in ["", "Orders.DLQ", "payment-Service_2", "ÉTÉ Straße", "ΟΔΟΣ"] {
            assert_eq!(lowercase(text), text.to_lowercase(), "{text:?}");
        }
    }
}
