//! Reading numbers typed by the user with less wasm.
//!
//! `str::parse::<f64>` brings the standard library's exact decimal parser
//! and its 10 KB table of powers of five (about 16 KB of wasm in all) for
//! two form fields. serde_json's number parser is in the bundle anyway (every
//! rate in the stream is a float), so [`parse_f64`] rewrites what the user
//! typed into JSON's number syntax and lets serde_json read it.

/// A finite decimal number written as `str::parse::<f64>` accepts it
/// (`+1.5`, `.5`, `5.`, `007`, `1e3`), with the same value for up to 15
/// significant digits (serde_json may be one unit in the last place off
/// beyond); `None` for anything else, including `inf` and `NaN`.
pub fn parse_f64(text: &str) -> Option<f64> {
    serde_json::from_str(&as_json_number(text)?).ok()
}

/// `text` in JSON's number syntax: no `+`, no leading zeros, digits on
/// both sides of a `.`, an exponent with digits.
fn as_json_number(text: &str) -> Option<String> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let mut json = String::with_capacity(text.len() + 2);
    if negative {
        json.push('-');
    }
    match whole.trim_start_matches('0') {
        "" => json.push('0'),
        significant => json.push_str(significant),
    }
    if !fraction.is_empty() {
        json.push('.');
        json.push_str(fraction);
    }
    if let Some(exponent) = exponent {
        let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if exponent_digits.is_empty() || !digits(exponent_digits) {
            return None;
        }
        json.push('e');
        json.push_str(exponent);
    }
    Some(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_str_parse_reads_to_the_same_value() {
        let inputs = [
            "0", "5", "-1", "+2.5", "0.3", ".5", "5.", "-.25", "007", "00.10", "12.34", "1e3",
            "1E+2", "2.5e-1", "-0", "0.1", "499.99", "500", "3.14159", "1e-7", "100e-2",
        ];
        for input in inputs {
            assert_eq!(
                parse_f64(input),
                input.parse::<f64>().ok(),
                "{input:?} ({:?})",
                as_json_number(input)
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_finite_decimal() {
        let inputs = [
            "", " ", " 5", "5 ", "fast", ".", "-", "+", "e5", "5e", "5e+", "1.2.3", "--5", "+-5",
            "0x10", "1_000", "1,5", "inf", "NaN", "infinity", "1e400",
        ];
        for input in inputs {
            assert_eq!(parse_f64(input), None, "{input:?}");
        }
    }
}
