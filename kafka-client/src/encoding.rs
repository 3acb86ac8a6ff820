//! The `encoding` values of the OTel Collector's Kafka components that sluice implements, and
//! the clear refusal of those it does not: a payload read or written in another format than the
//! user asked for would change their data, so an unknown value is never defaulted away.

use std::borrow::Cow;

use sluice_config::SignalKind;

/// How a message's payload holds telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// OTLP protobuf export request (every signal; the default).
    #[default]
    OtlpProto,
    /// OTLP/JSON export request (every signal).
    OtlpJson,
    /// Logs: the whole payload is one record with a bytes body (receiver); a record's body as
    /// the payload (exporter).
    Raw,
    /// Logs, receiver only: the payload, decoded from `Charset`, is one record's string body.
    Text(Charset),
    /// Logs, receiver only: the payload is a JSON object that becomes one record's map body.
    Json,
}

/// The character set of a `text` payload (`text` is UTF-8, `text_<charset>` names another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    /// `nop`: the bytes as they are (invalid UTF-8 replaced, as a log body must be text).
    Nop,
    /// ISO-8859-1 proper: every byte is the code point of the same value. (WHATWG, and so
    /// `encoding_rs`, read the label as windows-1252, which differs in 0x80..0x9F.)
    Latin1,
    /// `utf-16` / `utf16`: little-endian, any byte-order mark kept as a character, as the OTel
    /// Collector reads it.
    Utf16Le,
    Other(&'static encoding_rs::Encoding),
}

impl Charset {
    /// The charset a `text_<label>` names, with the OTel Collector's own spellings first.
    fn from_label(label: &str) -> Option<Charset> {
        let lower = label.to_ascii_lowercase();
        Some(match lower.as_str() {
            "" | "utf-8" | "utf8" | "utf-8-raw" | "utf8-raw" | "ascii" | "us-ascii" => {
                Charset::Utf8
            }
            "nop" => Charset::Nop,
            "utf-16" | "utf16" => Charset::Utf16Le,
            "iso-8859-1" | "iso_8859-1" | "iso8859-1" | "latin1" | "l1" => Charset::Latin1,
            _ => Charset::Other(encoding_rs::Encoding::for_label(lower.as_bytes())?),
        })
    }

    fn label(self) -> Cow<'static, str> {
        match self {
            Charset::Utf8 => "utf-8".into(),
            Charset::Nop => "nop".into(),
            Charset::Latin1 => "iso-8859-1".into(),
            Charset::Utf16Le => "utf-16".into(),
            Charset::Other(e) => e.name().to_ascii_lowercase().into(),
        }
    }

    /// The payload as text.
    pub fn decode(self, payload: &[u8]) -> String {
        match self {
            Charset::Utf8 | Charset::Nop => String::from_utf8_lossy(payload).into_owned(),
            Charset::Latin1 => payload.iter().map(|b| char::from(*b)).collect(),
            Charset::Utf16Le => encoding_rs::UTF_16LE
                .decode_without_bom_handling(payload)
                .0
                .into_owned(),
            Charset::Other(e) => e.decode_without_bom_handling(payload).0.into_owned(),
        }
    }
}

/// Which end reads an encoding: they support different sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Receiver,
    Exporter,
}

/// Encodings of the OTel Collector that sluice does not implement, and why, so the error says
/// what to do instead rather than only "unknown".
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    (
        "jaeger_proto",
        "sluice does not translate Jaeger spans; send OTLP (otlp_proto, otlp_json) through Kafka",
    ),
    (
        "jaeger_json",
        "sluice does not translate Jaeger spans; send OTLP (otlp_proto, otlp_json) through Kafka",
    ),
    (
        "zipkin_proto",
        "sluice does not translate Zipkin spans; send OTLP (otlp_proto, otlp_json) through Kafka",
    ),
    (
        "zipkin_json",
        "sluice does not translate Zipkin spans; send OTLP (otlp_proto, otlp_json) through Kafka",
    ),
    (
        "zipkin_thrift",
        "sluice does not translate Zipkin spans; send OTLP (otlp_proto, otlp_json) through Kafka",
    ),
    (
        "azure_resource_logs",
        "sluice does not translate Azure resource logs; read them as `json` logs",
    ),
    (
        "avro",
        "sluice has no Avro decoding; read the payload as `raw` or `json` logs",
    ),
];

impl Encoding {
    /// The encoding `name` means for `signal` at `side`, or why it cannot be used there.
    pub fn parse(name: &str, signal: SignalKind, side: Side) -> Result<Encoding, String> {
        let supported = supported(signal, side);
        let encoding = match name {
            "otlp_proto" => Encoding::OtlpProto,
            "otlp_json" => Encoding::OtlpJson,
            "raw" => Encoding::Raw,
            "text" => Encoding::Text(Charset::Utf8),
            "json" => Encoding::Json,
            other => {
                if let Some(label) = other.strip_prefix("text_") {
                    match Charset::from_label(label) {
                        Some(charset) => Encoding::Text(charset),
                        None => {
                            return Err(format!(
                                "`{other}`: `{label}` is not a character set sluice knows (e.g. text_utf-8, text_shift_jis, text_iso-8859-1)"
                            ));
                        }
                    }
                } else if let Some((_, why)) = NOT_IMPLEMENTED.iter().find(|(n, _)| *n == other) {
                    return Err(format!(
                        "`{other}` is not supported: {why}; sluice supports {supported} for {}",
                        signal.as_str()
                    ));
                } else {
                    return Err(format!(
                        "`{other}` is not an encoding sluice knows (the OTel Collector would look for an encoding extension of that name, and sluice has none); sluice supports {supported} for {}",
                        signal.as_str()
                    ));
                }
            }
        };
        let fits = match encoding {
            Encoding::OtlpProto | Encoding::OtlpJson => true,
            Encoding::Raw => signal == SignalKind::Logs,
            Encoding::Text(_) | Encoding::Json => {
                signal == SignalKind::Logs && side == Side::Receiver
            }
        };
        if !fits {
            return Err(format!(
                "`{name}` cannot be used for {}: the {} supports {supported} for {}",
                signal.as_str(),
                match side {
                    Side::Receiver => "kafka receiver",
                    Side::Exporter => "kafka exporter",
                },
                signal.as_str()
            ));
        }
        Ok(encoding)
    }

    /// Its name, as written in configs and in the `sluice.encoding` header.
    pub fn name(self) -> Cow<'static, str> {
        match self {
            Encoding::OtlpProto => "otlp_proto".into(),
            Encoding::OtlpJson => "otlp_json".into(),
            Encoding::Raw => "raw".into(),
            Encoding::Text(Charset::Utf8) => "text".into(),
            Encoding::Text(c) => format!("text_{}", c.label()).into(),
            Encoding::Json => "json".into(),
        }
    }

    /// The encoding a `sluice.encoding` header names, for the receiver.
    pub fn from_header(value: &[u8], signal: SignalKind) -> Result<Encoding, String> {
        let name = std::str::from_utf8(value)
            .map_err(|_| "a header value that is not UTF-8".to_string())?;
        Encoding::parse(name, signal, Side::Receiver)
    }
}

fn supported(signal: SignalKind, side: Side) -> &'static str {
    match (signal, side) {
        (SignalKind::Logs, Side::Receiver) => {
            "otlp_proto, otlp_json, raw, text, text_<charset> and json"
        }
        (SignalKind::Logs, Side::Exporter) => "otlp_proto, otlp_json and raw",
        _ => "otlp_proto and otlp_json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unsupported_ones_say_what_is_supported() {
        for name in [
            "otlp_proto",
            "otlp_json",
            "raw",
            "text",
            "json",
            "text_shift_jis",
        ] {
            let e = Encoding::parse(name, SignalKind::Logs, Side::Receiver).unwrap();
            assert_eq!(e.name(), name);
        }
        let err = Encoding::parse("zipkin_json", SignalKind::Traces, Side::Receiver).unwrap_err();
        assert!(err.contains("otlp_proto and otlp_json"), "{err}");
        let err = Encoding::parse("json", SignalKind::Logs, Side::Exporter).unwrap_err();
        assert!(err.contains("otlp_proto, otlp_json and raw"), "{err}");
        let err = Encoding::parse("raw", SignalKind::Metrics, Side::Receiver).unwrap_err();
        assert!(err.contains("cannot be used for metrics"), "{err}");
        let err = Encoding::parse("otlp_encoding", SignalKind::Logs, Side::Receiver).unwrap_err();
        assert!(err.contains("encoding extension"), "{err}");
        assert!(Encoding::parse("text_klingon", SignalKind::Logs, Side::Receiver).is_err());
    }

    #[test]
    fn text_charsets_decode_as_the_collector_does() {
        let text = |label: &str, bytes: &[u8]| match Encoding::parse(
            &format!("text_{label}"),
            SignalKind::Logs,
            Side::Receiver,
        )
        .unwrap()
        {
            Encoding::Text(c) => c.decode(bytes),
            other => panic!("{other:?}"),
        };
        assert_eq!(text("shift_jis", b"\x82\xa0"), "あ");
        // ISO-8859-1 proper, not windows-1252: 0x80 is U+0080, not the euro sign.
        assert_eq!(text("iso-8859-1", b"\x80\xe9"), "\u{80}é");
        assert_eq!(text("utf-16", b"h\0i\0"), "hi");
        assert_eq!(text("us-ascii", "é".as_bytes()), "é");
        assert_eq!(text("utf-8", b"a\xffb"), "a\u{fffd}b");
    }
}
