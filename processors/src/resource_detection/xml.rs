//! Just enough XML for the AWS query APIs' answers (EC2 `DescribeTags`/`DescribeInstances`,
//! STS): elements found by name, their text unescaped. These documents have no attributes
//! that matter, no CDATA and no same-name nesting within the parts read here.

/// The inner text of each `<tag>…</tag>` (or `<tag/>`, empty) in `doc`, in order, not
/// unescaped.
pub fn all<'a>(doc: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(at) = rest.find(&open) {
        let after_name = &rest[at + open.len()..];
        // `<tagSet>` must not match `<tag`: the name ends at `>`, `/` or whitespace.
        let Some(next) = after_name.chars().next() else {
            break;
        };
        if !(next == '>' || next == '/' || next.is_whitespace()) {
            rest = after_name;
            continue;
        }
        let Some(head_end) = after_name.find('>') else {
            break;
        };
        if after_name[..head_end].ends_with('/') {
            out.push("");
            rest = &after_name[head_end + 1..];
            continue;
        }
        let body = &after_name[head_end + 1..];
        let Some(end) = body.find(&close) else {
            break;
        };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>` in `doc`.
pub fn first(doc: &str, tag: &str) -> Option<String> {
    all(doc, tag).first().map(|t| unescape(t))
}

/// The five predefined entities and numeric references.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let entity_and_more = &rest[at..];
        let Some(end) = entity_and_more.find(';') else {
            out.push_str(entity_and_more);
            return out;
        };
        let entity = &entity_and_more[1..end];
        let replaced = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match replaced {
            Some(c) => out.push(c),
            None => out.push_str(&entity_and_more[..=end]),
        }
        rest = &entity_and_more[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements_by_exact_name_and_unescapes() {
        let doc = "<r><tagSet><item><key>a&amp;b</key><value/></item><item><key>c</key><value>&lt;d&#x21;&#33;</value></item></tagSet><tag>x</tag></r>";
        let set = all(doc, "tagSet");
        assert_eq!(set.len(), 1);
        let items = all(set[0], "item");
        assert_eq!(items.len(), 2);
        assert_eq!(first(items[0], "key").as_deref(), Some("a&b"));
        assert_eq!(first(items[0], "value").as_deref(), Some(""));
        assert_eq!(first(items[1], "value").as_deref(), Some("<d!!"));
        assert_eq!(first(doc, "tag").as_deref(), Some("x"));
        assert_eq!(first(doc, "missing"), None);
        assert_eq!(unescape("&bogus; & done"), "&bogus; & done");
    }

    #[test]
    fn truncated_documents_end_the_search_without_panicking() {
        assert!(all("<a>unclosed", "a").is_empty());
        assert!(all("<a", "a").is_empty());
        assert!(all("<a x='1'", "a").is_empty());
    }
}
