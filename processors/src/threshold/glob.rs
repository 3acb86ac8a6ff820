//! Metric-name globs: `*` (any run of characters, dots included) and `?` (one character).
//! Metric names are short, so a backtracking matcher is enough and avoids a dependency.

#[derive(Clone, Debug)]
pub struct Glob {
    pattern: Vec<char>,
    literal: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.chars().collect(),
            literal: !pattern.contains(['*', '?']),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        if self.literal {
            return self.pattern.iter().copied().eq(name.chars());
        }
        let text: Vec<char> = name.chars().collect();
        let (mut p, mut t) = (0, 0);
        // Where the last `*` was and how much text it has swallowed so far, to retry from.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pattern[p..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs() {
        assert!(Glob::new("system.cpu.utilization").matches("system.cpu.utilization"));
        assert!(!Glob::new("system.cpu.utilization").matches("system.cpu.time"));
        assert!(Glob::new("system.*").matches("system.cpu.time"));
        assert!(Glob::new("*.utilization").matches("container.memory.utilization"));
        assert!(Glob::new("container.*.usage*").matches("container.cpu.usage.total"));
        assert!(!Glob::new("container.*.usage?").matches("container.cpu.usage"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(Glob::new("*").matches(""));
        assert!(!Glob::new("a*b").matches("ac"));
    }
}
