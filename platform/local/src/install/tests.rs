//! The installation plan: components, gateways, mesh config and Mixer config per profile and
//! setting.

use super::*;

#[test]
fn overlay_files_resolve_as_manifest_apply_resolves_them() {
    let overlay = "apiVersion: install.istio.io/v1alpha2\nkind: IstioControlPlane\nspec:\n  profile: minimal\n  \
                   values:\n    global:\n      proxy:\n        accessLogFile: /dev/stdout\n";
    let plan = Plan::with_overlays(&[], &[("overlay.yaml".into(), overlay.into())]).expect("overlay");
    assert_eq!(plan.components(), vec![PILOT], "the overlay's profile");
    assert_eq!(plan.mesh_config()["accessLogFile"], "/dev/stdout");
    // The --set wins over the overlay, as on a cluster.
    let set = ["values.global.proxy.accessLogFile=/tmp/access.log".to_string()];
    let plan = Plan::with_overlays(&set, &[("overlay.yaml".into(), overlay.into())]).expect("overlay");
    assert_eq!(plan.mesh_config()["accessLogFile"], "/tmp/access.log");
    let bad = "kind: IstioControlPlane\nspec:\n  trafficManagement:\n    components:\n      pilots: {enabled: true}\n";
    let error = Plan::with_overlays(&[], &[("bad.yaml".into(), bad.into())]).expect_err("unknown component");
    assert!(format!("{error:#}").contains("bad.yaml") && format!("{error:#}").contains("pilots"), "{error:#}");
}

#[test]
fn the_demo_runs_every_component_and_both_gateways() {
    let plan = Plan::new(&["profile=demo".into()]).expect("demo");
    assert_eq!(
        plan.components(),
        vec![CITADEL, GALLEY, PILOT, INJECTOR, POLICY, TELEMETRY, PROMETHEUS, TRACING, CONSOLE]
    );
    assert_eq!(plan.gateway_manifests().expect("gateways").len(), 2);
    let mesh = plan.mesh_config();
    assert_eq!(mesh["accessLogFile"], "/dev/stdout");
    assert_eq!(mesh["configSources"][0]["address"], "10.44.0.11:9901");
    assert_eq!(mesh["mixerCheckServer"], "istio-policy.istio-system.svc.cluster.local:9091");
    assert_eq!(mesh["mixerReportServer"], "istio-telemetry.istio-system.svc.cluster.local:9091");
    assert_eq!(
        (mesh["disablePolicyChecks"].as_bool(), mesh["policyCheckFailOpen"].as_bool()),
        (Some(false), Some(false))
    );
    let (program, args, _) = plan.command(POLICY, &Layout::new("/var/lib/x"), Path::new("/bin"));
    assert_eq!(program, Path::new("/bin/mixs"));
    assert!(args.windows(2).any(|pair| pair == ["--configStoreURL", "mcp://10.44.0.11:9901"]), "{args:?}");
    let mixer = plan.mixer_manifests();
    assert_eq!(
        mixer.len(),
        7,
        "the default config, the telemetry config and the demo's stdio log, and a Service and a plaintext rule \
         for each Mixer"
    );
    assert_eq!(mixer[1], MIXER_TELEMETRY_CONFIG);
    assert_eq!(mixer[2], MIXER_STDIO_CONFIG);
    assert!(mixer[3].contains("ip: 10.44.0.14") && !mixer[3].contains("42422"));
    assert!(mixer[5].contains("ip: 10.44.0.15") && mixer[5].contains("name: prometheus, port: 42422"));
    assert!(plan.telemetry_manifests().is_empty() && mesh.get("disableMixerHttpReports").is_none());
    let v2 = Plan::new(&["profile=demo".into(), "values.telemetry.v2.enabled=true".into()]).expect("v2");
    assert_eq!(v2.telemetry_manifests(), vec![TELEMETRY_V2_FILTERS.to_string()]);
    assert_eq!(v2.mesh_config()["disableMixerHttpReports"], true);
    let minimal = Plan::new(&["profile=minimal".into()]).expect("minimal");
    assert!(minimal.mixer_manifests().is_empty());
    assert_eq!(minimal.mesh_config()["disablePolicyChecks"], true);
    assert_eq!(minimal.components(), vec![PILOT]);
    let layout = Layout::new("/var/lib/x");
    let (_, args, _) = minimal.command(PILOT, &layout, Path::new("/bin"));
    assert!(args.contains(&"--configDir".to_string()));
    let (program, args, _) = plan.command(CITADEL, &layout, Path::new("/bin"));
    assert_eq!(program, Path::new("/bin/citadel"));
    assert!(args.windows(2).any(|pair| pair == ["--configPath", "/var/lib/x/store"]), "{args:?}");
    assert!(
        args.windows(2).any(|pair| pair == ["--service-account-key-file", "/var/lib/x/certs/service-account.pub"]),
        "{args:?}"
    );
}

#[test]
fn security_installs_a_permissive_mesh_policy_or_strict_mutual_tls() {
    let kinds = |plan: &Plan| -> Vec<String> {
        plan.security_manifests()
            .iter()
            .flat_map(|manifest| crate::kubectl::parse(manifest, "test", SYSTEM_NAMESPACE).expect("manifest"))
            .map(|object| format!("{}/{}/{}", object.kind, object.namespace(), object.name()))
            .collect()
    };
    let demo = Plan::new(&["profile=demo".into()]).expect("demo");
    assert_eq!(kinds(&demo), ["MeshPolicy//default"]);
    assert!(demo.security_manifests()[0].contains("PERMISSIVE"));
    let strict = Plan::new(&["profile=demo".into(), "values.global.mtls.enabled=true".into()]).expect("strict");
    assert_eq!(
        kinds(&strict),
        ["MeshPolicy//default", "DestinationRule/istio-system/default", "DestinationRule/istio-system/api-server"]
    );
    assert!(!strict.security_manifests()[0].contains("PERMISSIVE"));
    assert!(kinds(&Plan::new(&["profile=minimal".into()]).expect("minimal")).is_empty());
    let auto = Plan::new(&["profile=demo".into(), "values.global.mtls.auto=true".into()]).expect("auto");
    assert_eq!(auto.mesh_config()["enableAutoMtls"], true);
    assert_eq!(auto.mesh_config()["trustDomain"], "cluster.local");
    let other = Plan::new(&["profile=demo".into(), "values.global.trustDomain=new-td".into()]).expect("td");
    assert_eq!(other.mesh_config()["trustDomain"], "new-td");
}
