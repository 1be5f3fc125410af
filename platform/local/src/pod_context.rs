//! What every pod on the host shares: the platform's directories, the image map, where the
//! binaries are, and the host-wide settings a pod's containers and volumes are made with.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::images::ImageMap;
use crate::layout::Layout;

/// What every pod shares.
pub(crate) struct PodContext {
    pub layout: Layout,
    pub images: ImageMap,
    /// Directory of the workspace's binaries.
    pub binaries: PathBuf,
    /// The launcher program (istioctl).
    pub launcher: PathBuf,
    /// Directories created outside the root as mount points, recorded for teardown.
    pub created: Mutex<()>,
    /// An Envoy binary to place at `/usr/local/bin/envoy` in proxy containers, as the proxyv2
    /// image has it.
    pub envoy_binary: Option<PathBuf>,
    /// Cluster DNS serves on the host's bridge address.
    pub cluster_dns: bool,
}
