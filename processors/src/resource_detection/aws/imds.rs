//! The EC2 instance metadata service as the AWS SDK speaks to it: an IMDSv2 session token
//! (`PUT /latest/api/token`) sent with every read, IMDSv1 when tokens are refused, a fresh
//! token after a 401, and the SDK's retries of server errors and silence.

use std::time::Duration;

use serde::Deserialize;

use crate::resource_detection::detection::Ctx;
use crate::resource_detection::http::{Client, Request};

/// The session length the AWS SDK for Go v2 asks for.
const TOKEN_TTL_SECONDS: &str = "300";
const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
/// The SDK's metadata client waits at most this long between attempts, whatever
/// `max_backoff` says.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Connecting to the link-local address either works at once or not at all (off EC2 it is
/// often a black hole): this keeps the no-answer case short, as the SDK's dial timeout does.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("{path}: {why}")]
    Unreachable { path: String, why: String },
    #[error("{path}: HTTP {status} {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("session token refused: HTTP 400 {0}")]
    TokenRefused(String),
}

/// The session token, when there is one.
enum Token {
    /// Not asked for yet.
    Unknown,
    Session(String),
    /// Refused (403/404/405) or out of reach: IMDSv1 for the rest of the session.
    V1,
}

/// A metadata session.
pub struct Imds {
    base: String,
    client: Client,
    token: Token,
    attempts: u32,
    max_backoff: Duration,
}

/// The instance identity document, with the fields the detectors read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityDocument {
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub availability_zone: String,
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub instance_type: String,
    #[serde(default)]
    pub region: String,
}

impl Imds {
    /// A session with the metadata service where the environment says it is, as the AWS
    /// SDK resolves it; `None` when `AWS_EC2_METADATA_DISABLED` turns it off.
    pub fn from_env(ctx: &Ctx, attempts: u32, max_backoff: Duration) -> Option<Imds> {
        let host = &ctx.host;
        if host
            .var("AWS_EC2_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return None;
        }
        let base = match host.var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            Some(endpoint) => endpoint,
            None => match host.var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
                Some(mode) if mode.eq_ignore_ascii_case("ipv6") => {
                    ctx.endpoints.ec2_imds_ipv6.clone()
                }
                _ => ctx.endpoints.ec2_imds.clone(),
            },
        };
        Some(Imds {
            base: base.trim_end_matches('/').to_string(),
            client: Client::default().with_connect_timeout(CONNECT_TIMEOUT),
            token: Token::Unknown,
            attempts: attempts.max(1),
            max_backoff,
        })
    }

    /// A fresh session token, or IMDSv1 when the service refuses tokens or cannot be asked.
    async fn fetch_token(&mut self, ctx: &Ctx) -> Result<(), ImdsError> {
        let request = Request::put(
            format!("{}/latest/api/token", self.base),
            ctx.request_timeout(),
        )
        .header(TTL_HEADER, TOKEN_TTL_SECONDS);
        self.token = match self.client.send(request).await {
            Ok(answer) if answer.is_ok() => {
                // The SDK treats an answer without a whole-number TTL as a failed token.
                let ttl_ok = answer
                    .header(TTL_HEADER)
                    .is_some_and(|t| t.trim().parse::<u64>().is_ok());
                let token = answer.text().trim().to_string();
                if ttl_ok && !token.is_empty() {
                    Token::Session(token)
                } else {
                    tracing::debug!("ec2 metadata: token answer without a TTL; using IMDSv1");
                    Token::V1
                }
            }
            Ok(answer) if answer.status == 400 => {
                return Err(ImdsError::TokenRefused(answer.text()));
            }
            Ok(answer) => {
                tracing::debug!(
                    status = answer.status,
                    "ec2 metadata: no session token; using IMDSv1"
                );
                Token::V1
            }
            Err(e) => {
                tracing::debug!(error = %e, "ec2 metadata: no session token; using IMDSv1");
                Token::V1
            }
        };
        Ok(())
    }

    /// The text at `path` (e.g. `/latest/meta-data/instance-id`).
    pub async fn get(&mut self, ctx: &Ctx, path: &str) -> Result<String, ImdsError> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if matches!(self.token, Token::Unknown) {
                self.fetch_token(ctx).await?;
            }
            let mut request = Request::get(format!("{}{path}", self.base), ctx.request_timeout());
            if let Token::Session(token) = &self.token {
                request = request.header(TOKEN_HEADER, token.clone());
            }
            let retryable = match self.client.send(request).await {
                Ok(answer) if answer.is_ok() => return Ok(answer.text()),
                Ok(answer) if answer.status == 401 && !refreshed => {
                    // The token expired or was never valid: the SDK fetches a new one once.
                    refreshed = true;
                    self.token = Token::Unknown;
                    attempt -= 1;
                    continue;
                }
                Ok(answer) if answer.status >= 500 => ImdsError::Status {
                    path: path.into(),
                    status: answer.status,
                    body: answer.text(),
                },
                Ok(answer) => {
                    return Err(ImdsError::Status {
                        path: path.into(),
                        status: answer.status,
                        body: answer.text(),
                    });
                }
                Err(e) => ImdsError::Unreachable {
                    path: path.into(),
                    why: e.to_string(),
                },
            };
            if attempt >= self.attempts {
                return Err(retryable);
            }
            tokio::time::sleep(self.wait(attempt)).await;
        }
    }

    /// The text at `path`, parsed as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &mut self,
        ctx: &Ctx,
        path: &str,
    ) -> Result<T, String> {
        let text = self.get(ctx, path).await.map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{path}: not the JSON expected: {e}"))
    }

    /// Exponential, jittered, and capped by `max_backoff` and the metadata client's own cap.
    fn wait(&self, attempt: u32) -> Duration {
        let exp = Duration::from_millis(50).saturating_mul(1u32 << attempt.min(10));
        let cap = exp.min(self.max_backoff).min(MAX_WAIT);
        cap.mul_f64(fastrand::f64())
    }
}
