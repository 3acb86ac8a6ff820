//! `receivers: lambda:` settings.

use serde::Deserialize;

/// Where the Telemetry API pushes to in a real Lambda sandbox: the only name it can reach.
pub const DEFAULT_ENDPOINT: &str = "sandbox.localdomain:4327";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaConfig {
    /// Address to listen on for Telemetry API pushes; its host is also the one the
    /// subscription names. Port 0 picks a free port.
    pub endpoint: String,
    /// Telemetry streams to subscribe to: `platform`, `function`, `extension`.
    pub types: Vec<String>,
    pub buffering: Buffering,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        LambdaConfig {
            endpoint: DEFAULT_ENDPOINT.into(),
            types: vec!["platform".into(), "function".into(), "extension".into()],
            buffering: Buffering::default(),
        }
    }
}

/// The Telemetry API's buffering; AWS accepts only the ranges in [`Buffering::problems`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buffering {
    pub max_items: u32,
    pub max_bytes: u32,
    /// The lowest AWS allows by default: events reach sluice soon after they happen, so the
    /// end-of-invocation flush waits as little as possible for them.
    pub timeout_ms: u32,
}

impl Default for Buffering {
    fn default() -> Self {
        Buffering {
            max_items: 1000,
            max_bytes: 262_144,
            timeout_ms: 25,
        }
    }
}

impl Buffering {
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut check = |key: &'static str, value: u32, min: u32, max: u32| {
            if !(min..=max).contains(&value) {
                out.push((
                    key,
                    format!("{value} is outside the Telemetry API's range {min}..={max}"),
                ));
            }
        };
        check("max_items", self.max_items, 1000, 10_000);
        check("max_bytes", self.max_bytes, 262_144, 1_048_576);
        check("timeout_ms", self.timeout_ms, 25, 30_000);
        out
    }
}

pub const KNOWN_TYPES: &[&str] = &["platform", "function", "extension"];
