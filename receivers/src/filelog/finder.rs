//! Finding the files to read: `include` globs (with `**`) minus `exclude`, files older than
//! `exclude_older_than` left out, and `ordering_criteria` keeping the top files of a sort.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;

use super::config::{OrderingCriteria, SortRule};
use super::operators::Value;
use super::operators::time::{Layout, Zones};

pub struct Finder {
    roots: Vec<(PathBuf, Option<usize>)>,
    include: GlobSet,
    exclude: GlobSet,
    older_than: Option<Duration>,
    ordering: Option<FileOrdering>,
}

struct FileOrdering {
    regex: Option<Regex>,
    group_by: Option<Regex>,
    top_n: usize,
    rules: Vec<Rule>,
}

struct Rule {
    key: String,
    kind: SortKind,
    ascending: bool,
}

enum SortKind {
    Numeric,
    Alphabetical,
    Timestamp(Layout, Zones),
    Mtime,
}

fn glob(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {e}"))
}

/// The directory to walk for `pattern` and how deep (`None`: any depth, for `**`).
fn root_of(pattern: &str) -> (PathBuf, Option<usize>) {
    let path = Path::new(pattern);
    let mut root = PathBuf::new();
    let mut depth = 0usize;
    let mut unbounded = false;
    let mut in_glob = false;
    for component in path.components() {
        let text = component.as_os_str().to_string_lossy();
        let is_glob = text.contains(['*', '?', '[', '{']);
        if !in_glob && !is_glob {
            root.push(component.as_os_str());
            continue;
        }
        in_glob = true;
        if text == "**" {
            unbounded = true;
        }
        if !matches!(component, Component::RootDir) {
            depth += 1;
        }
    }
    if !in_glob {
        // A literal path: its directory, one level down.
        let parent = root.parent().map(Path::to_path_buf).unwrap_or_default();
        return (parent, Some(1));
    }
    (root, if unbounded { None } else { Some(depth) })
}

impl Finder {
    pub fn new(
        include: &[String],
        exclude: &[String],
        older_than: Option<Duration>,
        ordering: Option<&OrderingCriteria>,
    ) -> Result<Finder, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let mut includes = GlobSetBuilder::new();
        let mut roots: Vec<(PathBuf, Option<usize>)> = Vec::new();
        for pattern in include {
            match glob(pattern) {
                Ok(g) => {
                    includes.add(g);
                    roots.push(root_of(pattern));
                }
                Err(e) => errors.push(("include", e)),
            }
        }
        let mut excludes = GlobSetBuilder::new();
        for pattern in exclude {
            match glob(pattern) {
                Ok(g) => {
                    excludes.add(g);
                }
                Err(e) => errors.push(("exclude", e)),
            }
        }
        let ordering = match ordering {
            Some(o) => match build_ordering(o) {
                Ok(o) => Some(o),
                Err(e) => {
                    errors.push(("ordering_criteria", e));
                    None
                }
            },
            None => None,
        };
        let include = includes.build();
        let exclude = excludes.build();
        match (include, exclude) {
            (Ok(include), Ok(exclude)) if errors.is_empty() => Ok(Finder {
                roots,
                include,
                exclude,
                older_than,
                ordering,
            }),
            (i, x) => {
                if let Err(e) = i {
                    errors.push(("include", e.to_string()));
                }
                if let Err(e) = x {
                    errors.push(("exclude", e.to_string()));
                }
                Err(errors)
            }
        }
    }

    /// The matching files now, sorted by path (deterministic order, deduplicated).
    pub fn find(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for (root, depth) in &self.roots {
            let start = if root.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                root.clone()
            };
            self.walk(&start, *depth, &mut found);
        }
        found.sort();
        found.dedup();
        if let Some(limit) = self.older_than {
            let now = SystemTime::now();
            found.retain(|p| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .map(|m| now.duration_since(m).unwrap_or_default() <= limit)
                    .unwrap_or(false)
            });
        }
        if let Some(ordering) = &self.ordering {
            found = ordering.apply(found);
        }
        found
    }

    fn walk(&self, dir: &Path, depth: Option<usize>, found: &mut Vec<PathBuf>) {
        if depth == Some(0) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            // Symlinked files are followed (Kubernetes' /var/log/containers); symlinked
            // directories only below a fixed depth, so `**` cannot loop.
            let is_dir = kind.is_dir() || (kind.is_symlink() && depth.is_some() && path.is_dir());
            if is_dir {
                self.walk(&path, depth.map(|d| d - 1), found);
                continue;
            }
            let is_file = kind.is_file() || (kind.is_symlink() && path.is_file());
            if is_file && self.include.is_match(&path) && !self.exclude.is_match(&path) {
                found.push(path);
            }
        }
    }
}

fn build_ordering(o: &OrderingCriteria) -> Result<FileOrdering, String> {
    let compile = |text: &str| -> Result<Option<Regex>, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            Regex::new(text)
                .map(Some)
                .map_err(|e| format!("invalid regex `{text}`: {e}"))
        }
    };
    let regex = compile(&o.regex)?;
    let group_by = compile(&o.group_by)?;
    let mut rules = Vec::new();
    for rule in &o.sort_by {
        rules.push(build_rule(rule, regex.as_ref())?);
    }
    if rules.is_empty() {
        return Err("`sort_by` needs at least one rule".to_string());
    }
    Ok(FileOrdering {
        regex,
        group_by,
        top_n: o.top_n.unwrap_or(1).max(1),
        rules,
    })
}

fn build_rule(rule: &SortRule, regex: Option<&Regex>) -> Result<Rule, String> {
    let kind = match rule.sort_type.as_str() {
        "numeric" => SortKind::Numeric,
        "alphabetical" => SortKind::Alphabetical,
        "mtime" => SortKind::Mtime,
        "timestamp" => {
            let Some(layout) = &rule.layout else {
                return Err("a `timestamp` sort needs a `layout`".to_string());
            };
            let layout = Layout::compile("strptime", layout).map_err(|e| e.0)?;
            let zones = Zones::new(
                Some(rule.location.as_deref().unwrap_or("UTC")),
                &Default::default(),
            )
            .map_err(|e| e.0)?;
            SortKind::Timestamp(layout, zones)
        }
        other => {
            return Err(format!(
                "unknown sort_type `{other}` (use numeric, alphabetical, timestamp or mtime)"
            ));
        }
    };
    if !matches!(kind, SortKind::Mtime) {
        let Some(regex) = regex else {
            return Err("sorting by a `regex_key` needs `ordering_criteria.regex`".to_string());
        };
        if !regex.capture_names().flatten().any(|n| n == rule.regex_key) {
            return Err(format!("`regex` has no group named `{}`", rule.regex_key));
        }
    }
    Ok(Rule {
        key: rule.regex_key.clone(),
        kind,
        ascending: rule.ascending,
    })
}

impl FileOrdering {
    fn apply(&self, files: Vec<PathBuf>) -> Vec<PathBuf> {
        let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for file in files {
            let text = file.to_string_lossy().into_owned();
            let group = match &self.group_by {
                Some(g) => match g.captures(&text) {
                    Some(c) => c
                        .iter()
                        .skip(1)
                        .flatten()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join("\u{0}"),
                    None => continue,
                },
                None => String::new(),
            };
            if let Some(regex) = &self.regex
                && !regex.is_match(&text)
            {
                continue;
            }
            groups.entry(group).or_default().push(file);
        }
        let mut out = Vec::new();
        for (_, mut files) in groups {
            files.sort_by(|a, b| self.compare(a, b));
            files.truncate(self.top_n);
            out.extend(files);
        }
        out.sort();
        out
    }

    fn key<'a>(&self, path: &'a str, name: &str) -> Option<&'a str> {
        self.regex
            .as_ref()?
            .captures(path)?
            .name(name)
            .map(|m| m.as_str())
    }

    /// Orders files so the ones kept come first (descending unless `ascending`).
    fn compare(&self, a: &Path, b: &Path) -> Ordering {
        let (ta, tb) = (a.to_string_lossy(), b.to_string_lossy());
        for rule in &self.rules {
            let ordering = match &rule.kind {
                SortKind::Mtime => {
                    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                    m(a).cmp(&m(b))
                }
                SortKind::Numeric => {
                    let n = |t: &str| self.key(t, &rule.key).and_then(|v| v.parse::<i64>().ok());
                    n(&ta).cmp(&n(&tb))
                }
                SortKind::Alphabetical => self.key(&ta, &rule.key).cmp(&self.key(&tb, &rule.key)),
                SortKind::Timestamp(layout, zones) => {
                    let t = |t: &str| {
                        self.key(t, &rule.key)
                            .and_then(|v| layout.parse(&Value::Str(v.to_string()), zones).ok())
                    };
                    t(&ta).cmp(&t(&tb))
                }
            };
            let ordering = if rule.ascending {
                ordering
            } else {
                ordering.reverse()
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, rel: &str) -> PathBuf {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "x\n").unwrap();
        path
    }

    #[test]
    fn globs_with_double_stars_and_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = touch(d, "a.log");
        let b = touch(d, "sub/deep/b.log");
        touch(d, "sub/c.txt");
        let e = touch(d, "sub/e.log");
        let include = vec![format!("{}/**/*.log", d.display())];
        let exclude = vec![format!("{}/sub/deep/*", d.display())];
        let finder = Finder::new(&include, &exclude, None, None).unwrap();
        assert_eq!(finder.find(), vec![a.clone(), e.clone()]);
        let finder = Finder::new(&[format!("{}/*.log", d.display())], &[], None, None).unwrap();
        assert_eq!(finder.find(), vec![a.clone()]);
        let finder =
            Finder::new(&[format!("{}/sub/*/b.log", d.display())], &[], None, None).unwrap();
        assert_eq!(finder.find(), vec![b]);
        let finder = Finder::new(&[a.display().to_string()], &[], None, None).unwrap();
        assert_eq!(finder.find(), vec![a]);
        assert!(Finder::new(&["[".to_string()], &[], None, None).is_err());
    }

    #[test]
    fn ordering_keeps_the_top_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in [1, 2, 10] {
            touch(d, &format!("app.{n}.log"));
        }
        let criteria = OrderingCriteria {
            regex: r"app\.(?P<n>\d+)\.log".into(),
            group_by: String::new(),
            top_n: Some(2),
            sort_by: vec![SortRule {
                regex_key: "n".into(),
                sort_type: "numeric".into(),
                location: None,
                layout: None,
                ascending: false,
            }],
        };
        let finder = Finder::new(
            &[format!("{}/*.log", d.display())],
            &[],
            None,
            Some(&criteria),
        )
        .unwrap();
        let names: Vec<String> = finder
            .find()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["app.10.log", "app.2.log"]);
    }
}
