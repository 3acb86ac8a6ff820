//! Syslog messages (RFC 5424 and RFC 3164) into the attributes, timestamp and severity the
//! Collector's `syslog_parser` produces, with its attribute names and value types.
//!
//! Hand-written rather than taken from a crate: the output must match upstream's field by
//! field (a `-` is an absent attribute, `priority`/`facility`/`version` are integers,
//! `structured_data` is a map of maps), and every failure must leave the entry intact.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::filelog::operators::{Entry, Map, Value};

/// Which RFC the messages follow (`protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Rfc3164,
    Rfc5424,
}

/// Why a message could not be parsed; the entry goes on unparsed with this as its
/// `syslog.parse_error` attribute.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("expecting a priority value within angle brackets")]
    MissingPriority,
    #[error("expecting a priority value in the range 1-191 or equal to 0")]
    BadPriority,
    #[error("expecting a version value in the range 1-999")]
    BadVersion,
    #[error("expecting a timestamp: {0}")]
    BadTimestamp(String),
    #[error("expecting a {field} of at most {max} printable ASCII characters")]
    BadField { field: &'static str, max: usize },
    #[error("malformed structured data: {0}")]
    BadStructuredData(&'static str),
    #[error("the message is not valid UTF-8")]
    NotText,
}

/// Upstream's severity numbers for syslog severities 0 (emerg) to 7 (debug).
const SEVERITY_NUMBERS: [i32; 8] = [21, 19, 18, 17, 13, 10, 9, 5];
const SEVERITY_TEXTS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The attribute an unparsable message carries (sluice's; upstream only logs the error).
pub const PARSE_ERROR_ATTRIBUTE: &str = "syslog.parse_error";

/// A configured parser.
#[derive(Clone, Debug)]
pub struct SyslogParser {
    pub protocol: Protocol,
    /// Zone of RFC 3164 timestamps, which carry none.
    pub location: TimeZone,
    pub allow_skip_pri_header: bool,
}

impl SyslogParser {
    /// Parses the entry's body into its attributes, timestamp and severity; a message that
    /// does not parse keeps its body and gets the parse error as an attribute.
    pub fn apply(&self, entry: &mut Entry) {
        let parsed = match &entry.body {
            Value::Str(s) => self.parse(s, Timestamp::now()),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => self.parse(s, Timestamp::now()),
                Err(_) => Err(ParseError::NotText),
            },
            _ => Err(ParseError::NotText),
        };
        match parsed {
            Ok(message) => message.into_entry(entry),
            Err(e) => {
                entry
                    .attributes
                    .insert(PARSE_ERROR_ATTRIBUTE.to_string(), Value::Str(e.to_string()));
            }
        }
    }

    /// `now` places year-less RFC 3164 timestamps in a year.
    pub fn parse(&self, text: &str, now: Timestamp) -> Result<Message, ParseError> {
        let (priority, rest) = if self.allow_skip_pri_header && !text.starts_with('<') {
            (None, text)
        } else {
            let (p, rest) = priority(text)?;
            (Some(p), rest)
        };
        let mut message = match self.protocol {
            Protocol::Rfc5424 => rfc5424(rest)?,
            Protocol::Rfc3164 => rfc3164(rest, &self.location, now)?,
        };
        message.priority = priority;
        Ok(message)
    }
}

/// What one message holds; absent fields become absent attributes, as upstream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub priority: Option<u8>,
    pub version: Option<u16>,
    pub timestamp: Option<Timestamp>,
    pub hostname: Option<String>,
    pub appname: Option<String>,
    pub proc_id: Option<String>,
    pub msg_id: Option<String>,
    pub structured_data: Option<Elements>,
    pub message: Option<String>,
}

impl Message {
    fn into_entry(self, entry: &mut Entry) {
        let a = &mut entry.attributes;
        let mut text = |key: &str, v: Option<String>| {
            if let Some(v) = v {
                a.insert(key.to_string(), Value::Str(v));
            }
        };
        text("hostname", self.hostname);
        text("appname", self.appname);
        text("proc_id", self.proc_id);
        text("msg_id", self.msg_id);
        text("message", self.message);
        if let Some(v) = self.version {
            a.insert("version".to_string(), Value::Int(i64::from(v)));
        }
        if let Some(sd) = self.structured_data {
            let mut elements = Map::new();
            for (id, params) in sd {
                let mut values = Map::new();
                for (name, value) in params {
                    values.insert(name, Value::Str(value));
                }
                elements.insert(id, Value::Map(values));
            }
            a.insert("structured_data".to_string(), Value::Map(elements));
        }
        if let Some(p) = self.priority {
            a.insert("priority".to_string(), Value::Int(i64::from(p)));
            a.insert("facility".to_string(), Value::Int(i64::from(p / 8)));
            let severity = usize::from(p % 8);
            entry.severity = SEVERITY_NUMBERS[severity];
            entry.severity_text = SEVERITY_TEXTS[severity].to_string();
        }
        if let Some(t) = self.timestamp {
            entry.timestamp = u64::try_from(t.as_nanosecond()).unwrap_or(0);
        }
    }
}

/// `<PRI>`: 1 to 3 digits, at most 191, no leading zero but for `<0>`.
fn priority(text: &str) -> Result<(u8, &str), ParseError> {
    let rest = text.strip_prefix('<').ok_or(ParseError::MissingPriority)?;
    let end = rest.find('>').ok_or(ParseError::MissingPriority)?;
    let digits = &rest[..end];
    if digits.is_empty()
        || digits.len() > 3
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(ParseError::BadPriority);
    }
    let value: u16 = digits.parse().map_err(|_| ParseError::BadPriority)?;
    let value = u8::try_from(value)
        .ok()
        .filter(|v| *v <= 191)
        .ok_or(ParseError::BadPriority)?;
    Ok((value, &rest[end + 1..]))
}

/// The next space-separated header field, and what follows its space (`None` at the end).
fn field(text: &str) -> (&str, Option<&str>) {
    match text.find(' ') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    }
}

/// A header field of at most `max` printable ASCII characters; `-` is absent.
fn header_value(value: &str, name: &'static str, max: usize) -> Result<Option<String>, ParseError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(ParseError::BadField { field: name, max });
    }
    Ok((value != "-").then(|| value.to_string()))
}

fn rfc5424(text: &str) -> Result<Message, ParseError> {
    let (version, rest) = field(text);
    if version.is_empty()
        || version.len() > 3
        || version.starts_with('0')
        || !version.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ParseError::BadVersion);
    }
    let version: u16 = version.parse().map_err(|_| ParseError::BadVersion)?;
    let mut rest = rest.ok_or(ParseError::BadTimestamp("missing".into()))?;
    let (stamp, next) = field(rest);
    let timestamp = if stamp == "-" {
        None
    } else {
        Some(
            stamp
                .parse::<Timestamp>()
                .map_err(|e| ParseError::BadTimestamp(e.to_string()))?,
        )
    };
    let mut values = [None, None, None, None];
    let fields: [(&'static str, usize); 4] = [
        ("hostname", 255),
        ("appname", 48),
        ("proc_id", 128),
        ("msg_id", 32),
    ];
    rest = next.ok_or(ParseError::BadField {
        field: "hostname",
        max: 255,
    })?;
    for (i, (name, max)) in fields.iter().enumerate() {
        let (value, next) = field(rest);
        values[i] = header_value(value, name, *max)?;
        let following = if i + 1 < fields.len() {
            fields[i + 1]
        } else {
            ("structured_data", 0)
        };
        rest = match next {
            Some(n) => n,
            None if i + 1 == fields.len() => {
                return Err(ParseError::BadStructuredData("missing"));
            }
            None => {
                return Err(ParseError::BadField {
                    field: following.0,
                    max: following.1,
                });
            }
        };
    }
    let [hostname, appname, proc_id, msg_id] = values;
    let (structured_data, rest) = structured_data(rest)?;
    let message = match rest {
        None => None,
        Some(m) => {
            let m = m.strip_prefix('\u{feff}').unwrap_or(m);
            (!m.is_empty()).then(|| m.to_string())
        }
    };
    Ok(Message {
        priority: None,
        version: Some(version),
        timestamp,
        hostname,
        appname,
        proc_id,
        msg_id,
        structured_data,
        message,
    })
}

/// Structured data: each element's SD-ID and its parameters, in order.
type Elements = Vec<(String, Vec<(String, String)>)>;

/// `-` or `[id name="value" ...]...`; the text after the space that ends it, if any.
fn structured_data(text: &str) -> Result<(Option<Elements>, Option<&str>), ParseError> {
    if let Some(rest) = text.strip_prefix('-') {
        return match rest.strip_prefix(' ') {
            Some(r) => Ok((None, Some(r))),
            None if rest.is_empty() => Ok((None, None)),
            None => Err(ParseError::BadStructuredData("expected a space after `-`")),
        };
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut elements = Vec::new();
    let name_end = |from: usize| {
        let mut j = from;
        while j < bytes.len() && !matches!(bytes[j], b' ' | b'=' | b']' | b'"') && bytes[j] > 32 {
            j += 1;
        }
        j
    };
    while i < bytes.len() && bytes[i] == b'[' {
        let id_end = name_end(i + 1);
        if id_end == i + 1 || id_end - i - 1 > 32 {
            return Err(ParseError::BadStructuredData("bad SD-ID"));
        }
        let id = text[i + 1..id_end].to_string();
        i = id_end;
        let mut params = Vec::new();
        loop {
            match bytes.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => i += 1,
                _ => return Err(ParseError::BadStructuredData("unterminated element")),
            }
            let n_end = name_end(i);
            if n_end == i || n_end - i > 32 {
                return Err(ParseError::BadStructuredData("bad parameter name"));
            }
            let name = text[i..n_end].to_string();
            if bytes.get(n_end) != Some(&b'=') || bytes.get(n_end + 1) != Some(&b'"') {
                return Err(ParseError::BadStructuredData("expected `=\"` after a name"));
            }
            i = n_end + 2;
            let mut value = String::new();
            let mut start = i;
            loop {
                match bytes.get(i) {
                    None => return Err(ParseError::BadStructuredData("unterminated value")),
                    Some(b'"') => {
                        value.push_str(&text[start..i]);
                        i += 1;
                        break;
                    }
                    // Only `"`, `\` and `]` are escaped; any other backslash is kept.
                    Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                        value.push_str(&text[start..i]);
                        start = i + 1;
                        i += 2;
                    }
                    Some(_) => i += 1,
                }
            }
            params.push((name, value));
        }
        elements.push((id, params));
    }
    if elements.is_empty() {
        return Err(ParseError::BadStructuredData("expected `-` or `[`"));
    }
    let rest = &text[i..];
    match rest.strip_prefix(' ') {
        Some(r) => Ok((Some(elements), Some(r))),
        None if rest.is_empty() => Ok((Some(elements), None)),
        None => Err(ParseError::BadStructuredData(
            "expected a space after the last element",
        )),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mmm dd hh:mm:ss`, `Mmm dd yyyy hh:mm:ss` (as many network devices send) or an RFC 3339
/// timestamp; the rest after the space that follows it.
fn rfc3164_timestamp<'a>(
    text: &'a str,
    zone: &TimeZone,
    now: Timestamp,
) -> Result<(Timestamp, &'a str), ParseError> {
    let bad = |why: &str| ParseError::BadTimestamp(why.to_string());
    if text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let (stamp, rest) = field(text);
        let t = stamp
            .parse::<Timestamp>()
            .map_err(|e| ParseError::BadTimestamp(e.to_string()))?;
        return Ok((t, rest.unwrap_or("")));
    }
    let month = MONTHS
        .iter()
        .position(|m| text.get(..3) == Some(*m))
        .ok_or_else(|| bad("expected a month name"))?;
    let rest = text
        .get(3..)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| bad("expected a space after the month"))?;
    // The day is space-padded (`Jan  5`); some senders zero-pad or do not pad.
    let rest = rest.trim_start_matches(' ');
    let (day, rest) = field(rest);
    let day: i8 = day.parse().map_err(|_| bad("expected a day"))?;
    let rest = rest.ok_or_else(|| bad("expected a time"))?;
    let (year, rest) = match field(rest) {
        (y, Some(r)) if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()) => (
            Some(y.parse::<i16>().map_err(|_| bad("expected a year"))?),
            r,
        ),
        _ => (None, rest),
    };
    let (time, rest) = field(rest);
    let mut parts = time.split(':');
    let mut number = |what: &str| -> Result<i8, ParseError> {
        parts
            .next()
            .filter(|p| p.len() == 2)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad(what))
    };
    let (h, m, s) = (
        number("expected hh")?,
        number("expected mm")?,
        number("expected ss")?,
    );
    let at = |year: i16| -> Result<Timestamp, ParseError> {
        let civil = DateTime::new(year, month as i8 + 1, day, h, m, s, 0)
            .map_err(|e| ParseError::BadTimestamp(e.to_string()))?;
        zone.to_timestamp(civil)
            .map_err(|e| ParseError::BadTimestamp(e.to_string()))
    };
    let stamp = match year {
        Some(y) => at(y)?,
        None => {
            let this_year = zone.to_datetime(now).year();
            let t = at(this_year)?;
            // A December message read in January belongs to the year before.
            if t.duration_since(now).as_secs() > 86_400 * 2 {
                at(this_year - 1)?
            } else {
                t
            }
        }
    };
    Ok((stamp, rest.unwrap_or("")))
}

fn rfc3164(text: &str, zone: &TimeZone, now: Timestamp) -> Result<Message, ParseError> {
    let (timestamp, rest) = rfc3164_timestamp(text, zone, now)?;
    let mut message = Message {
        timestamp: Some(timestamp),
        ..Message::default()
    };
    let (first, after) = field(rest);
    // A first word that is a tag (`app:` or `app[12]:`) means the sender left out the host.
    let rest = if first.is_empty() || first.ends_with(':') || first.contains('[') {
        rest
    } else {
        message.hostname = Some(first.to_string());
        after.unwrap_or("")
    };
    let tag_end = rest.find([':', '[', ' ']).unwrap_or(rest.len());
    let tag = &rest[..tag_end];
    let after_tag = &rest[tag_end..];
    let body = if !tag.is_empty() && tag.len() <= 48 && after_tag.starts_with('[') {
        match after_tag.find("]") {
            Some(close) if after_tag[close + 1..].starts_with(':') => {
                message.appname = Some(tag.to_string());
                message.proc_id = Some(after_tag[1..close].to_string());
                &after_tag[close + 2..]
            }
            _ => rest,
        }
    } else if !tag.is_empty() && tag.len() <= 48 && after_tag.starts_with(':') {
        message.appname = Some(tag.to_string());
        &after_tag[1..]
    } else {
        rest
    };
    let body = body.strip_prefix(' ').unwrap_or(body);
    message.message = (!body.is_empty()).then(|| body.to_string());
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(protocol: Protocol) -> SyslogParser {
        SyslogParser {
            protocol,
            location: TimeZone::UTC,
            allow_skip_pri_header: false,
        }
    }

    fn now() -> Timestamp {
        "2024-06-15T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let text = r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 77 ID47 [exampleSDID@32473 iut="3" eventSource="Appli\"cation" eventID="1011"][examplePriority@32473 class="high"] An application event"#;
        let m = parser(Protocol::Rfc5424).parse(text, now()).unwrap();
        assert_eq!(m.priority, Some(165));
        assert_eq!(m.version, Some(1));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.appname.as_deref(), Some("evntslog"));
        assert_eq!(m.proc_id.as_deref(), Some("77"));
        assert_eq!(m.msg_id.as_deref(), Some("ID47"));
        assert_eq!(m.message.as_deref(), Some("An application event"));
        let sd = m.structured_data.clone().unwrap();
        assert_eq!(sd[0].0, "exampleSDID@32473");
        assert_eq!(sd[0].1[1], ("eventSource".into(), "Appli\"cation".into()));
        assert_eq!(sd[1].1, vec![("class".into(), "high".into())]);
        let mut entry = Entry::new(Value::Str(text.into()), 1);
        parser(Protocol::Rfc5424).apply(&mut entry);
        assert_eq!(entry.body, Value::Str(text.into()));
        assert_eq!(entry.severity, 10);
        assert_eq!(entry.severity_text, "notice");
        assert_eq!(entry.attributes["facility"], Value::Int(20));
        assert_eq!(entry.attributes["priority"], Value::Int(165));
        assert_eq!(entry.attributes["version"], Value::Int(1));
        assert_eq!(entry.timestamp, 1_065_910_455_003_000_000);
        let Value::Map(sd) = &entry.attributes["structured_data"] else {
            panic!("structured_data is not a map")
        };
        assert_eq!(
            sd["examplePriority@32473"],
            Value::Map(Map::from([("class".into(), Value::Str("high".into()))]))
        );
    }

    #[test]
    fn rfc5424_nil_values_are_absent() {
        let m = parser(Protocol::Rfc5424)
            .parse("<13>1 - - - - - -", now())
            .unwrap();
        assert_eq!(
            m,
            Message {
                priority: Some(13),
                version: Some(1),
                ..Message::default()
            }
        );
        let m = parser(Protocol::Rfc5424)
            .parse(
                "<13>1 2024-01-02T03:04:05.123456+01:00 host user - - [timeQuality tzKnown=\"1\"] \u{feff}hello",
                now(),
            )
            .unwrap();
        assert_eq!(m.message.as_deref(), Some("hello"));
        assert_eq!(
            m.timestamp,
            Some("2024-01-02T02:04:05.123456Z".parse().unwrap())
        );
    }

    #[test]
    fn rfc3164_with_and_without_year_and_host() {
        let p = parser(Protocol::Rfc3164);
        let m = p
            .parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed", now())
            .unwrap();
        assert_eq!(m.priority, Some(34));
        assert_eq!(m.hostname.as_deref(), Some("mymachine"));
        assert_eq!(m.appname.as_deref(), Some("su"));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.message.as_deref(), Some("'su root' failed"));
        // No year: the current one, or the one before for a date ahead of now.
        assert_eq!(m.timestamp, Some("2023-10-11T22:14:15Z".parse().unwrap()));
        let m = p
            .parse("<13>Jun  5 01:02:03 host app[123]: hi there", now())
            .unwrap();
        assert_eq!(m.timestamp, Some("2024-06-05T01:02:03Z".parse().unwrap()));
        assert_eq!(m.proc_id.as_deref(), Some("123"));
        let m = p
            .parse(
                "<13>Jun 05 2021 01:02:03 switch1 %LINK-3-UPDOWN: down",
                now(),
            )
            .unwrap();
        assert_eq!(m.timestamp, Some("2021-06-05T01:02:03Z".parse().unwrap()));
        assert_eq!(m.appname.as_deref(), Some("%LINK-3-UPDOWN"));
        let m = p.parse("<13>Jun  5 01:02:03 app: no host", now()).unwrap();
        assert_eq!(m.hostname, None);
        assert_eq!(m.appname.as_deref(), Some("app"));
        let ny = SyslogParser {
            location: TimeZone::get("America/New_York").unwrap(),
            ..p.clone()
        };
        let m = ny.parse("<13>Jun  5 01:02:03 h a: x", now()).unwrap();
        assert_eq!(m.timestamp, Some("2024-06-05T05:02:03Z".parse().unwrap()));
    }

    #[test]
    fn missing_priority() {
        let p = parser(Protocol::Rfc3164);
        assert_eq!(
            p.parse("Jun  5 01:02:03 host app: x", now()),
            Err(ParseError::MissingPriority)
        );
        let skip = SyslogParser {
            allow_skip_pri_header: true,
            ..p
        };
        let m = skip.parse("Jun  5 01:02:03 host app: x", now()).unwrap();
        assert_eq!(m.priority, None);
        let mut entry = Entry::new(Value::Str("Jun  5 01:02:03 host app: x".into()), 1);
        skip.apply(&mut entry);
        assert!(!entry.attributes.contains_key("priority"));
        assert_eq!(entry.severity, 0);
    }

    #[test]
    fn malformed_messages_are_kept_with_the_error() {
        for (protocol, text) in [
            (Protocol::Rfc5424, "<999>1 - - - - - -"),
            (Protocol::Rfc5424, "<13>1 yesterday host app - - - x"),
            (Protocol::Rfc5424, "<13>1 - - - - - [unterminated"),
            (Protocol::Rfc5424, "<13>"),
            (Protocol::Rfc3164, "<13>Someday 12:00 x"),
            (Protocol::Rfc3164, "plain text"),
        ] {
            let mut entry = Entry::new(Value::Str(text.into()), 1);
            parser(protocol).apply(&mut entry);
            assert_eq!(entry.body, Value::Str(text.into()), "{text}");
            assert!(
                matches!(&entry.attributes[PARSE_ERROR_ATTRIBUTE], Value::Str(s) if !s.is_empty()),
                "{text}"
            );
            assert_eq!(entry.attributes.len(), 1, "{text}");
        }
    }
}
