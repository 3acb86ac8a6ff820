//! Which code answers for each detector name, and which attributes each one can emit.

use super::attributes::Attr;
use super::aws::{ec2, ecs, eks};
use super::clouds::{
    akamai, alibaba, digitalocean, hetzner, ibmcloud, nova, oraclecloud, scaleway, tencent,
    upcloud, vultr,
};
use super::config::DetectorKind;
use super::detection::{Ctx, DetectResult, Found};
use super::kubernetes::{k8s_api, kubeadm, openshift};
use super::{
    azure, azure_container_apps, consul, container, docker, dynatrace, elastic_beanstalk, env, gcp,
    heroku, k8s, lambda, system,
};

pub fn attributes(kind: DetectorKind) -> &'static [Attr] {
    match kind {
        DetectorKind::System => system::ATTRIBUTES,
        DetectorKind::Docker => docker::ATTRIBUTES,
        DetectorKind::Lambda => lambda::ATTRIBUTES,
        DetectorKind::Ec2 => ec2::ATTRIBUTES,
        DetectorKind::Ecs => ecs::ATTRIBUTES,
        DetectorKind::Eks => eks::ATTRIBUTES,
        DetectorKind::ElasticBeanstalk => elastic_beanstalk::ATTRIBUTES,
        DetectorKind::Gcp => gcp::ATTRIBUTES,
        DetectorKind::Azure => azure::ATTRIBUTES,
        DetectorKind::Aks => azure::AKS_ATTRIBUTES,
        DetectorKind::AzureContainerApps => azure_container_apps::ATTRIBUTES,
        DetectorKind::Heroku => heroku::ATTRIBUTES,
        DetectorKind::Consul => consul::ATTRIBUTES,
        DetectorKind::K8sApi | DetectorKind::K8sNode => k8s_api::ATTRIBUTES,
        DetectorKind::Kubeadm => kubeadm::ATTRIBUTES,
        DetectorKind::OpenShift => openshift::ATTRIBUTES,
        DetectorKind::Hetzner => hetzner::ATTRIBUTES,
        DetectorKind::Akamai => akamai::ATTRIBUTES,
        DetectorKind::Scaleway => scaleway::ATTRIBUTES,
        DetectorKind::DigitalOcean => digitalocean::ATTRIBUTES,
        DetectorKind::OracleCloud => oraclecloud::ATTRIBUTES,
        DetectorKind::Vultr => vultr::ATTRIBUTES,
        DetectorKind::Upcloud => upcloud::ATTRIBUTES,
        DetectorKind::Nova => nova::ATTRIBUTES,
        DetectorKind::AlibabaEcs => alibaba::ATTRIBUTES,
        DetectorKind::TencentCvm => tencent::ATTRIBUTES,
        DetectorKind::IbmCloudVpc => ibmcloud::VPC_ATTRIBUTES,
        DetectorKind::IbmCloudClassic => ibmcloud::CLASSIC_ATTRIBUTES,
        DetectorKind::Env
        | DetectorKind::Container
        | DetectorKind::K8s
        | DetectorKind::Dynatrace => &[],
    }
}

/// Runs a detector that only reads files, variables and the system's name services on a
/// blocking thread, as it may wait on a resolver.
async fn blocking(
    ctx: &Ctx,
    work: impl FnOnce(&Ctx) -> DetectResult + Send + 'static,
) -> DetectResult {
    let owned = ctx.clone();
    match tokio::task::spawn_blocking(move || work(&owned)).await {
        Ok(result) => result,
        Err(e) => Err(format!("detector stopped unexpectedly: {e}")),
    }
}

/// The outcome of a platform detector that returns `None` off its platform.
fn or_missing(ctx: &Ctx, found: Option<Found>, platform: &str) -> DetectResult {
    match found {
        Some(found) => Ok(found),
        None => ctx.missing(format!("not on {platform}")),
    }
}

/// One attempt of the detector `ctx.kind`.
pub async fn run(ctx: &Ctx) -> DetectResult {
    let cfg = ctx.cfg.clone();
    match ctx.kind {
        DetectorKind::Env => blocking(ctx, move |c| env::detect(&c.host, &c.cfg.env)).await,
        DetectorKind::System => {
            blocking(ctx, |c| {
                let switches = c.switches();
                let timeout = c.request_timeout();
                system::detect(&c.host, &c.cfg.system, &|a| switches.on(a), timeout)
            })
            .await
        }
        DetectorKind::Container => blocking(ctx, |c| container::detect(&c.host)).await,
        DetectorKind::K8s => blocking(ctx, |c| k8s::detect(&c.host)).await,
        DetectorKind::Lambda => {
            blocking(ctx, |c| {
                let found = lambda::detect(&c.host)?;
                or_missing(c, found, "AWS Lambda")
            })
            .await
        }
        DetectorKind::ElasticBeanstalk => {
            blocking(ctx, |c| {
                let found = elastic_beanstalk::detect(&c.host)?;
                or_missing(c, found, "Elastic Beanstalk")
            })
            .await
        }
        DetectorKind::Heroku => or_missing(ctx, heroku::detect(&ctx.host), "Heroku"),
        DetectorKind::AzureContainerApps => or_missing(
            ctx,
            azure_container_apps::detect(&ctx.host),
            "Azure Container Apps",
        ),
        DetectorKind::Dynatrace => blocking(ctx, |c| dynatrace::detect(&c.host)).await,
        DetectorKind::Docker => docker::detect(ctx).await,
        DetectorKind::Ec2 => ec2::detect(ctx, &cfg.ec2).await,
        DetectorKind::Ecs => ecs::detect(ctx).await,
        DetectorKind::Eks => eks::detect(ctx, &cfg.eks).await,
        DetectorKind::Gcp => gcp::detect(ctx, &cfg.gcp).await,
        DetectorKind::Azure => azure::detect(ctx, &cfg.azure).await,
        DetectorKind::Aks => azure::detect_aks(ctx).await,
        DetectorKind::Consul => consul::detect(ctx, &cfg.consul).await,
        DetectorKind::K8sApi => k8s_api::detect(ctx, &cfg.k8s_api).await,
        DetectorKind::K8sNode => k8s_api::detect(ctx, &cfg.k8snode).await,
        DetectorKind::Kubeadm => kubeadm::detect(ctx, &cfg.kubeadm).await,
        DetectorKind::OpenShift => openshift::detect(ctx, &cfg.openshift).await,
        DetectorKind::Hetzner => hetzner::detect(ctx).await,
        DetectorKind::Akamai => akamai::detect(ctx).await,
        DetectorKind::Scaleway => scaleway::detect(ctx).await,
        DetectorKind::DigitalOcean => digitalocean::detect(ctx).await,
        DetectorKind::OracleCloud => oraclecloud::detect(ctx).await,
        DetectorKind::Vultr => vultr::detect(ctx).await,
        DetectorKind::Upcloud => upcloud::detect(ctx).await,
        DetectorKind::Nova => nova::detect(ctx, &cfg.nova).await,
        DetectorKind::AlibabaEcs => alibaba::detect(ctx).await,
        DetectorKind::TencentCvm => tencent::detect(ctx).await,
        DetectorKind::IbmCloudVpc => ibmcloud::detect_vpc(ctx, &cfg.ibmcloud_vpc).await,
        DetectorKind::IbmCloudClassic => ibmcloud::detect_classic(ctx).await,
    }
}
