//! From entries to OTLP: the `log.file.*` attributes of each file, and batches grouped by
//! resource and scope.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sluice_pipeline::{Batch, Logs};

use super::operators::entry::map_into_key_values;
use super::operators::{Entry, Map, Value};

pub const LOG_FILE_NAME: &str = "log.file.name";
pub const LOG_FILE_PATH: &str = "log.file.path";
pub const LOG_FILE_NAME_RESOLVED: &str = "log.file.name_resolved";
pub const LOG_FILE_PATH_RESOLVED: &str = "log.file.path_resolved";
pub const LOG_FILE_OWNER_NAME: &str = "log.file.owner.name";
pub const LOG_FILE_OWNER_GROUP_NAME: &str = "log.file.owner.group.name";
pub const LOG_FILE_PERMISSIONS: &str = "log.file.permissions";
pub const LOG_FILE_RECORD_NUMBER: &str = "log.file.record_number";
pub const LOG_FILE_RECORD_OFFSET: &str = "log.file.record_offset";

/// Which `include_file_*` attributes to add.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileAttributeSet {
    pub name: bool,
    pub path: bool,
    pub name_resolved: bool,
    pub path_resolved: bool,
    pub owner_name: bool,
    pub owner_group_name: bool,
    pub permissions: bool,
}

/// The attributes of one file, computed when it is opened (or found under a new path).
pub fn file_attributes(set: FileAttributeSet, path: &Path) -> Map {
    let mut out = Map::new();
    let text = |p: &Path| Value::Str(p.to_string_lossy().into_owned());
    let name = |p: &Path| {
        Value::Str(
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    };
    if set.name {
        out.insert(LOG_FILE_NAME.to_string(), name(path));
    }
    if set.path {
        out.insert(LOG_FILE_PATH.to_string(), text(path));
    }
    if set.name_resolved || set.path_resolved {
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if set.name_resolved {
            out.insert(LOG_FILE_NAME_RESOLVED.to_string(), name(&resolved));
        }
        if set.path_resolved {
            out.insert(LOG_FILE_PATH_RESOLVED.to_string(), text(&resolved));
        }
    }
    if (set.owner_name || set.owner_group_name || set.permissions)
        && let Ok(meta) = std::fs::metadata(path)
    {
        if set.owner_name {
            let owner =
                account_name("/etc/passwd", meta.uid()).unwrap_or_else(|| meta.uid().to_string());
            out.insert(LOG_FILE_OWNER_NAME.to_string(), Value::Str(owner));
        }
        if set.owner_group_name {
            let group =
                account_name("/etc/group", meta.gid()).unwrap_or_else(|| meta.gid().to_string());
            out.insert(LOG_FILE_OWNER_GROUP_NAME.to_string(), Value::Str(group));
        }
        if set.permissions {
            out.insert(
                LOG_FILE_PERMISSIONS.to_string(),
                Value::Str(format!("{:o}", meta.mode() & 0o777)),
            );
        }
    }
    out
}

/// The name of a user or group id from `/etc/passwd` or `/etc/group` (as Go's `os/user`
/// does without cgo), cached for the process.
fn account_name(file: &'static str, id: u32) -> Option<String> {
    /// Names by (account file, id); `None` remembers an id the file does not have.
    type Names = HashMap<(&'static str, u32), Option<String>>;
    static CACHE: OnceLock<std::sync::Mutex<Names>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry((file, id))
        .or_insert_with(|| {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let _password = fields.next()?;
                let number: u32 = fields.next()?.parse().ok()?;
                (number == id).then(|| name.to_string())
            })
        })
        .clone()
}

struct Group {
    resource: Map,
    scope: String,
    records: Vec<LogRecord>,
}

/// Entries gathered into one batch, grouped by resource and scope.
#[derive(Default)]
pub struct BatchBuilder {
    groups: Vec<Group>,
    records: usize,
    bytes: usize,
}

impl BatchBuilder {
    pub fn push(&mut self, mut entry: Entry) {
        let resource = std::mem::take(&mut entry.resource);
        let scope = std::mem::take(&mut entry.scope_name);
        self.bytes += approximate_size(&entry);
        let record = entry.into_log_record();
        self.records += 1;
        // Entries of one file usually share a resource: look at the latest group first.
        if let Some(group) = self
            .groups
            .iter_mut()
            .rev()
            .find(|g| g.scope == scope && g.resource == resource)
        {
            group.records.push(record);
            return;
        }
        self.groups.push(Group {
            resource,
            scope,
            records: vec![record],
        });
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Approximate encoded size so far, for cutting batches.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The batch gathered so far (leaving the builder empty).
    pub fn take(&mut self) -> Option<Batch<Logs>> {
        if self.records == 0 {
            return None;
        }
        self.records = 0;
        self.bytes = 0;
        let mut resources: Vec<(Map, ResourceLogs)> = Vec::new();
        for group in std::mem::take(&mut self.groups) {
            let scope_logs = ScopeLogs {
                scope: (!group.scope.is_empty()).then(|| InstrumentationScope {
                    name: group.scope,
                    ..InstrumentationScope::default()
                }),
                log_records: group.records,
                ..ScopeLogs::default()
            };
            match resources.iter_mut().find(|(r, _)| *r == group.resource) {
                Some((_, logs)) => logs.scope_logs.push(scope_logs),
                None => {
                    let resource = Resource {
                        attributes: map_into_key_values(group.resource.clone()),
                        ..Resource::default()
                    };
                    resources.push((
                        group.resource,
                        ResourceLogs {
                            resource: Some(resource),
                            scope_logs: vec![scope_logs],
                            ..ResourceLogs::default()
                        },
                    ));
                }
            }
        }
        Some(Batch::from_resources(
            resources.into_iter().map(|(_, r)| r).collect(),
        ))
    }
}

fn approximate_size(entry: &Entry) -> usize {
    let body = match &entry.body {
        Value::Str(s) => s.len(),
        Value::Bytes(b) => b.len(),
        _ => 64,
    };
    body + 32 + entry.attributes.len() * 48
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_resource_and_scope() {
        let mut b = BatchBuilder::default();
        for (i, (pod, scope)) in [("a", ""), ("a", ""), ("b", ""), ("a", "lib")]
            .iter()
            .enumerate()
        {
            let mut e = Entry::new(Value::Str(format!("line {i}")), 1);
            e.resource
                .insert("k8s.pod.name".into(), Value::Str((*pod).into()));
            e.scope_name = (*scope).to_string();
            b.push(e);
        }
        assert_eq!(b.records(), 4);
        let batch = b.take().unwrap();
        assert_eq!(batch.items(), 4);
        let resources = batch.resources();
        assert_eq!(resources.len(), 2);
        assert_eq!(resources[0].scope_logs.len(), 2);
        assert_eq!(resources[0].scope_logs[0].log_records.len(), 2);
        assert!(b.take().is_none());
    }

    #[test]
    fn file_attributes_by_switch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "x").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let all = FileAttributeSet {
            name: true,
            path: true,
            name_resolved: true,
            path_resolved: true,
            owner_name: true,
            owner_group_name: true,
            permissions: true,
        };
        let attrs = file_attributes(all, &link);
        assert_eq!(attrs[LOG_FILE_NAME], Value::Str("link.log".into()));
        assert_eq!(attrs[LOG_FILE_NAME_RESOLVED], Value::Str("app.log".into()));
        assert!(matches!(&attrs[LOG_FILE_OWNER_NAME], Value::Str(s) if !s.is_empty()));
        assert!(matches!(&attrs[LOG_FILE_PERMISSIONS], Value::Str(s) if s.len() == 3));
        let none = file_attributes(FileAttributeSet::default(), &link);
        assert!(none.is_empty());
    }
}
