//! The deployment files cannot be run here (no container engine), so check what can be checked:
//! every YAML file parses, every environment variable the compose file, the Kubernetes manifests
//! and the Dockerfile set for our containers is a setting the services know, the manifests have
//! the kinds the guide promises, and no secret value is committed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn known() -> BTreeSet<&'static str> {
    mesh::settings::catalog::ALL
        .iter()
        .map(|s| s.name)
        .collect()
}

fn load(path: &str) -> Vec<Yaml> {
    let text =
        std::fs::read_to_string(deploy_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

/// Every `env: [{name: …}]` entry anywhere in a Kubernetes document.
fn k8s_env_names(y: &Yaml, out: &mut Vec<String>) {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if k.as_str() == Some("env")
                    && let Yaml::Array(items) = v
                {
                    for item in items {
                        if let Some(name) = item["name"].as_str() {
                            out.push(name.to_owned());
                        }
                    }
                }
                k8s_env_names(v, out);
            }
        }
        Yaml::Array(a) => a.iter().for_each(|v| k8s_env_names(v, out)),
        _ => {}
    }
}

#[test]
fn compose_sets_only_known_settings() {
    let docs = load("docker-compose.yml");
    let compose = &docs[0];
    let known = known();
    let mut checked = 0;
    let services = compose["services"].as_hash().expect("services");
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if name == "postgres" {
            continue; // the PostgreSQL image's own variables
        }
        if let Some(env) = svc["environment"].as_hash() {
            for (k, _) in env {
                let k = k.as_str().unwrap();
                if k == "<<" {
                    continue;
                }
                assert!(
                    known.contains(k),
                    "compose service {name} sets unknown variable {k}"
                );
                checked += 1;
            }
        }
    }
    // The shared anchor is checked too.
    for (k, _) in compose["x-mesh-env"].as_hash().expect("x-mesh-env") {
        assert!(
            known.contains(k.as_str().unwrap()),
            "x-mesh-env sets unknown {k:?}"
        );
    }
    assert!(checked > 10, "only {checked} variables found");
    for svc in [
        "tenant-svc",
        "memory-svc",
        "media-svc",
        "gateway",
        "migrate",
        "postgres",
    ] {
        assert!(
            !compose["services"][svc].is_badvalue(),
            "compose lacks {svc}"
        );
    }
}

#[test]
fn kubernetes_manifests_parse_and_set_only_known_settings() {
    let known = known();
    let mut kinds = BTreeSet::new();
    let mut names = Vec::new();
    for file in [
        "k8s/config.yaml",
        "k8s/migrate-job.yaml",
        "k8s/services.yaml",
        "k8s/hpa.yaml",
    ] {
        for doc in load(file) {
            if doc.is_null() {
                continue;
            }
            kinds.insert(
                doc["kind"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: document without kind"))
                    .to_owned(),
            );
            k8s_env_names(&doc, &mut names);
            if doc["kind"].as_str() == Some("Deployment") {
                let c = &doc["spec"]["template"]["spec"]["containers"][0];
                assert!(
                    !c["readinessProbe"].is_badvalue() && !c["livenessProbe"].is_badvalue(),
                    "{file}: probes missing"
                );
                assert!(
                    !c["resources"]["requests"].is_badvalue(),
                    "{file}: resource requests missing"
                );
            }
        }
    }
    for k in [
        "Deployment",
        "Service",
        "Job",
        "HorizontalPodAutoscaler",
        "Secret",
        "ConfigMap",
    ] {
        assert!(kinds.contains(k), "no {k} in the manifests: {kinds:?}");
    }
    assert!(names.len() > 20);
    for n in names {
        assert!(
            known.contains(n.as_str()),
            "a manifest sets unknown variable {n}"
        );
    }
}

#[test]
fn dockerfile_is_well_formed_and_sets_known_settings() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let instructions = [
        "FROM",
        "WORKDIR",
        "COPY",
        "RUN",
        "ENV",
        "EXPOSE",
        "USER",
        "ENTRYPOINT",
        "CMD",
        "ARG",
    ];
    let known = known();
    let mut continued = false;
    let mut froms = 0;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !continued {
            let word = t.split_whitespace().next().unwrap();
            assert!(
                instructions.contains(&word),
                "unknown Dockerfile instruction: {t}"
            );
            if word == "FROM" {
                froms += 1;
            }
            if word == "ENV" {
                for pair in t[3..].split_whitespace() {
                    let name = pair.split('=').next().unwrap();
                    assert!(known.contains(name), "Dockerfile sets unknown {name}");
                }
            }
        }
        continued = t.ends_with('\\');
    }
    assert!(froms >= 2, "not a multi-stage build");
}

#[test]
fn no_secret_values_are_committed() {
    for file in ["docker-compose.yml", "k8s/config.yaml"] {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        assert!(!text.contains("BEGIN PRIVATE KEY"), "{file} contains a key");
    }
    let config = &load("k8s/config.yaml");
    for doc in config {
        if doc["kind"].as_str() == Some("Secret") {
            for (_, v) in doc["stringData"].as_hash().unwrap() {
                assert!(
                    v.as_str().unwrap().starts_with("REPLACE"),
                    "a Secret value is committed: {v:?}"
                );
            }
        }
    }
}
