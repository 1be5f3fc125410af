//! `istioctl validate -f PATH…`: reads files, directories (recursively: `.yaml`, `.yml`,
//! `.json`) or stdin (`-`), and checks every Istio object with the rules Galley's webhook uses.
//! Prints one line per problem, `FILE:LINE: Kind ns/name: field.path: reason`, and exits 1 if
//! there was any. Non-Istio objects must parse but are otherwise passed through.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use istio_config::validation::object_violations;
use istio_config::yaml::{parse_objects, SourceObject};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Files or directories to validate; `-` reads standard input. May be repeated.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<String>,
    /// Namespace assumed for namespaced objects that do not name one (as kubectl would).
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

/// One problem, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub source: String,
    pub line: usize,
    /// `Kind ns/name: field.path: reason`, or just the reason for unreadable documents.
    pub text: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.text)
    }
}

/// What a validation run found.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub files: usize,
    pub objects: usize,
    pub problems: Vec<Problem>,
}

pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<i32> {
    let outcome = validate_paths(&args.files, &args.namespace)?;
    for problem in &outcome.problems {
        println!("{problem}");
    }
    if outcome.problems.is_empty() {
        eprintln!("{} objects in {} files are valid", outcome.objects, outcome.files);
        Ok(0)
    } else {
        eprintln!("{} problems in {} objects from {} files", outcome.problems.len(), outcome.objects, outcome.files);
        Ok(1)
    }
}

/// Validates every object found under `paths`.
pub(crate) fn validate_paths(paths: &[String], default_namespace: &str) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    for path in paths {
        if path == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
            validate_text("<stdin>", &text, default_namespace, &mut outcome);
            continue;
        }
        let mut files = Vec::new();
        collect_files(Path::new(path), true, &mut files)?;
        for file in files {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            validate_text(&file.display().to_string(), &text, default_namespace, &mut outcome);
        }
    }
    Ok(outcome)
}

/// Validates the objects in one file's text, adding to `outcome`.
pub(crate) fn validate_text(source: &str, text: &str, default_namespace: &str, outcome: &mut Outcome) {
    outcome.files += 1;
    let (objects, errors) = parse_objects(source, text);
    outcome.problems.extend(errors.into_iter().map(|error| Problem {
        source: error.source_name,
        line: error.line,
        text: error.message,
    }));
    for SourceObject { source, line, mut object } in objects {
        outcome.objects += 1;
        if object.namespace().is_empty() && object.istio_kind().is_some_and(|kind| kind.namespaced) {
            object.metadata.namespace = Some(default_namespace.to_string());
        }
        let name = object.display_name();
        for violation in object_violations(&object) {
            outcome.problems.push(Problem { source: source.clone(), line, text: format!("{name}: {violation}") });
        }
    }
}

pub(crate) fn collect_files(path: &Path, explicit: bool, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {}", path.display()))?;
        entries.sort();
        for entry in entries {
            collect_files(&entry, false, files)?;
        }
    } else {
        let is_config = path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json");
        if explicit || is_config {
            files.push(path.to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_file_line_object_and_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\n---\napiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 70\n    - destination: {host: reviews, subset: v2}\n      weight: 20\n";
        let mut outcome = Outcome::default();
        validate_text("vs.yaml", text, "default", &mut outcome);
        assert_eq!(outcome.objects, 2);
        let lines: Vec<String> = outcome.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec!["vs.yaml:5: VirtualService default/reviews: spec.http[0].route: total destination weight 90 != 100"]
        );
    }

    #[test]
    fn directories_are_walked_and_unreadable_documents_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ok.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
            .expect("write");
        std::fs::write(dir.path().join("bad.yml"), "kind: [\n").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not config").expect("write");
        let outcome = validate_paths(&[dir.path().display().to_string()], "default").expect("runs");
        assert_eq!(outcome.files, 2, "txt files are skipped inside directories");
        assert_eq!(outcome.problems.len(), 1);
        assert!(outcome.problems[0].source.ends_with("bad.yml"));
        assert!(validate_paths(&["/no/such/path".to_string()], "default").is_err());
    }

    fn samples() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/bookinfo")
    }

    #[test]
    fn istio_1_4_bookinfo_samples_are_accepted_unchanged() {
        let outcome = validate_paths(&[samples().display().to_string()], "default").expect("runs");
        assert!(outcome.files >= 50, "samples present: {}", outcome.files);
        let lines: Vec<String> = outcome.problems.iter().map(ToString::to_string).collect();
        assert!(lines.is_empty(), "{lines:#?}");
    }

    #[test]
    fn broken_variants_of_samples_are_rejected_with_field_messages() {
        let read = |relative: &str| std::fs::read_to_string(samples().join(relative)).expect("sample");
        let cases = [
            (
                "networking/virtual-service-reviews-50-v3.yaml",
                "weight: 50",
                "weight: 40",
                "total destination weight 90 != 100",
            ),
            (
                "networking/virtual-service-ratings-test-delay.yaml",
                "fixedDelay: 7s",
                "fixedDelay: 7",
                "spec.http[0].fault.delay.fixedDelay",
            ),
            ("networking/destination-rule-all.yaml", "name: v1", "name: V_1", "subset name is invalid"),
            ("networking/bookinfo-gateway.yaml", "protocol: HTTP", "protocol: HTTPX", "invalid protocol"),
            (
                "platform/kube/rbac/productpage-policy.yaml",
                "kind: ServiceRole\n",
                "kind: ServiceRoles\n",
                "unknown kind ServiceRoles",
            ),
            (
                "policy/mixer-rule-deny-label.yaml",
                "compiledAdapter: denier",
                "compiledAdapter: denyer",
                "unknown adapter \"denyer\"",
            ),
        ];
        for (file, from, to, expected) in cases {
            let original = read(file);
            assert!(original.contains(from), "{file} contains {from:?}");
            let mut outcome = Outcome::default();
            validate_text(file, &original.replacen(from, to, 1), "default", &mut outcome);
            let lines: Vec<String> = outcome.problems.iter().map(ToString::to_string).collect();
            assert!(lines.iter().any(|line| line.starts_with(file) && line.contains(expected)), "{file}: {lines:#?}");
        }
    }
}
