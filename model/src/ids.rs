//! Trace and span ids as the bytes they are ([`TraceId`], [`SpanId`]),
//! written and read as lowercase hex.
//!
//! A span kept in memory holds three of them; as hex `String`s they were
//! three heap blocks (and 72 bytes of headers) per span, allocated when it
//! arrived and freed when its flow left memory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why text is not an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    /// How many hex digits were expected.
    pub digits: usize,
    pub text: String,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not {} hex digits", self.text, self.digits)
    }
}

impl std::error::Error for IdError {}

/// Writes bytes as lowercase hex.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    f.write_str(std::str::from_utf8(&out[..2 * bytes.len()]).expect("hex digits are ASCII"))
}

/// Reads exactly `N` bytes of hex (either case).
fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], IdError> {
    let error = || IdError {
        digits: 2 * N,
        text: text.to_owned(),
    };
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(error());
    }
    let nibble = |d: u8| (d as char).to_digit(16).map(|n| n as u8);
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0]).ok_or_else(error)? << 4 | nibble(pair[1]).ok_or_else(error)?;
    }
    Ok(out)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Whether every byte is zero (an invalid id in OTLP and W3C).
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|b| *b == 0)
            }

            /// From exactly this many bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                parse_hex(text).map(Self)
            }
        }

        /// Compares with hex text (either case).
        impl PartialEq<str> for $name {
            fn eq(&self, text: &str) -> bool {
                parse_hex::<$len>(text).is_ok_and(|bytes| bytes == self.0)
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, text: &&str) -> bool {
                self == *text
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, text: &String) -> bool {
                self == text.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A trace id: 16 bytes, written as 32 lowercase hex digits.
    TraceId,
    16
);

id_type!(
    /// A span id: 8 bytes, written as 16 lowercase hex digits.
    SpanId,
    8
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_and_read_as_lowercase_hex() {
        let trace: TraceId = "0AF7651916CD43DD8448EB211C80319C".parse().unwrap();
        assert_eq!(trace.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(trace.0[0], 0x0a);
        let json = serde_json::to_string(&trace).unwrap();
        assert_eq!(json, "\"0af7651916cd43dd8448eb211c80319c\"");
        assert_eq!(serde_json::from_str::<TraceId>(&json).unwrap(), trace);
        let span: SpanId = "b7ad6b7169203331".parse().unwrap();
        assert_eq!(format!("{span:?}"), "b7ad6b7169203331");
        assert!(!span.is_zero() && SpanId::default().is_zero());
    }

    #[test]
    fn text_that_is_not_an_id_is_refused() {
        for bad in [
            "",
            "b7ad6b716920333",
            "b7ad6b71692033311",
            "b7ad6b716920333g",
        ] {
            let err = bad.parse::<SpanId>().unwrap_err();
            assert_eq!(err.digits, 16, "{bad}");
            assert!(err.to_string().contains("16 hex digits"));
        }
        assert!(serde_json::from_str::<TraceId>("\"abc\"").is_err());
        assert_ne!("b7ad6b7169203331".parse::<SpanId>().unwrap(), "nope");
    }
}
