//! The `webhook` exporter (logs): POSTs log records (alerts, events) to an HTTP endpoint as
//! flat JSON objects, so a chat or paging system can take them without understanding OTLP.

use std::sync::Arc;
use std::time::{Duration as StdDuration, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::exporter::{Export, ExportHelper, HelperSettings};
use sluice_pipeline::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_pipeline::proto::logs::v1::LogRecord;
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Logs,
    SignalConsumer, decode_config,
};

use crate::http::{self, TlsSettings};

/// `exporters: webhook:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// Extra request headers, e.g. `Authorization: Bearer ${env:TOKEN}`.
    /// A map, or a list of `{name, value}`.
    #[serde(default)]
    pub headers: http::HeaderList,
    /// `batch` (default): one JSON array per batch; `single`: one request per record.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub tls: TlsSettings,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Batch,
    Single,
}

pub struct WebhookExporterFactory;

impl ExporterFactory for WebhookExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "webhook",
            aliases: &[],
            signals: &[SignalKind::Logs],
            description: "POSTs log records (alerts, events) as flat JSON objects",
        }
    }

    /// A webhook call may take 10 s.
    fn helper_defaults(&self) -> HelperSettings {
        HelperSettings {
            timeout: std::time::Duration::from_secs(10),
            ..HelperSettings::default()
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        settings: HelperSettings,
        _signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: WebhookConfig = decode_config(config)?;
        let at = |key: &str, message: String| {
            Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.{key}", config.path),
                message,
            )
        };
        let url = match reqwest::Url::parse(&cfg.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(u),
            Ok(u) => Err(at(
                "url",
                format!("scheme must be http or https, not {}", u.scheme()),
            )),
            Err(e) => Err(at("url", format!("`{}` is not a valid URL: {e}", cfg.url))),
        };
        let client = http::client(&cfg.tls, settings.timeout).map_err(|e| at("tls", e));
        let headers = http::headers(&cfg.headers).map_err(|e| at("headers", e));
        let (url, client, headers) = match (url, client, headers) {
            (Ok(u), Ok(c), Ok(h)) => (u, c, h),
            (u, c, h) => {
                return Err(ConfigErrors(
                    u.err().into_iter().chain(c.err()).chain(h.err()).collect(),
                ));
            }
        };
        let name = config.id.to_string();
        let exporter = Arc::new(WebhookExporter {
            client,
            url,
            headers,
            mode: cfg.mode,
        });
        let (consumer, lifecycle) =
            ExportHelper::<Logs>::new(&name, settings, exporter, ctx).parts();
        Ok(BuiltExporter {
            consumers: vec![Logs::to_any(consumer)],
            lifecycles: vec![lifecycle],
        })
    }
}

pub struct WebhookExporter {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    mode: Mode,
}

/// An OTLP value as plain JSON: bytes become base64, key-value lists objects.
pub fn any_value_json(value: &Option<AnyValue>) -> Value {
    let Some(v) = value.as_ref().and_then(|v| v.value.as_ref()) else {
        return Value::Null;
    };
    match v {
        any_value::Value::StringValue(s) => Value::String(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => json!(i),
        any_value::Value::DoubleValue(d) => json!(d),
        any_value::Value::BytesValue(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(a) => Value::Array(
            a.values
                .iter()
                .map(|v| any_value_json(&Some(v.clone())))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => attributes_json(&kv.values),
        // An index into a profiles string table: meaningless outside a profile.
        any_value::Value::StringValueStrindex(_) => Value::Null,
    }
}

fn attributes_json(attributes: &[KeyValue]) -> Value {
    let mut map = Map::new();
    for kv in attributes {
        map.insert(kv.key.clone(), any_value_json(&kv.value));
    }
    Value::Object(map)
}

fn rfc3339(nanos: u64) -> Option<String> {
    if nanos == 0 {
        return None;
    }
    let time = UNIX_EPOCH + StdDuration::from_nanos(nanos);
    Some(humantime::format_rfc3339_nanos(time).to_string())
}

/// One record as a flat object: time, severity, body, attributes, resource and scope, trace
/// context.
pub fn record_json(
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
    record: &LogRecord,
) -> Value {
    let nanos = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let mut object = Map::new();
    object.insert(
        "time".into(),
        rfc3339(nanos).map_or(Value::Null, Value::String),
    );
    object.insert("time_unix_nano".into(), Value::String(nanos.to_string()));
    object.insert(
        "severity".into(),
        Value::String(record.severity_text.clone()),
    );
    object.insert("severity_number".into(), json!(record.severity_number));
    object.insert("body".into(), any_value_json(&record.body));
    if !record.event_name.is_empty() {
        object.insert(
            "event_name".into(),
            Value::String(record.event_name.clone()),
        );
    }
    object.insert("attributes".into(), attributes_json(&record.attributes));
    object.insert(
        "resource".into(),
        resource.map_or(json!({}), |r| attributes_json(&r.attributes)),
    );
    if let Some(scope) = scope.filter(|s| !s.name.is_empty()) {
        object.insert(
            "scope".into(),
            json!({ "name": scope.name, "version": scope.version }),
        );
    }
    if !record.trace_id.is_empty() {
        object.insert(
            "trace_id".into(),
            Value::String(hex::encode(&record.trace_id)),
        );
    }
    if !record.span_id.is_empty() {
        object.insert(
            "span_id".into(),
            Value::String(hex::encode(&record.span_id)),
        );
    }
    Value::Object(object)
}

fn records(batch: &Batch<Logs>) -> Vec<Value> {
    let mut out = Vec::with_capacity(batch.items());
    for resource_logs in batch.resources() {
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                out.push(record_json(
                    resource_logs.resource.as_ref(),
                    scope_logs.scope.as_ref(),
                    record,
                ));
            }
        }
    }
    out
}

impl WebhookExporter {
    async fn post(&self, body: Vec<u8>) -> Result<(), DeliveryError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let text = String::from_utf8_lossy(&http::read_body(response, 4096).await).into_owned();
        Err(http::classify_webhook(
            status,
            &headers,
            text.chars().take(512).collect::<String>().trim(),
        ))
    }
}

#[async_trait]
impl Export<Logs> for WebhookExporter {
    /// In `single` mode a failure part-way means a retry resends the records already
    /// delivered: receivers should tolerate duplicates (at-least-once).
    async fn export(&self, batch: &Batch<Logs>) -> Result<(), DeliveryError> {
        let records = records(batch);
        if records.is_empty() {
            return Ok(());
        }
        match self.mode {
            Mode::Batch => {
                self.post(Value::Array(records).to_string().into_bytes())
                    .await
            }
            Mode::Single => {
                for record in records {
                    self.post(record.to_string().into_bytes()).await?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_pipeline::proto::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_becomes_one_flat_object() {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_123_000_000,
            severity_text: "WARN".into(),
            severity_number: 13,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("cpu high".into())),
            }),
            attributes: vec![
                kv("alert.value", any_value::Value::DoubleValue(0.93)),
                kv("n", any_value::Value::IntValue(3)),
                kv(
                    "tags",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        }],
                    }),
                ),
                kv("raw", any_value::Value::BytesValue(vec![1, 2])),
                kv(
                    "m",
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("a", any_value::Value::StringValue("b".into()))],
                    }),
                ),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            ..Default::default()
        };
        let resource = Resource {
            attributes: vec![kv(
                "host.name",
                any_value::Value::StringValue("web-1".into()),
            )],
            ..Default::default()
        };
        let v = record_json(Some(&resource), None, &record);
        assert_eq!(v["time"], "2023-11-14T22:13:20.123000000Z");
        assert_eq!(v["severity"], "WARN");
        assert_eq!(v["severity_number"], 13);
        assert_eq!(v["body"], "cpu high");
        assert_eq!(v["attributes"]["alert.value"], 0.93);
        assert_eq!(v["attributes"]["n"], 3);
        assert_eq!(v["attributes"]["tags"], json!([true]));
        assert_eq!(v["attributes"]["raw"], "AQI=");
        assert_eq!(v["attributes"]["m"], json!({"a": "b"}));
        assert_eq!(v["resource"]["host.name"], "web-1");
        assert_eq!(v["trace_id"], "ab".repeat(16));
        assert_eq!(v["span_id"], "cd".repeat(8));
    }
}
