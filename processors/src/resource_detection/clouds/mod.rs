//! Detectors of the smaller clouds, each reading its platform's link-local metadata service.

pub mod akamai;
pub mod alibaba;
pub mod digitalocean;
pub mod hetzner;
pub mod ibmcloud;
pub mod nova;
pub mod oraclecloud;
pub mod scaleway;
pub mod tencent;
pub mod upcloud;
pub mod vultr;

use std::time::Duration;

use super::detection::Ctx;
use super::http::{Client, HttpError, Request, Response};

/// A client for a link-local metadata service: off that cloud the address is often a black
/// hole, and a connection that does not come at once will not come.
pub fn client() -> Client {
    Client::default().with_connect_timeout(Duration::from_secs(1))
}

/// GET `url` with `headers`, within the attempt's time.
pub async fn get(
    ctx: &Ctx,
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<Response, HttpError> {
    let mut request = Request::get(url, ctx.request_timeout());
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    client().send(request).await
}

/// The body of a 200 answer to GET `url`, trimmed, or why there is none.
pub async fn get_text(
    ctx: &Ctx,
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<String, String> {
    let answer = get(ctx, url, headers).await.map_err(|e| e.to_string())?;
    if !answer.is_ok() {
        return Err(format!(
            "{url}: HTTP {} {}",
            answer.status,
            answer.text().trim()
        ));
    }
    Ok(answer.text().trim().to_string())
}

/// Like `get_text`, parsed as JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<T, String> {
    let answer = get(ctx, url, headers).await.map_err(|e| e.to_string())?;
    if !answer.is_ok() {
        return Err(format!(
            "{url}: HTTP {} {}",
            answer.status,
            answer.text().trim()
        ));
    }
    answer.json().map_err(|e| format!("{url}: {e}"))
}
