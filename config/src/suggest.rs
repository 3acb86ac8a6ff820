//! "Did you mean" suggestions for misspelt names.

/// The candidate closest to `name` by edit distance, if it is close enough to be a
/// plausible typo (`rotaton` → `rotation`, `otlpp` → `otlp`; `zzzzzz` → nothing).
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lname = name.to_lowercase();
    let mut best: Option<(usize, f64, &str)> = None;
    for cand in candidates {
        if cand == name {
            continue;
        }
        let lcand = cand.to_lowercase();
        let dist = strsim::damerau_levenshtein(&lname, &lcand);
        let longest = lname.chars().count().max(lcand.chars().count());
        // About one edit per three characters: catches transpositions and dropped or
        // doubled letters while rejecting unrelated words of similar length.
        let allowed = (longest / 3).max(1);
        if dist > allowed {
            continue;
        }
        let jw = strsim::jaro_winkler(&lname, &lcand);
        let better = match best {
            None => true,
            Some((bd, bjw, _)) => dist < bd || (dist == bd && jw > bjw),
        };
        if better {
            best = Some((dist, jw, cand));
        }
    }
    best.map(|(_, _, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_only() {
        assert_eq!(
            suggest("rotaton", ["path", "rotation", "format"]).as_deref(),
            Some("rotation")
        );
        assert_eq!(suggest("otlpp", ["otlp", "kafka"]).as_deref(), Some("otlp"));
        assert_eq!(
            suggest("batcj", ["batch", "memory_limiter"]).as_deref(),
            Some("batch")
        );
        assert_eq!(
            suggest("Receivers", ["receivers", "exporters"]).as_deref(),
            Some("receivers")
        );
        assert_eq!(
            suggest("trace", ["traces", "metrics", "logs"]).as_deref(),
            Some("traces")
        );
        assert_eq!(suggest("zzzzzz", ["rotation", "path", "otlp"]), None);
        assert_eq!(suggest("ab", ["xy"]), None);
        assert_eq!(suggest("x", Vec::<&str>::new()), None);
    }
}
