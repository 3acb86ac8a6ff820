//! AWS credentials for the EC2 API calls, found where the AWS SDK's default chain looks:
//! environment variables, a web identity token (EKS IRSA), the shared credentials file, the
//! container credentials endpoint (ECS, EKS Pod Identity), and the instance's role.

use serde::Deserialize;

use super::imds::Imds;
use super::sigv4::Credentials;
use crate::resource_detection::detection::Ctx;
use crate::resource_detection::http::{Client, Request};
use crate::resource_detection::xml;

/// The JSON the container endpoint and the instance metadata service answer with.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Temporary {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
}

impl From<Temporary> for Credentials {
    fn from(t: Temporary) -> Self {
        Credentials {
            access_key_id: t.access_key_id,
            secret_access_key: t.secret_access_key,
            session_token: t.token.filter(|t| !t.is_empty()),
        }
    }
}

/// The first credentials found, in the AWS SDK's order. `imds` is the detector's metadata
/// session, for the instance role.
pub async fn find(ctx: &Ctx, imds: Option<&mut Imds>, region: &str) -> Result<Credentials, String> {
    let host = &ctx.host;
    if let (Some(id), Some(secret)) = (
        host.var("AWS_ACCESS_KEY_ID"),
        host.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: host.var("AWS_SESSION_TOKEN"),
        });
    }
    if let (Some(token_file), Some(role)) = (
        host.var("AWS_WEB_IDENTITY_TOKEN_FILE"),
        host.var("AWS_ROLE_ARN"),
    ) {
        return web_identity(ctx, &token_file, &role, region).await;
    }
    if let Some(found) = shared_file(ctx)? {
        return Ok(found);
    }
    if let Some(found) = container(ctx).await? {
        return Ok(found);
    }
    match imds {
        Some(imds) => instance_role(ctx, imds).await,
        None => Err("no AWS credentials found (environment, web identity, shared credentials file, container endpoint)".into()),
    }
}

/// `~/.aws/credentials` (or `AWS_SHARED_CREDENTIALS_FILE`), profile `AWS_PROFILE` or
/// `default`.
fn shared_file(ctx: &Ctx) -> Result<Option<Credentials>, String> {
    let host = &ctx.host;
    let path = match host.var("AWS_SHARED_CREDENTIALS_FILE") {
        Some(path) => path,
        None => match host.var("HOME") {
            Some(home) => format!("{home}/.aws/credentials"),
            None => return Ok(None),
        },
    };
    let Some(text) = host.read_own(&path)? else {
        return Ok(None);
    };
    let profile = host.var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    Ok(profile_credentials(&text, &profile))
}

/// The keys of one `[profile]` section of an INI credentials file.
pub fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_section = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == profile;
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

/// The container credentials endpoint (ECS task roles, EKS Pod Identity).
async fn container(ctx: &Ctx) -> Result<Option<Credentials>, String> {
    let host = &ctx.host;
    let url = match (
        host.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        host.var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => format!("{}{relative}", ctx.endpoints.ecs_credentials),
        (None, Some(full)) => full,
        (None, None) => return Ok(None),
    };
    let mut request = Request::get(&url, ctx.request_timeout());
    let token = match host.var("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
        Some(token) => Some(token),
        None => match host.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(file) => host.read_own_line(&file)?,
            None => None,
        },
    };
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    let answer = Client::default()
        .send(request)
        .await
        .map_err(|e| format!("container credentials: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "container credentials {url}: HTTP {} {}",
            answer.status,
            answer.text()
        ));
    }
    let found: Temporary = answer
        .json()
        .map_err(|e| format!("container credentials: {e}"))?;
    Ok(Some(found.into()))
}

/// The instance profile's role, from the metadata service.
async fn instance_role(ctx: &Ctx, imds: &mut Imds) -> Result<Credentials, String> {
    const ROLES: &str = "/latest/meta-data/iam/security-credentials/";
    let roles = imds
        .get(ctx, ROLES)
        .await
        .map_err(|e| format!("no instance role: {e}"))?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("no instance role: the instance has no IAM role")?
        .to_string();
    let found: Temporary = imds
        .get_json(ctx, &format!("{ROLES}{role}"))
        .await
        .map_err(|e| format!("instance role `{role}`: {e}"))?;
    Ok(found.into())
}

/// `AssumeRoleWithWebIdentity` (unsigned) with the projected service account token.
async fn web_identity(
    ctx: &Ctx,
    token_file: &str,
    role: &str,
    region: &str,
) -> Result<Credentials, String> {
    let host = &ctx.host;
    let token = host
        .read_own(token_file)?
        .ok_or_else(|| format!("AWS_WEB_IDENTITY_TOKEN_FILE {token_file} does not exist"))?;
    let session = host
        .var("AWS_ROLE_SESSION_NAME")
        .unwrap_or_else(|| "sluice-resource-detection".into());
    let endpoint = super::api::endpoint(host, "STS", "sts", region);
    let form = super::sigv4::canonical_query(&[
        ("Action".into(), "AssumeRoleWithWebIdentity".into()),
        ("Version".into(), "2011-06-15".into()),
        ("RoleArn".into(), role.into()),
        ("RoleSessionName".into(), session),
        ("WebIdentityToken".into(), token.trim().into()),
    ]);
    let request = Request::post(
        format!("{endpoint}/"),
        form.into_bytes(),
        ctx.request_timeout(),
    )
    .header("Content-Type", "application/x-www-form-urlencoded");
    let answer = ctx
        .api_client()?
        .send(request)
        .await
        .map_err(|e| format!("STS: {e}"))?;
    let text = answer.text();
    if !answer.is_ok() {
        return Err(format!(
            "STS AssumeRoleWithWebIdentity: HTTP {}: {}",
            answer.status,
            super::api::error_of(&text)
        ));
    }
    let creds = xml::all(&text, "Credentials")
        .first()
        .copied()
        .ok_or("STS: no Credentials in the answer")?;
    Ok(Credentials {
        access_key_id: xml::first(creds, "AccessKeyId").ok_or("STS: no AccessKeyId")?,
        secret_access_key: xml::first(creds, "SecretAccessKey").ok_or("STS: no SecretAccessKey")?,
        session_token: xml::first(creds, "SessionToken"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_of_the_shared_file() {
        let text = "# comment\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key=secret1\n\n[ops]\naws_access_key_id=AKIAOPS\naws_secret_access_key = secret2\naws_session_token = tok\n";
        let default = profile_credentials(text, "default").unwrap();
        assert_eq!(default.access_key_id, "AKIADEFAULT");
        assert_eq!(default.secret_access_key, "secret1");
        assert_eq!(default.session_token, None);
        let ops = profile_credentials(text, "ops").unwrap();
        assert_eq!(ops.session_token.as_deref(), Some("tok"));
        assert!(profile_credentials(text, "missing").is_none());
        assert!(profile_credentials("[default]\naws_access_key_id=x\n", "default").is_none());
    }
}
