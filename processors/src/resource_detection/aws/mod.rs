//! The AWS detectors (`ec2`, `ecs`, `eks`) and what they share: the instance metadata
//! service, credentials, request signing and the EC2 API.

pub mod api;
pub mod credentials;
pub mod ec2;
pub mod ecs;
pub mod eks;
pub mod imds;
pub mod sigv4;
