//! What Mixer's benchmarks share: `mixs` (this package's release binary) started as its own
//! process on a directory of config, killed when dropped; a client connected to it; its CPU
//! seconds; `--name value` arguments; and the attribute values the benchmarks' requests use.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use istio_api::pb::istio::mixer::v1::mixer_client::MixerClient;
use istio_attribute::Value;
use tonic::transport::Channel;

/// A running `mixs` and its config directory.
pub(crate) struct Mixs {
    child: Child,
    pub(crate) port: u16,
    _config: tempfile::TempDir,
}

impl Drop for Mixs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port()
}

impl Mixs {
    /// Starts `mixs` on `install/mixer/`'s `installed` files plus `extra` (file name, YAML), with
    /// more `flags`; pods come from the same (empty) directory.
    pub(crate) fn start(installed: &[&str], extra: &[(&str, &str)], flags: &[&str]) -> Mixs {
        let config = tempfile::tempdir().expect("tempdir");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
        for file in installed {
            std::fs::copy(root.join("install/mixer").join(file), config.path().join(file)).expect("config");
        }
        for (name, text) in extra {
            std::fs::write(config.path().join(name), text).expect("config");
        }
        let port = free_port();
        let store = format!("fs://{}", config.path().display());
        let child = Command::new(env!("CARGO_BIN_EXE_mixs"))
            .args(["server", "--configStoreURL", &store, "--podStore", &config.path().display().to_string()])
            .args(["--address", "127.0.0.1", "--port", &port.to_string(), "--monitoringPort", "0"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mixs starts");
        Mixs { child, port, _config: config }
    }

    /// A client, once `mixs` accepts connections.
    pub(crate) async fn client(&self) -> MixerClient<Channel> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port)).expect("uri");
        loop {
            match endpoint.connect().await {
                Ok(channel) => return MixerClient::new(channel),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// CPU seconds `mixs` has used (user + system), from `/proc` (clock ticks of 1/100 s).
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }
}

/// The number after `name` on the command line, or `default`.
pub(crate) fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|pair| pair[0] == name).and_then(|pair| pair[1].parse().ok()).unwrap_or(default)
}

pub(crate) fn text(value: &str) -> Value<'static> {
    Value::String(value.to_string().into())
}

pub(crate) fn labels(entries: &[(&str, &str)]) -> Value<'static> {
    Value::StringMap(std::borrow::Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
}
