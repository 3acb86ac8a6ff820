//! `consul`: the node as its local Consul agent knows it (`/v1/agent/self`), plus node
//! metadata keys the config names.

use super::attributes::{Attr, on};
use super::config::ConsulConfig;
use super::detection::{Ctx, DetectResult, Found};
use super::http::{Client, Request};

pub const ATTRIBUTES: &[Attr] = &[on("cloud.region"), on("host.id"), on("host.name")];

/// The agent's base URL: the config's address, else `CONSUL_HTTP_ADDR`, else the local
/// agent; a bare `host:port` gets `https` when `CONSUL_HTTP_SSL` says so.
fn base(ctx: &Ctx, cfg: &ConsulConfig) -> String {
    let address = if cfg.address.is_empty() {
        ctx.host
            .var("CONSUL_HTTP_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8500".into())
    } else {
        cfg.address.clone()
    };
    let address = address.trim_end_matches('/');
    if address.contains("://") {
        return address.to_string();
    }
    let tls = ctx
        .host
        .var("CONSUL_HTTP_SSL")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
    format!("{}://{address}", if tls { "https" } else { "http" })
}

/// The ACL token: the config's, its file's, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`.
fn token(ctx: &Ctx, cfg: &ConsulConfig) -> Result<Option<String>, String> {
    let read = |path: &str| {
        ctx.host
            .read_own_line(path)?
            .map(Some)
            .ok_or_else(|| format!("consul token file {path} does not exist"))
    };
    if !cfg.token.is_empty() {
        Ok(Some(cfg.token.clone()))
    } else if !cfg.token_file.is_empty() {
        read(&cfg.token_file)
    } else if let Some(token) = ctx.host.var("CONSUL_HTTP_TOKEN") {
        Ok(Some(token))
    } else if let Some(path) = ctx.host.var("CONSUL_HTTP_TOKEN_FILE") {
        read(&path)
    } else {
        Ok(None)
    }
}

pub async fn detect(ctx: &Ctx, cfg: &ConsulConfig) -> DetectResult {
    let mut query = Vec::new();
    if !cfg.datacenter.is_empty() {
        query.push(format!("dc={}", cfg.datacenter));
    }
    if !cfg.namespace.is_empty() {
        query.push(format!("ns={}", cfg.namespace));
    }
    let mut url = format!("{}/v1/agent/self", base(ctx, cfg));
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let mut request = Request::get(&url, ctx.request_timeout());
    if let Some(token) = token(ctx, cfg)? {
        request = request.header("X-Consul-Token", token);
    }
    let answer = Client::default()
        .send(request)
        .await
        .map_err(|e| format!("failed to get local agent information: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "failed to get local agent information: HTTP {} {}",
            answer.status,
            answer.text().trim()
        ));
    }
    let agent: serde_json::Value = answer.json()?;
    let config = agent
        .get("Config")
        .filter(|c| c.is_object())
        .ok_or("the agent's answer has no Config")?;
    let field = |name: &str| {
        config
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("the agent's Config has no {name}"))
    };
    let mut found = Found::default();
    found.string("host.name", field("NodeName")?);
    found.string("cloud.region", field("Datacenter")?);
    found.string("host.id", field("NodeID")?);
    if let Some(meta) = agent.get("Meta").and_then(|m| m.as_object()) {
        for (key, value) in meta {
            if cfg.meta.contains_key(key)
                && let Some(value) = value.as_str()
            {
                found.string(key, value);
            }
        }
    }
    Ok(found)
}
