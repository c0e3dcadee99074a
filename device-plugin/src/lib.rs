//! exliar's Kubernetes device plugin: the v1beta1 API (generated from
//! `proto/api.proto`) and what the `exliar-device-plugin` binary is made
//! of, public so that its tests can play the kubelet.

/// The device plugin API, v1beta1.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod api {
    tonic::include_proto!("v1beta1");
}

pub mod discover;
pub mod plugin;
pub mod run;
