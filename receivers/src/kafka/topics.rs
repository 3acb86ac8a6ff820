//! Which topics a signal's messages come from: names, or regular expressions matched against the
//! cluster's topics as the OTel Collector's franz-go client matches them (every entry is a
//! pattern once one starts with `^`, matched anywhere in the name unless anchored; excluded
//! topics are patterns too). librdkafka's own pattern subscription has no exclusions, so the
//! receiver matches the names itself and subscribes to the result.

use regex::Regex;
use sluice_kafka_client::{Problem, TopicSelection};
use sluice_pipeline::SignalKind;

/// A signal's topics, ready to match.
#[derive(Clone, Debug)]
pub enum TopicFilter {
    Names(Vec<String>),
    Patterns {
        include: Vec<Regex>,
        exclude: Vec<Regex>,
    },
}

fn compile(signal: SignalKind, key: &str, patterns: &[String]) -> Result<Vec<Regex>, Problem> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                Problem::new(
                    format!("{}.{key}", signal.as_str()),
                    format!("`{p}` is not a valid regular expression: {e}"),
                )
            })
        })
        .collect()
}

impl TopicFilter {
    pub fn new(signal: SignalKind, selection: &TopicSelection) -> Result<TopicFilter, Problem> {
        if !selection.patterns {
            return Ok(TopicFilter::Names(selection.topics.clone()));
        }
        Ok(TopicFilter::Patterns {
            include: compile(signal, "topics", &selection.topics)?,
            exclude: compile(signal, "exclude_topics", &selection.exclude)?,
        })
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::Names(names) => names.iter().any(|n| n == topic),
            TopicFilter::Patterns { include, exclude } => {
                // Kafka's internal topics (`__consumer_offsets`, ...) are never telemetry.
                !topic.starts_with("__")
                    && include.iter().any(|r| r.is_match(topic))
                    && !exclude.iter().any(|r| r.is_match(topic))
            }
        }
    }

    pub fn is_pattern(&self) -> bool {
        matches!(self, TopicFilter::Patterns { .. })
    }
}

/// The topics to subscribe to: every named one, and those of `existing` that a pattern
/// matches. Sorted, without repeats, so an unchanged result compares equal.
pub fn subscription<'a>(
    filters: impl IntoIterator<Item = &'a TopicFilter>,
    existing: &[String],
) -> Vec<String> {
    let mut topics = Vec::new();
    for filter in filters {
        match filter {
            TopicFilter::Names(names) => topics.extend(names.iter().cloned()),
            TopicFilter::Patterns { .. } => {
                topics.extend(existing.iter().filter(|t| filter.matches(t)).cloned())
            }
        }
    }
    topics.sort_unstable();
    topics.dedup();
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(topics: &[&str], exclude: &[&str]) -> TopicFilter {
        TopicFilter::new(
            SignalKind::Logs,
            &TopicSelection {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                patterns: topics.iter().any(|t| t.starts_with('^')),
                exclude: exclude.iter().map(|t| t.to_string()).collect(),
            },
        )
        .unwrap()
    }

    #[test]
    fn patterns_match_as_the_collector_does_and_exclusions_win() {
        let existing: Vec<String> = [
            "app-web",
            "app-internal",
            "audit",
            "audit-archive",
            "__consumer_offsets",
            "other",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        let names = filter(&["audit", "missing"], &[]);
        assert_eq!(subscription([&names], &existing), ["audit", "missing"]);
        // Once one entry is a pattern every entry is, unanchored unless written so.
        let patterns = filter(&["^app-.*", "audit", "^__"], &["internal$"]);
        assert_eq!(
            subscription([&patterns], &existing),
            ["app-web", "audit", "audit-archive"]
        );
        assert!(!patterns.matches("app-internal"));
        assert!(patterns.matches("app-new"));
        let both = subscription([&names, &patterns], &existing);
        assert_eq!(both, ["app-web", "audit", "audit-archive", "missing"]);
        let err = TopicFilter::new(
            SignalKind::Traces,
            &TopicSelection {
                topics: vec!["^(".into()],
                patterns: true,
                exclude: vec![],
            },
        )
        .unwrap_err();
        assert_eq!(err.key, "traces.topics");
    }
}
