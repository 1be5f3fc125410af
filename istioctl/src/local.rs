//! The local platform's commands: `install` / `uninstall` on this host, `profile list|dump`,
//! and `x local apply|delete|create|get|label|logs|exec`, the kubectl verbs for following the Istio
//! tasks without a cluster. `x local daemon` and `x local exec-container` are what the
//! platform itself runs.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use istio_local::install::Plan;
use istio_local::{controller, create, kubectl, prereq, teardown, Layout};

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Override a profile setting: `profile=demo`, `values.global.outboundTrafficPolicy.mode=REGISTRY_ONLY`, …
    #[arg(long = "set", short = 's')]
    pub set: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// List the built-in profiles.
    List,
    /// Print a profile's settings.
    Dump {
        #[arg(default_value = "default")]
        profile: String,
    },
    /// Show how two profiles differ (built-in names or IstioControlPlane files).
    Diff {
        #[arg(num_args = 2, required = true)]
        profiles: Vec<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Create or update objects from files (Istio objects are validated by Galley first).
    Apply(FileArgs),
    /// Delete the objects named in files.
    Delete(FileArgs),
    /// Create an object from files: `create secret tls|generic NAME …`.
    Create(CreateArgs),
    /// List objects of a kind.
    Get(GetArgs),
    /// Set labels on a namespace: `label namespace default istio-injection=enabled`.
    Label(LabelArgs),
    /// Set a Deployment's replicas: `scale deployment details-v1 --replicas 2`.
    Scale(ScaleArgs),
    /// Print a container's log.
    Logs(LogsArgs),
    /// Run a command inside a pod (its network namespace and /etc/hosts).
    Exec(ExecArgs),
    /// Forward local ports to a pod's ports: `port-forward POD [LOCAL:]REMOTE…`.
    #[command(name = "port-forward")]
    PortForward(PortForwardArgs),
    /// Run the platform daemon in the foreground (what `install` starts).
    #[command(hide = true)]
    Daemon,
    /// Enter a pod and exec a container (what the daemon runs for each container).
    #[command(hide = true, name = "exec-container")]
    ExecContainer { spec: PathBuf },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[arg(short = 'n', long = "namespace", default_value = "default", global = true)]
    pub namespace: String,
    #[command(subcommand)]
    pub command: CreateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CreateCommand {
    /// Create a Secret.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Create a Namespace (`kubectl create ns NAME`).
    #[command(alias = "ns")]
    Namespace { name: String },
    /// Create a ConfigMap from files, directories (`--from-file=[key=]PATH`) and literals
    /// (`--from-literal=key=value`).
    #[command(alias = "cm")]
    Configmap {
        name: String,
        #[arg(long = "from-file")]
        from_file: Vec<String>,
        #[arg(long = "from-literal")]
        from_literal: Vec<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// A TLS Secret (`tls.crt`, `tls.key`) from a PEM certificate and key.
    Tls {
        name: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// A Secret from files, directories (`--from-file=[key=]PATH`) and literals
    /// (`--from-literal=key=value`).
    Generic {
        name: String,
        #[arg(long = "from-file")]
        from_file: Vec<String>,
        #[arg(long = "from-literal")]
        from_literal: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// Files or directories of YAML, or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The kind: pods, services, deployments, endpoints, namespaces, virtualservices, …
    pub kind: String,
    /// One object's name.
    pub name: Option<String>,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Output format: yaml or json (default: a table).
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// Only `namespace` (or `ns`) is supported.
    pub kind: String,
    pub name: String,
    /// `key=value` pairs.
    #[arg(required = true)]
    pub labels: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// `deployment` (or `deploy`, `deployments`), or `deployment/NAME`.
    pub kind: String,
    /// The Deployment's name, unless the kind argument has it.
    pub name: Option<String>,
    #[arg(long)]
    pub replicas: u64,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A pod name, or a Deployment name when it has one pod.
    pub pod: String,
    #[arg(short = 'c', long = "container")]
    pub container: Option<String>,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Keep printing as the log grows.
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
}

#[derive(Debug, clap::Args)]
pub struct PortForwardArgs {
    /// A pod name, or a Deployment name when it has one pod.
    pub pod: String,
    /// `[LOCAL:]REMOTE`: a local port (0 or none: any free one) and the pod's port.
    #[arg(required = true)]
    pub ports: Vec<String>,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Local address to listen on.
    #[arg(long, default_value = "localhost")]
    pub address: String,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A pod name, or a Deployment name when it has one pod.
    pub pod: String,
    #[arg(short = 'c', long = "container")]
    pub container: Option<String>,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Where the workspace's binaries are: next to this istioctl.
pub(crate) fn binaries_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating istioctl")?;
    Ok(exe.parent().context("istioctl has no directory")?.to_path_buf())
}

/// Installs the mesh on this host and waits until its control plane is up.
pub(crate) fn install(args: &InstallArgs) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    install_with(&layout, &args.set, &mut |line| println!("{line}"))?;
    Ok(0)
}

pub(crate) fn install_with(layout: &Layout, sets: &[String], progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    install_plan(layout, Plan::new(sets)?, progress)
}

/// Installs a resolved plan on this host.
pub(crate) fn install_plan(layout: &Layout, plan: Plan, progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    prereq::check()?;
    if teardown::daemon_pid(layout).is_some() {
        bail!("a mesh is already installed here ({}); run `istioctl uninstall` first", layout.root().display());
    }
    if let Some((pid, root)) = teardown::other_daemon(layout) {
        bail!(
            "another installation runs on this host (daemon {pid}, ISTIO_LOCAL_ROOT={root}); there can be one at a time: \
             `ISTIO_LOCAL_ROOT={root} istioctl uninstall` removes it"
        );
    }
    let binaries = binaries_dir()?;
    if let Some(envoy) = plan.envoy_binary() {
        anyhow::ensure!(
            envoy.is_file(),
            "values.global.proxy.envoyBinary: {} is not a file (give the Envoy binary itself)",
            envoy.display()
        );
    }
    let node_agent = plan.node_agent_command(layout, &binaries).map(|(program, _)| program);
    // The mesh's own programs must be built; an addon whose program is missing is left out
    // when the platform starts, with a message.
    let own = plan.components().into_iter().filter(|component| *component != istio_local::install::PROMETHEUS);
    for program in own.map(|component| binaries.join(component.binary)).chain(node_agent) {
        anyhow::ensure!(program.is_file(), "{} is not built (cargo build --workspace --bins)", program.display());
    }
    // Objects created before any installation (a `cacerts` Secret for a plug-in CA) are kept;
    // a previous installation that was not removed cleanly goes first.
    let staged = istio_local::install::stage_store(layout)?;
    if layout.root().exists() || !teardown::leftovers(layout).is_empty() {
        teardown::uninstall(layout, &mut |_| {})?;
    }
    if let Some(staged) = staged {
        staged.restore(layout)?;
    }
    progress(&format!("installing the {} profile in {}", plan.profile, layout.root().display()));
    istio_local::install::write_files(layout, &plan)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(layout.daemon_log())?;
    let exe = std::env::current_exe()?;
    let mut daemon = std::process::Command::new(exe);
    use std::os::unix::process::CommandExt;
    daemon
        .args(["x", "local", "daemon"])
        .env("ISTIO_LOCAL_ROOT", layout.root())
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = daemon.spawn().context("starting the local platform daemon")?;
    let marker = controller::ready_marker(layout);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !marker.exists() {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(layout.daemon_log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let _ = teardown::uninstall(layout, &mut |_| {});
            bail!(
                "the local platform failed to start ({status}):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = teardown::uninstall(layout, &mut |_| {});
            bail!("the control plane did not come up within 90 s (see {})", layout.daemon_log().display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The daemon outlives this command; when it ends while we still run, reap it.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    for component in plan.components() {
        progress(&format!("  ✔ {} at {}.istio-system ({})", component.name, component.service, component.address));
    }
    progress(&format!("  ✔ gateways applied: {}", plan.gateway_manifests()?.len()));
    Ok(())
}

/// Removes everything the local platform created.
pub(crate) fn uninstall() -> anyhow::Result<i32> {
    uninstall_at(&Layout::from_env())
}

pub(crate) fn uninstall_at(layout: &Layout) -> anyhow::Result<i32> {
    let layout = layout.clone();
    prereq::check()?;
    teardown::uninstall(&layout, &mut |line| println!("{line}"))?;
    let left = teardown::leftovers(&layout);
    if left.is_empty() {
        println!("✔ removed everything the mesh had on this host");
        Ok(0)
    } else {
        eprintln!("still present:\n  {}", left.join("\n  "));
        Ok(1)
    }
}

pub(crate) fn profile(command: &ProfileCommand) -> anyhow::Result<i32> {
    match command {
        ProfileCommand::List => {
            println!("Istio configuration profiles:");
            for name in istio_local::profiles::names() {
                println!("    {name}");
            }
        }
        ProfileCommand::Dump { profile } => print!("{}", istio_local::profiles::text(profile)?),
        ProfileCommand::Diff { profiles } => {
            let a = resolved_profile(&profiles[0])?;
            let b = resolved_profile(&profiles[1])?;
            let diff = istio_manifest::text_diff(&a, &b);
            if diff.is_empty() {
                println!("Profiles are identical");
            } else {
                print!("Difference of profiles are:\n{diff}");
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// A profile with everything it inherits, as sorted YAML: a built-in name, or an
/// `IstioControlPlane` file (merged over the profile it names).
fn resolved_profile(name_or_file: &str) -> anyhow::Result<String> {
    let install = if istio_local::profiles::names().contains(&name_or_file) {
        istio_manifest::Install::resolve(&[format!("profile={name_or_file}")], &[])?
    } else {
        let text = std::fs::read_to_string(name_or_file)
            .with_context(|| format!("Could not read {name_or_file:?}: not a built-in profile or a readable file"))?;
        istio_manifest::Install::resolve(&[], &[(name_or_file.to_string(), text)])?
    };
    Ok(serde_yaml::to_string(&install.document)?)
}

fn read_files(files: &[PathBuf], namespace: &str) -> anyhow::Result<Vec<istio_config::object::Object>> {
    let mut objects = Vec::new();
    for file in files {
        if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            objects.extend(kubectl::parse(&text, "stdin", namespace)?);
            continue;
        }
        let mut paths = Vec::new();
        if file.is_dir() {
            for entry in std::fs::read_dir(file).with_context(|| format!("reading {}", file.display()))? {
                let path = entry?.path();
                if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json") {
                    paths.push(path);
                }
            }
            paths.sort();
        } else {
            paths.push(file.clone());
        }
        for path in paths {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            objects.extend(kubectl::parse(&text, &path.display().to_string(), namespace)?);
        }
    }
    Ok(objects)
}

pub(crate) fn local(command: LocalCommand) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    match command {
        LocalCommand::ExecContainer { spec } => {
            let spec = istio_local::container::ContainerSpec::read(&spec)?;
            Err(istio_local::container::exec_container(&spec))
        }
        LocalCommand::Daemon => {
            prereq::check()?;
            istio_runtime::init_logging(false);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let launcher = std::env::current_exe()?;
            runtime.block_on(controller::run(layout, binaries_dir()?, launcher))?;
            Ok(0)
        }
        LocalCommand::Apply(args) => {
            let objects = read_files(&args.files, &args.namespace)?;
            for line in runtime()?.block_on(kubectl::apply(&layout, objects))? {
                println!("{line}");
            }
            Ok(0)
        }
        LocalCommand::Delete(args) => {
            let objects = read_files(&args.files, &args.namespace)?;
            for line in runtime()?.block_on(kubectl::delete(&layout, objects))? {
                println!("{line}");
            }
            Ok(0)
        }
        LocalCommand::Create(CreateArgs { command: CreateCommand::Namespace { name }, .. }) => {
            println!("{}", runtime()?.block_on(create::create(&layout, create::namespace(&name)?))?);
            Ok(0)
        }
        LocalCommand::Create(CreateArgs {
            namespace,
            command: CreateCommand::Configmap { name, from_file, from_literal },
        }) => {
            let object = create::config_map(&namespace, &name, &from_file, &from_literal)?;
            println!("{}", runtime()?.block_on(create::create(&layout, object))?);
            Ok(0)
        }
        LocalCommand::Create(CreateArgs { namespace, command: CreateCommand::Secret(secret) }) => {
            let object = match secret {
                SecretCommand::Tls { name, cert, key } => create::tls_secret(&namespace, &name, &cert, &key)?,
                SecretCommand::Generic { name, from_file, from_literal } => {
                    create::generic_secret(&namespace, &name, &from_file, &from_literal)?
                }
            };
            println!("{}", runtime()?.block_on(create::create(&layout, object))?);
            Ok(0)
        }
        LocalCommand::Label(args) => {
            if !matches!(args.kind.as_str(), "namespace" | "namespaces" | "ns") {
                bail!("only namespaces can be labelled here");
            }
            let pairs = args
                .labels
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("{pair:?} is not key=value"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            println!("{}", runtime()?.block_on(kubectl::label_namespace(&layout, &args.name, &pairs))?);
            Ok(0)
        }
        LocalCommand::Scale(args) => {
            let (kind, name) = match (args.kind.split_once('/'), &args.name) {
                (Some((kind, name)), None) => (kind, name.to_string()),
                (None, Some(name)) => (args.kind.as_str(), name.clone()),
                (Some(_), Some(_)) => bail!("there is a name in {:?}: give no other", args.kind),
                (None, None) => bail!("scale needs a Deployment's name"),
            };
            if !matches!(kind, "deployment" | "deployments" | "deploy" | "deployment.apps" | "deployments.apps") {
                bail!("only Deployments can be scaled here, not {kind:?}");
            }
            let line =
                runtime()?.block_on(kubectl::scale_deployment(&layout, &name, &args.namespace, args.replicas))?;
            println!("{line}");
            Ok(0)
        }
        LocalCommand::Get(args) => {
            let kind = kubectl::kind_for(&args.kind)?;
            let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
            let mut objects = runtime()?.block_on(kubectl::list(&layout, &kind, namespace))?;
            if let Some(name) = &args.name {
                objects.retain(|object| object.name() == name);
                if objects.is_empty() {
                    bail!("{} \"{name}\" not found", args.kind);
                }
            }
            match args.output.as_deref() {
                Some("yaml") => {
                    for object in &objects {
                        println!("---\n{}", serde_yaml::to_string(object)?.trim_end());
                    }
                }
                Some("json") => {
                    let value = if args.name.is_some() && objects.len() == 1 {
                        serde_json::to_value(&objects[0])?
                    } else {
                        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects})
                    };
                    println!("{}", serde_json::to_string_pretty(&value)?);
                }
                Some(other) => bail!("unknown output format {other:?} (yaml, json)"),
                None if objects.is_empty() => eprintln!("No resources found."),
                None => print!("{}", kubectl::table(&kind, &objects, args.all_namespaces)),
            }
            Ok(0)
        }
        LocalCommand::Logs(args) => {
            let pod = runtime()?.block_on(kubectl::find_pod(&layout, &args.pod, &args.namespace))?;
            let container = kubectl::container_name(&pod, args.container.as_deref())?;
            let path = layout.container_log(pod.namespace(), pod.name(), &container);
            let mut offset = 0;
            loop {
                let content = std::fs::read(&path).unwrap_or_default();
                if content.len() > offset {
                    std::io::stdout().write_all(&content[offset..])?;
                    std::io::stdout().flush()?;
                    offset = content.len();
                }
                if !args.follow {
                    return Ok(0);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        LocalCommand::Exec(args) => exec(&layout, &args),
        LocalCommand::PortForward(args) => port_forward(&layout, &args),
    }
}

/// Forwards each `[LOCAL:]REMOTE` until interrupted, printing kubectl's lines.
fn port_forward(layout: &Layout, args: &PortForwardArgs) -> anyhow::Result<i32> {
    let mut pairs = Vec::new();
    for spec in &args.ports {
        let (local, remote) = spec.split_once(':').unwrap_or(("", spec));
        let port = |text: &str| -> anyhow::Result<u16> {
            if text.is_empty() {
                return Ok(0);
            }
            text.parse().with_context(|| format!("{spec:?}: ports are [LOCAL:]REMOTE numbers"))
        };
        let remote = port(remote)?;
        anyhow::ensure!(remote != 0, "{spec:?}: the pod's port is missing");
        pairs.push((port(local)?, remote));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut forwards = Vec::new();
        for (local, remote) in pairs {
            let (forward, bound) =
                crate::dashboard::forward_to(layout, &args.pod, &args.namespace, remote, &args.address, local).await?;
            println!("Forwarding from {bound} -> {remote}");
            forwards.push(forward);
        }
        crate::dashboard::serve_until_interrupted(forwards).await
    })?;
    Ok(0)
}

/// Runs a command in a pod: its network namespace, `/etc/hosts` and the container's user.
fn exec(layout: &Layout, args: &ExecArgs) -> anyhow::Result<i32> {
    let pod = runtime()?.block_on(kubectl::find_pod(layout, &args.pod, &args.namespace))?;
    let container = kubectl::container_name(&pod, args.container.as_deref())?;
    let spec_path = layout.container_specs().join(format!("{}.{}.{container}.json", pod.namespace(), pod.name()));
    let mut spec = istio_local::container::ContainerSpec::read(&spec_path)
        .with_context(|| format!("pod {} is not running yet", pod.name()))?;
    // The command resolves as in the container's image: `pilot-agent` in the proxy is `proxy`.
    let image = pod
        .spec()
        .get("containers")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .chain(pod.spec().get("initContainers").and_then(serde_json::Value::as_array).into_iter().flatten())
        .find(|c| c.get("name").and_then(serde_json::Value::as_str) == Some(container.as_str()))
        .and_then(|c| c.get("image").and_then(serde_json::Value::as_str))
        .unwrap_or_default()
        .to_string();
    let (program, command_args) =
        istio_local::images::ImageMap::builtin().resolve_command(&image, &args.command, &binaries_dir()?)?;
    spec.program = program;
    spec.args = command_args;
    let exec_spec = tempfile::NamedTempFile::new()?;
    std::fs::write(exec_spec.path(), serde_json::to_vec(&spec)?)?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["x", "local", "exec-container"])
        .arg(exec_spec.path())
        .status()
        .context("running the command in the pod")?;
    Ok(status.code().unwrap_or(1))
}
