//! From request bytes to a batch, shared by OTLP/gRPC and OTLP/HTTP: decompression that
//! reserves admission budget for its output as it produces it, then a check of the protobuf
//! (which stays bytes until a component looks inside) or decoding of the JSON, on the
//! blocking pool when the body is large.

use std::io::Read;

use bytes::Bytes;
use sluice_pipeline::admission::{Permit, Refusal};
use sluice_pipeline::codec::{
    DecodeError, decode_json_reserving, encoded_proto_len, estimate_decoded, json_decoded_bound,
};
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
    /// HTTP `snappy`: one snappy block (the framed format is recognised by its stream
    /// identifier and read as `x-snappy-framed`, as senders of either exist).
    Snappy,
    /// The snappy framing format: HTTP `x-snappy-framed`, and gRPC's `snappy`.
    SnappyFramed,
    /// The LZ4 frame format.
    Lz4,
}

impl Compression {
    /// Parses an encoding name (already trimmed and lower-cased).
    pub(crate) fn from_name(name: &str) -> Result<Compression, UnpackError> {
        match name {
            "" | "identity" | "none" => Ok(Compression::None),
            "gzip" | "x-gzip" => Ok(Compression::Gzip),
            "deflate" | "zlib" => Ok(Compression::Zlib),
            "zstd" => Ok(Compression::Zstd),
            "snappy" => Ok(Compression::Snappy),
            "x-snappy-framed" => Ok(Compression::SnappyFramed),
            "lz4" => Ok(Compression::Lz4),
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
        Compression::Snappy if body.starts_with(SNAPPY_STREAM_IDENTIFIER) => {
            Box::new(snap::read::FrameDecoder::new(body))
        }
        Compression::Snappy => return snappy_block(body, limit, permit),
        Compression::SnappyFramed => Box::new(snap::read::FrameDecoder::new(body)),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(body)),
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

/// The chunk that starts every snappy framed stream.
const SNAPPY_STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// A snappy block states its decompressed length first: checked against the limit and
/// reserved before anything is inflated.
fn snappy_block(body: &[u8], limit: usize, permit: &mut Permit) -> Result<Vec<u8>, UnpackError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| UnpackError::Invalid(format!("cannot decompress snappy body: {e}")))?;
    if len > limit {
        return Err(UnpackError::TooLarge);
    }
    permit.grow(len).map_err(UnpackError::Refused)?;
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| UnpackError::Invalid(format!("cannot decompress snappy body: {e}")))
}

/// Bodies up to this size are decoded on the async thread: handing small ones to the blocking
/// pool would cost more than it saves.
const INLINE_DECODE_LIMIT: usize = 64 * 1024;

/// Decompresses and checks or decodes a body into a batch. The permit grows by the
/// decompressed size and is handed back for the caller to hold until it has answered; the
/// memory the decoded form takes is reserved too, and that reservation goes with the batch.
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
    let invalid = |e: DecodeError| match e {
        DecodeError::Refused(r) => UnpackError::Refused(r),
        e => UnpackError::Invalid(e.to_string()),
    };
    // The decoded form can take hundreds of times the request's bytes (an empty span is two
    // bytes of protobuf, or `{},` in JSON, and a struct of hundreds): that memory is reserved
    // too, before anything is decoded, and stays reserved with the data for as long as it
    // exists, after the client is answered too.
    match encoding {
        Encoding::Proto => {
            let mut batch = Batch::<S>::from_proto(bytes).map_err(invalid)?;
            let decoded = batch.decoded_estimate().unwrap_or(0);
            permit.grow(decoded).map_err(UnpackError::Refused)?;
            batch.hold(permit.split_off(decoded));
            Ok(batch)
        }
        Encoding::Json => {
            // JSON is decoded at once: what that can take is reserved first, from the text,
            // and once decoded the data keeps what it takes (as measured for protobuf).
            let bound = json_decoded_bound(S::KIND, &bytes);
            permit.grow(bound.decoded).map_err(UnpackError::Refused)?;
            let resources =
                decode_json_reserving::<S>(&bytes, bound.tree, permit).map_err(invalid)?;
            drop(bytes);
            // Size as protobuf: the JSON body's length overstates it, so measure.
            let size = encoded_proto_len::<S>(&resources);
            // The data keeps what it takes (measured as for protobuf, at most what was
            // reserved); the rest of the bound goes back.
            let decoded = estimate_decoded::<S>(&resources)
                .unwrap_or(bound.decoded)
                .min(bound.decoded);
            let mut batch = Batch::new(resources, size);
            batch.hold(permit.split_off(decoded));
            let overstated = bound.decoded - decoded;
            permit.shrink_to(permit.bytes() - overstated);
            Ok(batch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_pipeline::admission::Admission;
    use std::io::Write;

    #[test]
    fn snappy_and_lz4_bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 1_000_000];
        let block = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(&zeros).unwrap();
        let framed = framed.into_inner().unwrap();
        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz4.write_all(&zeros).unwrap();
        let lz4 = lz4.finish().unwrap();
        // A block that only claims a huge size: refused from its header, nothing inflated.
        let mut liar = Vec::new();
        let mut n: u64 = 4_000_000_000;
        while n >= 0x80 {
            liar.push(n as u8 | 0x80);
            n >>= 7;
        }
        liar.push(n as u8);
        liar.extend_from_slice(&[0, 1, 2, 3]);
        let admission = Admission::new(10_000_000);
        for (name, body, compression) in [
            ("snappy block", &block, Compression::Snappy),
            ("snappy framed", &framed, Compression::Snappy),
            ("x-snappy-framed", &framed, Compression::SnappyFramed),
            ("lz4", &lz4, Compression::Lz4),
            ("lying snappy block", &liar, Compression::Snappy),
        ] {
            let mut permit = admission.reserve(0).unwrap();
            let r = decompress(body, compression, 100_000, &mut permit);
            assert!(matches!(r, Err(UnpackError::TooLarge)), "{name}: {r:?}");
            assert!(
                permit.bytes() <= 100_001 + BLOCK,
                "{name}: {}",
                permit.bytes()
            );
        }
        for (name, body, compression) in [
            ("snappy block", &block, Compression::Snappy),
            ("snappy framed", &framed, Compression::Snappy),
            ("lz4", &lz4, Compression::Lz4),
        ] {
            let mut permit = admission.reserve(0).unwrap();
            let out = decompress(body, compression, 1_000_000, &mut permit).unwrap();
            assert_eq!(out, zeros, "{name}");
        }
    }

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

    /// The memory a request's decoded form takes is reserved with its bytes, before anything
    /// is decoded: refused for good when it can never fit, and held by the batch (not the
    /// answer) until the data is gone.
    #[test]
    fn the_decoded_form_is_reserved_before_decoding_and_held_by_the_data() {
        use sluice_pipeline::Traces;
        // 50,000 empty spans: 100 kB on the wire, tens of MB decoded.
        let mut request = vec![0x0a];
        let scope: Vec<u8> = [0x12, 0x00].repeat(50_000);
        let mut resource = vec![0x12];
        prost::encoding::encode_varint(scope.len() as u64, &mut resource);
        resource.extend_from_slice(&scope);
        prost::encoding::encode_varint(resource.len() as u64, &mut request);
        request.extend_from_slice(&resource);
        let request = Bytes::from(request);

        let small = Admission::new(10_000_000);
        let mut permit = small.reserve(request.len()).unwrap();
        match unpack_now::<Traces>(
            request.clone(),
            Compression::None,
            Encoding::Proto,
            usize::MAX,
            &mut permit,
        ) {
            Err(UnpackError::Refused(r)) => assert!(r.is_permanent(), "{r:?}"),
            Ok(_) => panic!("accepted"),
            Err(e) => panic!("{e:?}"),
        }
        drop(permit);
        assert_eq!(small.in_flight(), 0);

        let admission = Admission::new(1 << 30);
        let mut permit = admission.reserve(request.len()).unwrap();
        let batch = unpack_now::<Traces>(
            request.clone(),
            Compression::None,
            Encoding::Proto,
            usize::MAX,
            &mut permit,
        )
        .unwrap();
        assert!(batch.reserved_bytes() > 100 * request.len());
        assert_eq!(permit.bytes(), request.len());
        // The client is answered: the data still holds what its decoded form takes.
        drop(permit);
        assert_eq!(admission.in_flight(), batch.reserved_bytes());
        drop(batch);
        assert_eq!(admission.in_flight(), 0);

        // OTLP/JSON: the bound read from the text is reserved before decoding (`{}` is an
        // empty span), and the data keeps what it measures once decoded.
        let spans = vec!["{}"; 50_000].join(",");
        let json = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
        let json = Bytes::from(json);
        let mut permit = small.reserve(json.len()).unwrap();
        let refused = unpack_now::<Traces>(
            json.clone(),
            Compression::None,
            Encoding::Json,
            usize::MAX,
            &mut permit,
        );
        assert!(
            matches!(&refused, Err(UnpackError::Refused(r)) if r.is_permanent()),
            "{:?}",
            refused.err()
        );
        drop(permit);
        let mut permit = admission.reserve(json.len()).unwrap();
        let batch = unpack_now::<Traces>(
            json.clone(),
            Compression::None,
            Encoding::Json,
            usize::MAX,
            &mut permit,
        )
        .unwrap();
        assert_eq!(batch.items(), 50_000);
        assert_eq!(
            permit.bytes(),
            json.len(),
            "the rest of the bound went back"
        );
        assert!(batch.reserved_bytes() > 200 * 50_000);
        drop((permit, batch));
        assert_eq!(admission.in_flight(), 0);
    }
}
