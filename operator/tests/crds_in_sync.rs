//! `crds/` is generated from the Rust types and never edited by hand: this test fails when the
//! committed YAML differs from what the types generate. Regenerate with `make crds`.

use std::path::PathBuf;

use sluice::api::{crd_file_name, crd_yaml, crds};

#[test]
fn committed_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut stale = Vec::new();
    for crd in crds() {
        let path = dir.join(crd_file_name(&crd));
        let expected = crd_yaml(&crd).expect("CRD serializes");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != expected {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "stale CRD files (run `make crds`): {stale:?}");
    let files = std::fs::read_dir(&dir).expect("crds/ exists").count();
    assert_eq!(files, crds().len(), "crds/ holds files that no type generates");
}

#[test]
fn crds_are_namespaced_in_the_sluice_category_only() {
    for crd in crds() {
        assert_eq!(crd.spec.scope, "Namespaced");
        let categories = crd.spec.names.categories.clone().unwrap_or_default();
        assert_eq!(categories, ["sluice"], "{:?} must stay out of `all`", crd.metadata.name);
        let short = crd.spec.names.short_names.clone().unwrap_or_default();
        // Tekton (pipelines: none, pipelineruns: pr, tasks/taskruns: tr) and Argo (wf, cwf,
        // wftmpl, app) short names must not be taken.
        for taken in ["p", "pr", "tr", "wf", "cwf", "wftmpl", "app", "apps", "ds", "bf"] {
            assert!(!short.iter().any(|s| s == taken), "short name {taken} collides");
        }
    }
}
