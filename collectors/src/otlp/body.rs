//! A request body as both transports read it: its frames kept without a copy
//! when there is one, joined once when there are several; and inflated, never
//! past the size limit.

use std::io::Read as _;

use prost::bytes::{BufMut as _, Bytes, BytesMut};

use super::error::{OtlpError, Result};

/// A request body's bytes so far: none, one frame's (not copied), or
/// several frames joined into one buffer.
pub(super) enum Received {
    Nothing,
    One(Bytes),
    Joined(BytesMut),
}

impl Received {
    /// With the next frame's bytes. The buffer two frames are joined into
    /// has room for `room` bytes (the whole body's size, when it is known),
    /// or for the two frames when that is more.
    pub(super) fn push(self, data: Bytes, room: usize) -> Self {
        match self {
            Received::Nothing => Received::One(data),
            Received::One(head) => {
                let mut buffer = BytesMut::with_capacity(room.max(head.len() + data.len()));
                buffer.put(head);
                buffer.put(data);
                Received::Joined(buffer)
            }
            Received::Joined(mut buffer) => {
                buffer.put(data);
                Received::Joined(buffer)
            }
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Received::Nothing => &[],
            Received::One(data) => data,
            Received::Joined(buffer) => buffer,
        }
    }

    pub(super) fn into_bytes(self) -> Bytes {
        match self {
            Received::Nothing => Bytes::new(),
            Received::One(data) => data,
            Received::Joined(buffer) => buffer.freeze(),
        }
    }
}

/// A compression a request body may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// RFC 1952, the one OTLP exporters use.
    Gzip,
    /// HTTP's `deflate`: zlib (RFC 1950).
    Deflate,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
        }
    }
}

/// The decompressed bytes, refused as soon as they pass `limit` (a small
/// bomb never inflates in memory). `what` names them in the error.
pub(super) fn inflate(
    compression: Compression,
    compressed: &[u8],
    limit: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let mut inflated = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let read = match compression {
        Compression::Gzip => flate2::read::GzDecoder::new(compressed)
            .take(limit as u64 + 1)
            .read_to_end(&mut inflated),
        Compression::Deflate => flate2::read::ZlibDecoder::new(compressed)
            .take(limit as u64 + 1)
            .read_to_end(&mut inflated),
    };
    read.map_err(|err| {
        OtlpError::Decode(format!(
            "could not read {what} as {} ({err})",
            compression.name()
        ))
    })?;
    if inflated.len() > limit {
        return Err(OtlpError::TooLarge { limit });
    }
    Ok(inflated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn inflating_stops_at_the_limit() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = gzip.finish().unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        zlib.write_all(&vec![0u8; 1 << 20]).unwrap();
        let zlib_bomb = zlib.finish().unwrap();
        for (compression, bomb) in [
            (Compression::Gzip, &bomb),
            (Compression::Deflate, &zlib_bomb),
        ] {
            let inflated = inflate(compression, bomb, 1 << 20, "the body").unwrap();
            assert_eq!(inflated.len(), 1 << 20);
            assert_eq!(
                inflate(compression, bomb, (1 << 20) - 1, "the body"),
                Err(OtlpError::TooLarge {
                    limit: (1 << 20) - 1
                })
            );
            let Err(OtlpError::Decode(message)) =
                inflate(compression, b"not compressed", 100, "the body")
            else {
                panic!("{compression:?}: garbage was inflated");
            };
            assert!(
                message.contains(compression.name()),
                "{compression:?}: {message}"
            );
        }
    }

    #[test]
    fn frames_are_joined_only_when_there_are_several() {
        let received = Received::Nothing.push(Bytes::from_static(b"abc"), 100);
        assert!(matches!(received, Received::One(_)));
        let received = received.push(Bytes::from_static(b"de"), 100);
        let Received::Joined(buffer) = &received else {
            panic!("two frames were not joined");
        };
        assert!(buffer.capacity() >= 100);
        let received = received.push(Bytes::from_static(b"f"), 0);
        assert_eq!(received.as_slice(), b"abcdef");
        assert_eq!(&received.into_bytes()[..], b"abcdef");
    }
}
