//! Detectors that ask the Kubernetes API: `k8s_api` (the node), `kubeadm` (the cluster's
//! name), `openshift` (the cluster's infrastructure); and the API client they and `eks` share.

pub mod api;
pub mod k8s_api;
pub mod kubeadm;
pub mod openshift;
