//! Where targets come from (`static_configs`, `file_sd_configs` watched for changes,
//! `http_sd_configs` polled) and how target relabelling turns them into scrape targets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::config::{HttpSdConfig, ScrapeConfig, TargetGroup};
use super::relabel::{self, Labels, Rule};

/// A target ready to scrape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Final labels: `job`, `instance` and the rest; no `__` labels.
    pub labels: Labels,
    pub url: String,
    pub scheme: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A group with the labels its source adds (`__meta_filepath`, `__meta_url`).
#[derive(Clone, Debug, PartialEq)]
pub struct SourcedGroup {
    pub group: TargetGroup,
    pub source_labels: Vec<(String, String)>,
}

impl PartialEq for TargetGroup {
    fn eq(&self, other: &Self) -> bool {
        self.targets == other.targets && self.labels == other.labels
    }
}

/// Applies target relabelling, as Prometheus' `PopulateLabels`: the `__` labels a job sets,
/// the rules, the default port and `instance`.
pub fn populate(
    sc: &ScrapeConfig,
    rules: &[Rule],
    interval: Duration,
    timeout: Duration,
    groups: &[SourcedGroup],
) -> (Vec<Target>, Vec<String>) {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for sourced in groups {
        for address in &sourced.group.targets {
            let mut labels: Labels = sourced
                .group
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.extend(sourced.source_labels.iter().cloned());
            labels.sort();
            labels.dedup_by(|a, b| a.0 == b.0);
            relabel::set(&mut labels, "__address__", address.clone());
            let defaults = [
                ("job", sc.job_name.clone()),
                ("__scrape_interval__", format_duration(interval)),
                ("__scrape_timeout__", format_duration(timeout)),
                ("__metrics_path__", sc.metrics_path.clone()),
                ("__scheme__", sc.scheme.clone()),
            ];
            for (name, value) in defaults {
                if relabel::get(&labels, name).is_none() {
                    relabel::set(&mut labels, name, value);
                }
            }
            for (name, values) in &sc.params {
                let key = format!("__param_{name}");
                if relabel::get(&labels, &key).is_none()
                    && let Some(first) = values.first()
                {
                    relabel::set(&mut labels, &key, first.clone());
                }
            }
            if !relabel::apply(rules, &mut labels) {
                continue;
            }
            let Some(address) = relabel::get(&labels, "__address__").map(str::to_string) else {
                problems.push("a target has no __address__ after relabelling".to_string());
                continue;
            };
            let scheme = relabel::get(&labels, "__scheme__")
                .unwrap_or("http")
                .to_string();
            if address.contains('/') {
                problems.push(format!("invalid target address `{address}`"));
                continue;
            }
            // Prometheus 2 gives an address without a port the scheme's default one.
            let address = if has_port(&address) {
                address
            } else {
                format!("{address}:{}", if scheme == "https" { 443 } else { 80 })
            };
            let interval = relabel::get(&labels, "__scrape_interval__")
                .and_then(|t| super::config::PromDuration::parse(t).ok())
                .unwrap_or(interval);
            let timeout = relabel::get(&labels, "__scrape_timeout__")
                .and_then(|t| super::config::PromDuration::parse(t).ok())
                .unwrap_or(timeout);
            let path = relabel::get(&labels, "__metrics_path__")
                .unwrap_or("/metrics")
                .to_string();
            let mut query = Vec::new();
            for (name, values) in &sc.params {
                let key = format!("__param_{name}");
                match relabel::get(&labels, &key) {
                    Some(v) => query.push((name.clone(), v.to_string())),
                    None => query.extend(values.iter().map(|v| (name.clone(), v.clone()))),
                }
            }
            for (name, value) in &labels {
                if let Some(param) = name.strip_prefix("__param_")
                    && !sc.params.contains_key(param)
                {
                    query.push((param.to_string(), value.clone()));
                }
            }
            if relabel::get(&labels, "instance").is_none() {
                relabel::set(&mut labels, "instance", address.clone());
            }
            labels.retain(|(name, _)| !name.starts_with("__"));
            let mut url = format!("{scheme}://{address}{path}");
            if !query.is_empty() {
                url.push('?');
                let encoded: Vec<String> = query
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                url.push_str(&encoded.join("&"));
            }
            targets.push(Target {
                labels,
                url,
                scheme,
                interval,
                timeout,
            });
        }
    }
    targets.sort_by(|a, b| a.url.cmp(&b.url).then(a.labels.cmp(&b.labels)));
    targets.dedup();
    (targets, problems)
}

fn has_port(address: &str) -> bool {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once("]:").is_some();
    }
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.contains(':') && !port.is_empty())
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Target groups of a file, JSON or YAML by its extension.
pub fn read_file_groups(path: &std::path::Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str::<Vec<JsonGroup>>(&text)
            .map(|groups| groups.into_iter().map(JsonGroup::into_group).collect())
            .map_err(|e| format!("{name}: {e}")),
        Some("yml" | "yaml") => {
            let node = sluice_config::parse_yaml(&name, &text).map_err(|e| e.to_string())?;
            if node.is_null() {
                return Ok(Vec::new());
            }
            sluice_config::decode::<Vec<TargetGroup>>(&node, &name).map_err(|e| e.to_string())
        }
        _ => Err(format!(
            "{name}: file_sd files must end in .json, .yml or .yaml"
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl JsonGroup {
    fn into_group(self) -> TargetGroup {
        TargetGroup {
            targets: self.targets,
            labels: self.labels,
        }
    }
}

/// The files a `file_sd_configs` entry names now, with their modification stamps.
pub fn file_stamps(patterns: &[String]) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let mut out = Vec::new();
    for pattern in patterns {
        let paths: Vec<PathBuf> = match globset::Glob::new(pattern) {
            Ok(glob) if pattern.contains(['*', '?', '[']) => {
                let matcher = glob.compile_matcher();
                let dir = std::path::Path::new(pattern)
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_else(|| PathBuf::from("."));
                std::fs::read_dir(&dir)
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| matcher.is_match(p))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            _ => vec![PathBuf::from(pattern)],
        };
        for path in paths {
            let stamp = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            out.push((path, stamp));
        }
    }
    out.sort();
    out
}

/// One poll of an `http_sd_configs` entry.
pub async fn fetch_http_groups(
    client: &reqwest::Client,
    sd: &HttpSdConfig,
    auth: &super::client::Auth,
) -> Result<Vec<SourcedGroup>, String> {
    let mut headers = super::client::extra_headers(&sd.http_headers)?;
    super::client::authorize(&mut headers, auth)?;
    let response = client
        .get(&sd.url)
        .headers(headers)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{}: {e}", sd.url))?;
    if !response.status().is_success() {
        return Err(format!("{}: server answered {}", sd.url, response.status()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{}: {e}", sd.url))?;
    let groups: Vec<JsonGroup> =
        serde_json::from_slice(&body).map_err(|e| format!("{}: {e}", sd.url))?;
    Ok(groups
        .into_iter()
        .map(|g| SourcedGroup {
            group: g.into_group(),
            source_labels: vec![("__meta_url".into(), sd.url.clone())],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape_config(yaml: &str) -> ScrapeConfig {
        let node = sluice_config::parse_yaml("t.yaml", yaml).unwrap();
        sluice_config::decode(&node, "sc").unwrap()
    }

    #[test]
    fn targets_get_job_instance_params_and_default_ports() {
        let sc = scrape_config(
            "job_name: node\nmetrics_path: /probe\nparams: {module: [http_2xx]}\nstatic_configs:\n  - targets: ['a:9100', 'b']\n    labels: {env: prod}\n",
        );
        let groups = vec![SourcedGroup {
            group: sc.static_configs[0].clone(),
            source_labels: vec![],
        }];
        let (targets, problems) = populate(
            &sc,
            &[],
            Duration::from_secs(15),
            Duration::from_secs(10),
            &groups,
        );
        assert!(problems.is_empty());
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].url, "http://a:9100/probe?module=http_2xx");
        assert_eq!(relabel::get(&targets[0].labels, "job"), Some("node"));
        assert_eq!(relabel::get(&targets[0].labels, "instance"), Some("a:9100"));
        assert_eq!(relabel::get(&targets[0].labels, "env"), Some("prod"));
        assert_eq!(targets[1].url, "http://b:80/probe?module=http_2xx");
        assert!(targets[0].labels.iter().all(|(n, _)| !n.starts_with("__")));
    }

    #[test]
    fn relabelling_can_drop_targets_and_rewrite_the_address() {
        let sc = scrape_config(
            "job_name: j\nstatic_configs: [{targets: ['x:1', 'y:2']}]\nrelabel_configs:\n  - source_labels: [__address__]\n    regex: 'y:.*'\n    action: drop\n  - source_labels: [__address__]\n    target_label: __param_target\n  - target_label: __address__\n    replacement: 'exporter:9115'\n",
        );
        let rules: Vec<Rule> = sc
            .relabel_configs
            .iter()
            .map(|r| r.compile().unwrap())
            .collect();
        let groups = vec![SourcedGroup {
            group: sc.static_configs[0].clone(),
            source_labels: vec![],
        }];
        let (targets, _) = populate(
            &sc,
            &rules,
            Duration::from_secs(15),
            Duration::from_secs(10),
            &groups,
        );
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].url, "http://exporter:9115/metrics?target=x%3A1");
        assert_eq!(
            relabel::get(&targets[0].labels, "instance"),
            Some("exporter:9115")
        );
    }
}
