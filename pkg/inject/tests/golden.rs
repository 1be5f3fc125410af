//! Golden tests: each `testdata/inject/NAME.yaml` injected with the default configuration must
//! equal `NAME.yaml.injected`. Set `REFRESH_GOLDEN=1` to rewrite the expected files after a
//! deliberate change (and review the diff).

use std::path::Path;

use istio_inject::config::default_values;
use istio_inject::inject::kube_inject_yaml;
use istio_inject::{Injector, InjectorConfig};
use serde_json::json;

#[test]
fn injected_objects_match_the_golden_files() {
    let injector = Injector::new(InjectorConfig::default(), default_values(), &json!({})).expect("injector");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/inject");
    let refresh = std::env::var_os("REFRESH_GOLDEN").is_some();
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 7, "golden inputs missing in {}", dir.display());
    let mut mismatches = Vec::new();
    for input in inputs {
        let text = std::fs::read_to_string(&input).expect("read");
        let injected = kube_inject_yaml(&injector, &text, &input.display().to_string()).expect("inject");
        let golden = input.with_extension("yaml.injected");
        if refresh {
            std::fs::write(&golden, &injected).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != injected {
            mismatches.push(format!("{}:\n{injected}", golden.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "differs from the golden files (REFRESH_GOLDEN=1 to update):\n{}",
        mismatches.join("\n")
    );
}
