//! Documentation that must stay in step with the code: the README's settings table is exactly
//! what `mesh::settings::markdown_table()` renders from the one list of settings, and every test
//! the documents cite exists where they say.
//!
//! A citation is a backticked `path/to/file.rs::test_name` (relative to the repository root); in
//! a table row, further backticked names after it (`, other_test`) cite tests of the same file.
//! A backticked path alone (`mesh/src/db/pool.rs`) must name an existing file when it starts at
//! the repository root.
//! Integration tests live in one binary per crate, `<crate>/tests/it/main.rs` with a module per
//! former file, so a test of `rls` is cited as `mesh/tests/it/rls.rs::name`; a citation of the old
//! `<crate>/tests/rls.rs` fails with a hint naming the new place. `{a,b}` in a path expands to one
//! citation per alternative, and a leading `*/` means "some top-level directory". The cited
//! function must be a test (`#[test]`, `#[tokio::test]`, or a `proptest!` case).

use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn readme_settings_table_matches_the_catalog() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md"))
        .expect("README.md at the repository root");
    let table = mesh::settings::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's settings table is out of date; replace it with the output of `neurosphere settings`:\n{table}"
    );
    for s in mesh::settings::catalog::ALL {
        assert!(
            readme.contains(&format!("`{}`", s.name)),
            "{} missing",
            s.name
        );
    }
}

/// Every test SECURITY.md cites exists where it says (`path::function`).
#[test]
fn security_md_cites_existing_tests() {
    assert!(checked_citations("SECURITY.md") > 40);
}

/// Every test RELIABILITY.md cites exists.
#[test]
fn reliability_md_cites_existing_tests() {
    assert!(checked_citations("RELIABILITY.md") > 10);
}

/// Every test and file ARCHITECTURE.md and the README cite exists.
#[test]
fn architecture_md_and_readme_cite_existing_tests_and_files() {
    assert!(checked_citations("ARCHITECTURE.md") >= 1);
    checked_citations("README.md");
}

/// A citation of a test that does not exist, of a helper that is not a test, of a missing file,
/// or of a test file's place before the one-binary layout fails; good citations pass.
#[test]
fn citations_of_missing_tests_fail() {
    let check = |doc: &str| check_citations(Path::new(ROOT), doc);
    let good = "| 5 | pool | `mesh/tests/it/rls.rs::pool_of_one_never_leaks_tenant_context`, \
                `cancelled_request_leaves_no_tenant_context` |";
    assert_eq!(check(good), Ok(2));
    assert_eq!(
        check("see (`mesh/tests/it/rls.rs::pool_of_one_never_leaks_tenant_context`)."),
        Ok(1)
    );
    for (doc, problem) in [
        (
            "| 1 | x | `mesh/tests/it/rls.rs::no_such_test` |",
            "cites mesh/tests/it/rls.rs::no_such_test, which does not exist",
        ),
        (
            "| 1 | x | `mesh/tests/it/rls.rs::pool_of_one_never_leaks_tenant_context`, `no_such_test` |",
            "cites mesh/tests/it/rls.rs::no_such_test, which does not exist",
        ),
        (
            "prose `mesh/tests/it/rls.rs::no_such_test` too",
            "cites mesh/tests/it/rls.rs::no_such_test, which does not exist",
        ),
        (
            "| 1 | x | `mesh/tests/it/rls.rs::probe_db` |",
            "cites mesh/tests/it/rls.rs::probe_db, which is not a test",
        ),
        (
            "| 1 | x | `mesh/tests/rls.rs::pool_of_one_never_leaks_tenant_context` |",
            "cites missing file mesh/tests/rls.rs (tests moved to mesh/tests/it/rls.rs)",
        ),
        (
            "| 1 | x | `{mesh,tests}/tests/it/rls.rs::pool_of_one_never_leaks_tenant_context` |",
            "cites missing file tests/tests/it/rls.rs",
        ),
    ] {
        let errors = check(doc).expect_err(doc);
        assert!(
            errors.iter().any(|e| e == problem),
            "{doc}: expected {problem:?}, got {errors:?}"
        );
    }
}

#[test]
fn braces_and_stars_expand() {
    assert_eq!(
        expand("{tenant,memory}-svc/tests/binary.rs"),
        ["tenant-svc/tests/binary.rs", "memory-svc/tests/binary.rs"]
    );
    assert_eq!(expand("mesh/src/db.rs"), ["mesh/src/db.rs"]);
    let star = expand("*/Cargo.toml");
    assert!(star.contains(&"mesh/Cargo.toml".to_owned()), "{star:?}");
}

/// Checks the citations of the document `name` at the repository root; returns how many tests it
/// cites.
fn checked_citations(name: &str) -> usize {
    let doc = std::fs::read_to_string(format!("{ROOT}/{name}")).expect("document");
    check_citations(Path::new(ROOT), &doc)
        .unwrap_or_else(|problems| panic!("{name}:\n{}", problems.join("\n")))
}

/// One cited file (expanded) and, when a test is named, the test.
#[derive(Debug)]
struct Citation {
    file: String,
    test: Option<String>,
}

/// The citations in `doc`, in order.
fn citations(doc: &str) -> Vec<Citation> {
    let is_name = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
    };
    let mut out = Vec::new();
    for line in doc.lines() {
        let in_table = line.starts_with("| ");
        let mut current_file: Option<&str> = None;
        for cell in line.split('`').skip(1).step_by(2) {
            let (file, test) = match cell.split_once("::") {
                Some((f, name)) if f.ends_with(".rs") => (f, Some(name).filter(|n| is_name(n))),
                // A file alone is checked when it is written from the repository root (`up/x.rs`
                // in prose about the CLI is not).
                None if cell.ends_with(".rs") && !cell.contains(' ') && from_root(cell) => {
                    (cell, None)
                }
                // A bare name continues the file named before it, in a table row only.
                None if in_table && is_name(cell) => match current_file {
                    Some(f) => (f, Some(cell)),
                    None => continue,
                },
                _ => continue,
            };
            current_file = Some(file);
            out.extend(expand(file).into_iter().map(|file| Citation {
                file,
                test: test.map(str::to_owned),
            }));
        }
    }
    out
}

/// Whether `path` starts with a top-level directory of the repository (or a pattern).
fn from_root(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or_default();
    path.contains('/')
        && (first == "*" || first.contains('{') || Path::new(ROOT).join(first).is_dir())
}

/// `{a,b}` alternatives (one group) and a leading `*/` (every top-level directory of the
/// repository that has the rest) expanded.
fn expand(path: &str) -> Vec<String> {
    if let Some(rest) = path.strip_prefix("*/") {
        let mut dirs: Vec<String> = std::fs::read_dir(ROOT)
            .expect("repository root")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(rest).is_file())
            .map(|e| format!("{}/{rest}", e.file_name().to_string_lossy()))
            .collect();
        dirs.sort();
        // Nothing matching is reported as the pattern itself, which does not exist.
        return if dirs.is_empty() {
            vec![path.to_owned()]
        } else {
            dirs
        };
    }
    let (Some(open), Some(close)) = (path.find('{'), path.find('}')) else {
        return vec![path.to_owned()];
    };
    path[open + 1..close]
        .split(',')
        .map(|alt| format!("{}{alt}{}", &path[..open], &path[close + 1..]))
        .collect()
}

/// Checks every citation of `doc` against the files under `root`: the file exists and, when a
/// test is named, defines it as a test. Returns how many tests were checked, or every problem.
fn check_citations(root: &Path, doc: &str) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut checked = 0;
    for Citation { file, test } in citations(doc) {
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else {
            problems.push(missing_file(root, &file));
            continue;
        };
        let Some(test) = test else { continue };
        checked += 1;
        match find_fn(&text, &test) {
            None => problems.push(format!("cites {file}::{test}, which does not exist")),
            Some(at) if !is_test(&text[..at]) => {
                problems.push(format!("cites {file}::{test}, which is not a test"));
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

/// The problem of a citation of a missing file, with the new place of a test file that moved
/// into its crate's one test binary.
fn missing_file(root: &Path, file: &str) -> String {
    if let Some((krate, name)) = file.split_once("/tests/")
        && !name.contains('/')
    {
        let moved = format!("{krate}/tests/it/{name}");
        if root.join(&moved).is_file() {
            return format!("cites missing file {file} (tests moved to {moved})");
        }
    }
    format!("cites missing file {file}")
}

/// Where `fn name(` (or `fn name<`) starts in `text`.
fn find_fn(text: &str, name: &str) -> Option<usize> {
    ["(", "<"]
        .iter()
        .find_map(|end| text.find(&format!("fn {name}{end}")))
}

/// Whether the item whose `fn` follows `before` carries a test attribute: scans back over the
/// attribute, comment and `async`/`pub` lines that belong to it.
fn is_test(before: &str) -> bool {
    // Without the start of the `fn` line itself (indentation, `async`, `pub`).
    let head = &before[..before.rfind('\n').unwrap_or(0)];
    for line in head.lines().rev() {
        let line = line.trim();
        if line.starts_with("#[") && line.contains("test") {
            return true;
        }
        let belongs = line.starts_with("#[")
            || line.starts_with("//")
            || line.ends_with(")]")
            || line.ends_with(',');
        if !belongs {
            return false;
        }
    }
    false
}
