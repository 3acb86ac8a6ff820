//! A read-only client of the Kubernetes API, set up as the OTel Collector's `k8sconfig` sets it
//! up: in-cluster with the pod's service account (`serviceAccount`), from a kubeconfig file
//! (`kubeConfig`), or with no credentials and no verification (`none`).

use base64::Engine;

use crate::resource_detection::config::AuthType;
use crate::resource_detection::detection::Ctx;
use crate::resource_detection::http::{Client, Request};
use crate::resource_detection::tls::{TlsOptions, client_config};

pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Setup(String),
    #[error("GET {path}: {why}")]
    Unreachable { path: String, why: String },
    #[error("GET {path}: HTTP {status}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error("GET {path}: {why}")]
    Invalid { path: String, why: String },
}

/// Where the API is and how to talk to it.
pub struct KubeApi {
    base: String,
    client: Client,
    token: Option<String>,
}

impl KubeApi {
    /// The in-cluster address from `KUBERNETES_SERVICE_HOST`/`_PORT`.
    pub fn in_cluster_address(ctx: &Ctx) -> Result<String, KubeError> {
        match (
            ctx.host.var("KUBERNETES_SERVICE_HOST"),
            ctx.host.var("KUBERNETES_SERVICE_PORT"),
        ) {
            (Some(host), Some(port)) => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                Ok(format!("https://{host}:{port}"))
            }
            _ => Err(KubeError::Setup(
                "unable to load k8s config, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined".into(),
            )),
        }
    }

    /// The service account's token, when the pod has one.
    pub fn service_account_token(ctx: &Ctx) -> Result<Option<String>, KubeError> {
        ctx.host
            .read_own_line(&format!("{SERVICE_ACCOUNT_DIR}/token"))
            .map_err(KubeError::Setup)
    }

    /// The service account's CA, when the pod has one.
    pub fn service_account_ca(ctx: &Ctx) -> Result<Option<Vec<u8>>, KubeError> {
        Ok(ctx
            .host
            .read_own(&format!("{SERVICE_ACCOUNT_DIR}/ca.crt"))
            .map_err(KubeError::Setup)?
            .map(String::into_bytes))
    }

    pub fn connect(ctx: &Ctx, auth: AuthType, context: &str) -> Result<KubeApi, KubeError> {
        match auth {
            AuthType::ServiceAccount => {
                let base = Self::in_cluster_address(ctx)?;
                let token = Self::service_account_token(ctx)?.ok_or_else(|| {
                    KubeError::Setup(format!("no service account token in {SERVICE_ACCOUNT_DIR}"))
                })?;
                let ca = Self::service_account_ca(ctx)?.ok_or_else(|| {
                    KubeError::Setup(format!("no service account CA in {SERVICE_ACCOUNT_DIR}"))
                })?;
                let tls = client_config(&TlsOptions {
                    ca_pem: Some(ca),
                    ..Default::default()
                })
                .map_err(KubeError::Setup)?;
                Ok(KubeApi {
                    base,
                    client: Client::default().with_tls(tls),
                    token: Some(token),
                })
            }
            AuthType::None => {
                let base = Self::in_cluster_address(ctx)?;
                let tls = client_config(&TlsOptions {
                    insecure_skip_verify: true,
                    ..Default::default()
                })
                .map_err(KubeError::Setup)?;
                Ok(KubeApi {
                    base,
                    client: Client::default().with_tls(tls),
                    token: None,
                })
            }
            AuthType::KubeConfig => from_kubeconfig(ctx, context),
            AuthType::Tls => Err(KubeError::Setup(
                "auth_type `tls` is not implemented (the OTel Collector accepts it but cannot connect with it either)".into(),
            )),
        }
    }

    /// A client for `base` with `token`, for callers that set up TLS themselves (OpenShift).
    pub fn with(base: String, client: Client, token: Option<String>) -> KubeApi {
        KubeApi {
            base: base.trim_end_matches('/').to_string(),
            client,
            token,
        }
    }

    /// The JSON at `path` (e.g. `/api/v1/nodes/node-1`).
    pub async fn get(&self, ctx: &Ctx, path: &str) -> Result<serde_json::Value, KubeError> {
        let mut request = Request::get(format!("{}{path}", self.base), ctx.request_timeout())
            .header("Accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let answer = self
            .client
            .send(request)
            .await
            .map_err(|e| KubeError::Unreachable {
                path: path.into(),
                why: e.to_string(),
            })?;
        if !answer.is_ok() {
            let message = answer
                .json::<serde_json::Value>()
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| answer.text().chars().take(300).collect());
            return Err(KubeError::Status {
                path: path.into(),
                status: answer.status,
                message,
            });
        }
        answer.json().map_err(|why| KubeError::Invalid {
            path: path.into(),
            why,
        })
    }
}

/// A string at `pointer` (JSON pointer) of `value`, empty when absent.
pub fn text(value: &serde_json::Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// A client from a kubeconfig file: `KUBECONFIG` (its first file), else `~/.kube/config`; the
/// current context unless `context` names another.
fn from_kubeconfig(ctx: &Ctx, context: &str) -> Result<KubeApi, KubeError> {
    let setup = |why: String| KubeError::Setup(format!("kubeconfig: {why}"));
    let path = match ctx.host.var("KUBECONFIG") {
        Some(list) => list.split(':').next().unwrap_or_default().to_string(),
        None => format!(
            "{}/.kube/config",
            ctx.host
                .var("HOME")
                .ok_or_else(|| setup("neither KUBECONFIG nor HOME is set".into()))?
        ),
    };
    let text = ctx
        .host
        .read_own(&path)
        .map_err(setup)?
        .ok_or_else(|| setup(format!("{path} does not exist")))?;
    let doc = sluice_config::parse_yaml(&path, &text).map_err(|e| setup(e.to_string()))?;
    let named = |list: &str, name: &str| {
        doc.get(list)
            .and_then(|l| l.as_seq())
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i.get("name").and_then(|n| n.as_str()) == Some(name))
            })
            .and_then(|i| i.get(list.trim_end_matches('s')))
    };
    let context_name = if context.is_empty() {
        doc.get("current-context")
            .and_then(|c| c.as_str())
            .ok_or_else(|| setup(format!("{path} has no current-context")))?
            .to_string()
    } else {
        context.to_string()
    };
    let chosen = named("contexts", &context_name)
        .ok_or_else(|| setup(format!("no context `{context_name}` in {path}")))?;
    let field = |node: &sluice_config::Node, key: &str| {
        node.get(key).and_then(|v| v.as_str()).map(str::to_string)
    };
    let cluster_name = field(chosen, "cluster").unwrap_or_default();
    let cluster = named("clusters", &cluster_name)
        .ok_or_else(|| setup(format!("no cluster `{cluster_name}` in {path}")))?;
    let user = field(chosen, "user").and_then(|u| named("users", &u));
    let server =
        field(cluster, "server").ok_or_else(|| setup("the cluster has no server".into()))?;
    let decode = |key: &str, data: String| {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| setup(format!("{key}: {e}")))
    };
    let file = |key: &str, file: String| {
        ctx.host
            .read_own(&file)
            .map_err(setup)?
            .map(String::into_bytes)
            .ok_or_else(|| setup(format!("{key} {file} does not exist")))
    };
    let ca_pem = match (
        field(cluster, "certificate-authority-data"),
        field(cluster, "certificate-authority"),
    ) {
        (Some(data), _) => Some(decode("certificate-authority-data", data)?),
        (None, Some(path)) => Some(file("certificate-authority", path)?),
        (None, None) => None,
    };
    let insecure = cluster
        .get("insecure-skip-tls-verify")
        .and_then(|v| v.as_str())
        .is_some_and(|v| v == "true");
    let mut token = None;
    let mut client_cert_pem = None;
    if let Some(user) = user {
        if user.get("exec").is_some() || user.get("auth-provider").is_some() {
            return Err(setup(
                "credential plugins (exec, auth-provider) are not supported; use a token or a client certificate".into(),
            ));
        }
        token = match (field(user, "token"), field(user, "tokenFile")) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => ctx.host.read_own_line(&f).map_err(setup)?,
            (None, None) => None,
        };
        let cert = match (
            field(user, "client-certificate-data"),
            field(user, "client-certificate"),
        ) {
            (Some(d), _) => Some(decode("client-certificate-data", d)?),
            (None, Some(f)) => Some(file("client-certificate", f)?),
            (None, None) => None,
        };
        let key = match (field(user, "client-key-data"), field(user, "client-key")) {
            (Some(d), _) => Some(decode("client-key-data", d)?),
            (None, Some(f)) => Some(file("client-key", f)?),
            (None, None) => None,
        };
        if let (Some(cert), Some(key)) = (cert, key) {
            client_cert_pem = Some((cert, key));
        }
    }
    let mut client = Client::default();
    if server.starts_with("https://") {
        let tls = client_config(&TlsOptions {
            ca_pem,
            client_cert_pem,
            insecure_skip_verify: insecure,
            also_system_roots: false,
        })
        .map_err(setup)?;
        client = client.with_tls(tls);
    }
    Ok(KubeApi::with(server, client, token))
}
