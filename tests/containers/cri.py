#!/usr/bin/python3
"""The kubelet's side of CRI, for the containers test tier (tests/containers/containerd.rs).

usage: cri.py SOCKET STUBS_DIR < job.json

STUBS_DIR holds api_pb2.py, made by protoc from the CRI v1 api.proto of Debian's
golang-github-kubernetes-cri-api-dev (the package containerd 1.7 was built with). The
job is {"log_dir": DIR, "image": IMAGE, "containers": [{"name", "command": [...],
"cdi_devices": [...], "annotations": {...}}]}. One pod sandbox (host network, so no
CNI) runs them one after the other, as the kubelet would: CreateContainer with
ContainerConfig.CDI_devices (KEP-4009) and/or the cdi.k8s.io/* annotations,
StartContainer, wait for the exit, read the CRI log. Prints one JSON object per
container: {"name", "created", "error", "exit_code", "log"}, and first
{"runtime": NAME, "version": VERSION}.
"""
import json
import os
import sys
import time

import grpc

sys.path.insert(0, sys.argv[2])
import api_pb2 as pb  # noqa: E402

SERVICE = "/runtime.v1.RuntimeService/"


def method(channel, name, request, response):
    return channel.unary_unary(SERVICE + name,
                               request_serializer=request.SerializeToString,
                               response_deserializer=response.FromString)


def main():
    job = json.load(sys.stdin)
    ch = grpc.insecure_channel("unix://" + sys.argv[1])
    call = {n: method(ch, n, getattr(pb, n + "Request"), getattr(pb, n + "Response"))
            for n in ["Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox",
                      "CreateContainer", "StartContainer", "ContainerStatus",
                      "RemoveContainer"]}
    v = call["Version"](pb.VersionRequest(), timeout=30)
    print(json.dumps({"runtime": v.runtime_name, "version": v.runtime_version}), flush=True)
    log_dir = job["log_dir"]
    sandbox_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="exliar-pod", uid="exliar-pod-uid",
                                       namespace="default", attempt=0),
        log_directory=log_dir,
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    sandbox = call["RunPodSandbox"](pb.RunPodSandboxRequest(config=sandbox_config),
                                    timeout=60).pod_sandbox_id
    try:
        for i, c in enumerate(job["containers"]):
            out = {"name": c["name"], "created": False, "error": "", "exit_code": None, "log": ""}
            log_path = "%d-%s.log" % (i, c["name"])
            config = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=c["name"]),
                image=pb.ImageSpec(image=job["image"]),
                command=c["command"],
                log_path=log_path,
                annotations=c.get("annotations", {}),
                CDI_devices=[pb.CDIDevice(name=d) for d in c.get("cdi_devices", [])])
            try:
                cid = call["CreateContainer"](pb.CreateContainerRequest(
                    pod_sandbox_id=sandbox, config=config, sandbox_config=sandbox_config),
                    timeout=60).container_id
            except grpc.RpcError as e:
                out["error"] = e.details()
                print(json.dumps(out), flush=True)
                continue
            out["created"] = True
            try:
                call["StartContainer"](pb.StartContainerRequest(container_id=cid), timeout=60)
                deadline = time.time() + 60
                while time.time() < deadline:
                    st = call["ContainerStatus"](pb.ContainerStatusRequest(container_id=cid),
                                                 timeout=30).status
                    if st.state == pb.CONTAINER_EXITED:
                        out["exit_code"] = st.exit_code
                        break
                    time.sleep(0.05)
                lines = []
                with open(os.path.join(log_dir, log_path)) as f:
                    for line in f:  # CRI log format: TIME STREAM TAG MESSAGE
                        parts = line.rstrip("\n").split(" ", 3)
                        if len(parts) == 4:
                            lines.append(parts[3])
                out["log"] = "\n".join(lines)
            except grpc.RpcError as e:
                out["error"] = e.details()
            finally:
                call["RemoveContainer"](pb.RemoveContainerRequest(container_id=cid), timeout=60)
            print(json.dumps(out), flush=True)
    finally:
        call["StopPodSandbox"](pb.StopPodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)
        call["RemovePodSandbox"](pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)


if __name__ == "__main__":
    main()
