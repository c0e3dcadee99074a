//! One resource's DevicePlugin service.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::device_plugin_server::DevicePlugin;
use crate::discover::State;

pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";

/// The annotation prefix CDI-aware runtimes read device names from.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";
/// The plugin name in the annotation key (`cdi.k8s.io/<plugin>_<device>`).
pub const PLUGIN_NAME: &str = "exliar-device-plugin";

/// The options every exliar plugin has.
pub fn options() -> api::DevicePluginOptions {
    api::DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// The CDI annotation key of a resource:
/// `cdi.k8s.io/exliar-device-plugin_gpu-amd`.
pub fn annotation_key(resource: &str) -> String {
    let short = resource.rsplit('/').next().unwrap_or(resource);
    format!("{ANNOTATION_PREFIX}{PLUGIN_NAME}_{short}")
}

/// Whether `key` is a valid CDI annotation key: `cdi.k8s.io/` and a name
/// of at most 63 of `[A-Za-z0-9_.-]`, starting and ending alphanumeric
/// (the rules of the CDI package's `AnnotationKey`, which are
/// Kubernetes' qualified-name rules).
pub fn valid_annotation_key(key: &str) -> bool {
    let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
        return false;
    };
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && alnum(name.chars().next())
        && alnum(name.chars().last())
}

/// KubeVirt's variable naming the PCI addresses of a resource a device
/// plugin allocated (`PCI_RESOURCE_EXLIAR_DEV_VFIO-1002-67FF`), as its
/// `ResourceNameToEnvVar` makes it; `None` for GPU resources.
pub fn kubevirt_env(resource: &str) -> Option<String> {
    if !resource.starts_with("exliar.dev/vfio-") {
        return None;
    }
    Some(format!(
        "PCI_RESOURCE_{}",
        resource.to_uppercase().replace(['/', '.'], "_")
    ))
}

/// The device list of `resource` in `state`.
pub fn devices_of(state: &State, resource: &str) -> Vec<api::Device> {
    state
        .get(resource)
        .map(|devs| {
            devs.values()
                .map(|d| api::Device {
                    id: d.card.id.clone(),
                    health: if d.healthy { HEALTHY } else { UNHEALTHY }.into(),
                    topology: d.card.numa.map(|n| api::TopologyInfo {
                        nodes: vec![api::NumaNode { id: n }],
                    }),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A device ID as logs and errors show it: quoted, escaped, at most 64
/// characters (the kubelet sends what pods ask for).
fn shown(id: &str) -> String {
    let s: String = id.chars().take(64).collect();
    format!("{s:?}")
}

/// The DevicePlugin service of one resource.
pub struct Plugin {
    pub resource: String,
    pub state: watch::Receiver<State>,
    /// Becomes `true` when the server stops: open streams end.
    pub stop: watch::Receiver<bool>,
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<api::ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for Plugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<api::DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let mut state = self.state.clone();
        let mut stop = self.stop.clone();
        let resource = self.resource.clone();
        tracing::info!("{resource}: ListAndWatch opened");
        tokio::spawn(async move {
            let mut last: Option<Vec<api::Device>> = None;
            loop {
                let list = devices_of(&state.borrow_and_update(), &resource);
                if last.as_ref() != Some(&list) {
                    let resp = api::ListAndWatchResponse {
                        devices: list.clone(),
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                    last = Some(list);
                }
                tokio::select! {
                    r = state.changed() => if r.is_err() { break },
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tx.closed() => break,
                }
            }
            tracing::info!("{resource}: ListAndWatch closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<api::PreferredAllocationRequest>,
    ) -> Result<Response<api::PreferredAllocationResponse>, Status> {
        let state = self.state.borrow().clone();
        let numa = |id: &str| {
            state
                .get(&self.resource)
                .and_then(|d| d.get(id))
                .and_then(|d| d.card.numa)
        };
        let mut container_responses = Vec::new();
        for cr in req.into_inner().container_requests {
            let size = usize::try_from(cr.allocation_size).unwrap_or(0);
            let mut ids: Vec<String> = cr.must_include_device_i_ds.clone();
            // Prefer the NUMA nodes of the devices it must have, then
            // the rest in the kubelet's order.
            let near: BTreeSet<i64> = ids.iter().filter_map(|i| numa(i)).collect();
            let mut rest: Vec<&String> = cr
                .available_device_i_ds
                .iter()
                .filter(|i| !ids.contains(i))
                .collect();
            rest.sort_by_key(|i| numa(i).is_none_or(|n| !near.contains(&n)));
            for i in rest {
                if ids.len() >= size {
                    break;
                }
                if !ids.contains(i) {
                    ids.push(i.clone());
                }
            }
            container_responses
                .push(api::ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
        Ok(Response::new(api::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<api::AllocateRequest>,
    ) -> Result<Response<api::AllocateResponse>, Status> {
        let state = self.state.borrow().clone();
        let devs = state.get(&self.resource);
        let mut container_responses = Vec::new();
        for cr in req.into_inner().container_requests {
            let mut names = Vec::new();
            let mut ids = Vec::new();
            for id in &cr.devices_ids {
                let Some(d) = devs.and_then(|d| d.get(id)) else {
                    tracing::warn!(
                        "{}: Allocate of unknown device {}",
                        self.resource,
                        shown(id)
                    );
                    return Err(Status::invalid_argument(format!(
                        "{}: no device {}",
                        self.resource,
                        shown(id)
                    )));
                };
                if !d.healthy {
                    tracing::warn!(
                        "{}: Allocate of unhealthy device {}",
                        self.resource,
                        shown(id)
                    );
                    return Err(Status::failed_precondition(format!(
                        "{}: device {} is unhealthy (gone or on another driver)",
                        self.resource,
                        shown(id)
                    )));
                }
                if !names.contains(&d.card.cdi) {
                    names.push(d.card.cdi.clone());
                }
                if !ids.contains(&d.card.id) {
                    ids.push(d.card.id.clone());
                }
            }
            tracing::info!("{}: Allocate {}", self.resource, names.join(","));
            let annotations = if names.is_empty() {
                HashMap::new()
            } else {
                HashMap::from([(annotation_key(&self.resource), names.join(","))])
            };
            container_responses.push(api::ContainerAllocateResponse {
                cdi_devices: names
                    .into_iter()
                    .map(|name| api::CdiDevice { name })
                    .collect(),
                annotations,
                envs: match kubevirt_env(&self.resource) {
                    Some(k) if !ids.is_empty() => HashMap::from([(k, ids.join(","))]),
                    _ => HashMap::new(),
                },
                ..Default::default()
            });
        }
        Ok(Response::new(api::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<api::PreStartContainerRequest>,
    ) -> Result<Response<api::PreStartContainerResponse>, Status> {
        Ok(Response::new(api::PreStartContainerResponse {}))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn annotation_keys_are_valid() {
        for r in [
            "exliar.dev/gpu-nvidia",
            "exliar.dev/gpu-amd",
            "exliar.dev/gpu-intel",
            "exliar.dev/vfio-10de-2204",
        ] {
            let k = annotation_key(r);
            assert!(valid_annotation_key(&k), "{k}");
        }
        assert_eq!(
            annotation_key("exliar.dev/gpu-amd"),
            "cdi.k8s.io/exliar-device-plugin_gpu-amd"
        );
        assert!(!valid_annotation_key("cdi.k8s.io/-x"));
        assert!(!valid_annotation_key("cdi.k8s.io/a/b"));
        assert!(!valid_annotation_key(&format!(
            "cdi.k8s.io/{}",
            "a".repeat(64)
        )));
        assert!(!valid_annotation_key("other/x"));
    }

    fn plugin(cards: &[(&str, Option<i64>, bool)]) -> Plugin {
        use crate::discover::{Card, DevState};
        let mut state = State::new();
        let devs = state.entry("exliar.dev/gpu-amd".into()).or_default();
        for (id, numa, healthy) in cards {
            devs.insert(
                id.to_string(),
                DevState {
                    card: Card {
                        id: id.to_string(),
                        numa: *numa,
                        cdi: format!("exliar.dev/gpu={id}"),
                    },
                    healthy: *healthy,
                },
            );
        }
        Plugin {
            resource: "exliar.dev/gpu-amd".into(),
            state: watch::channel(state).1,
            stop: watch::channel(false).1,
        }
    }

    #[tokio::test]
    async fn preferred_allocation_keeps_to_the_numa_node_of_what_it_must_have() {
        let p = plugin(&[
            ("a", Some(0), true),
            ("b", Some(1), true),
            ("c", Some(0), true),
            ("d", Some(1), true),
        ]);
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = p
            .get_preferred_allocation(Request::new(api::PreferredAllocationRequest {
                container_requests: vec![api::ContainerPreferredAllocationRequest {
                    available_device_i_ds: ids(&["a", "b", "c", "d"]),
                    must_include_device_i_ds: ids(&["b"]),
                    allocation_size: 2,
                }],
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.container_responses[0].device_i_ds, ids(&["b", "d"]));
    }

    #[tokio::test]
    async fn allocate_refuses_unknown_and_unhealthy_devices() {
        let p = plugin(&[("a", None, true), ("b", None, false)]);
        let req = |id: &str| {
            Request::new(api::AllocateRequest {
                container_requests: vec![api::ContainerAllocateRequest {
                    devices_ids: vec![id.into()],
                }],
            })
        };
        let e = p.allocate(req("zz\n")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = p.allocate(req("b")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        let r = p.allocate(req("a")).await.unwrap().into_inner();
        let c = &r.container_responses[0];
        assert_eq!(c.cdi_devices[0].name, "exliar.dev/gpu=a");
        assert!(c.envs.is_empty());
    }

    #[test]
    fn kubevirt_env_names() {
        assert_eq!(
            kubevirt_env("exliar.dev/vfio-1002-67ff").as_deref(),
            Some("PCI_RESOURCE_EXLIAR_DEV_VFIO-1002-67FF")
        );
        assert_eq!(kubevirt_env("exliar.dev/gpu-amd"), None);
    }
}
