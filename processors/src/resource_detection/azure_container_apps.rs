//! `azurecontainerapps`: the Azure Container App, from the variables Container Apps sets.

use super::attributes::{Attr, on};
use super::detection::Found;
use super::host::Host;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("service.name"),
    on("service.instance.id"),
];

/// Not on Container Apps (no `CONTAINER_APP_NAME`) is `None`.
pub fn detect(host: &Host) -> Option<Found> {
    let app = host.var("CONTAINER_APP_NAME")?;
    let mut found = Found::default();
    found.string("cloud.provider", "azure");
    found.string("cloud.platform", "azure.container_apps");
    found.string("service.name", app);
    if let Some(replica) = host.var("CONTAINER_APP_REPLICA_NAME") {
        found.string("service.instance.id", replica);
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::host_with;

    #[test]
    fn app_and_replica() {
        let host = host_with(
            &[
                ("CONTAINER_APP_NAME", "checkout"),
                (
                    "CONTAINER_APP_REPLICA_NAME",
                    "checkout--rev1-5d8f7c9b6-abcde",
                ),
            ],
            None,
        );
        let found = detect(&host).unwrap();
        assert_eq!(
            found.get_str("cloud.platform"),
            Some("azure.container_apps")
        );
        assert_eq!(found.get_str("service.name"), Some("checkout"));
        assert_eq!(
            found.get_str("service.instance.id"),
            Some("checkout--rev1-5d8f7c9b6-abcde")
        );
        assert!(detect(&host_with(&[], None)).is_none());
    }
}
