//! Key custody in `deploy/`: each service's Kubernetes Deployment and compose service holds only
//! its own private key and the public trust bundle, readable by its own user only, and no
//! deployment holds the operator's key. The manifests are parsed as YAML (`yaml-rust2`, a
//! maintained YAML 1.2 parser; text matching would miss a key mounted through another shape).

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const SERVICES: [&str; 4] = ["tenant-svc", "memory-svc", "media-svc", "gateway"];
const OPERATOR: &str = "neurosphere-cli";

fn load(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path)).expect(path);
    YamlLoader::load_from_str(&text).expect(path)
}

/// A file mode as Kubernetes reads it: YAML 1.1 takes `0440` as octal, YAML 1.2 as the decimal
/// 440; digits 0-7 are read as octal either way.
fn mode(value: &Yaml) -> Option<i64> {
    let n = value.as_i64()?;
    let digits = n.to_string();
    if digits.bytes().all(|d| (b'0'..=b'7').contains(&d)) {
        i64::from_str_radix(&digits, 8).ok()
    } else {
        Some(n)
    }
}

/// What is wrong with one pod spec of a workload named `name` (its service, or a job).
fn pod_problems(name: &str, pod: &Yaml) -> Vec<String> {
    let mut out = Vec::new();
    let own = SERVICES.contains(&name).then(|| format!("mesh-key-{name}"));
    let mut secrets: Vec<(String, Option<&Yaml>, Vec<String>)> = Vec::new();
    for v in pod["volumes"].as_vec().into_iter().flatten() {
        if let Some(name) = v["secret"]["secretName"].as_str() {
            let items = item_paths(&v["secret"]["items"]);
            secrets.push((name.to_owned(), Some(&v["secret"]["defaultMode"]), items));
        }
        for source in v["projected"]["sources"].as_vec().into_iter().flatten() {
            if let Some(name) = source["secret"]["name"].as_str() {
                let items = item_paths(&source["secret"]["items"]);
                secrets.push((name.to_owned(), Some(&v["projected"]["defaultMode"]), items));
            }
        }
    }
    for c in pod["containers"].as_vec().into_iter().flatten() {
        for e in c["env"].as_vec().into_iter().flatten() {
            if let Some(name) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                secrets.push((name.to_owned(), None, Vec::new()));
            }
        }
    }
    for (secret, default_mode, items) in secrets {
        let is_key = secret == "mesh-keys" || secret.starts_with("mesh-key-");
        if is_key && own.as_deref() != Some(secret.as_str()) {
            out.push(format!("{name} mounts another's key Secret {secret}"));
        }
        if items.iter().any(|i| i.contains(OPERATOR)) {
            out.push(format!("{name} mounts the operator key"));
        }
        if is_key && let Some(m) = default_mode.and_then(mode) {
            if m & 0o007 != 0 {
                out.push(format!("{name}: key files readable by others (mode {m:o})"));
            }
        } else if is_key && default_mode.is_some() {
            out.push(format!(
                "{name}: key volume without defaultMode (0644 by default)"
            ));
        }
    }
    let ctx = &pod["securityContext"];
    if own.is_some() && (ctx["runAsUser"].as_i64().is_none() || ctx["fsGroup"].as_i64().is_none()) {
        out.push(format!("{name}: no runAsUser/fsGroup of its own"));
    }
    out
}

fn item_paths(items: &Yaml) -> Vec<String> {
    (items.as_vec().into_iter().flatten())
        .filter_map(|i| i["key"].as_str().map(str::to_owned))
        .collect()
}

/// Every problem of the Kubernetes manifests, plus each service's uid.
fn k8s_problems() -> (Vec<String>, Vec<(String, i64)>) {
    let mut problems = Vec::new();
    let mut uids = Vec::new();
    for file in [
        "config.yaml",
        "migrate-job.yaml",
        "services.yaml",
        "hpa.yaml",
    ] {
        for doc in load(&format!("deploy/k8s/{file}")) {
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let pod = &doc["spec"]["template"]["spec"];
            if !pod.is_badvalue() {
                problems.extend(pod_problems(&name, pod));
                if let Some(uid) = pod["securityContext"]["runAsUser"].as_i64()
                    && SERVICES.contains(&name.as_str())
                {
                    uids.push((name.clone(), uid));
                }
            }
        }
    }
    (problems, uids)
}

#[test]
fn each_deployment_holds_only_its_own_key_readable_by_its_own_user() {
    let (problems, uids) = k8s_problems();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(uids.len(), SERVICES.len(), "{uids:?}");
    let mut distinct: Vec<i64> = uids.iter().map(|(_, u)| *u).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        SERVICES.len(),
        "each service its own uid: {uids:?}"
    );

    // The check catches the old shape: every key in one Secret, and a world-readable mode.
    let old = YamlLoader::load_from_str(
        "volumes: [{ name: keys, secret: { secretName: mesh-keys, defaultMode: 0644 } }]\n\
         securityContext: { runAsUser: 10001, fsGroup: 10001 }",
    )
    .unwrap();
    let found = pod_problems("gateway", &old[0]);
    assert_eq!(found.len(), 2, "{found:?}");
    let other = YamlLoader::load_from_str(
        "volumes: [{ name: k, projected: { defaultMode: 0440, sources: [\
         { secret: { name: mesh-key-gateway, items: [{ key: neurosphere-cli.pem, path: x }] } }] } }]\n\
         securityContext: { runAsUser: 10001, fsGroup: 10001 }",
    )
    .unwrap();
    assert_eq!(pod_problems("tenant-svc", &other[0]).len(), 2);
}

/// The compose services' volumes: (service, volume) pairs, and each service's `user`.
fn compose_mounts(compose: &Yaml) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for (name, svc) in compose["services"].as_hash().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default().to_owned();
        let user = svc["user"].as_str().map(str::to_owned);
        for v in svc["volumes"].as_vec().into_iter().flatten() {
            let volume = v
                .as_str()
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default();
            out.push((name.clone(), volume.to_owned(), user.clone()));
        }
    }
    out
}

#[test]
fn each_compose_service_mounts_only_its_own_key_volume_as_its_own_user() {
    let compose = &load("deploy/docker-compose.yml")[0];
    let mounts = compose_mounts(compose);
    for (service, volume, user) in &mounts {
        if service == "keys" {
            continue; // writes the keys: the only holder of them all and of the operator key
        }
        if volume == "keys" || (volume.starts_with("key-") && volume != &format!("key-{service}")) {
            panic!("compose service {service} mounts the key volume {volume}");
        }
        if volume.starts_with("key-") {
            let user = user.as_deref().unwrap_or_default();
            assert!(
                user.starts_with("100"),
                "{service} runs as {user:?}, not its own uid"
            );
        }
    }
    for service in SERVICES {
        assert!(
            mounts
                .iter()
                .any(|(s, v, _)| s == service && v == &format!("key-{service}")),
            "{service} has no key volume of its own"
        );
    }
    let command = format!("{:?}", compose["services"]["keys"]["command"]);
    assert!(command.contains("chmod 0400"), "{command}");
    assert!(
        !command.contains("a+r"),
        "keys made readable by all: {command}"
    );
}
