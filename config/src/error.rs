//! Positions and the diagnostics that point at them.

use std::fmt;
use std::sync::Arc;

/// A place in a configuration source. `line` and `col` are 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    /// The source's name as given: a file name, `--set` or `<default>`.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

impl Pos {
    /// A position in the source called `file`.
    pub fn new(file: impl Into<Arc<str>>, line: usize, col: usize) -> Self {
        Pos {
            file: file.into(),
            line,
            col,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem found in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is, when it can be tied to a place in a source.
    pub pos: Option<Pos>,
    /// Key path of the offending value, e.g. `exporters.file/out.rotation`; may be empty.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The closest valid name, when the problem is a misspelt one.
    pub suggestion: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a suggestion.
    pub fn new(pos: Option<Pos>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            path: path.into(),
            message: message.into(),
            suggestion: None,
        }
    }

    /// Attaches (or clears) the "did you mean" suggestion.
    pub fn with_suggestion(mut self, s: Option<String>) -> Self {
        self.suggestion = s;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pos) = &self.pos {
            write!(f, "{pos}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", cut(&self.path))?;
        }
        f.write_str(&cut(&self.message))?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// The longest message or key path a diagnostic shows: one echoing a huge value must not
/// become a huge log line.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// `text` cut to [`MAX_MESSAGE_CHARS`] characters, saying how much was left out.
pub fn cut(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => text.into(),
        Some((at, _)) => format!("{}… ({} more bytes)", &text[..at], text.len() - at).into(),
    }
}

/// Every problem found, reported together so the user can fix them in one pass.
#[derive(Clone, Debug, PartialEq, Eq, Default, thiserror::Error)]
#[error("{}", render_lines(.0))]
pub struct ConfigErrors(pub Vec<Diagnostic>);

fn render_lines(diags: &[Diagnostic]) -> String {
    let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl ConfigErrors {
    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Records one more problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// `Ok(value)` when nothing was recorded, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<Diagnostic> for ConfigErrors {
    fn from(d: Diagnostic) -> Self {
        ConfigErrors(vec![d])
    }
}

impl Extend<Diagnostic> for ConfigErrors {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for ConfigErrors {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let d = Diagnostic::new(Some(Pos::new("a.yaml", 3, 5)), "x.y", "bad")
            .with_suggestion(Some("z".into()));
        assert_eq!(d.to_string(), "a.yaml:3:5: x.y: bad (did you mean `z`?)");
        let d = Diagnostic::new(None, "", "bad");
        assert_eq!(d.to_string(), "bad");
        let errs = ConfigErrors(vec![
            Diagnostic::new(None, "a", "one"),
            Diagnostic::new(None, "b", "two"),
        ]);
        assert_eq!(errs.to_string(), "a: one\nb: two");
    }
}
