//! From request bytes to a batch, shared by OTLP/gRPC and OTLP/HTTP: decompression that
//! reserves admission budget for its output as it produces it, then a check of the protobuf
//! (which stays bytes until a component looks inside) or decoding of the JSON, on the
//! blocking pool when the body is large.

use std::io::Read;

use bytes::Bytes;
use sluice_pipeline::admission::{Permit, Refusal};
use sluice_pipeline::codec::decode_json;
use sluice_pipeline::{Batch, Signal};

/// How a body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Proto,
    Json,
}

impl Encoding {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// How a body is compressed (HTTP `Content-Encoding`, gRPC `grpc-encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    /// `deflate`: zlib-wrapped DEFLATE, as HTTP and gRPC define it.
    Zlib,
    Zstd,
}

impl Compression {
    /// Parses an encoding name (already trimmed and lower-cased).
    pub(crate) fn from_name(name: &str) -> Result<Compression, UnpackError> {
        match name {
            "" | "identity" | "none" => Ok(Compression::None),
            "gzip" | "x-gzip" => Ok(Compression::Gzip),
            "deflate" | "zlib" => Ok(Compression::Zlib),
            "zstd" => Ok(Compression::Zstd),
            other => Err(UnpackError::UnsupportedEncoding(other.to_string())),
        }
    }
}

/// Why a body could not be turned into data.
#[derive(Debug)]
pub(crate) enum UnpackError {
    /// The decompressed body is larger than the limit.
    TooLarge,
    /// The admission budget or the memory limiter refused the decompressed bytes.
    Refused(Refusal),
    UnsupportedEncoding(String),
    /// Not valid compressed data, or not a valid OTLP message.
    Invalid(String),
    Internal(String),
}

/// How much buffer a receiver reserves ahead of the bytes of a request that have arrived, when
/// the request declared a larger size: enough that a typical request is read without growing
/// (and copying) its buffer, little enough that a client that declares a large request and
/// stalls makes the receiver hold little unused memory.
pub(crate) const READ_AHEAD: usize = 256 * 1024;

/// Decompressed output is reserved in blocks of this size before it is produced.
const BLOCK: usize = 64 * 1024;

/// Decompresses at most `limit` bytes, reserving each block from `permit` before producing it:
/// a decompression bomb or a body too large for the budget is stopped after at most one block
/// beyond what was allowed, never after it was all inflated.
pub(crate) fn decompress(
    body: &[u8],
    compression: Compression,
    limit: usize,
    permit: &mut Permit,
) -> Result<Vec<u8>, UnpackError> {
    let mut reader: Box<dyn Read + '_> = match compression {
        Compression::None => return Ok(body.to_vec()),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        Compression::Zlib => Box::new(flate2::read::ZlibDecoder::new(body)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(body)
                .map_err(|e| UnpackError::Invalid(format!("invalid zstd body: {e}")))?,
        ),
    };
    let name = format!("{compression:?}").to_ascii_lowercase();
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() > limit {
            return Err(UnpackError::TooLarge);
        }
        // One block more than the limit is allowed so that "exactly the limit" and "over
        // it" can be told apart; saturating, as a limit may be "no limit" (usize::MAX).
        let block = BLOCK.min(limit.saturating_add(1).saturating_sub(out.len()));
        if block == 0 {
            return Err(UnpackError::TooLarge);
        }
        permit.grow(block).map_err(UnpackError::Refused)?;
        let start = out.len();
        out.resize(start + block, 0);
        let mut filled = 0;
        while filled < block {
            match reader.read(&mut out[start + filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(UnpackError::Invalid(format!(
                        "cannot decompress {name} body: {e}"
                    )));
                }
            }
        }
        out.truncate(start + filled);
        if filled < block {
            if out.len() > limit {
                return Err(UnpackError::TooLarge);
            }
            // The last block was reserved whole; only what it holds stays in flight.
            permit.shrink_to(permit.bytes() - (block - filled));
            return Ok(out);
        }
    }
}

/// Bodies up to this size are decoded on the async thread: handing small ones to the blocking
/// pool would cost more than it saves.
const INLINE_DECODE_LIMIT: usize = 64 * 1024;

/// Decompresses and checks or decodes a body into a batch. The permit grows by the
/// decompressed size and is handed back for the caller to hold until it has answered.
pub(crate) async fn unpack<S: Signal>(
    raw: Bytes,
    compression: Compression,
    encoding: Encoding,
    limit: usize,
    mut permit: Permit,
) -> (Result<Batch<S>, UnpackError>, Option<Permit>) {
    let body_len = raw.len();
    let work = move || {
        let result = unpack_now::<S>(raw, compression, encoding, limit, &mut permit);
        (result, permit)
    };
    // Decompressing and decoding a large body is CPU work that would stall the async threads
    // serving everyone else: large bodies go to the blocking pool.
    if body_len > INLINE_DECODE_LIMIT || compression != Compression::None {
        match tokio::task::spawn_blocking(work).await {
            Ok((result, permit)) => (result, Some(permit)),
            Err(e) => (
                Err(UnpackError::Internal(format!("decoding failed: {e}"))),
                None,
            ),
        }
    } else {
        let (result, permit) = work();
        (result, Some(permit))
    }
}

fn unpack_now<S: Signal>(
    raw: Bytes,
    compression: Compression,
    encoding: Encoding,
    limit: usize,
    permit: &mut Permit,
) -> Result<Batch<S>, UnpackError> {
    let bytes = if compression == Compression::None {
        raw
    } else {
        Bytes::from(decompress(&raw, compression, limit, permit)?)
    };
    let invalid = |e: sluice_pipeline::codec::DecodeError| UnpackError::Invalid(e.to_string());
    match encoding {
        Encoding::Proto => Batch::from_proto(bytes).map_err(invalid),
        Encoding::Json => {
            let resources = decode_json::<S>(&bytes).map_err(invalid)?;
            // Size as protobuf: the JSON body's length overstates it, so measure.
            let size = sluice_pipeline::codec::encoded_proto_len::<S>(&resources);
            Ok(Batch::new(resources, size))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_pipeline::admission::Admission;
    use std::io::Write;

    #[test]
    fn decompression_stops_at_the_limit_and_at_the_budget() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1_000_000]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 10_000);
        let admission = Admission::new(10_000_000);
        let mut permit = admission.reserve(0).unwrap();
        let r = decompress(&bomb, Compression::Gzip, 100_000, &mut permit);
        assert!(matches!(r, Err(UnpackError::TooLarge)), "{r:?}");
        assert!(permit.bytes() <= 100_001);
        drop(permit);

        let mut permit = admission.reserve(0).unwrap();
        let ok = decompress(&bomb, Compression::Gzip, 1_000_000, &mut permit).unwrap();
        assert_eq!(ok.len(), 1_000_000);
        assert!(permit.bytes() >= 1_000_000);
        drop(permit);

        // A budget smaller than the decompressed size refuses it part-way.
        let small = Admission::new(200_000);
        let mut permit = small.reserve(0).unwrap();
        let r = decompress(&bomb, Compression::Gzip, 1_000_000, &mut permit);
        assert!(matches!(r, Err(UnpackError::Refused(_))), "{r:?}");
        drop(permit);
        assert_eq!(small.in_flight(), 0);

        // "No limit" does not overflow.
        let mut permit = admission.reserve(0).unwrap();
        let ok = decompress(&bomb, Compression::Gzip, usize::MAX, &mut permit).unwrap();
        assert_eq!(ok.len(), 1_000_000);
        drop(permit);

        // A body whose compressed plus decompressed size is over the whole budget is refused
        // for good, not as "retry later".
        let mut permit = small.reserve(0).unwrap();
        permit.grow(bomb.len()).unwrap();
        match decompress(&bomb, Compression::Gzip, 1_000_000, &mut permit) {
            Err(UnpackError::Refused(r)) => assert!(r.is_permanent(), "{r:?}"),
            other => panic!("{other:?}"),
        }
        drop(permit);

        let z = zstd::encode_all(&b"hello"[..], 3).unwrap();
        let mut permit = admission.reserve(0).unwrap();
        assert_eq!(
            decompress(&z, Compression::Zstd, 10, &mut permit).unwrap(),
            b"hello"
        );
        // Only the output is held, not the whole block reserved for it.
        assert_eq!(permit.bytes(), 5);
        assert!(matches!(
            Compression::from_name("br"),
            Err(UnpackError::UnsupportedEncoding(_))
        ));
    }
}
