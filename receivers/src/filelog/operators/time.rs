//! Timestamp layouts as stanza reads them: `strptime` directives (stanza's set, with `%L`,
//! `%f`, `%s` for milli/micro/nanoseconds), Go reference layouts (`gotime`), and `epoch`
//! numbers (`s`, `ms`, `us`, `ns`, `s.ms`, `s.us`, `s.ns`).

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

use super::entry::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TimeError(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Year4,
    Year2,
    Month,
    MonthSpace,
    MonthAbbr,
    MonthFull,
    Day,
    DaySpace,
    DayOfYear,
    WeekdayAbbr,
    WeekdayFull,
    Hour24,
    Hour12,
    Minute,
    Second,
    AmPm,
    /// `.999`, `,000`: a separator then any number of digits (Go reads any count).
    Fraction,
    /// `%L`/`%f`/`%s` not after a separator: digits read as a fraction of a second.
    Digits(usize),
    ZoneAbbr,
    /// A numeric offset; `z` also accepts `Z` for UTC.
    Offset {
        z: bool,
    },
    Literal(char),
}

/// A compiled layout.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    Tokens(Vec<Token>),
    Epoch(EpochUnit),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
    SecondsMillis,
    SecondsMicros,
    SecondsNanos,
}

impl Layout {
    pub fn compile(layout_type: &str, layout: &str) -> Result<Layout, TimeError> {
        match layout_type {
            "strptime" | "" => strptime(layout).map(Layout::Tokens),
            "gotime" => Ok(Layout::Tokens(gotime(layout))),
            "epoch" => Ok(Layout::Epoch(match layout {
                "s" => EpochUnit::Seconds,
                "ms" => EpochUnit::Millis,
                "us" => EpochUnit::Micros,
                "ns" => EpochUnit::Nanos,
                "s.ms" => EpochUnit::SecondsMillis,
                "s.us" => EpochUnit::SecondsMicros,
                "s.ns" => EpochUnit::SecondsNanos,
                other => {
                    return Err(TimeError(format!(
                        "invalid epoch layout `{other}` (use s, ms, us, ns, s.ms, s.us or s.ns)"
                    )));
                }
            })),
            other => Err(TimeError(format!(
                "invalid layout_type `{other}` (use strptime, gotime or epoch)"
            ))),
        }
    }
}

fn strptime(layout: &str) -> Result<Vec<Token>, TimeError> {
    let mut out = Vec::new();
    expand_strptime(layout, &mut out)?;
    Ok(out)
}

fn expand_strptime(layout: &str, out: &mut Vec<Token>) -> Result<(), TimeError> {
    let mut chars = layout.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(Token::Literal(c));
            continue;
        }
        let Some(d) = chars.next() else {
            return Err(TimeError("layout ends with a lone `%`".into()));
        };
        let fraction = |out: &mut Vec<Token>, digits| {
            if matches!(out.last(), Some(Token::Literal('.' | ','))) {
                out.pop();
                out.push(Token::Fraction);
            } else {
                out.push(Token::Digits(digits));
            }
        };
        match d {
            'Y' => out.push(Token::Year4),
            'y' => out.push(Token::Year2),
            'm' | 'q' => out.push(Token::Month),
            'o' => out.push(Token::MonthSpace),
            'b' | 'h' => out.push(Token::MonthAbbr),
            'B' => out.push(Token::MonthFull),
            'd' | 'g' => out.push(Token::Day),
            'e' => out.push(Token::DaySpace),
            'a' => out.push(Token::WeekdayAbbr),
            'A' => out.push(Token::WeekdayFull),
            'H' => out.push(Token::Hour24),
            'I' | 'l' => out.push(Token::Hour12),
            'p' | 'P' => out.push(Token::AmPm),
            'M' => out.push(Token::Minute),
            'S' => out.push(Token::Second),
            'L' => fraction(out, 3),
            'f' => fraction(out, 6),
            's' => fraction(out, 9),
            'Z' => out.push(Token::ZoneAbbr),
            'z' => out.push(Token::Offset { z: true }),
            'i' | 'j' | 'k' => out.push(Token::Offset { z: false }),
            'D' => expand_strptime("%m/%d/%y", out)?,
            'F' => expand_strptime("%Y-%m-%d", out)?,
            'T' => expand_strptime("%H:%M:%S", out)?,
            'r' => expand_strptime("%l:%M:%S %p", out)?,
            'c' => expand_strptime("%a %b %d %H:%M:%S %Y", out)?,
            'R' => expand_strptime("%H:%M", out)?,
            'n' => out.push(Token::Literal('\n')),
            't' => out.push(Token::Literal('\t')),
            '%' => out.push(Token::Literal('%')),
            other => {
                return Err(TimeError(format!(
                    "unsupported strptime directive `%{other}`"
                )));
            }
        }
    }
    Ok(())
}

/// Go's reference-time layout (`Mon Jan 2 15:04:05 MST 2006`).
fn gotime(layout: &str) -> Vec<Token> {
    // Longest spellings first, so `January` is not read as `Jan` + `uary`.
    const WORDS: &[(&str, Token)] = &[
        ("January", Token::MonthFull),
        ("Monday", Token::WeekdayFull),
        ("Z07:00:00", Token::Offset { z: true }),
        ("-07:00:00", Token::Offset { z: false }),
        ("Z07:00", Token::Offset { z: true }),
        ("-07:00", Token::Offset { z: false }),
        ("Z0700", Token::Offset { z: true }),
        ("-0700", Token::Offset { z: false }),
        ("2006", Token::Year4),
        ("Z07", Token::Offset { z: true }),
        ("-07", Token::Offset { z: false }),
        ("Jan", Token::MonthAbbr),
        ("Mon", Token::WeekdayAbbr),
        ("MST", Token::ZoneAbbr),
        ("002", Token::DayOfYear),
        ("_2", Token::DaySpace),
        ("_1", Token::MonthSpace),
        ("01", Token::Month),
        ("02", Token::Day),
        ("03", Token::Hour12),
        ("04", Token::Minute),
        ("05", Token::Second),
        ("06", Token::Year2),
        ("15", Token::Hour24),
        ("PM", Token::AmPm),
        ("pm", Token::AmPm),
        ("1", Token::Month),
        ("2", Token::Day),
        ("3", Token::Hour12),
        ("4", Token::Minute),
        ("5", Token::Second),
    ];
    let mut out = Vec::new();
    let mut rest = layout;
    while !rest.is_empty() {
        // `.000` / `.999` / `,999...`: a fraction of the second.
        let bytes = rest.as_bytes();
        if (bytes[0] == b'.' || bytes[0] == b',')
            && bytes.len() > 1
            && (bytes[1] == b'0' || bytes[1] == b'9')
        {
            let digit = bytes[1];
            let n = bytes[1..].iter().take_while(|&&b| b == digit).count();
            let next_is_digit = bytes.get(1 + n).is_some_and(u8::is_ascii_digit);
            if !next_is_digit {
                out.push(Token::Fraction);
                rest = &rest[1 + n..];
                continue;
            }
        }
        if let Some((word, token)) = WORDS.iter().find(|(w, _)| rest.starts_with(w)) {
            out.push(*token);
            rest = &rest[word.len()..];
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(Token::Literal(c));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// How a parsed time that names no offset is placed.
pub struct Zones {
    pub location: TimeZone,
    /// `time_zone_locations`: abbreviations (`PDT`) to zones.
    pub abbreviations: HashMap<String, TimeZone>,
}

impl Zones {
    /// `location` as configured (an IANA name, `Local`, `UTC`), the local zone when empty.
    pub fn new(
        location: Option<&str>,
        names: &HashMap<String, String>,
    ) -> Result<Zones, TimeError> {
        let zone = |name: &str| -> Result<TimeZone, TimeError> {
            match name {
                "" | "Local" | "local" => Ok(TimeZone::system()),
                "UTC" | "utc" => Ok(TimeZone::UTC),
                name => TimeZone::get(name)
                    .map_err(|e| TimeError(format!("unknown time zone `{name}`: {e}"))),
            }
        };
        let mut abbreviations = HashMap::new();
        for (abbreviation, name) in names {
            abbreviations.insert(abbreviation.clone(), zone(name)?);
        }
        Ok(Zones {
            location: zone(location.unwrap_or(""))?,
            abbreviations,
        })
    }

    pub fn utc() -> Zones {
        Zones {
            location: TimeZone::UTC,
            abbreviations: HashMap::new(),
        }
    }
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Abbreviations Go would only know from the local zone; known here wherever the collector
/// runs, so `EST` means the same in a container set to UTC.
const KNOWN_ABBREVIATIONS: &[(&str, i32)] = &[
    ("UTC", 0),
    ("GMT", 0),
    ("Z", 0),
    ("EST", -5 * 3600),
    ("EDT", -4 * 3600),
    ("CST", -6 * 3600),
    ("CDT", -5 * 3600),
    ("MST", -7 * 3600),
    ("MDT", -6 * 3600),
    ("PST", -8 * 3600),
    ("PDT", -7 * 3600),
];

#[derive(Default)]
struct Parts {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    pm: Option<bool>,
    offset: Option<i32>,
    zone: Option<TimeZone>,
}

struct Input<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Input<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let rest = self.rest().as_bytes();
        let n = rest
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let value = self.rest()[..n].parse().ok()?;
        self.at += n;
        Some(value)
    }

    fn skip_space(&mut self) {
        if self.rest().starts_with(' ') {
            self.at += 1;
        }
    }

    fn word(&mut self, names: &[&str], abbreviated: bool) -> Option<usize> {
        let rest = self.rest();
        for (i, name) in names.iter().enumerate() {
            let want = if abbreviated { &name[..3] } else { name };
            if rest.len() >= want.len()
                && rest.is_char_boundary(want.len())
                && rest[..want.len()].eq_ignore_ascii_case(want)
            {
                self.at += want.len();
                return Some(i);
            }
        }
        None
    }
}

impl Layout {
    /// Parses `value` into Unix nanoseconds.
    pub fn parse(&self, value: &Value, zones: &Zones) -> Result<u64, TimeError> {
        match self {
            Layout::Epoch(unit) => epoch(*unit, value),
            Layout::Tokens(tokens) => {
                let text = match value {
                    Value::Str(s) => s.as_str(),
                    other => {
                        return Err(TimeError(format!(
                            "a {} cannot be parsed as a time with this layout",
                            match other {
                                Value::Int(_) | Value::Float(_) => "number",
                                _ => "non-string value",
                            }
                        )));
                    }
                };
                parse_tokens(tokens, text, zones)
            }
        }
    }
}

fn parse_tokens(tokens: &[Token], text: &str, zones: &Zones) -> Result<u64, TimeError> {
    let bad = |what: &str| TimeError(format!("cannot parse `{text}`: {what}"));
    let mut input = Input { text, at: 0 };
    let mut p = Parts::default();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Literal(c) => {
                if input.rest().starts_with(*c) {
                    input.at += c.len_utf8();
                } else if *c == ' ' && input.rest().is_empty() {
                    return Err(bad("it ends early"));
                } else {
                    return Err(bad(&format!("expected `{c}` at position {}", input.at)));
                }
            }
            Token::Year4 => {
                p.year = Some(input.digits(4, 4).ok_or_else(|| bad("bad year"))? as i32);
            }
            Token::Year2 => {
                let y = input.digits(2, 2).ok_or_else(|| bad("bad year"))? as i32;
                p.year = Some(if y >= 69 { 1900 + y } else { 2000 + y });
            }
            Token::Month | Token::MonthSpace => {
                input.skip_space();
                p.month = Some(input.digits(1, 2).ok_or_else(|| bad("bad month"))?);
            }
            Token::MonthAbbr | Token::MonthFull => {
                let m = input
                    .word(&MONTHS, *token == Token::MonthAbbr)
                    .ok_or_else(|| bad("bad month name"))?;
                p.month = Some(m as u32 + 1);
            }
            Token::Day | Token::DaySpace => {
                input.skip_space();
                p.day = Some(input.digits(1, 2).ok_or_else(|| bad("bad day"))?);
            }
            Token::DayOfYear => {
                p.day_of_year = Some(input.digits(1, 3).ok_or_else(|| bad("bad day of year"))?);
            }
            Token::WeekdayAbbr | Token::WeekdayFull => {
                input
                    .word(&WEEKDAYS, *token == Token::WeekdayAbbr)
                    .ok_or_else(|| bad("bad weekday"))?;
            }
            Token::Hour24 | Token::Hour12 => {
                input.skip_space();
                p.hour = input.digits(1, 2).ok_or_else(|| bad("bad hour"))?;
            }
            Token::Minute => p.minute = input.digits(1, 2).ok_or_else(|| bad("bad minute"))?,
            Token::Second => {
                p.second = input.digits(1, 2).ok_or_else(|| bad("bad second"))?;
                // Go reads a fraction after the seconds even when the layout has none.
                let next_is_fraction =
                    matches!(tokens.get(i + 1), Some(Token::Fraction | Token::Digits(_)));
                if !next_is_fraction {
                    fraction(&mut input, &mut p);
                }
            }
            Token::AmPm => {
                let rest = input.rest();
                if rest.len() >= 2 && rest.is_char_boundary(2) {
                    match rest[..2].to_ascii_lowercase().as_str() {
                        "am" => p.pm = Some(false),
                        "pm" => p.pm = Some(true),
                        _ => return Err(bad("expected AM or PM")),
                    }
                    input.at += 2;
                } else {
                    return Err(bad("expected AM or PM"));
                }
            }
            Token::Fraction => fraction(&mut input, &mut p),
            Token::Digits(n) => {
                let start = input.at;
                let value = input.digits(1, *n).ok_or_else(|| bad("bad fraction"))?;
                let read = input.at - start;
                p.nanos = value * 10u32.pow(9 - read as u32);
            }
            Token::ZoneAbbr => {
                let rest = input.rest();
                let n = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
                if n < 1 {
                    return Err(bad("expected a time zone name"));
                }
                let name = &rest[..n];
                input.at += n;
                // `UTC+3`-style suffixes are not in any layout users write; stop here.
                if let Some(zone) = zones.abbreviations.get(name) {
                    p.zone = Some(zone.clone());
                } else if let Some(&(_, seconds)) =
                    KNOWN_ABBREVIATIONS.iter().find(|(a, _)| *a == name)
                {
                    p.offset = Some(seconds);
                } else {
                    // The location's own abbreviation (e.g. `IST` with Asia/Kolkata) is
                    // resolved by placing the time in the location; otherwise Go treats an
                    // unknown abbreviation as offset zero.
                    let now = Timestamp::now();
                    let own = zones.location.to_offset_info(now).abbreviation() == name;
                    if !own {
                        p.offset = Some(0);
                    }
                }
            }
            Token::Offset { z } => {
                let rest = input.rest();
                if *z && rest.starts_with('Z') {
                    input.at += 1;
                    p.offset = Some(0);
                    continue;
                }
                let sign = match rest.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return Err(bad("expected a UTC offset")),
                };
                input.at += 1;
                let hours = input.digits(2, 2).ok_or_else(|| bad("bad UTC offset"))? as i32;
                let mut seconds = hours * 3600;
                if input.rest().starts_with(':') {
                    input.at += 1;
                }
                if let Some(minutes) = input.digits(2, 2) {
                    seconds += minutes as i32 * 60;
                    if input.rest().starts_with(':') {
                        input.at += 1;
                    }
                    if let Some(secs) = input.digits(2, 2) {
                        seconds += secs as i32;
                    }
                }
                p.offset = Some(sign * seconds);
            }
        }
    }
    if !input.rest().is_empty() {
        return Err(bad(&format!("extra text `{}`", input.rest())));
    }
    assemble(p, zones).map_err(|e| bad(&e))
}

fn fraction(input: &mut Input<'_>, p: &mut Parts) {
    let rest = input.rest().as_bytes();
    if rest.len() >= 2 && (rest[0] == b'.' || rest[0] == b',') && rest[1].is_ascii_digit() {
        input.at += 1;
        let digits = input.rest().bytes().take_while(u8::is_ascii_digit).count();
        let text = &input.rest()[..digits];
        let mut nanos: u32 = 0;
        for (i, b) in text.bytes().take(9).enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        p.nanos = nanos;
        input.at += digits;
    }
}

fn assemble(p: Parts, zones: &Zones) -> Result<u64, String> {
    let mut hour = p.hour;
    match p.pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    // A layout without a year (syslog's `Jan 2 15:04:05`) means this year.
    let year = match p.year {
        Some(y) => y,
        None => i32::from(zones.location.to_datetime(Timestamp::now()).year()),
    };
    let (month, day) = match (p.day_of_year, p.month, p.day) {
        (Some(doy), None, _) => {
            let start = jiff::civil::Date::new(year as i16, 1, 1).map_err(|e| e.to_string())?;
            let date = start
                .checked_add(jiff::Span::new().days(i64::from(doy) - 1))
                .map_err(|e| e.to_string())?;
            (date.month() as u32, date.day() as u32)
        }
        (_, m, d) => (m.unwrap_or(1), d.unwrap_or(1)),
    };
    let datetime = DateTime::new(
        i16::try_from(year).map_err(|_| "year out of range".to_string())?,
        month as i8,
        day as i8,
        hour as i8,
        p.minute as i8,
        p.second as i8,
        p.nanos as i32,
    )
    .map_err(|e| e.to_string())?;
    let timestamp = if let Some(seconds) = p.offset {
        Offset::from_seconds(seconds)
            .and_then(|o| o.to_timestamp(datetime))
            .map_err(|e| e.to_string())?
    } else {
        let zone = p.zone.as_ref().unwrap_or(&zones.location);
        zone.to_timestamp(datetime).map_err(|e| e.to_string())?
    };
    u64::try_from(timestamp.as_nanosecond()).map_err(|_| "time before 1970".to_string())
}

fn epoch(unit: EpochUnit, value: &Value) -> Result<u64, TimeError> {
    let bad = || TimeError(format!("`{}` is not a valid epoch time", value.to_text()));
    // Whole and fractional parts kept apart, so `1136214245.123456789` loses nothing.
    let (whole, fraction_nanos): (i64, i64) = match value {
        Value::Int(i) => (*i, 0),
        Value::Float(f) => {
            let whole = f.trunc();
            (whole as i64, ((f - whole) * 1e9).round() as i64)
        }
        Value::Str(s) => {
            let s = s.trim();
            match s.split_once('.') {
                Some((w, f)) => {
                    let whole: i64 = w.parse().map_err(|_| bad())?;
                    if !f.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    let mut nanos = 0i64;
                    for (i, b) in f.bytes().take(9).enumerate() {
                        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
                    }
                    (whole, nanos)
                }
                None => (s.parse().map_err(|_| bad())?, 0),
            }
        }
        _ => return Err(bad()),
    };
    let nanos: i128 = match unit {
        EpochUnit::Seconds
        | EpochUnit::SecondsMillis
        | EpochUnit::SecondsMicros
        | EpochUnit::SecondsNanos => i128::from(whole) * 1_000_000_000 + i128::from(fraction_nanos),
        EpochUnit::Millis => i128::from(whole) * 1_000_000,
        EpochUnit::Micros => i128::from(whole) * 1_000,
        EpochUnit::Nanos => i128::from(whole),
    };
    u64::try_from(nanos).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: &str, layout: &str, value: &str) -> u64 {
        Layout::compile(kind, layout)
            .unwrap()
            .parse(&Value::Str(value.into()), &Zones::utc())
            .unwrap()
    }

    fn rfc3339(nanos: u64) -> String {
        Timestamp::from_nanosecond(nanos as i128)
            .unwrap()
            .to_string()
    }

    #[test]
    fn strptime_layouts_from_the_docs() {
        assert_eq!(
            rfc3339(parse(
                "strptime",
                "%Y-%m-%d %H:%M:%S.%f %z",
                "2022-01-02 07:24:56,123 -0700"
            )),
            "2022-01-02T14:24:56.123Z"
        );
        assert_eq!(
            rfc3339(parse(
                "strptime",
                "%Y-%m-%dT%H:%M:%S.%LZ",
                "2022-01-02T14:24:56.123123123Z"
            )),
            "2022-01-02T14:24:56.123123123Z"
        );
        assert_eq!(
            rfc3339(parse(
                "strptime",
                "%a %b %e %H:%M:%S %Z %Y",
                "Fri Jun  5 13:50:27 EST 2020"
            )),
            "2020-06-05T18:50:27Z"
        );
        assert_eq!(
            rfc3339(parse("strptime", "%Y-%m-%d", "2020-01-31")),
            "2020-01-31T00:00:00Z"
        );
        assert_eq!(
            rfc3339(parse(
                "strptime",
                "%d/%b/%Y:%H:%M:%S %z",
                "10/Oct/2000:13:55:36 -0700"
            )),
            "2000-10-10T20:55:36Z"
        );
        assert_eq!(
            rfc3339(parse("strptime", "%r", "01:02:03 pm").saturating_sub(0) % 86_400_000_000_000),
            "1970-01-01T13:02:03Z"
        );
    }

    #[test]
    fn gotime_layouts() {
        assert_eq!(
            rfc3339(parse(
                "gotime",
                "Jan 2 15:04:05 MST 2006",
                "Jun 5 13:50:27 EST 2020"
            )),
            "2020-06-05T18:50:27Z"
        );
        assert_eq!(
            rfc3339(parse(
                "gotime",
                "2006-01-02T15:04:05.999999999Z07:00",
                "2024-04-13T07:59:37.505201169-05:00"
            )),
            "2024-04-13T12:59:37.505201169Z"
        );
        // Go reads any number of fraction digits for `.999`.
        assert_eq!(
            rfc3339(parse(
                "gotime",
                "2006-01-02T15:04:05.999Z",
                "2023-06-22T10:27:25.813799277Z"
            )),
            "2023-06-22T10:27:25.813799277Z"
        );
    }

    #[test]
    fn epochs_and_zones() {
        assert_eq!(parse("epoch", "s", "1136214245"), 1_136_214_245_000_000_000);
        assert_eq!(
            parse("epoch", "s.ns", "1136214245.123456789"),
            1_136_214_245_123_456_789
        );
        assert_eq!(
            parse("epoch", "ms", "1136214245123"),
            1_136_214_245_123_000_000
        );
        let layout = Layout::compile("epoch", "s").unwrap();
        assert_eq!(
            layout
                .parse(&Value::Float(1136214245.5), &Zones::utc())
                .unwrap(),
            1_136_214_245_500_000_000
        );
        let mut names = HashMap::new();
        names.insert("NZST".to_string(), "Pacific/Auckland".to_string());
        let zones = Zones::new(Some("Asia/Kolkata"), &names).unwrap();
        let layout = Layout::compile("strptime", "%a %b %d %H:%M:%S %Z %Y").unwrap();
        let at = |s: &str| rfc3339(layout.parse(&Value::Str(s.into()), &zones).unwrap());
        assert_eq!(at("Wed Aug 27 15:08:58 IST 2025"), "2025-08-27T09:38:58Z");
        assert_eq!(at("Wed Aug 20 14:08:48 PDT 2025"), "2025-08-20T21:08:48Z");
        assert_eq!(at("Mon Jan 15 10:00:00 NZST 2025"), "2025-01-14T21:00:00Z");
        assert!(Layout::compile("epoch", "minutes").is_err());
        assert!(Layout::compile("strptime", "%Q").is_err());
        assert!(Zones::new(Some("Mars/Olympus"), &HashMap::new()).is_err());
        assert!(
            Layout::compile("strptime", "%Y")
                .unwrap()
                .parse(&Value::Str("20x".into()), &Zones::utc())
                .is_err()
        );
    }
}
